"""Image files, the faces of photos and videos scored with a loaded model, as
`python cnn_eval.py SOURCE ...` prints and writes them.

Offers, in the order cnn_eval.py calls them:
  score_images_and_faces(model, model_path, paths, trained, params)
                                     -> images scored whole or face by face; printed,
                                        with the predictions figure
    score_images(model, paths, ...)  -> (per-image results, summary, images)
    print_results(results, summary)  prints one line an image, then accuracy and loss
    score_photos(model, photos, ...) -> one result per face found, photos marked
  score_video(model, model_path, source, trained, params) -> a video's summary
  FIGURE_IMAGES                      the most images one predictions figure shows

`trained` is cnn_eval.trained_params's: the classes and input the model was trained
with; `params` the effective parameters (with out_root, where eval writes).
"""

from datetime import datetime
from pathlib import Path

import numpy as np

from cnnlib import atomic, calibration, face_settings, faces, interrupt, metrics, plots, records
from cnnlib import runs, video
from cnnlib.decode import load_images
from cnnlib.errors import DataError
from cnnlib.labels import class_lookup, label_from_filename

FIGURE_IMAGES = 32  # a figure of more images than this is too large to read
def score_images_and_faces(model, model_path, paths, trained, params):
    """Today's image scoring for crops, faces for photos; prints; the predictions figure."""
    mode = faces.face_mode(params["faces"])
    faces_as = face_settings.for_trained(trained, params)
    if mode != "false":
        print(faces_as.line)
        faces.check_detector(faces_as.detector, faces_as.align)
    whole, photos = faces.sort_images(paths, mode, params["min_face_size"], faces_as.detector)
    classes = trained["classes"]
    results, images = [], np.zeros((0, trained["image_size"], trained["image_size"],
                                    trained["channels"]), np.uint8)
    if whole:
        results, summary, images = score_images(
            model, whole, classes, trained["aliases"], trained["image_size"],
            trained["channels"], params["batch_size"], params["tta"],
            params["min_confidence"])
        print_results(results, summary)
        if not results and not photos:
            raise DataError(f"None of the {len(whole)} image(s) given could be read: see the "
                            f"skipped files above.")
    if photos:
        out_dir = (runs.new_output_dir(params["out_root"], "eval")
                   if any(boxes for _, boxes, _ in photos) else None)
        # Our own new folder: interrupted or failed midway, nothing half written is left.
        with interrupt.removed_if_interrupted(out_dir, on_error=True):
            face_results, crops = score_photos(model, photos, trained, params, out_dir)
        results, images = results + face_results, np.concatenate([images, crops])
    if params["figure"] and results:
        params["out_root"].mkdir(parents=True, exist_ok=True)  # a shipped model's, in runs/
        figure = runs.claim_path(
            params["out_root"] / f"predictions-{datetime.now():%Y%m%d-%H%M%S}.png")
        shown = min(len(results), FIGURE_IMAGES)
        with interrupt.removed_if_interrupted(figure):
            plots.plot_predictions(images[:shown], results[:shown], classes, figure)
        print(f"Figure: {figure}" + (f" (the first {shown} images)"
                                     if shown < len(results) else ""))


def score_images(model, paths, classes, aliases, image_size, channels, batch_size=32,
                 tta=False, min_confidence=0.0):
    """Predict every image of `paths` with `model`.

    Returns (results, summary, images). results: one dict per readable image with
    path, predicted, probability, true (class name or None) and probabilities.
    summary: {"labelled", "accuracy", "loss", "skipped"}; accuracy and loss are
    None when no image is labelled. images: the uint8 [N, size, size, channels]
    the model saw. Below `min_confidence`, predicted is "uncertain".
    """
    lookup = class_lookup(classes, aliases)
    images, kept, skipped = load_images(paths, image_size, channels)
    probabilities = metrics.predict(model, images, batch_size, tta)
    results = []
    shown = calibration.label_or_uncertain(probabilities, classes, min_confidence)
    for row, index, name in zip(probabilities, kept, shown):
        true = label_from_filename(paths[index], lookup)
        best = int(np.argmax(row))
        results.append({"path": str(paths[index]), "predicted": name,
                        "probability": float(row[best]),
                        "true": classes[true] if true is not None else None,
                        "true_index": true, "probabilities": row.tolist()})
    labelled = [i for i, r in enumerate(results) if r["true_index"] is not None]
    summary = {"labelled": len(labelled), "accuracy": None, "loss": None, "skipped": skipped}
    if labelled:
        truth = [results[i]["true_index"] for i in labelled]
        guessed = np.argmax(probabilities[labelled], axis=1)
        matrix = metrics.confusion_matrix(truth, guessed, len(classes))
        summary.update(metrics.summary_scores(matrix, truth, guessed))
        summary["loss"] = metrics.cross_entropy(probabilities[labelled], truth,
                                                   len(classes))
    return results, summary, images


