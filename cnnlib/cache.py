"""Disk cache of decoded, resized images, so a second run starts training in seconds.

Offers:
  cache_key(paths, size, channels, tag) -> hex key of the files (paths, sizes,
                                      modification times) and of the preprocessing that
                                      made them (`tag` names any beyond the resize, such
                                      as cropping to faces)
  derived_key(*parts)              -> hex key of a result computed from keyed inputs
  load_cached(paths, size, channels, cache_dir, loader, tag, key)
                                   -> (images, kept, skipped) as decode.load_images
                                      returns them, from the cache when it is valid
  read_entry(cache_dir, name, key) -> (images, {name: small array}) or None
  write_entry(cache_dir, name, key, images, **small)
                                   -> the images as stored (memory-mapped), or as given
                                      when the cache cannot be written
  read_note(cache_dir, name, key) / write_note(cache_dir, name, key, value)
                                   -> a small JSON result kept beside them (or None)

An entry is two files: `<name>-<key>.npy`, the images as a plain NumPy array,
and `<name>-<key>.npz`, its key, the images' shape and CRC-32 and the small arrays
that go with them (indices, labels, skipped files). The .npz is written last, so
it is the entry's commit point; both are written atomically. Images are opened
memory-mapped: a warm run holds one copy of them, the file's pages, which the
operating system shares and can drop and read back, instead of a decompressed
copy beside a TensorFlow copy. An entry is trusted only when its stored key
matches (a changed file, size, channel count or library version makes it
rebuild) and its images' CRC-32 matches (a damaged file is rebuilt too).
Two processes that need the same missing entry never both decode: the second waits
on the entry's lock file (`.<name>-<key>.lock`, cnnlib.locks) and maps the first's.
The cache lives in its own folder (CACHE_DIR, git-ignored) and holds only what
the suite computed; deleting it is always safe.
"""

import contextlib
import hashlib
import json
import os
import warnings
import zlib
from pathlib import Path

import numpy as np

from cnnlib import atomic, locks
from cnnlib.errors import SuiteWarning

# Bump when the preprocessing code changes what a file decodes to, or the format.
CACHE_VERSION = 3
_CRC_CHUNK = 64 * 2**20  # bytes checked at a time: the CRC never needs a second copy


def cache_key(paths, size, channels, tag=""):
    """Return a hex key of the files' paths, sizes and mtimes and the preprocessing.

    `tag` describes preprocessing beyond decode and resize (e.g. face crops with
    their margin and detector); "" keeps the keys of plain decoded images as they were.
    """
    import PIL
    import tensorflow as tf

    from cnnlib import decode

    digest = hashlib.sha256()
    # The pixel limit decides which images were skipped, so it keys what was decoded.
    digest.update(f"v{CACHE_VERSION}|{size}|{channels}|tf{tf.__version__}|"
                  f"pil{PIL.__version__}|max_pixels{decode.max_pixels()}\n".encode())
    if tag:
        digest.update(f"{tag}\n".encode())
    for path in paths:
        try:
            info = os.stat(path)
            digest.update(f"{os.path.abspath(path)}|{info.st_size}|{info.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{os.path.abspath(path)}|missing\n".encode())
    return digest.hexdigest()


def derived_key(*parts):
    """Return a hex key of `parts` (strings, numbers, NumPy arrays), in order."""
    digest = hashlib.sha256(f"v{CACHE_VERSION}".encode())
    for part in parts:
        data = part.tobytes() if isinstance(part, np.ndarray) else repr(part).encode()
        digest.update(len(data).to_bytes(8, "little") + data)
    return digest.hexdigest()


def _crc(images):
    """CRC-32 of an array's bytes, read a chunk at a time."""
    flat = images.reshape(-1).view(np.uint8)
    crc = 0
    for start in range(0, len(flat), _CRC_CHUNK):
        crc = zlib.crc32(flat[start:start + _CRC_CHUNK], crc)
    return crc


def _paths(cache_dir, name, key):
    stem = Path(cache_dir) / f"{name}-{key[:32]}"
    return stem.with_suffix(".npy"), stem.with_suffix(".npz")


def _open(path):
    """The .npy file at `path`, memory-mapped (read-only) unless it holds no images."""
    images = np.load(path, mmap_mode="r", allow_pickle=False)
    return images if images.size else np.array(images)


