"""Disk cache of decoded, resized images, so a second run starts training in seconds.

Offers:
  cache_key(paths, size, channels, tag) -> hex key of the files (paths, sizes,
                                      modification times) and of the preprocessing that
                                      made them (`tag` names any beyond the resize, such
                                      as cropping to faces)
  load_cached(paths, size, channels, cache_dir, loader, tag)
                                   -> (images, kept, skipped) as decode.load_images
                                      returns them, from the cache when it is valid

A cache file is trusted only when its stored key matches: a changed file, size,
channel count or library version makes it rebuild. A damaged file fails in
np.load (a zip checks its own CRC) and is rebuilt too. It is written atomically. The cache lives in its own folder (CACHE_DIR, git-ignored) and holds
only what the suite computed; deleting it is always safe.
"""

import hashlib
import os
import warnings
from pathlib import Path

import numpy as np

from cnnlib import atomic

# Bump when the preprocessing code changes what a file decodes to.
CACHE_VERSION = 1


def cache_key(paths, size, channels, tag=""):
    """Return a hex key of the files' paths, sizes and mtimes and the preprocessing.

    `tag` describes preprocessing beyond decode and resize (e.g. face crops with
    their margin and detector); "" keeps the keys of plain decoded images as they were.
    """
    import PIL
    import tensorflow as tf

    digest = hashlib.sha256()
    digest.update(f"v{CACHE_VERSION}|{size}|{channels}|tf{tf.__version__}|"
                  f"pil{PIL.__version__}\n".encode())
    if tag:
        digest.update(f"{tag}\n".encode())
    for path in paths:
        try:
            info = os.stat(path)
            digest.update(f"{os.path.abspath(path)}|{info.st_size}|{info.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{os.path.abspath(path)}|missing\n".encode())
    return digest.hexdigest()


def _read(path, key):
    """Return (images, kept, skipped) from the cache file `path`, or None if unusable."""
    try:
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as stored:
            if str(stored["key"]) != key:
                return None
            images, kept = stored["images"], stored["kept"]
            if len(images) != len(kept):
                raise ValueError("images and indices differ in length")
            skipped = list(zip(stored["skipped_paths"].tolist(),
                               stored["skipped_reasons"].tolist()))
            return images, kept, skipped
    except Exception as error:  # a damaged file can fail in many ways; never trust it
        warnings.warn(f"The image cache {path} is unusable ({error}); rebuilding it.",
                      stacklevel=3)
        return None


def _write(path, key, images, kept, skipped):
    """Write the cache file atomically: a reader sees the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic.writing(path) as partial:
        np.savez(partial, key=np.asarray(key), images=images, kept=kept,
                 skipped_paths=np.asarray([p for p, _ in skipped], dtype=str),
                 skipped_reasons=np.asarray([r for _, r in skipped], dtype=str))


def load_cached(paths, size, channels, cache_dir, loader, tag=""):
    """Return `loader(paths, size, channels)`, from `cache_dir` when it is still valid.

    The result is (images, kept, skipped) as decode.load_images returns it.
    The files' skipped reasons are stored too, so a cached run warns of the same
    skipped files. `tag` names what `loader` does beyond decode and resize (see
    cache_key), so face crops and whole images never share a cache file.
    """
    key = cache_key(paths, size, channels, tag)
    path = Path(cache_dir) / f"images-{key[:32]}.npz"
    if path.is_file():
        cached = _read(path, key)
        if cached is not None:
            for _, reason in cached[2]:  # the same warnings as a fresh load
                warnings.warn(f"Skipped {reason}", stacklevel=2)
            return cached
    images, kept, skipped = loader(paths, size, channels)
    try:
        _write(path, key, images, kept, skipped)
    except OSError as error:  # a read-only disk must not stop training
        warnings.warn(f"Could not write the image cache {path} ({error}).", stacklevel=2)
    return images, kept, skipped
