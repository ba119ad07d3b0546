"""Faces in photos: find them with OpenCV's Haar cascades, crop, classify, mark.

Offers, in the order a photo goes through them:
  opencv()                              -> the cv2 module, or a ConfigError saying how to
                                           install a version that has the detector
  detect_faces(gray, min_face)          -> every face box (x, y, w, h) in a grayscale image
  to_gray(pixels)                       -> uint8 [H, W] for the detector
  is_face_crop(shape, boxes)            -> True when an image is already a face crop
                                           ("auto": the rule below)
  face_mode(value)                      -> "true", "false" or "auto" from --faces
  sort_images(paths, mode, channels, min_face)
                                        -> which images are scored whole and which are
                                           photos to find faces in (with their boxes)
  crop_face(pixels, box, margin, size)  -> uint8 [size, size, C]: a face with its margin,
                                           resized exactly as a training image is
    expand_box(box, margin, width, height) -> (x0, y0, x1, y1): the square it crops
  score_photo(model, path, boxes, ...)  -> one result per face; draws the photo
  load_face_crops(paths, size, channels, margin, min_face)
                                        -> (images, kept, skipped) as decode.load_images,
                                           each image its largest face (--crop_faces)
  crops_tag(margin, min_face)           -> the cache tag of such crops
  draw_faces(bgr, boxes, labels)        -> the image with a box and a label on each face
  write_image(path, bgr)                -> an image file, written atomically

The detector is OpenCV's frontal-face Haar cascade (haarcascade_frontalface_default),
with the alt2 cascade as a second try when the first finds nothing. An image of crop
size (at most 400 pixels on its longer side) in which neither finds a face gets a
third try: padded with its mean grey by 35% of its side, because a cascade only sees a
face that lies whole inside its window, and a tight crop's face fills the image;
there the frontal cascades, then the profile cascade (and on the mirror image, for
faces turned the other way) are run. Larger images do not get it: their faces rarely
fill them, and a faceless video frame would cost three more passes. On the shared
real set the tries find a face in 0.806, 0.848 and then 0.968 of the 2,324 images (see
the README); they cost time only where the earlier ones found nothing. The cascade
files ship inside the opencv-python 4.x wheels, so nothing is downloaded. OpenCV is
imported only here and in video.py, and only when a face is looked for, so the rest
of the suite does not load it.

"auto" (--faces=auto, the default of cnn_eval.py): an image is a face crop, scored
whole as training images are, when the largest face found covers at least a quarter
of it (the shared set's 350x350 crops: 64 to 84%), or when no face is found and it
is at most 400 pixels on its longer side (crops are small: the report's 128x128 test
images, FER's 48x48). Any other image is a photo: each face in it is cropped and
scored, and a photo with no face says so.
"""

import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from cnnlib import atomic
from cnnlib.decode import decode_full, resize
from cnnlib.errors import ConfigError, DataError, RunError

# The frontal cascades: the default one first, alt2 only where it finds nothing.
CASCADES = (("haarcascade_frontalface_default.xml", 5),  # (file, minNeighbors)
            ("haarcascade_frontalface_alt2.xml", 3))
PROFILE = ("haarcascade_profileface.xml", 3)  # turned faces, tried in padded crops only
CROP_PAD = 0.35        # the padding of a crop-sized image's last try, a share of its side
WINDOW = 24            # the cascades' own window: the smallest face they can see, in pixels
SCALE_STEP = 1.1       # OpenCV's scaleFactor: 10% larger windows at each step
CROP_MIN_COVER = 0.25  # "auto": a face covering this share of the image makes it a crop
CROP_MAX_SIDE = 400    # "auto": an image no larger than this with no face found is a crop
MODES = {"true": "true", "yes": "true", "1": "true", "on": "true",
         "false": "false", "no": "false", "0": "false", "off": "false", "auto": "auto"}

_local = threading.local()  # a CascadeClassifier is not safe to share between threads


