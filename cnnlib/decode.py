"""Decoding and resizing image files, by their content rather than their name.

Offers:
  decode_image(path, size, channels)           -> one uint8 image [size, size, channels]
  load_images(paths, size, channels, workers)  -> (uint8 images [K, size, size, channels],
                                                  kept indices, skipped (path, reason))
  decode_full(path, channels)                  -> one uint8 image at its own size
                                                  [height, width, channels] (faces are
                                                  found and cropped in it)
  resize(pixels, size)                         -> uint8 [size, size, channels], the
                                                  resize every image above goes through
  set_max_pixels(max_pixels)                   the limit of every decode (--max_pixels),
                                                  set once by each script
  max_pixels()                                 -> that limit, now
  header_size(source)                          -> (width, height) read from the header of
                                                  a file (a path or a binary file object)
  check_size(source, name, max_pixels)         -> (width, height); SizeError when larger
                                                  than the limit, before any decoding
  check_pixels(name, width, height, max_pixels) raises SizeError past the limit (a video
                                                  frame's size, from its properties)
  refuse_too_large(path)                       raises SizeError for an image file named on
                                                  the command line past the limit (other
                                                  damage is left to the decoders' skip list)

TensorFlow decodes JPEG, PNG, BMP and GIF, as the report does, in one parallel
graph-mode tf.data pipeline; Pillow decodes the rest (WebP, CMYK or EXIF-rotated
JPEG, 16-bit PNG, TIFF...). Every image is resized to a square, never cropped.

Before any of them decodes a file, its width and height are read from its header
(Pillow reads no pixels for that) and checked against MAX_PIXELS (--max_pixels): a
400 KB PNG may claim 20000x20000 pixels, 1.2 GB once decoded in colour, and far more
in the face detector. A larger image is refused in one sentence that names it, its
size and the flag; Pillow's own decompression-bomb limit gives way to this one.
"""

import contextlib
import functools
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from struct import error as struct_error

import numpy as np
import tensorflow as tf

from cnnlib.errors import DataError, SizeError, SuiteWarning

# The most pixels (width x height, from the header) of an image decoded: 40 million
# (e.g. 7700x5190) is a 120 MB colour copy; `cnn_eval.py` on one such photo, MTCNN
# included, peaks at 1.3 to 1.4 GB (measured: two faces, and a busy texture). The
# default of cnn_params.MAX_PIXELS (--max_pixels).
MAX_PIXELS = 40_000_000
_limit = {"max_pixels": MAX_PIXELS}  # this process's, set by the script (set_max_pixels)
_pillow_lock = threading.Lock()


def set_max_pixels(max_pixels):
    """Make `max_pixels` the limit of every decode in this process (the scripts call it
    once, with --max_pixels)."""
    _limit["max_pixels"] = int(max_pixels)


@contextlib.contextmanager
def _pillow_unlimited():
    """Pillow's own decompression-bomb check off, for a file already checked here (or to
    read the size of one it would refuse, so the sentence can name it)."""
    from PIL import Image

    with _pillow_lock:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            yield Image
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def header_size(source):
    """Return (width, height) from the header of `source` (a path or a binary file
    object), reading no pixels. Raises DataError when it is no image or its header is
    damaged or cut short."""
    from PIL import UnidentifiedImageError

    name = source if isinstance(source, (str, os.PathLike)) else "the image"
    try:
        with _pillow_unlimited() as Image, Image.open(source) as image:
            width, height = image.size
    except UnidentifiedImageError:
        raise DataError(f"{name} is not a readable image (no known image format).") from None
    except (OSError, ValueError, SyntaxError, EOFError, struct_error) as error:
        if isinstance(error, OSError) and error.filename is not None:
            raise
        raise DataError(f"{name} is not a readable image (its header is damaged or cut "
                        f"short: {error}).") from None
    return int(width), int(height)


def max_pixels():
    """This process's limit on an image's pixels (MAX_PIXELS unless set_max_pixels)."""
    return _limit["max_pixels"]


def check_pixels(name, width, height, max_pixels=None):
    """Raise SizeError when a `width` x `height` image (or frame) named `name` has more
    pixels than `max_pixels` (default: this process's limit, --max_pixels)."""
    limit = max_pixels or _limit["max_pixels"]
    if width * height > limit:
        raise SizeError(f"{name} is {width}x{height} pixels ({width * height:,}), more than "
                        f"the limit of {limit:,}: shrink it, or raise --max_pixels (the "
                        f"memory it takes grows with the pixels).")


def check_size(source, name=None, max_pixels=None):
    """Return (width, height) of the image `source` (a path or a binary file object),
    read from its header. Raises SizeError when it has more pixels than `max_pixels`
    (default: --max_pixels), DataError when its header cannot be read."""
    width, height = header_size(source)
    check_pixels(name or source, width, height, max_pixels)
    return width, height


