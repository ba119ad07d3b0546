"""Expressions of the faces in a video file or a webcam's frames.

Offers, in call order:
  is_video(path)                       -> True for a file to read as a video (its first
                                          bytes, else its extension)
  open_video(source)                   -> an opened cv2.VideoCapture of a file or a webcam
                                          index; DataError in one sentence if it cannot be
                                          (SizeError: frames over --max_pixels)
  process_video(capture, model, classes, ...) -> writes the annotated video, the CSV of
                                          faces and the expressions figure; a summary dict
  assign_faces(boxes, state, frame, max_gap) -> a face id for each box, following faces
                                          from frame to frame

A file and a webcam go through the same process_video, so the tests of files cover
the webcam's path too: only open_video differs. Each frame is read, its faces found
(cnnlib.faces), each face cropped and resized as training does and classified, and
the frame written with a box and "id class probability" on each face. The CSV has
one row per frame and face: frame, time, face id, box, the five landmarks (empty
with Haar), predicted class and every class's probability (raw). A face keeps its
id while its box overlaps (IoU >= 0.3)
its box of a recent frame. The figure shows each face's probabilities over time,
averaged over a centred window of `smoothing` seconds. Nothing the user gave is
written to: outputs go into a new folder.
"""

import csv
import sys
import time
from pathlib import Path

import numpy as np

from cnnlib import atomic, calibration, decode, faces, interrupt, plots
from cnnlib.errors import DataError, RunError

# Extensions read as video when the first bytes do not say (OpenCV's FFmpeg reads more).
VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv",
                  ".flv", ".3gp", ".ts", ".mts", ".m2ts", ".ogv", ".mjpeg", ".mjpg"}
# The annotated video: MPEG-4 in .mp4, else Motion-JPEG in .avi (both in OpenCV's wheels).
WRITERS = ((".mp4", "mp4v"), (".avi", "MJPG"))
# Image formats that share the MP4 container's "ftyp" box (HEIF, AVIF stills).
_IMAGE_BRANDS = {b"heic", b"heix", b"mif1", b"msf1", b"avif", b"heim", b"heis"}
# First bytes of still images: JPEG, PNG, GIF, TIFF (both byte orders); BMP in is_video.
_IMAGE_STARTS = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"II*\x00", b"MM\x00*")
SAME_FACE_IOU = 0.3  # a box overlapping a recent one this much is the same face
DEFAULT_FPS = 30.0   # for a webcam that does not report its rate


