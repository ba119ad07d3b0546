"""The two face detectors side by side, and alignment's effect on accuracy.

Usage:  python benchmarks/bench_detectors.py [--parts=detect,faceless,video,align]
            [--data_dir=DIR] [--limit=0] [--frames=150] [--seeds=1,2] [--epochs=15]
            [--name=value ...]

Prints numbers, no verdict (docs/faces.md reads them):
  detect    for haar and mtcnn: recall, the share of the data's labelled images (the
            first `limit` by file name; 0 = all) in which at least one face is found,
            and images per second of decode + detect;
  faceless  false detections: faces found in real images without a face. The shared
            photos are tight face crops, with no background large enough to cut a
            faceless image from, so the set is made of them: every `faceless_every`-th
            photo (by name) in which both detectors find a face, cut into 8 x 8 blocks
            put back in a random order (seed 0). Real skin, hair, eyes, mouths and
            background at their own scale, every texture a face photo has, but no
            face. Chosen with both detectors' results together and looked at by both,
            so neither is judged on images picked to suit it. Reported: images with
            any face found, faces found, and images per second on faceless images;
  video     frames per second of cnn_eval.py's whole video pass (read, find faces,
            classify, draw, write) with each detector, on a clip of `frames` 640x360
            frames with two real faces from the data, written with OpenCV's VideoWriter
            into a temporary folder (an untrained model: speed does not depend on it);
  align     configs/modern.py with --crop_faces=True --detector=mtcnn, --align=False and
            --align=True, each over `seeds` (each seed draws its own validation split),
            `epochs` epochs; each run is cnn_run.main (what `python cnn_run.py ...` runs)
            in this process, so that each picture's faces are found once for all runs
            (_remember_faces); into a temporary runs folder; prints validation accuracy,
            balanced accuracy and macro-F1 of the final model.
Nothing is written beside the data or in the project: temporary folders are removed.
"""

import contextlib
import hashlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from cnnlib import config, quiet  # noqa: E402

SHARED = ROOT.parent / "shared" / "datasets" / "facial_expressions"
SHUFFLE_GRID = 8     # shuffled photos: 8 x 8 blocks


def labelled_paths(params):
    from cnnlib import layouts

    found = layouts.find_dataset(params["data_dir"], params["classes"], params["aliases"],
                                 labels_file=params["labels_file"],
                                 image_column=params["image_column"],
                                 label_column=params["label_column"],
                                 images_dir=params["images_dir"], seed=params["seed"])
    paths = sorted([*found["train"][0], *found["validation"][0]], key=lambda p: p.name)
    return paths[:params["limit"]] if params["limit"] else paths


def detect_part(paths, params):
    """Recall and images/s of each detector; returns {detector: [faces of each image]}."""
    from cnnlib import decode, faces, landmarks

    found = {}
    for detector in ("haar", "mtcnn"):
        start = time.perf_counter()
        faces.check_detector(detector)
        loading = time.perf_counter() - start
        start = time.perf_counter()
        found[detector] = [faces.find_faces(decode.decode_full(p, 3), detector,
                                            params["min_face_size"]) for p in paths]
        seconds = time.perf_counter() - start
        hits = sum(bool(f) for f in found[detector])
        print(f"{detector:5}  recall {hits}/{len(paths)} = {hits / len(paths):.3f}  "
              f"{len(paths) / seconds:.1f} images/s decode + detect  "
              f"(load {loading:.1f} s, once)", flush=True)
    both = sum(bool(a) and bool(b) for a, b in zip(found["haar"], found["mtcnn"]))
    either = sum(bool(a) or bool(b) for a, b in zip(found["haar"], found["mtcnn"]))
    print(f"both find a face in {both}, either in {either}; MTCNN loads counted: "
          f"{landmarks.LOADS}")
    return found


def _shuffled(pixels, rng, grid=SHUFFLE_GRID):
    """The picture cut into grid x grid blocks, put back in a random order (no face left)."""
    height, width = pixels.shape[:2]
    bh, bw = height // grid, width // grid
    blocks = [pixels[r * bh:(r + 1) * bh, c * bw:(c + 1) * bw]
              for r in range(grid) for c in range(grid)]
    order = rng.permutation(len(blocks))
    rows = [np.concatenate([blocks[i] for i in order[r * grid:(r + 1) * grid]], axis=1)
            for r in range(grid)]
    return np.ascontiguousarray(np.concatenate(rows, axis=0))


def faceless_part(paths, found, params):
    """False detections of each detector on the shuffled photos (the docstring's set)."""
    from cnnlib import decode, faces

    rng = np.random.default_rng(0)
    chosen = [p for p, h, m in zip(paths, found["haar"], found["mtcnn"]) if h and m]
    shuffled = [_shuffled(decode.decode_full(p, 3), rng)
                for p in chosen[::params["faceless_every"]]]
    for name, images in (("shuffled photos", shuffled),):
        sides = sorted(min(i.shape[:2]) for i in images) or [0]
        print(f"faceless set '{name}': {len(images)} images (sides {sides[0]} to "
              f"{sides[-1]} px, median {sides[len(sides) // 2]})")
        for detector in ("haar", "mtcnn"):
            start = time.perf_counter()
            counts = [len(faces.find_faces(i, detector, params["min_face_size"]))
                      for i in images]
            with_any = sum(c > 0 for c in counts)
            print(f"  {detector:5}  false detections: {with_any}/{len(images)} images = "
                  f"{with_any / max(1, len(images)):.3f}, {sum(counts)} faces  "
                  f"({len(images) / (time.perf_counter() - start):.1f} images/s)", flush=True)