def refuse_too_large(path):
    """Raise SizeError when the file `path`'s header gives more pixels than the limit;
    nothing for a file that is no image or is damaged (the decoders skip it, saying why)."""
    try:
        check_size(path)
    except SizeError:
        raise
    except (DataError, OSError):
        pass


def _decode_with_pillow(path, size, channels):
    """Decode what TensorFlow cannot (WebP, CMYK, 16-bit, EXIF-rotated...).

    Pillow reads the header first, so a large file that is no image is turned
    down without being read whole. `size` None decodes at full size.
    Returns a uint8 array [height, width, channels].
    """
    from PIL import ImageOps

    with _pillow_unlimited() as Image:  # checked by check_size before
        opened = Image.open(path)
    with opened as image:
        if image.format == "JPEG" and size:
            # Let libjpeg decode a huge photo at a fraction of its size (never below
            # what the resize needs), so it is never held at full size.
            image.draft(image.mode, (size, size))
        image = ImageOps.exif_transpose(image)
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):
            # 16-bit grayscale: scale to 8 bits rather than clip.
            array = np.asarray(image, dtype=np.float64) / 257.0
            image = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), "L")
        elif image.mode == "F":
            # Floating-point (a TIFF from a scientific tool): 0..1 is the usual scale for
            # floats, anything else is taken as 0..255; Pillow alone would clip 0..1 to black.
            array = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=255.0,
                                  neginf=0.0)
            if array.size and array.min() >= 0 and array.max() <= 1:
                array = array * 255.0
            image = Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8), "L")
        image = image.convert("L" if channels == 1 else "RGB")
        array = np.asarray(image, dtype=np.uint8)
    return array.reshape(array.shape[0], array.shape[1], channels)


# No face photo is this large: a bigger file is turned down before it is read whole, on
# every path (training, eval, faces).
MAX_IMAGE_BYTES = 256 * 2**20


def _too_many_bytes(path):
    return (f"{path} is larger than {MAX_IMAGE_BYTES // 2**20} MiB, too large for an image "
            f"of a face.")


# Formats TensorFlow decodes, by their first bytes (the report's decode_jpeg and kin).
_TF_MAGIC = (b"\xff\xd8", b"\x89PNG", b"GIF8", b"BM")
_HEADER_BYTES = 65536  # enough to see a JPEG's EXIF and Adobe markers


def _tf_can_decode(head):
    """True when TensorFlow decodes the file that starts with `head` as it should.

    Not for EXIF-rotated JPEGs (TensorFlow ignores the rotation) or CMYK ones
    (Adobe marker), which Pillow decodes correctly.
    """
    if not head.startswith(_TF_MAGIC):
        return False
    return not (head.startswith(b"\xff\xd8") and (b"Exif\x00\x00" in head or b"Adobe" in head))


def _resize(pixels, size):
    """Resize (never crop) to [size, size] and round back to uint8.

    Bilinear like the report's resize_images; antialias keeps large images from
    aliasing when shrunk (QIDER's sizes vary a lot).
    """
    resized = tf.image.resize(pixels, (size, size), method="bilinear", antialias=True)
    return tf.cast(tf.round(tf.clip_by_value(resized, 0, 255)), tf.uint8)


def resize(pixels, size):
    """Return uint8 pixels [H, W, C] resized to [size, size, C], as every image is."""
    return _resize(pixels, size).numpy()


def _tf_decode_resize(data, size, channels):
    """Graph-mode decode and resize of one encoded image (scalar string tensor).

    A JPEG is decoded by libjpeg at 1/8, 1/4 or 1/2 scale when that still leaves
    `size` pixels on its shorter side: the same picture for a fraction of the work.
    Returns uint8 [size, size, channels].
    """
    def jpeg():
        shorter = tf.reduce_min(tf.image.extract_jpeg_shape(data)[:2])
        ratios = (8, 4, 2)
        fits = [shorter >= size * r for r in ratios] + [tf.constant(True)]
        branches = [lambda r=r: tf.io.decode_jpeg(data, channels=channels, ratio=r)
                    for r in (*ratios, 1)]
        return tf.switch_case(tf.cast(tf.argmax(tf.cast(tf.stack(fits), tf.int32)), tf.int32),
                              branches)

    def other():
        return tf.io.decode_image(data, channels=channels, expand_animations=False)

    is_jpeg = tf.equal(tf.strings.substr(data, 0, 2), b"\xff\xd8")
    pixels = tf.cond(is_jpeg, jpeg, other)
    pixels.set_shape([None, None, channels])
    return _resize(pixels, size)


@functools.lru_cache(maxsize=None)
def _tf_decoder(size, channels):
    """One compiled decoder per image size and channel count."""
    return tf.function(lambda data: _tf_decode_resize(data, size, channels))


