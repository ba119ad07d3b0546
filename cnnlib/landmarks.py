"""MTCNN: faces with five landmarks each (eyes, nose, mouth corners), loaded once.

Offers, in call order:
  load()                    -> the MTCNN detector of this process, loaded on first use;
                               ConfigError in one sentence when it is missing or cannot load
  detect(rgb, min_face)     -> [(box (x, y, w, h), points float [5, 2])] of a uint8 RGB image
  tag()                     -> what, besides the files, changes the faces it finds (cache keys)
  LOADS                     the number of times the networks were loaded (once per process)

The detector is the `mtcnn` package (PyPI, MIT; Zhang et al. 2016's three cascaded
networks P-, R- and O-Net): its weights ship inside the wheel, so nothing is fetched
at run time, and it runs on the TensorFlow the suite already uses. The weights are
loaded by absolute path from the installed package, never from the working folder
(mtcnn looks there first for a file of the same name).

Two quirks of mtcnn 1.0 are handled here. Its image pyramid is sized for its default
smallest face of 20 pixels: a larger `min_face_size` starts the pyramid smaller and
its last level falls under the networks' 12-pixel input, which it reports as "no
face" for every image. So, as the Haar detector does, the image is shrunk instead, by
20 / min_face, and the pyramid left at its default; this finds the same faces in less
time. And it is given a float32 copy: it scales an integer array in place. Its
non-maximum suppression builds an N x N matrix of the N candidate boxes, several
times over: on a large or busy image (40 million pixels of texture: 5 GB) that, not
the image, is what fills memory. The same suppression, same boxes kept, is done here
in blocks of rows instead (_blocked_nms), so memory grows with N, not N squared.

The pyramid's coarsest level also stops where a face fills about 70% of the image's
shorter side, so a tight crop whose face fills it (the shared set's small images,
FER's 48x48) is missed. As with the Haar cascades, an image of crop size (at most
400 pixels on its longer side) in which nothing is found gets a second try, padded
with its mean colour by 35% of its longer side; boxes are cut back to the image.

The points are in the order of POINTS. "left" and "right" are the image's: the left
eye is the one nearer the image's left edge (the person's right eye).
"""

import threading

import numpy as np

from cnnlib.errors import ConfigError
from cnnlib.haar import shrunk_for_detection

POINTS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
NATIVE_MIN_FACE = 20   # mtcnn's own smallest face, in pixels: the pyramid it is built for
CROP_MAX_SIDE = 400    # an image no larger than this with no face found gets a padded try
CROP_PAD = 0.35        # that try's padding, a share of the image's longer side
INSTALL = "pip install 'mtcnn>=1.0,<1.1' (it is in requirements.txt)"

LOADS = 0              # how many times the networks were loaded in this process
_detector = None
_load_lock = threading.Lock()
_run_lock = threading.Lock()  # one image at a time: TensorFlow already uses every core


def load():
    """Return this process's MTCNN detector, loading its three networks on first use.

    Raises ConfigError (one sentence, the cure) when the package is not installed or
    its weights cannot be loaded.
    """
    global _detector, LOADS
    if _detector is not None:
        return _detector
    with _load_lock:
        if _detector is None:
            try:
                from importlib import resources

                from mtcnn import MTCNN
                from mtcnn.stages import StageONet, StagePNet, StageRNet
            except ImportError:
                raise ConfigError(f"--detector=mtcnn needs the mtcnn package, which is not "
                                  f"installed: run {INSTALL}, or use --detector=haar."
                                  ) from None
            try:
                from mtcnn.stages import stage_onet, stage_pnet, stage_rnet

                for stage in (stage_pnet, stage_rnet, stage_onet):
                    stage.smart_nms_from_bboxes = _blocked_nms  # memory: see above
                weights = resources.files("mtcnn.assets.weights")
                _detector = MTCNN(stages=[StagePNet(weights=str(weights / "pnet.lz4")),
                                          StageRNet(weights=str(weights / "rnet.lz4")),
                                          StageONet(weights=str(weights / "onet.lz4"))])
            except Exception as error:  # a damaged install raises many types
                raise ConfigError(f"The mtcnn package is installed but its networks cannot "
                                  f"be loaded ({type(error).__name__}): reinstall it with "
                                  f"`pip install --force-reinstall 'mtcnn>=1.0,<1.1'`, or use "
                                  f"--detector=haar.") from None
            LOADS += 1
    return _detector


NMS_BLOCK_ENTRIES = 4_000_000  # IoU values held at once by _blocked_nms (32 MB each array)