def video_part(paths, found, params, work):
    """Frames per second of the whole video pass with each detector."""
    import cnn_eval
    import cnn_model
    import cnn_params
    from cnnlib import decode, faces

    cv2 = faces.opencv()
    # Two real faces: the first two images with one face found by both detectors.
    chosen = [p for p, a, b in zip(paths, found["haar"], found["mtcnn"])
              if len(a) == 1 and len(b) == 1][:2]
    tiles = [cv2.resize(decode.decode_full(p, 3)[..., ::-1], (150, 150)) for p in chosen]
    clip = work / "two_faces.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (640, 360))
    for i in range(params["frames"]):
        frame = np.full((360, 640, 3), 90, np.uint8)
        shift = int(20 * np.sin(i / 15))
        frame[100 + shift:250 + shift, 80:230] = tiles[0]
        frame[110:260, 400 + shift:550 + shift] = tiles[1]
        writer.write(frame)
    writer.release()
    model = cnn_model.build_model(cnn_params.LAYERS, 8, image_size=96, channels=1, seed=0)
    model_path = work / "model" / "model.keras"
    model_path.parent.mkdir()
    cnn_model.save_model(model, model_path, {"classes": cnn_params.CLASSES,
                                             "aliases": cnn_params.ALIASES,
                                             "image_size": 96, "channels": 1})
    for detector in ("haar", "mtcnn"):
        faces.check_detector(detector)  # loaded before the clock starts, as eval does
        trained = {**params, "classes": cnn_params.CLASSES, "aliases": cnn_params.ALIASES,
                   "image_size": 96, "channels": 1, "detector": detector,
                   "explicit": {"detector"}}
        summary = cnn_eval.score_video(model, model_path, clip, trained,
                                       {**params, "detector": detector,
                                        "explicit": {"detector"}})
        print(f"{detector:5}  video: {summary['frames']} frames, {summary['rows']} face rows: "
              f"{summary['fps']:.1f} frames/s", flush=True)


def train(argv, runs_dir, log):
    """One cnn_run.py run, in this process (its output into `log`); its validation scores."""
    import cnn_run

    start = time.perf_counter()
    with open(log, "w") as handle, contextlib.redirect_stdout(handle):
        code = cnn_run.main(["configs/modern.py", f"--runs_dir={runs_dir}", "--verbose=2",
                             *argv])
    if code != 0:
        raise SystemExit(f"training failed: see {log}")
    run_dir = runs_dir / (runs_dir / "latest.txt").read_text().strip()
    validation = json.loads((run_dir / "metrics.json").read_text())["validation"]
    return {**{k: validation[k] for k in ("accuracy", "balanced_accuracy", "macro_f1")},
            "minutes": (time.perf_counter() - start) / 60}


def _remember_faces():
    """Make faces.find_faces remember what it found in each picture (by its pixels' hash).

    Each seed draws its own validation split, so each run's crops are a new cache
    entry; the faces in a picture do not change, so the four runs detect each picture
    once instead of four times (MTCNN is the slow part). Results are the same.
    """
    from cnnlib import faces

    real, memo = faces.find_faces, {}

    def remembered(pixels, detector="haar", min_face=30):
        pixels = np.ascontiguousarray(pixels)
        key = (hashlib.sha1(pixels.tobytes()).hexdigest(), pixels.shape, detector, min_face)
        if key not in memo:
            memo[key] = real(pixels, detector, min_face)
        return memo[key]

    faces.find_faces = remembered


def align_part(params, work):
    """configs/modern.py with MTCNN crops, unaligned and aligned, over the seeds."""
    _remember_faces()
    keys = ("accuracy", "balanced_accuracy", "macro_f1")
    rows = {}
    for seed in params["seeds"]:
        for align in (False, True):
            argv = [f"--data_dir={params['data_dir']}", "--classes=auto",
                    "--crop_faces=True", "--detector=mtcnn", f"--align={align}",
                    f"--epochs={params['epochs']}", f"--seed={seed}",
                    f"--cache_dir={work / 'cache'}", "--test_dir="]
            result = train(argv, work / "runs", work / f"align{align}-seed{seed}.log")
            rows.setdefault(align, []).append(result)
            print(f"align={align} seed {seed}: " + "  ".join(
                f"{k} {result[k]:.3f}" for k in keys) + f"  {result['minutes']:.1f} min",
                flush=True)
    for align, results in rows.items():
        cells = [f"{statistics.mean(r[k] for r in results):.3f} +- "
                 f"{(max(r[k] for r in results) - min(r[k] for r in results)) / 2:.3f}"
                 for k in keys]
        print(f"| align={align} | " + " | ".join(cells) + " |")


def main():
    quiet.start()
    import cnn_params

    defaults = {**config.defaults(cnn_params), "parts": "detect,faceless,video,align",
                "limit": 0, "frames": 150, "faceless_every": 8, "data_dir": str(SHARED),
                "classes": ["auto"],
                "seeds": "1,2", "epochs": 15, "figure": False, "tta": False, "model": ""}
    params, _ = config.parse_args(sys.argv[1:], defaults)
    params["seeds"] = [int(s) for s in str(params["seeds"]).split(",")]
    parts = set(params["parts"].split(","))
    print(f"{time.strftime('%Y-%m-%d %H:%M')}  data {params['data_dir']}  parts {sorted(parts)}")
    work = Path(tempfile.mkdtemp(prefix="bench-detectors-"))
    try:
        if parts & {"detect", "faceless", "video"}:
            paths = labelled_paths(params)
            found = detect_part(paths, params)
            if "faceless" in parts:
                faceless_part(paths, found, params)
            if "video" in parts:
                video_part(paths, found, params, work)
        if "align" in parts:
            align_part(params, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