def opencv():
    """Return the cv2 module; ConfigError when it is missing or has no face detector."""
    try:
        import cv2
    except ImportError:
        raise ConfigError("Finding faces needs OpenCV, which is not installed: run "
                          "`pip install -r requirements.txt` (opencv-python-headless>=4.10,<5)."
                          ) from None
    if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
        raise ConfigError(f"OpenCV {cv2.__version__} has no CascadeClassifier or cascade "
                          f"files (OpenCV 5 dropped them): install a 4.x version with "
                          f"`pip install 'opencv-python-headless>=4.10,<5'`.")
    return cv2


def _detectors():
    """This thread's cascade classifiers, loaded once: (frontal ones, [profile])."""
    if getattr(_local, "cascades", None) is None:
        cv2 = opencv()
        cascades = []
        for name, neighbours in (*CASCADES, PROFILE):
            path = os.path.join(cv2.data.haarcascades, name)
            cascade = cv2.CascadeClassifier(path)
            if cascade.empty():
                raise ConfigError(f"OpenCV's cascade file {path} is missing or damaged: "
                                  f"reinstall with `pip install --force-reinstall "
                                  f"'opencv-python-headless>=4.10,<5'`.")
            cascades.append((cascade, neighbours))
        _local.cascades = (cascades[:-1], cascades[-1:])
    return _local.cascades


def _first_found(image, cascades):
    """Boxes of the first of `cascades` that finds a face in `image`, else []."""
    for cascade, neighbours in cascades:
        found = cascade.detectMultiScale(image, scaleFactor=SCALE_STEP, minNeighbors=neighbours,
                                         minSize=(WINDOW, WINDOW))
        if len(found):
            return [tuple(int(v) for v in box) for box in found]
    return []


def _padded_try(small, frontal, profile):
    """The last try on a crop-sized image: boxes found once it is padded, in its pixels."""
    cv2 = opencv()
    height, width = small.shape[:2]
    pad = int(round(CROP_PAD * max(height, width)))
    padded = cv2.copyMakeBorder(small, pad, pad, pad, pad, cv2.BORDER_CONSTANT,
                                value=int(small.mean()))
    boxes = _first_found(padded, frontal) or _first_found(padded, profile)
    if not boxes:  # the profile cascade knows faces turned one way: mirror for the other
        mirrored = _first_found(np.ascontiguousarray(padded[:, ::-1]), profile)
        boxes = [(padded.shape[1] - x - w, y, w, h) for x, y, w, h in mirrored]
    clipped = []
    for x, y, w, h in boxes:  # back to the image, cut at its edges
        x0, y0 = max(0, x - pad), max(0, y - pad)
        x1, y1 = min(width, x - pad + w), min(height, y - pad + h)
        if x1 - x0 >= WINDOW // 2 and y1 - y0 >= WINDOW // 2:
            clipped.append((x0, y0, x1 - x0, y1 - y0))
    return clipped


def to_gray(pixels):
    """Return uint8 [H, W] from uint8 [H, W], [H, W, 1] or RGB [H, W, 3] pixels."""
    pixels = np.asarray(pixels, dtype=np.uint8)
    if pixels.ndim == 2:
        return pixels
    if pixels.shape[-1] == 1:
        return pixels[..., 0]
    return opencv().cvtColor(np.ascontiguousarray(pixels[..., :3]), opencv().COLOR_RGB2GRAY)


def detect_faces(gray, min_face=30):
    """Return every face found in `gray` (uint8 [H, W]) as (x, y, w, h) int tuples.

    Faces smaller than `min_face` pixels are not looked for: the image is first
    shrunk so that size becomes the cascades' 24-pixel window, which finds the
    same faces in (min_face/24)^2 less time. The tries are those of the module's
    docstring. Boxes are in the pixels of `gray`, sorted left to right, then top
    to bottom.
    """
    cv2 = opencv()
    height, width = gray.shape[:2]
    if min(height, width) < min_face:
        return []
    scale = min(1.0, WINDOW / float(min_face))
    small = gray if scale == 1.0 else cv2.resize(
        gray, (max(1, round(width * scale)), max(1, round(height * scale))),
        interpolation=cv2.INTER_AREA)
    frontal, profile = _detectors()
    found = _first_found(small, frontal)
    if not found and max(height, width) <= CROP_MAX_SIDE:
        found = _padded_try(small, frontal, profile)
    boxes = [tuple(int(round(v / scale)) for v in box) for box in found]
    return sorted(boxes, key=lambda box: (box[0], box[1]))


