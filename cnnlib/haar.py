"""OpenCV's Haar cascades: the suite's first face detector (no landmarks).

Offers, in call order:
  opencv()                  -> the cv2 module, or a ConfigError saying how to install a
                               version that has the detector
  to_gray(pixels)           -> uint8 [H, W] for the detector
  detect_faces(gray, min_face) -> every face box (x, y, w, h) in a grayscale image
    shrunk_for_detection(image, min_face, native) -> (copy, scale): the image a
                               detector looks at, shrunk (MTCNN's too)

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
imported only when a face is looked for, so the rest of the suite does not load it.
(Split out of faces.py, which re-exports these names.)
"""

import os
import threading

import numpy as np

from cnnlib.errors import ConfigError

# The frontal cascades: the default one first, alt2 only where it finds nothing.
CASCADES = (("haarcascade_frontalface_default.xml", 5),  # (file, minNeighbors)
            ("haarcascade_frontalface_alt2.xml", 3))
PROFILE = ("haarcascade_profileface.xml", 3)  # turned faces, tried in padded crops only
CROP_MAX_SIDE = 400  # an image no larger than this gets the padded last try
CROP_PAD = 0.35        # the padding of a crop-sized image's last try, a share of its side
WINDOW = 24            # the cascades' own window: the smallest face they can see, in pixels
SCALE_STEP = 1.1       # OpenCV's scaleFactor: 10% larger windows at each step
# Faces are looked for in a copy of at most this many pixels (1730x1150), so memory and
# time stay bounded for any image --max_pixels allows: MTCNN's candidates, not the image,
# fill memory, about 0.4 GB a million pixels of a busy picture. A 1080p frame stays
# whole; larger images lose only their smallest faces: in a 4K frame faces of at least
# 41 (MTCNN) or 49 (Haar) pixels are looked for, in a 40-million-pixel photo 89 or 107.
DETECT_MAX_PIXELS = 2_000_000


def shrunk_for_detection(image, min_face, native):
    """(copy, scale): `image` shrunk by `scale` (1.0: itself) so that a detector whose
    smallest face is `native` pixels finds faces of `min_face` or more in it, the copy
    kept within DETECT_MAX_PIXELS. Boxes found in it are divided by `scale`."""
    height, width = image.shape[:2]
    scale = min(1.0, native / float(min_face), (DETECT_MAX_PIXELS / (height * width)) ** 0.5)
    if scale == 1.0:
        return image, scale
    cv2 = opencv()
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale

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
    height, width = gray.shape[:2]
    if min(height, width) < min_face:
        return []
    small, scale = shrunk_for_detection(gray, min_face, WINDOW)
    frontal, profile = _detectors()
    found = _first_found(small, frontal)
    if not found and max(height, width) <= CROP_MAX_SIDE:
        found = _padded_try(small, frontal, profile)
    boxes = [tuple(int(round(v / scale)) for v in box) for box in found]
    return sorted(boxes, key=lambda box: (box[0], box[1]))
