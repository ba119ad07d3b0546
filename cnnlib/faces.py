"""Faces in photos: find them (Haar or MTCNN), align, crop, classify, mark.

Offers, in the order a photo goes through them:
  Face                                  a face found: its box (x, y, w, h) and its five
                                        landmarks (float [5, 2], or None from Haar)
  find_faces(pixels, detector, min_face) -> [Face] in a uint8 image, left to right
  check_detector(detector, align)       -> loads the detector now (one error, not one a
                                           file); ConfigError for align with Haar
  is_face_crop(shape, boxes)            -> True when an image is already a face crop
                                           ("auto": the rule below)
  face_mode(value)                      -> "true", "false" or "auto" from --faces
  sort_images(paths, mode, min_face, detector)
                                        -> which images are scored whole and which are
                                           photos to find faces in (with their faces)
  crop_face(pixels, face, margin, size, align)
                                        -> uint8 [size, size, C]: a face with its margin,
                                           aligned or not, resized as a training image is
    expand_box(box, margin, width, height) -> (x0, y0, x1, y1): the square it crops
  score_photo(model, path, faces, ...)  -> one result per face; draws the photo
  load_face_crops(paths, size, channels, margin, min_face, detector, align)
                                        -> (images, kept, skipped) as decode.load_images,
                                           each image its largest face (--crop_faces)
  crops_tag(margin, min_face, detector, align) -> the cache tag of such crops
  landmark_cells(face)                  -> the 10 CSV cells of its landmarks ("" for Haar)
  draw_faces(bgr, boxes, labels, points) -> the image with a box and a label on each face
  write_image(path, bgr)                -> an image file, written atomically

Two detectors (--detector): "haar", OpenCV's cascades (cnnlib/haar.py, whose names
this module re-exports), boxes only; and "mtcnn" (cnnlib/landmarks.py), boxes with
five landmarks each, which --align=True uses to turn each face upright and scale it
by its eye distance before the square crop (cnnlib/align.py). Alignment needs the
landmarks, so it is refused with Haar (see docs/faces.md for why not the eye
cascade). Both run offline: the cascades ship in OpenCV's wheels, MTCNN's weights
in its own. Recall, false detections and speed of both: docs/faces.md.

"auto" (--faces=auto, the default of cnn_eval.py): an image is a face crop, scored
whole as training images are, when the largest face found covers at least a quarter
of it (the shared set's 350x350 crops: 64 to 84%), or when no face is found and it
is at most 400 pixels on its longer side (crops are small: the report's 128x128 test
images, FER's 48x48). Any other image is a photo: each face in it is cropped and
scored, and a photo with no face says so.
"""

import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from dataclasses import dataclass

from cnnlib import align as aligning
from cnnlib import atomic, calibration, landmarks
from cnnlib.decode import decode_full, resize
from cnnlib.errors import ConfigError, DataError, RunError, SuiteWarning
from cnnlib.haar import (CASCADES, CROP_PAD, PROFILE, SCALE_STEP, WINDOW,  # noqa: F401
                         detect_faces, opencv, to_gray)

DETECTORS = ("haar", "mtcnn")

CROP_MIN_COVER = 0.25  # "auto": a face covering this share of the image makes it a crop
CROP_MAX_SIDE = 400    # "auto": an image no larger than this with no face found is a crop
MODES = {"true": "true", "yes": "true", "1": "true", "on": "true",
         "false": "false", "no": "false", "0": "false", "off": "false", "auto": "auto"}


@dataclass
class Face:
    """A face found: box (x, y, w, h) in image pixels; points float [5, 2] (x, y) of
    landmarks.POINTS (eyes, nose, mouth corners), or None when the detector gives none."""
    box: tuple
    points: np.ndarray = None


def _as_face(face):
    """A Face from a Face or a plain (x, y, w, h) box."""
    return face if isinstance(face, Face) else Face(tuple(int(v) for v in face))


def check_detector(detector, align=False):
    """Raise ConfigError for an unknown detector or --align with Haar; load the detector.

    Called before the first image, so a missing detector is one sentence, not one per
    file, and its loading time is not counted as the first image's.
    """
    if detector not in DETECTORS:
        raise ConfigError(f"--detector={detector!r} is not allowed: use haar or mtcnn.")
    if align and detector == "haar":
        raise ConfigError("--align=True needs the eye landmarks that only MTCNN gives: add "
                          "--detector=mtcnn, or leave --align=False.")
    opencv()
    if detector == "mtcnn":
        landmarks.load()