def face_mode(value):
    """Return "true", "false" or "auto" for a --faces value (any letter case, yes/no, 1/0)."""
    mode = MODES.get(str(value).strip().lower())
    if mode is None:
        raise ConfigError(f"--faces={value!r} is not allowed: use true, false or auto.")
    return mode


def is_face_crop(shape, boxes):
    """The "auto" rule: True when an image of `shape` with face `boxes` is already a crop.

    A crop when the largest face covers at least CROP_MIN_COVER of the image, or
    when no face is found and the image is at most CROP_MAX_SIDE on its longer side.
    """
    height, width = shape[:2]
    if boxes:
        return max(w * h for _, _, w, h in boxes) >= CROP_MIN_COVER * height * width
    return max(height, width) <= CROP_MAX_SIDE


def sort_images(paths, mode, min_face=30):
    """Decide for each image whether it is scored whole or searched for faces.

    `mode` is "false" (every image whole, as today), "true" (every image is a
    photo) or "auto" (is_face_crop). Returns (whole, photos): the paths to score
    whole (unreadable files too, so they are reported as skipped the usual way),
    and [(path, boxes, size)] of the photos, size = (height, width).
    """
    if mode == "false":
        return list(paths), []
    whole, photos = [], []
    for path in paths:
        try:
            gray = to_gray(decode_full(path, 1))
        except (DataError, OSError):
            whole.append(path)
            continue
        boxes = detect_faces(gray, min_face)
        if mode == "auto" and is_face_crop(gray.shape, boxes):
            whole.append(path)
        else:
            photos.append((path, boxes, gray.shape[:2]))
    return whole, photos


def expand_box(box, margin, width, height):
    """Return (x0, y0, x1, y1): the square around `box` with `margin` of its side on
    each side, clipped to the image (so a face at the border keeps what there is)."""
    x, y, w, h = box
    side = max(w, h) * (1.0 + 2.0 * margin)
    cx, cy = x + w / 2.0, y + h / 2.0
    x0, y0 = max(0, int(round(cx - side / 2))), max(0, int(round(cy - side / 2)))
    x1, y1 = min(width, int(round(cx + side / 2))), min(height, int(round(cy + side / 2)))
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def crop_face(pixels, box, margin, size):
    """Cut the face `box` with `margin` out of uint8 `pixels` [H, W, C]; resize it.

    The resize is the one every training image goes through (decode.resize), so a
    face is preprocessed exactly as a training image. Returns uint8 [size, size, C].
    """
    x0, y0, x1, y1 = expand_box(box, margin, pixels.shape[1], pixels.shape[0])
    return resize(pixels[y0:y1, x0:x1], size)


def largest(boxes):
    """The box of largest area, or None."""
    return max(boxes, key=lambda b: b[2] * b[3]) if boxes else None


def _face_crop_of(path, size, channels, margin, min_face):
    """The largest face of one file, as a training image; DataError if none."""
    pixels = decode_full(path, channels)
    box = largest(detect_faces(to_gray(pixels), min_face))
    if box is None:
        raise DataError(f"{path}: no face found by the detector (it looks for faces of at "
                        f"least {min_face} pixels).")
    return crop_face(pixels, box, margin, size)


