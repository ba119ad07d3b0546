"""Data preparation speed: cold and warm, and decoding against a plain Pillow loop.

Usage:  python benchmarks/bench_data.py [--name=value ...]   (e.g. --data_dir=...)

Prints numbers, no verdict:
  - cold: building the training and validation sets from the image files
    (list, decode, resize, augment) with an empty image cache (the files
    themselves may be in the operating system's cache);
  - warm: the same with the cache cnn_run.py keeps, as a second run sees it;
  - decode+resize images/s of the suite (cnn_data.load_images) against a plain
    Pillow loop doing the same work (open, grayscale, bilinear resize to the
    image size, to a NumPy array), on the same files, and their ratio.
"""

import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from cnnlib import config  # noqa: E402


def pillow_loop(paths, size, channels):
    """The plain way: one file after another with Pillow. Returns uint8 [N, size, size, C]."""
    from PIL import Image

    out = []
    for path in paths:
        with Image.open(path) as image:
            image = image.convert("L" if channels == 1 else "RGB")
            out.append(np.asarray(image.resize((size, size), Image.BILINEAR)))
    return np.stack(out).reshape(len(out), size, size, channels)


def main():
    import cnn_data
    import cnn_params
    from cnnlib import layouts

    params, _ = config.parse_args(sys.argv[1:], config.defaults(cnn_params))
    cache = Path(tempfile.mkdtemp(prefix="bench-cache-"))
    try:
        params = {**params, "cache_dir": str(cache)}
        cnn_data.prepare_data(params, standin_dir=cnn_params.DATA_DIR)  # makes the stand-in if absent; warms the OS cache
        shutil.rmtree(cache)
        start = time.perf_counter()
        data = cnn_data.prepare_data(params, standin_dir=cnn_params.DATA_DIR)
        cold = time.perf_counter() - start
        start = time.perf_counter()
        cnn_data.prepare_data(params, standin_dir=cnn_params.DATA_DIR)
        warm = time.perf_counter() - start
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    files = int(data["counts_before"].sum()) + len(data["val_labels"])  # readable files
    print(f"data: {params['data_dir']}, {files} image files, "
          f"{len(data['train_labels'])} training images after augmentation")
    print(f"cold preparation (no image cache): {cold:6.2f} s")
    print(f"warm preparation (image cache):    {warm:6.2f} s")

    found = layouts.find_dataset(
        params["data_dir"], params["classes"], params["aliases"],
        labels_file=params["labels_file"], image_column=params["image_column"],
        label_column=params["label_column"], images_dir=params["images_dir"],
        validation_fraction=params["validation_fraction"], seed=params["seed"])
    paths = list(found["train"][0]) + list(found["validation"][0])
    size, channels = params["image_size"], params["channels"]
    cnn_data.load_images(paths[:64], size, channels)  # compile the decoder once
    start = time.perf_counter()
    suite_images = cnn_data.load_images(paths, size, channels)[0]
    suite = time.perf_counter() - start
    start = time.perf_counter()
    plain = pillow_loop(paths, size, channels)
    pillow = time.perf_counter() - start
    difference = np.abs(suite_images.astype(int) - plain.astype(int)).mean() \
        if len(suite_images) == len(plain) else float("nan")
    print(f"suite decode+resize:  {len(paths) / suite:8.1f} images/s")
    print(f"plain Pillow loop:    {len(paths) / pillow:8.1f} images/s")
    print(f"suite / Pillow:       {pillow / suite:8.2f}")
    print(f"mean pixel difference between the two: {difference:.2f} (of 255)")
    print(f"peak resident memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
