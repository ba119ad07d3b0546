"""Faces, video and test sets: the face detector's recall and speed, video frames per
second, and labelled test-set throughput.

Usage:  python benchmarks/bench_faces.py [--data_dir=DIR] [--limit=500] [--frames=150]
                                         [--model=PATH] [--name=value ...]

Prints numbers, no verdict:
  - recall: the share of the data's first `limit` labelled images (by file name)
    in which a face is found (cnnlib.faces.detect_faces, both cascades), and with
    the default cascade alone; images per second of decode + detect;
  - video: a clip of `frames` 640x360 frames with two real faces from the data,
    written with OpenCV's VideoWriter into a temporary folder, through the whole
    video pass of cnn_eval.py (read, find faces, classify, draw, write);
  - test set: the data's labelled images scored as a test set (`cnn_eval.py DIR`),
    from its labels CSV and from a class-folder tree of symbolic links to the same
    files, with no image cache: images per second of the whole pass.
--model is copied into the temporary folder first (eval writes beside its model).
Without --model an untrained model of the Table 2 network at IMAGE_SIZE with the
data's classes is used: speed does not depend on the weights. Nothing is written
beside the data; everything goes into a temporary folder that is removed.
"""

import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from cnnlib import config, quiet  # noqa: E402

SHARED = ROOT.parent / "shared" / "datasets" / "facial_expressions"


def main():
    quiet.start()
    import cnn_eval
    import cnn_model
    import cnn_params
    from cnnlib import atomic, decode, faces, layouts

    defaults = {**config.defaults(cnn_params), "model": "", "figure": False, "limit": 500,
                "frames": 150, "data_dir": str(SHARED), "classes": ["auto"]}
    params, _ = config.parse_args(sys.argv[1:], defaults)
    found = layouts.find_dataset(params["data_dir"], params["classes"], params["aliases"],
                                 labels_file=params["labels_file"],
                                 image_column=params["image_column"],
                                 label_column=params["label_column"],
                                 images_dir=params["images_dir"], seed=params["seed"])
    paths = sorted([*found["train"][0], *found["validation"][0]], key=lambda p: p.name)
    labels = dict(zip([*found["train"][0], *found["validation"][0]],
                      [*found["train"][1], *found["validation"][1]]))
    cv2 = faces.opencv()
    print(f"data: {params['data_dir']}, {len(paths)} labelled images; OpenCV {cv2.__version__}")

    # ---- recall of the detector
    sample = paths[:params["limit"]]
    start = time.perf_counter()
    grays = [faces.to_gray(decode.decode_full(p, 1)) for p in sample]
    decoded = time.perf_counter() - start
    start = time.perf_counter()
    found_any = [bool(faces.detect_faces(g, params["min_face_size"])) for g in grays]
    detected = time.perf_counter() - start
    cascade = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / faces.CASCADES[0][0]))
    scale = faces.WINDOW / params["min_face_size"]
    alone = sum(len(cascade.detectMultiScale(
        cv2.resize(g, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA),
        scaleFactor=faces.SCALE_STEP, minNeighbors=faces.CASCADES[0][1],
        minSize=(faces.WINDOW, faces.WINDOW))) > 0 for g in grays)
    print(f"detector recall: a face found in {sum(found_any)} of {len(sample)} images = "
          f"{sum(found_any) / len(sample):.3f} (default cascade alone: {alone} = "
          f"{alone / len(sample):.3f}); {len(sample) / (decoded + detected):.1f} images/s "
          f"decode + detect ({len(sample) / detected:.1f} detect alone)")

    work = Path(tempfile.mkdtemp(prefix="bench-faces-"))
    try:
        # ---- the model
        if params["model"]:  # a copy: the outputs of eval go beside it, in the temporary folder
            model_path = atomic.copy_file(params["model"], work / "model.keras")
        else:
            model = cnn_model.build_model(params["layers"], len(found["classes"]),
                                          params["image_size"], params["channels"], seed=0)
            model.optimizer.build(model.trainable_variables)
            model_path = work / "model" / "model.keras"
            model_path.parent.mkdir()
            cnn_model.save_model(model, model_path, {
                "classes": found["classes"], "aliases": found["aliases"],
                "image_size": params["image_size"], "channels": params["channels"]})
        model = cnn_model.load_model(model_path)
        trained = cnn_eval.trained_params(model_path, model, params)

        # ---- video
        with_face = [p for p, hit in zip(sample, found_any) if hit][:2]
        tiles = [cv2.resize(cv2.cvtColor(faces.to_gray(decode.decode_full(p, 1)),
                                         cv2.COLOR_GRAY2BGR), (140, 140)) for p in with_face]
        clip = work / "clip.mp4"
        writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 25, (640, 360))
        for i in range(params["frames"]):
            frame = np.full((360, 640, 3), 100, np.uint8)
            x = 20 + (2 * i) % 200
            frame[40:180, x:x + 140] = tiles[0]
            frame[190:330, 420:560] = tiles[-1]
            writer.write(frame)
        writer.release()
        summary = cnn_eval.score_video(model, model_path, clip, trained, params)
        print(f"video: {summary['frames']} frames of 640x360, {summary['rows']} face rows: "
              f"{summary['fps']:.1f} frames/s over the whole pass")

        # ---- labelled test sets: the CSV, and a class-folder tree of links
        tree = work / "tree"
        for path in paths:
            folder = tree / found["classes"][labels[path]]
            folder.mkdir(parents=True, exist_ok=True)
            (folder / path.name).symlink_to(path.resolve())
        params = {**params, "cache_dir": ""}
        model.predict(np.zeros((1, *model.input_shape[1:]), np.uint8), verbose=0)
        for name, folder in (("labels CSV", Path(params["data_dir"])), ("class tree", tree)):
            outcome, _, seconds = cnn_eval.score_test_set(model, model_path, folder, trained,
                                                          params)
            count = len(outcome["results"])
            print(f"test set ({name}): {count} images in {seconds:.2f} s = "
                  f"{count / seconds:.1f} images/s over the whole pass (no image cache)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