def _iou_rows(boxes, rows, method):
    """IoU (mtcnn's arithmetic) of the boxes `rows` (float [R, 4]) with `boxes` [N, 4]:
    float [R, N]."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    area_rows = (rows[:, 2] - rows[:, 0]) * (rows[:, 3] - rows[:, 1])
    height = np.maximum(0, np.minimum(rows[:, None, 2], boxes[None, :, 2])
                        - np.maximum(rows[:, None, 0], boxes[None, :, 0]))
    width = np.maximum(0, np.minimum(rows[:, None, 3], boxes[None, :, 3])
                       - np.maximum(rows[:, None, 1], boxes[None, :, 1]))
    inter = height * width
    with np.errstate(divide="ignore", invalid="ignore"):
        if method == "union":
            return inter / (area_rows[:, None] + area[None, :] - inter)
        return inter / np.minimum(area_rows[:, None], area[None, :])


def _blocked_nms(bboxes, threshold, column_image_id=0, columns_bbox=slice(1, 5, None),
                 column_confidence=5, method="union", initial_sort=True):
    """mtcnn.utils.bboxes.smart_nms_from_bboxes, same arguments and result, in blocks.

    mtcnn keeps a box when no box before it (in confidence order) overlaps it by more
    than `threshold`, suppressed or not; so does this, comparing a block of boxes with
    those before it at a time instead of building the whole N x N matrix.
    """
    if initial_sort:
        order = np.argsort(bboxes[:, column_confidence])[::-1]
        bboxes = bboxes[order]
    result = []
    for image_id in np.unique(bboxes[:, 0]):
        target = bboxes[bboxes[:, column_image_id] == image_id]
        boxes = np.asarray(target[:, columns_bbox], np.float64)
        keep = np.ones(len(boxes), bool)
        step = max(1, NMS_BLOCK_ENTRIES // max(1, len(boxes)))
        for start in range(0, len(boxes), step):
            stop = min(len(boxes), start + step)
            iou = _iou_rows(boxes[:stop], boxes[start:stop], method)  # [block, stop]
            before = np.arange(stop)[None, :] < np.arange(start, stop)[:, None]
            keep[start:stop] = ~((iou > threshold) & before).any(axis=1)
        result.append(target[keep])
    return np.concatenate(result, axis=0) if result else np.empty((0, 6))


def detect(rgb, min_face=30):
    """Return every face of uint8 RGB `rgb` [H, W, 3] as (box, points).

    box: (x, y, w, h) ints in the image's pixels; points: float64 [5, 2] (x, y) in
    the order of POINTS. Faces smaller than `min_face` pixels are not looked for.
    Sorted left to right, then top to bottom.
    """
    import cv2

    detector = load()
    height, width = rgb.shape[:2]
    if min(height, width) < min_face:
        return []
    small, scale = shrunk_for_detection(rgb, min_face, NATIVE_MIN_FACE)
    found, pad = _detect(detector, small), 0
    if not found and max(height, width) <= CROP_MAX_SIDE:
        pad = int(round(CROP_PAD * max(small.shape[:2])))
        mean = [float(v) for v in small.reshape(-1, small.shape[2]).mean(axis=0)]
        found = _detect(detector, cv2.copyMakeBorder(small, pad, pad, pad, pad,
                                                     cv2.BORDER_CONSTANT, value=mean))
    faces = []
    for face in found:
        x, y, w, h = ((float(v) - (pad if i < 2 else 0)) / scale
                      for i, v in enumerate(face["box"]))
        x0, y0 = max(0, int(round(x))), max(0, int(round(y)))
        x1, y1 = min(width, int(round(x + w))), min(height, int(round(y + h)))
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        points = (np.asarray([face["keypoints"][name] for name in POINTS], np.float64)
                  - pad) / scale
        faces.append(((x0, y0, x1 - x0, y1 - y0), points))
    return sorted(faces, key=lambda f: (f[0][0], f[0][1]))


def _detect(detector, rgb):
    """mtcnn's faces (dicts) in uint8 RGB `rgb`, one image at a time."""
    with _run_lock:
        return detector.detect_faces(np.asarray(rgb, np.float32)) or []


def tag():
    """What changes the faces found, besides the image: for cache keys."""
    try:
        from importlib.metadata import version

        installed = version("mtcnn")
    except Exception:  # not installed: load() says so when it is needed
        installed = "?"
    return (f"mtcnn{installed}|native={NATIVE_MIN_FACE}|pad={CROP_PAD}<={CROP_MAX_SIDE}"
            f"|colour")