def load_face_crops(paths, size, channels, margin=0.1, min_face=30, workers=None):
    """Decode each file, find its largest face and return it cropped and resized.

    For data sets of whole photos (--crop_faces=True): a file with no face, like
    an unreadable one, is skipped with the reason. Returns (images, kept, skipped)
    as decode.load_images does: uint8 [K, size, size, channels], indices into
    `paths` (int64 [K]) and [(path, reason)].
    """
    opencv()  # a missing or unusable OpenCV is one error, not one per file
    paths = [str(p) for p in paths]

    def one(path):
        try:
            return _face_crop_of(path, size, channels, margin, min_face)
        except DataError as error:
            return str(error)
        except OSError as error:
            return f"{path} could not be read ({error.strerror or error})."

    # OpenCV's detector and TensorFlow's decoders release the GIL: threads overlap.
    with ThreadPoolExecutor(max_workers=workers or max(1, os.cpu_count() or 1)) as pool:
        outcomes = list(pool.map(one, paths))
    kept = np.asarray([i for i, o in enumerate(outcomes) if not isinstance(o, str)], np.int64)
    skipped = [(paths[i], o) for i, o in enumerate(outcomes) if isinstance(o, str)]
    for _, reason in skipped:
        warnings.warn(f"Skipped {reason}", stacklevel=2)
    images = (np.stack([outcomes[i] for i in kept]) if len(kept)
              else np.zeros((0, size, size, channels), np.uint8))
    return images, kept, skipped


def crops_tag(margin, min_face):
    """The cache tag of face crops: what, besides the files, changes what they hold."""
    cv2 = opencv()
    return (f"faces|margin={margin}|min_face={min_face}|"
            f"{'+'.join(name for name, _ in (*CASCADES, PROFILE))}|pad={CROP_PAD}|"
            f"opencv{cv2.__version__}")


def draw_faces(bgr, boxes, labels):
    """Return a copy of uint8 BGR [H, W, 3] with a box and its label on each face."""
    cv2 = opencv()
    out = np.ascontiguousarray(bgr).copy()
    height, width = out.shape[:2]
    thickness = max(1, round(min(height, width) / 250))
    font_scale = max(0.35, min(height, width) / 900)
    for (x, y, w, h), label in zip(boxes, labels):
        cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), (0, 255, 0), thickness)
        (text_w, text_h), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        # Above the box when there is room, else inside its top edge.
        top = y - text_h - base - 2 if y - text_h - base - 2 >= 0 else y
        cv2.rectangle(out, (x, top), (min(width - 1, x + text_w + 2), top + text_h + base + 2),
                      (0, 255, 0), -1)
        cv2.putText(out, label, (x + 1, top + text_h + 1), cv2.FONT_HERSHEY_SIMPLEX,
                    font_scale, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def write_image(path, bgr):
    """Write uint8 BGR pixels as an image file (format from the suffix), atomically."""
    cv2 = opencv()
    with atomic.writing(path) as partial:
        if not cv2.imwrite(str(partial), bgr):
            raise RunError(f"OpenCV could not write {path}: check the folder is writable "
                           f"and the suffix is an image format.")
    return path


def score_photo(model, path, boxes, classes, image_size, channels, margin, out_path=None):
    """Classify each face `boxes` of the photo at `path`; optionally save it marked.

    Each face is cropped with `margin` from the photo decoded as training decodes
    (channels of the model) and resized as training resizes. The marked photo
    (colour, a box and "N class p" on each face) is written to `out_path`.
    Returns (results, crops): one dict per face, left to right, with path, face
    (1, 2...), box (x, y, w, h), predicted, probability, probabilities (list) and
    true None; and the uint8 crops [faces, size, size, channels] the model saw.
    """
    pixels = decode_full(path, channels)
    crops = (np.stack([crop_face(pixels, box, margin, image_size) for box in boxes])
             if boxes else np.zeros((0, image_size, image_size, channels), np.uint8))
    probabilities = (model.predict_on_batch(crops) if len(crops)
                     else np.zeros((0, len(classes))))
    probabilities = np.asarray(probabilities)
    results = []
    for index, (box, row) in enumerate(zip(boxes, probabilities)):
        best = int(np.argmax(row))
        results.append({"path": str(path), "face": index + 1, "box": tuple(box),
                        "predicted": classes[best], "probability": float(row[best]),
                        "probabilities": row.tolist(), "true": None, "true_index": None})
    if out_path is not None:
        colour = pixels if channels == 3 else decode_full(path, 3)
        labels = [f"{r['face']} {r['predicted']} {r['probability']:.2f}" for r in results]
        write_image(out_path, draw_faces(colour[..., ::-1], boxes, labels))
    return results, crops