def find_faces(pixels, detector="haar", min_face=30):
    """Return [Face] of uint8 `pixels` [H, W], [H, W, 1] or RGB [H, W, 3], sorted left
    to right, then top to bottom; faces under `min_face` pixels are not looked for."""
    if detector == "haar":
        return [Face(box) for box in detect_faces(to_gray(pixels), min_face)]
    check_detector(detector)
    pixels = np.asarray(pixels, np.uint8)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    rgb = np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels[..., :3]
    return [Face(box, points) for box, points in landmarks.detect(rgb, min_face)]


def landmark_cells(face):
    """The CSV cells of a face's landmarks (a Face, or its points), LANDMARK_COLUMNS'
    order: x and y of each, one decimal; "" each when there are none (Haar)."""
    points = face.points if isinstance(face, Face) else face
    if points is None:
        return [""] * len(LANDMARK_COLUMNS)
    return [f"{v:.1f}" for v in np.asarray(points).reshape(-1)]


LANDMARK_COLUMNS = [f"{name}_{axis}" for name in landmarks.POINTS for axis in "xy"]


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


def sort_images(paths, mode, min_face=30, detector="haar"):
    """Decide for each image whether it is scored whole or searched for faces.

    `mode` is "false" (every image whole, as today), "true" (every image is a
    photo) or "auto" (is_face_crop). Returns (whole, photos): the paths to score
    whole (unreadable files too, so they are reported as skipped the usual way),
    and [(path, faces, size)] of the photos: faces [Face] found by `detector`,
    size = (height, width).
    """
    if mode == "false":
        return list(paths), []
    check_detector(detector)
    whole, photos = [], []
    for path in paths:
        try:
            pixels = decode_full(path, 1 if detector == "haar" else 3)
        except (DataError, OSError):
            whole.append(path)
            continue
        found = find_faces(pixels, detector, min_face)
        if mode == "auto" and is_face_crop(pixels.shape, [f.box for f in found]):
            whole.append(path)
        else:
            photos.append((path, found, pixels.shape[:2]))
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


def crop_face(pixels, face, margin, size, align=False):
    """Cut `face` (a Face or a box) with `margin` out of uint8 `pixels` [H, W, C]; resize it.

    With `align` (and landmarks) the face is first turned upright and scaled by its
    eye distance (cnnlib/align.py). The resize is the one every training image goes
    through (decode.resize), so a face is preprocessed exactly as a training image.
    Returns uint8 [size, size, C].
    """
    face = _as_face(face)
    if align:
        if face.points is None:
            raise ConfigError("--align=True needs the eye landmarks that only MTCNN gives: "
                              "add --detector=mtcnn, or leave --align=False.")
        return aligning.aligned_crop(pixels, face.points, margin, size)
    x0, y0, x1, y1 = expand_box(face.box, margin, pixels.shape[1], pixels.shape[0])
    return resize(pixels[y0:y1, x0:x1], size)


def largest(boxes):
    """The box (or Face) of largest area, or None."""
    def area(b):
        x, y, w, h = _as_face(b).box
        return w * h
    return max(boxes, key=area) if boxes else None


def _face_crop_of(path, size, channels, margin, min_face, detector, align):
    """The largest face of one file, as a training image; DataError if none.

    MTCNN looks at the colour picture even for grayscale training, as it does in
    photos, videos and the webcam, so a face is found alike in training and in use.
    """
    pixels = decode_full(path, channels)
    looked_at = decode_full(path, 3) if detector == "mtcnn" and channels == 1 else pixels
    face = largest(find_faces(looked_at, detector, min_face))
    if face is None:
        raise DataError(f"{path}: no face found by the detector ({detector}; it looks for "
                        f"faces of at least {min_face} pixels).")
    return crop_face(pixels, face, margin, size, align)


