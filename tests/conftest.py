"""Shared test set-up: the project root on sys.path and tiny image folders."""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

import cnn_params  # noqa: E402
from cnnlib import config

SHARED_SET = ROOT.parent / "shared" / "datasets" / "facial_expressions"


def write_image(path, size, mode="RGB", fmt=None, seed=0):
    """Write a random image of `size` (width, height) and `mode` at `path`."""
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "L": 1, "RGBA": 4}[mode]
    pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt)
    return path


def make_class_folders(root, per_class=3, classes=None, folder_names=None):
    """Write train/ and validation/ class folders of small mixed images under `root`.

    Images vary in size, colour mode and format (JPEG and PNG). Returns `root`.
    """
    classes = classes or cnn_params.CLASSES
    folder_names = folder_names or classes
    kinds = [((40, 50), "RGB", "JPEG", ".jpg"), ((120, 90), "L", "JPEG", ".jpeg"),
             ((64, 64), "RGB", "PNG", ".png"), ((30, 100), "L", "PNG", ".png")]
    seed = 0
    for split, count in (("train", per_class), ("validation", max(1, per_class // 2))):
        for name in folder_names:
            for i in range(count):
                size, mode, fmt, ext = kinds[seed % len(kinds)]
                write_image(root / split / name / f"img{i}{ext}", size, mode, fmt, seed)
                seed += 1
    return root


def assert_figure(path, min_size=(200, 150)):
    """`path` is a whole PNG of at least `min_size` pixels that shows something."""
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size >= min_size, (image.format, image.size)
        pixels = np.asarray(image.convert("L"))
    assert len(np.unique(pixels)) > 8  # drawn, not a blank page


@pytest.fixture
def tiny_data(tmp_path):
    """A data folder with 3 training and 1 validation image per default class."""
    return make_class_folders(tmp_path / "data")


@pytest.fixture
def tiny_params(tiny_data, tmp_path):
    """Parameters for a fast run on `tiny_data`, writing runs under tmp_path."""


    params = config.defaults(cnn_params)
    params.update(data_dir=str(tiny_data), runs_dir=str(tmp_path / "runs"),
                  cache_dir=str(tmp_path / "cache"),
                  test_dir=str(ROOT / "test_images"), epochs=1, verbose=0,
                  image_size=32)
    return params