def read_entry(cache_dir, name, key):
    """Return (images, small) of the entry `name` with `key`, or None if absent or unusable.

    `images` is a read-only memory-mapped uint8 array; `small` holds the entry's
    other arrays. A damaged or mismatched entry gives a warning and None.
    """
    images_path, meta_path = _paths(cache_dir, name, key)
    if not meta_path.is_file():
        return None
    try:
        with open(meta_path, "rb") as handle, np.load(handle, allow_pickle=False) as stored:
            if str(stored["key"]) != key:
                return None
            small = {k: stored[k] for k in stored.files if k not in ("key", "shape", "crc")}
            shape, crc = tuple(int(n) for n in stored["shape"]), int(stored["crc"])
        images = _open(images_path)
        if images.shape != shape or images.dtype != np.uint8:
            raise ValueError(f"images of shape {images.shape}, not {shape}")
        if _crc(images) != crc:
            raise ValueError("the images' CRC-32 does not match")
        return images, small
    except Exception as error:  # a damaged file can fail in many ways; never trust it
        warnings.warn(f"The image cache {meta_path} is unusable ({error}); rebuilding it.",
                      SuiteWarning, stacklevel=3)
        return None


def write_entry(cache_dir, name, key, images, **small):
    """Store `images` (uint8) and the `small` arrays as the entry `name` with `key`.

    Returns the stored images memory-mapped, so the caller can drop its own
    copy; when the cache cannot be written (a read-only disk must not stop
    training) it warns and returns `images` as given.
    """
    images_path, meta_path = _paths(cache_dir, name, key)
    images = np.ascontiguousarray(images, dtype=np.uint8)
    try:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        with atomic.writing(images_path) as partial:
            np.save(partial, images, allow_pickle=False)
        with atomic.writing(meta_path) as partial:  # the commit point, last
            np.savez(partial, key=np.asarray(key), shape=np.asarray(images.shape),
                     crc=np.asarray(_crc(images), dtype=np.int64), **small)
        return _open(images_path)
    except OSError as error:
        warnings.warn(f"Could not write the image cache {meta_path} ({error}).", SuiteWarning,
                      stacklevel=3)
        return images


def _note_path(cache_dir, name, key):
    return Path(cache_dir) / f"{name}-{key[:32]}.json"


def read_note(cache_dir, name, key):
    """Return the JSON value stored as `name` with `key`, or None if absent or unusable."""
    try:
        stored = json.loads(_note_path(cache_dir, name, key).read_text())
        return stored["value"] if stored.get("key") == key else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def write_note(cache_dir, name, key, value):
    """Store the JSON-able `value` as `name` with `key`; a cache that cannot be written is
    only a warning."""
    try:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        atomic.write_json(_note_path(cache_dir, name, key), {"key": key, "value": value})
    except OSError as error:
        warnings.warn(f"Could not write the cache {cache_dir} ({error}).", SuiteWarning,
                      stacklevel=2)


def load_cached(paths, size, channels, cache_dir, loader, tag="", key=None):
    """Return `loader(paths, size, channels)`, from `cache_dir` when it is still valid.

    The result is (images, kept, skipped) as decode.load_images returns it, the
    images memory-mapped from the cache. The files' skipped reasons are stored
    too, so a cached run warns of the same skipped files. `tag` names what
    `loader` does beyond decode and resize (see cache_key), so face crops and
    whole images never share an entry; `key` is cache_key's, when the caller has
    it already.
    """
    key = key or cache_key(paths, size, channels, tag)
    cached = read_entry(cache_dir, "images", key)
    if cached is None:
        # Another process decoding the same files: wait for it, then map its entry.
        with _entry_lock(cache_dir, "images", key, len(paths)):
            cached = read_entry(cache_dir, "images", key)
            if cached is None:
                images, kept, skipped = loader(paths, size, channels)
                images = write_entry(
                    cache_dir, "images", key, images, kept=kept,
                    skipped_paths=np.asarray([p for p, _ in skipped], dtype=str),
                    skipped_reasons=np.asarray([r for _, r in skipped], dtype=str))
                return images, kept, skipped
    images, small = cached
    skipped = list(zip(small["skipped_paths"].tolist(), small["skipped_reasons"].tolist()))
    for _, reason in skipped:  # the same warnings as a fresh load
        warnings.warn(f"Skipped {reason}", SuiteWarning, stacklevel=2)
    return images, small["kept"], skipped


@contextlib.contextmanager
def _entry_lock(cache_dir, name, key, count):
    """Hold the entry's lock file (hidden, in the cache folder) while it is computed;
    a cache folder that cannot be written is no reason to stop, so then no lock."""
    stem = _paths(cache_dir, name, key)[0].stem
    try:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        context = locks.waiting(Path(cache_dir) / f".{stem}.lock",
                                f"decoding the same {count} images into the cache {cache_dir}")
        context.__enter__()
    except OSError:
        yield
        return
    try:
        yield
    finally:
        context.__exit__(None, None, None)