def load_face_crops(paths, size, channels, margin=0.1, min_face=30, workers=None,
                    detector="haar", align=False):
    """Decode each file, find its largest face and return it cropped and resized.

    For data sets of whole photos (--crop_faces=True): a file with no face, like
    an unreadable one, is skipped with the reason. `detector` finds the faces;
    `align` turns each upright first (MTCNN only). Returns (images, kept, skipped)
    as decode.load_images does: uint8 [K, size, size, channels], indices into
    `paths` (int64 [K]) and [(path, reason)].
    """
    check_detector(detector, align)  # one error, not one per file
    paths = [str(p) for p in paths]

    def one(path):
        try:
            return _face_crop_of(path, size, channels, margin, min_face, detector, align)
        except DataError as error:
            return str(error)
        except OSError as error:
            return f"{path} could not be read ({error.strerror or error})."

    # OpenCV's detector and TensorFlow's decoders release the GIL: threads overlap
    # (MTCNN takes one image at a time, its TensorFlow ops use every core).
    with ThreadPoolExecutor(max_workers=workers or max(1, os.cpu_count() or 1)) as pool:
        outcomes = list(pool.map(one, paths))
    kept = np.asarray([i for i, o in enumerate(outcomes) if not isinstance(o, str)], np.int64)
    skipped = [(paths[i], o) for i, o in enumerate(outcomes) if isinstance(o, str)]
    for _, reason in skipped:
        warnings.warn(f"Skipped {reason}", SuiteWarning, stacklevel=2)
    images = (np.stack([outcomes[i] for i in kept]) if len(kept)
              else np.zeros((0, size, size, channels), np.uint8))
    return images, kept, skipped


def crops_tag(margin, min_face, detector="haar", align=False):
    """The cache tag of face crops: what, besides the files, changes what they hold.

    Haar's unaligned crops keep the tag they had before MTCNN came, so their cached
    crops stay valid.
    """
    cv2 = opencv()
    tag = f"faces|margin={margin}|min_face={min_face}|"
    if detector == "haar":
        tag += f"{'+'.join(name for name, _ in (*CASCADES, PROFILE))}|pad={CROP_PAD}|"
    else:
        tag += f"{landmarks.tag()}|"
    tag += f"opencv{cv2.__version__}"
    if align:
        tag += f"|align=side{aligning.FACE_SIDE},drop{aligning.FACE_DROP},replicate"
    return tag


def draw_faces(bgr, boxes, labels, points=None):
    """Return a copy of uint8 BGR [H, W, 3] with a box and its label on each face, and
    with `points` ([float [5, 2] or None] a face), a dot on each landmark."""
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
    for face_points in points or []:
        for px, py in ([] if face_points is None else np.asarray(face_points)):
            cv2.circle(out, (int(round(px)), int(round(py))), thickness + 1, (0, 0, 255), -1,
                       cv2.LINE_AA)
    return out


def write_image(path, bgr):
    """Write uint8 BGR pixels as an image file (format from the suffix), atomically."""
    cv2 = opencv()
    with atomic.writing(path) as partial:
        if not cv2.imwrite(str(partial), bgr):
            raise RunError(f"OpenCV could not write {path}: check the folder is writable "
                           f"and the suffix is an image format.")
    return path


def score_photo(model, path, boxes, classes, image_size, channels, margin, out_path=None,
                align=False, draw_landmarks=False, min_confidence=0.0):
    """Classify each face of `boxes` (Faces or boxes) of the photo at `path`; optionally
    save it marked.

    Each face is cropped with `margin` (and aligned, with `align`) from the photo
    decoded as training decodes (channels of the model) and resized as training
    resizes. The marked photo (colour, a box and "N class p" on each face, and its
    landmarks with `draw_landmarks`) is written to `out_path`.
    Returns (results, crops): one dict per face, left to right, with path, face
    (1, 2...), box (x, y, w, h), points (float [5, 2] or None), predicted,
    probability, probabilities (list) and true None; and the uint8 crops
    [faces, size, size, channels] the model saw. A face whose top probability is
    below `min_confidence` is predicted "uncertain" (calibration.label_or_uncertain).
    """
    found = [_as_face(face) for face in boxes]
    boxes = [face.box for face in found]
    pixels = decode_full(path, channels)
    crops = (np.stack([crop_face(pixels, face, margin, image_size, align) for face in found])
             if boxes else np.zeros((0, image_size, image_size, channels), np.uint8))
    probabilities = (model.predict_on_batch(crops) if len(crops)
                     else np.zeros((0, len(classes))))
    probabilities = np.asarray(probabilities)
    results = []
    names = calibration.label_or_uncertain(probabilities, classes, min_confidence)
    for index, (face, row, name) in enumerate(zip(found, probabilities, names)):
        best = int(np.argmax(row))
        results.append({"path": str(path), "face": index + 1, "box": tuple(face.box),
                        "points": face.points,
                        "predicted": name, "probability": float(row[best]),
                        "probabilities": row.tolist(), "true": None, "true_index": None})
    if out_path is not None:
        colour = pixels if channels == 3 else decode_full(path, 3)
        labels = [f"{r['face']} {r['predicted']} {r['probability']:.2f}" for r in results]
        write_image(out_path, draw_faces(colour[..., ::-1], boxes, labels,
                                         [f.points for f in found] if draw_landmarks else None))
    return results, crops
