"""Face alignment: eyes level, a scale fixed by the eye distance, then the square crop.

Offers, in call order:
  tilt(points)                        -> degrees the eye line is turned (counter-clockwise
                                         as seen, the right-hand eye higher, is positive)
  align_matrix(points, margin)        -> (2x3 affine matrix, side): image pixels to the
                                         aligned square, at the image's own scale
  transform(points, matrix)           -> the points in the aligned square
  aligned_crop(pixels, points, margin, size)
                                      -> uint8 [size, size, C]: the face rotated upright,
                                         cut square with `margin` and resized as training is

The five points are landmarks.POINTS (left eye, right eye, nose, mouth corners); only
the eyes are used. With d the eye distance, the square is FACE_SIDE * d on a side, its
centre FACE_DROP * d below the eyes' midpoint (perpendicular to the eye line), then
widened by `margin` of its side on each side as an unaligned box is (faces.expand_box).
The two numbers are the medians of MTCNN's own boxes on the shared real set (282 of
292 sampled images: the larger of w and h is 2.75 d, [2.60, 2.86] between the quartiles; the box
centre 0.31 d below the eyes, [0.28, 0.35]), so an aligned crop frames a face as its
unaligned crop does, only upright and at a fixed scale. What falls outside the image
is filled by repeating its edge pixels: no hard border for the network to learn.
"""

import numpy as np

FACE_SIDE = 2.75   # the face square's side, in eye distances (see above)
FACE_DROP = 0.31   # its centre below the eyes' midpoint, in eye distances


def _eyes(points):
    points = np.asarray(points, np.float64)
    return points[0], points[1]


def tilt(points):
    """Degrees the line from the left to the right eye is turned, counter-clockwise as
    seen on screen (image y grows downwards) positive; 0 for level eyes."""
    left, right = _eyes(points)
    return float(np.degrees(np.arctan2(-(right[1] - left[1]), right[0] - left[0])))


def align_matrix(points, margin=0.1):
    """Return (matrix float [2, 3], side int): the affine map from image pixels to the
    aligned square of `side` pixels (the image's own scale: no resampling beyond the
    rotation), eyes level and centred as the module docstring says."""
    left, right = _eyes(points)
    dx, dy = right - left
    distance = max(float(np.hypot(dx, dy)), 1.0)
    cos, sin = dx / distance, dy / distance          # the eye line's direction
    centre = (left + right) / 2 + FACE_DROP * distance * np.array([-sin, cos])
    side = max(2, int(round(FACE_SIDE * distance * (1.0 + 2.0 * margin))))
    half = side / 2.0
    matrix = np.array([[cos, sin, half - cos * centre[0] - sin * centre[1]],
                       [-sin, cos, half + sin * centre[0] - cos * centre[1]]])
    return matrix, side


def transform(points, matrix):
    """Return float [N, 2]: `points` [N, 2] mapped by the affine `matrix` [2, 3]."""
    points = np.asarray(points, np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def aligned_crop(pixels, points, margin, size):
    """Return uint8 [size, size, C]: the face of `points` in `pixels` [H, W, C], turned
    upright (eyes level), cut square with `margin` and resized as a training image is."""
    import cv2

    from cnnlib.decode import resize

    matrix, side = align_matrix(points, margin)
    pixels = np.asarray(pixels, np.uint8)
    square = cv2.warpAffine(np.ascontiguousarray(pixels), matrix, (side, side),
                            flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if square.ndim == 2:  # OpenCV drops a single channel
        square = square[..., None]
    return resize(square, size)