def _decode(path, channels, tf_decode, size=None):
    """Decode `path` by its content: `tf_decode` for TensorFlow's formats, else Pillow.

    Returns (uint8 pixels [H, W, channels], whether `tf_decode` made them).
    Raises DataError when the file is empty or not a readable image.
    """
    if os.path.getsize(path) > MAX_IMAGE_BYTES:  # TensorFlow would read it whole
        raise DataError(_too_many_bytes(path))
    with open(path, "rb") as handle:
        head = handle.read(_HEADER_BYTES)
    if not head:
        raise DataError(f"{path} is empty.")
    check_size(path)  # before any decoder allocates its pixels
    if _tf_can_decode(head):
        try:
            return tf_decode(tf.io.read_file(str(path))).numpy(), True
        except (tf.errors.InvalidArgumentError, tf.errors.UnknownError):
            pass  # e.g. a damaged file: let Pillow try, and name the error if it fails too
    from PIL import UnidentifiedImageError

    try:
        return _decode_with_pillow(path, size, channels), False
    except UnidentifiedImageError:
        raise DataError(f"{path} is not a readable image (no known image format).") from None
    except Exception as error:  # Pillow raises many types for broken files
        raise DataError(f"{path} is not a readable image ({error}).") from None


def decode_image(path, size, channels):
    """Decode the image file at `path` by its content and resize it (never crop).

    Returns a uint8 array [size, size, channels]. TensorFlow decodes JPEG, PNG,
    BMP and GIF (first frame), as the report does; Pillow decodes the rest
    (WebP, CMYK or EXIF-rotated JPEG, TIFF...).
    Raises DataError when the file is empty or not a readable image.
    """
    pixels, resized = _decode(path, channels, _tf_decoder(size, channels), size)
    return pixels if resized else _resize(pixels, size).numpy()


def decode_full(path, channels):
    """Decode the image file at `path` by its content, at its own size.

    The same decoders as decode_image (TensorFlow for JPEG, PNG, BMP and GIF,
    Pillow for the rest, EXIF rotation applied), without the resize, so a face
    cut out of it and resized is preprocessed as a training image is.
    Returns uint8 [height, width, channels]. Raises DataError when the file is
    empty or not a readable image.
    """
    return _decode(path, channels, lambda data: tf.io.decode_image(
        data, channels=channels, expand_animations=False))[0]


def _tf_route(path):
    """True if TensorFlow should decode `path`, False if Pillow; a str if unusable."""
    try:
        if os.path.getsize(path) > MAX_IMAGE_BYTES:
            return _too_many_bytes(path)
        with open(path, "rb") as handle:
            head = handle.read(_HEADER_BYTES)
        if head:
            check_size(path)
        return _tf_can_decode(head)
    except DataError as error:  # too large, or a damaged header: skipped like any damage
        return str(error)
    except OSError as error:
        return f"{path} could not be read ({error.strerror or error})."


def load_images(paths, size, channels, workers=None):
    """Decode and resize every file of `paths`, in parallel.

    TensorFlow's own formats go through one tf.data pipeline (parallel, in graph
    mode, a few images at full size in memory at a time); the rest, and any file
    that pipeline fails on, are decoded one by one by decode_image.
    Returns (images, kept, skipped): a uint8 array [K, size, size, channels] of the
    readable files in the order of `paths`, the indices into `paths` they came
    from (int64 [K]), and (path, reason) for every file that could not be read.
    """
    workers = workers or max(1, os.cpu_count() or 1)
    paths = [str(p) for p in paths]
    images = np.zeros((len(paths), size, size, channels), dtype=np.uint8)
    done = np.zeros(len(paths), dtype=bool)
    reasons = {}
    # Only each file's head is read here (the OS keeps it cached for the second,
    # full read in the pipeline): holding every file's bytes would not scale.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        routes = list(pool.map(_tf_route, paths))
    by_tf = [i for i, route in enumerate(routes) if route is True]
    if by_tf:
        decode = _tf_decoder(size, channels).python_function
        dataset = (tf.data.Dataset.from_tensor_slices((by_tf, [paths[i] for i in by_tf]))
                   .map(lambda i, path: (i, decode(tf.io.read_file(path))),
                        num_parallel_calls=workers, deterministic=True)
                   .ignore_errors()  # a broken file drops out; it is retried below
                   .batch(256))
        for indices, batch in dataset:
            images[indices.numpy()] = batch.numpy()
            done[indices.numpy()] = True
    for i in np.flatnonzero(~done):
        if isinstance(routes[i], str):
            reasons[i] = routes[i]
            continue
        try:
            images[i] = decode_image(paths[i], size, channels)
            done[i] = True
        except DataError as error:
            reasons[i] = str(error)
        except OSError as error:
            reasons[i] = f"{paths[i]} could not be read ({error.strerror or error})."
    skipped = [(paths[i], reasons[i]) for i in sorted(reasons)]
    for _, reason in skipped:
        warnings.warn(f"Skipped {reason}", SuiteWarning, stacklevel=2)
    kept = np.flatnonzero(done).astype(np.int64)
    return (images if done.all() else images[kept]), kept, skipped