def is_video(path):
    """True when `path` is a video: by its first bytes (MP4/MOV, AVI, Matroska/WebM,
    MPEG, FLV, WMV; an image's first bytes say it is not, whatever its name), else by
    its extension."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError:
        head = b""
    if head[4:8] == b"ftyp":
        return head[8:12] not in _IMAGE_BRANDS
    if (head[:4] == b"RIFF" and head[8:12] == b"AVI ") or head.startswith((
            b"\x1a\x45\xdf\xa3", b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3", b"FLV",
            b"\x30\x26\xb2\x75")):
        return True
    if head.startswith(b"\xff\xd8\xff") and path.suffix.lower() in (".mjpeg", ".mjpg"):
        return True  # a Motion-JPEG stream: JPEG frames one after another
    if (head.startswith(_IMAGE_STARTS) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")
            or (head[:2] == b"BM" and head[6:10] == b"\0\0\0\0")):  # BMP: reserved bytes 0
        return False  # e.g. a photo saved under a .mp4 name is scored as the photo
    return path.suffix.lower() in VIDEO_SUFFIXES


def open_video(source):
    """Return an opened cv2.VideoCapture of a video file or a webcam index (int).

    Raises DataError for a missing or empty file, a file OpenCV cannot open
    (damaged, truncated, not a video) or a webcam that is absent or busy.
    The file is only read.
    """
    cv2 = faces.opencv()
    if isinstance(source, int):
        capture = cv2.VideoCapture(source)
        if not capture.isOpened():
            raise DataError(f"No webcam {source} could be opened (none on this machine, or "
                            f"it is in use): check --camera, or give a video file instead.")
        return capture
    path = Path(source)
    if not path.is_file():
        raise DataError(f"Failed to find the video {path}: give the path of a video file.")
    if path.stat().st_size == 0:
        raise DataError(f"The video {path} is empty (0 bytes): give a video with frames.")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise DataError(f"OpenCV cannot open the video {path} (damaged, truncated or not a "
                        f"video format its FFmpeg reads): check that it plays, or convert "
                        f"it to MP4.")
    try:  # the frame size its header states, before a frame is decoded
        decode.check_pixels(f"The video {path}'s frame", int(capture.get(
            cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    except DataError:
        capture.release()
        raise
    return capture


def _iou(a, b):
    """Intersection over union of two (x, y, w, h) boxes."""
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union else 0.0


def assign_faces(boxes, state, frame, max_gap):
    """Return a face id (1, 2, ...) for each of `boxes` found in `frame`.

    `state` ({} at first, updated here) remembers each face's last box and frame.
    A box takes the id of the face whose last box, seen at most `max_gap` frames
    ago, it overlaps most (IoU >= SAME_FACE_IOU), each face once; the others get
    new ids. Greedy by overlap: enough for faces that move a little between frames.
    """
    last = state.setdefault("last", {})
    recent = {face: box for face, (box, seen) in last.items() if frame - seen <= max_gap}
    pairs = sorted(((_iou(box, old), i, face) for i, box in enumerate(boxes)
                    for face, old in recent.items()), reverse=True)
    ids, taken = [None] * len(boxes), set()
    for overlap, i, face in pairs:
        if overlap < SAME_FACE_IOU:
            break
        if ids[i] is None and face not in taken:
            ids[i] = face
            taken.add(face)
    for i in range(len(boxes)):
        if ids[i] is None:
            ids[i] = state.get("next", 1)
            state["next"] = ids[i] + 1
        last[ids[i]] = (tuple(boxes[i]), frame)
    return ids


class _Progress:
    """A one-line progress bar on stderr: frames done, of how many, frames per second."""

    def __init__(self, total, stream=None):
        self.total, self.stream = total, stream or sys.stderr
        self.start = self.shown = time.perf_counter()
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.next_mark = 0.25  # without a terminal: a line at each quarter
        self.printed = -1      # frames of the last line printed

    def update(self, done, final=False):
        now = time.perf_counter()
        rate = done / max(now - self.start, 1e-9)
        if self.total:
            share = min(1.0, done / self.total)
            bar = "=" * int(share * 30)
            text = f"[{bar:<30}] {done}/{self.total} frames  {rate:5.1f} frames/s"
        else:
            share, text = 0.0, f"{done} frames  {rate:5.1f} frames/s"
        if self.tty and (final or now - self.shown >= 0.2):
            self.stream.write("\r" + text + ("\n" if final else ""))
            self.stream.flush()
            self.shown = now
        elif not self.tty and done != self.printed and (
                final or (self.total and share >= self.next_mark)):
            self.stream.write(text + "\n")
            self.next_mark, self.printed = share + 0.25, done


def _frame_rate(capture):
    """The rate the video says it has, or None (webcams often say 0)."""
    fps = capture.get(faces.opencv().CAP_PROP_FPS)
    return float(fps) if fps and 1.0 <= fps <= 1000.0 else None


def _as_bgr(frame):
    """OpenCV gives BGR frames; a grayscale or BGRA one becomes BGR."""
    cv2 = faces.opencv()
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    return frame


class _NoCodec(Exception):
    """This OpenCV build cannot write this container and codec: try the next."""


def _frames(capture, first, max_frames):
    """Yield the frames of `capture`, starting with `first`, at most `max_frames` (0: all)."""
    frame, count = first, 0
    while frame is not None:
        yield _as_bgr(frame)
        count += 1
        if max_frames and count >= max_frames:
            return
        ok, frame = capture.read()
        if not ok:
            frame = None


def _classify_frame(model, frame, boxes, channels, image_size, margin, align=False):
    """Probabilities [faces, classes] of each face (Faces or boxes) of a BGR frame,
    preprocessed as training (aligned with `align`)."""
    cv2 = faces.opencv()
    # Grayscale as a JPEG's luma (0.299 R + 0.587 G + 0.114 B), what training decodes.
    pixels = (cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)[..., None] if channels == 1
              else np.ascontiguousarray(frame[..., ::-1]))
    crops = np.stack([faces.crop_face(pixels, box, margin, image_size, align) for box in boxes])
    return np.asarray(model.predict_on_batch(crops))


def process_video(capture, model, classes, image_size, channels, out_dir, name, margin=0.1,
                  min_face=30, max_frames=0, smoothing=0.5, total=None, live=False,
                  progress=None, detector="haar", align=False, draw_landmarks=False,
                  min_confidence=0.0):
    """Find, follow and classify the faces of every frame of `capture`.

    Writes into `out_dir`: <name>-annotated.mp4 (or .avi; every frame, with a box
    and "id class probability" on each face, at the video's rate), <name>-faces.csv
    (one row per frame and face: frame, time_s, face, x, y, w, h, the landmarks
    left_eye_x ... mouth_right_y (empty with Haar), predicted, probability,
    p_<class>...) and <name>-expressions.png (each face's
    probabilities over time, averaged over `smoothing` seconds). Times are the
    frame's index over the video's rate, or, `live` (a webcam), seconds since the
    start. Faces are found by `detector` and cropped with `margin` (aligned with
    `align`), as training cropped them; `draw_landmarks` marks the landmarks too.
    A face whose top probability is below `min_confidence` is "uncertain" in the
    CSV's predicted column and on the video (calibration.label_or_uncertain).
    Stops after `max_frames` (0: at the end) or, `live`, at Ctrl-C, and still writes
    everything; a file's Ctrl-C, and SIGTERM, raise KeyboardInterrupt with no video
    left (the caller removes the rest, cnnlib/interrupt.py). `total` is the frame count
    the file announces (None if unknown).
    Returns a dict: frames, rows, faces (ids), seconds, fps (frames per second of
    the whole pass), video, csv, figure (Paths), announced (total) and stopped
    ("end", "max_frames", "interrupted").
    Raises DataError when not one frame can be read.
    """
    cv2 = faces.opencv()
    faces.check_detector(detector, align)  # loaded before the first frame, and once
    ok, first = capture.read()
    if not ok or first is None:
        raise DataError(f"{name} has no frame OpenCV can read (empty or damaged): give a "
                        f"video with at least one frame.")
    height, width = first.shape[:2]
    decode.check_pixels(f"{name}'s frame", width, height)  # a webcam states no size first
    first = _as_bgr(first)
    rate = _frame_rate(capture)
    out_dir = Path(out_dir)
    stem = Path(name).stem or "video"
    if not live and rate is None:
        rate = DEFAULT_FPS  # a file that states no rate: times are frame / 30
    max_gap = max(2, int(round(0.5 * (rate or DEFAULT_FPS))))  # a face may vanish 0.5 s
    tracks, state = {}, {}
    frames, rows, stopped = 0, 0, "end"
    bar = _Progress(min(total, max_frames) if total and max_frames else (total or max_frames
                                                                          or None), progress)
    start = time.perf_counter()
    # The CSV is written as the frames go: what stays in memory per face and frame is
    # only its time and probabilities (for the figure), a few dozen bytes.
    csv_path = out_dir / atomic.fitting_name(stem, "-faces.csv")
    with atomic.writing(csv_path) as csv_partial, open(csv_partial, "w", newline="") as table:
        csv_rows = csv.writer(table, lineterminator="\n")
        csv_rows.writerow(["frame", "time_s", "face", "x", "y", "w", "h",
                           *faces.LANDMARK_COLUMNS, "predicted", "probability",
                           *(f"p_{c}" for c in classes)])
        for suffix, codec in WRITERS:
            path = out_dir / atomic.fitting_name(stem, f"-annotated{suffix}")
            try:
                with atomic.writing(path) as partial:
                    writer = cv2.VideoWriter(str(partial), cv2.VideoWriter_fourcc(*codec),
                                             rate or DEFAULT_FPS, (width, height))
                    if not writer.isOpened():
                        raise _NoCodec()
                    try:
                        for frame in _frames(capture, first, max_frames):
                            seconds = time.perf_counter() - start if live else frames / rate
                            found = faces.find_faces(
                                cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if detector == "haar"
                                else frame[..., ::-1], detector, min_face)
                            boxes = [f.box for f in found]
                            if boxes:
                                probabilities = _classify_frame(model, frame, found, channels,
                                                                image_size, margin, align)
                                ids = assign_faces(boxes, state, frames, max_gap)
                                labels = []
                                names = calibration.label_or_uncertain(probabilities, classes,
                                                                       min_confidence)
                                for face, one, row, shown in zip(ids, found, probabilities, names):
                                    best = int(np.argmax(row))
                                    csv_rows.writerow([
                                        frames, f"{seconds:.3f}", face, *one.box,
                                        *faces.landmark_cells(one), shown, f"{row[best]:.4f}",
                                        *(f"{p:.4f}" for p in row)])
                                    rows += 1
                                    tracks.setdefault(face, ([], []))
                                    tracks[face][0].append(seconds)
                                    tracks[face][1].append(np.array(row, np.float32))
                                    labels.append(f"{face} {shown} {row[best]:.2f}")
                                frame = faces.draw_faces(
                                    frame, boxes, labels,
                                    [f.points for f in found] if draw_landmarks else None)
                            writer.write(frame)
                            frames += 1
                            bar.update(frames)
                        if max_frames and frames >= max_frames:
                            stopped = "max_frames"
                    except KeyboardInterrupt as error:
                        if not live or isinstance(error, interrupt.Interrupted):
                            raise  # a file, or SIGTERM: interrupted, the video removed
                        interrupt.handled()  # a webcam runs until Ctrl-C: keep what was seen
                        stopped = "interrupted"
                    finally:
                        writer.release()
                break
            except _NoCodec:
                continue
        else:
            raise RunError(f"This OpenCV cannot write MP4 or AVI video into {out_dir}: install "
                           f"opencv-python-headless>=4.10,<5 (pip install -r requirements.txt).")
    seconds = time.perf_counter() - start
    bar.update(frames, final=True)

    figure = plots.plot_expressions(
        {face: (np.asarray(t), np.asarray(p)) for face, (t, p) in tracks.items()}, classes,
        out_dir / atomic.fitting_name(stem, "-expressions.png"), smoothing)
    return {"frames": frames, "rows": rows, "faces": sorted(tracks), "seconds": seconds,
            "fps": frames / max(seconds, 1e-9), "video": path, "csv": csv_path,
            "figure": figure, "announced": total, "stopped": stopped,
            "size": (width, height)}
