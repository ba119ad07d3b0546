"""A tiny saved model and face photos for the export, server and browser tests."""

from pathlib import Path

import numpy as np
from PIL import Image

import cnn_model
import cnn_params

ROOT = Path(__file__).resolve().parent.parent
TEST_IMAGES = ROOT / "test_images"
LAYERS = [{"type": "conv", "units": 8, "kernel": 3, "pool": 2, "batchnorm": True},
          {"type": "conv", "units": 8, "kernel": 3, "pool": 2},
          {"type": "dense", "units": 16, "dropout": 0.3},
          {"type": "dense", "units": 8}]


def tiny_model(folder, size=32, channels=1):
    """Build and save a 32x32 grayscale model (untrained, seeded) in `folder`.

    Its output layer is scaled up so its softmax is confident: quantisation is then
    judged on clear decisions, as a trained model's are. Returns the .keras path.
    """
    model = cnn_model.build_model(LAYERS, len(cnn_params.CLASSES), image_size=size,
                                  channels=channels, seed=7)
    output = model.layers[-1]
    kernel, bias = output.get_weights()
    output.set_weights([kernel * 8.0, bias])
    return cnn_model.save_model(model, Path(folder) / "tiny.keras",
                                {"classes": cnn_params.CLASSES, "aliases": cnn_params.ALIASES,
                                 "image_size": size, "channels": channels})


def face_photo(path, count, face=TEST_IMAGES / "happy.jpg", side=200):
    """A 640x320 grey photo with `count` (0, 1 or 2) copies of a real face crop pasted in."""
    canvas = Image.new("RGB", (640, 320), (128, 128, 128))
    with Image.open(face) as image:
        crop = image.convert("RGB").resize((side, side))
    for x in ((220,), (40, 400))[count - 1] if count else ():
        canvas.paste(crop, (x, 60))
    canvas.save(path, quality=95)
    return Path(path)


def gradient_png(path, width=640, height=320):
    """A smooth image with no face in it."""
    row = np.linspace(0, 255, width, dtype=np.uint8)
    Image.fromarray(np.tile(row, (height, 1))).save(path)
    return Path(path)