def print_results(results, summary):
    """Print one line per image, the skipped files, then accuracy and loss."""
    width = max((len(Path(r["path"]).name) for r in results), default=10)
    for r in results:
        mark = ("" if r["true"] is None or r["predicted"] == calibration.UNCERTAIN
                else ("  ok" if r["true"] == r["predicted"] else "  wrong"))
        true = f"  true {r['true']}" if r["true"] else ""
        print(f"{Path(r['path']).name:<{width}}  predicted {r['predicted']:<9} "
              f"p={r['probability']:.3f}{true}{mark}")
    for _, reason in summary["skipped"]:
        print(f"skipped: {reason}")
    if summary["labelled"]:
        print(metrics.format_split("labelled", summary)
              + f"  over {summary['labelled']} labelled image(s)")
    else:
        print("No file name states a class, so no accuracy is computed.")


def score_photos(model, photos, trained, params, out_dir):
    """Score every face of `photos` ([(path, boxes, (height, width))] of faces.sort_images).

    Saves each photo with its faces marked as <name>-faces.jpg in `out_dir`, and
    faces.csv (one row a face); nothing when `out_dir` is None (no photo has a
    face). Prints one line a face: file, box, class, probability; a photo with no
    face says so. Returns (results, crops).
    """
    faces_as = face_settings.for_trained(trained, params)
    classes, least = trained["classes"], params["min_face_size"]
    results, crops, rows = [], [], []
    for path, boxes, (height, width) in photos:
        name = Path(path).name
        if not boxes:
            why = (f"the image ({width}x{height}) is smaller than the smallest face looked "
                   f"for ({least} px)" if min(width, height) < least else
                   f"faces of at least {least} px were looked for; --min_face_size lowers it "
                   f"to 24")
            print(f"{name}: no face found ({why}).")
            continue
        out_path = runs.claim_path(Path(out_dir) / atomic.fitting_name(Path(path).stem,
                                                                        "-faces.jpg"))
        found, face_crops = faces.score_photo(model, path, boxes, classes,
                                              trained["image_size"], trained["channels"],
                                              faces_as.margin, out_path, faces_as.align,
                                              faces_as.draw_landmarks,
                                              params["min_confidence"])
        for r in found:
            x, y, w, h = r["box"]
            print(f"{name}  face {r['face']}  box x={x} y={y} w={w} h={h}  "
                  f"predicted {r['predicted']:<9} p={r['probability']:.3f}")
            rows.append([str(path), r["face"], x, y, w, h, *faces.landmark_cells(r["points"]),
                         r["predicted"],
                         f"{r['probability']:.4f}", *(f"{p:.4f}" for p in r["probabilities"])])
        results += found
        crops.append(face_crops)
    if out_dir is not None:
        header = ["path", "face", "x", "y", "w", "h", *faces.LANDMARK_COLUMNS, "predicted",
                  "probability",
                  *(f"p_{c}" for c in classes)]
        records.write_csv(Path(out_dir) / "faces.csv", [header, *rows])
        print(f"Photos with their faces marked, and faces.csv: {out_dir}")
    size, channels = trained["image_size"], trained["channels"]
    return results, (np.concatenate(crops) if crops
                     else np.zeros((0, size, size, channels), np.uint8))


def score_video(model, model_path, source, trained, params):
    """Run a video file (a Path) or a webcam (an int) through the model. Returns the summary."""
    live = isinstance(source, int)
    name = f"camera{source}" if live else Path(source).name
    capture = video.open_video(source)
    try:
        cv2 = faces.opencv()
        announced = None if live else int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        print(f"Video: {name}" + (f", {announced} frames" if announced else "")
              + (" (Ctrl-C stops and keeps what was seen)" if live else ""))
        faces_as = face_settings.for_trained(trained, params)
        print(faces_as.line)
        faces.check_detector(faces_as.detector, faces_as.align)
        out_dir = runs.new_output_dir(params["out_root"], "eval")
        # A webcam's Ctrl-C is its end (handled inside); an error midway leaves nothing.
        with interrupt.removed_if_interrupted(out_dir, on_error=True):
            summary = video.process_video(
                capture, model, trained["classes"], trained["image_size"],
                trained["channels"], out_dir, name, faces_as.margin,
                params["min_face_size"], params["max_frames"], params["smoothing"],
                announced, live, detector=faces_as.detector, align=faces_as.align,
                draw_landmarks=faces_as.draw_landmarks,
                min_confidence=params["min_confidence"])
    finally:
        capture.release()
    frames = summary["frames"]
    if announced and frames < announced and summary["stopped"] == "end":
        print(f"note: {name} ended after {frames} of the {announced} frames its header "
              f"announces (a truncated file?); the frames read are in the outputs.")
    if not summary["faces"]:
        print(f"No face was found in any frame (faces of at least {params['min_face_size']} "
              f"px are looked for).")
    print(f"{frames} frame(s), {summary['rows']} face row(s), {len(summary['faces'])} "
          f"face(s) followed; {summary['seconds']:.1f} s: {summary['fps']:.1f} frames/s "
          f"(read, find faces, classify, draw, write).")
    print(f"Written to {out_dir}: {summary['video'].name}, {summary['csv'].name}, "
          f"{summary['figure'].name}")
    return summary
