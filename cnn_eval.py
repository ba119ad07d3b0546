"""Score images with a saved model: the report's test on its 8 new images.

Usage:  python cnn_eval.py [IMAGE_OR_FOLDER ...] [--model=PATH] [--name=value ...]

Without paths it scores TEST_DIR (test_images/). Without --model it loads the
latest run's model.keras. For each image it prints the predicted class and its
probability, and the true class when the file name states one (`anger.jpg`,
`raiva_2.png`); then accuracy and loss over the labelled images (Table 3's
"test" column). Classes and image size come from the run's params.json, so a
model trained on other classes is scored with its own.

It also saves a figure of each image with its true and predicted class and a bar
of the class probabilities, as predictions-<time>.png beside the model (a new
file each time, of the first 32 images; --figure=False skips it). The classes,
image size and channels are always the model's own, from its run's params.json.

Offers:
  find_models(model, runs_dir)       -> Paths of the models to score
  run_params(model_path, defaults)   -> the parameters the model was trained with
  score_images(model, paths, ...)    -> (per-image results, summary, images)
  main(argv)
"""

import os
import sys
from datetime import datetime
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out

import numpy as np  # noqa: E402

import cnn_config  # noqa: E402
import cnn_data  # noqa: E402
import cnn_model  # noqa: E402
import cnn_params  # noqa: E402
import cnn_plots  # noqa: E402
import cnn_runs  # noqa: E402


FIGURE_IMAGES = 32  # a figure of more images than this is too large to read


def find_models(model, runs_dir):
    """Return the model files to score: [`model`] if given, else the latest run's.

    A compare run gives both of its models (no_dropout, dropout).
    Raises ModelError when there is none.
    """
    if model:
        return [Path(model)]
    run_dir = cnn_runs.latest_run(runs_dir)
    if run_dir is None:
        raise cnn_model.ModelError(f"No trained model found in {runs_dir}: run "
                                   f"`python cnn_run.py` first, or give --model=PATH.")
    found = [run_dir / "model.keras"] if (run_dir / "model.keras").is_file() else sorted(
        run_dir.glob("*/model.keras"))
    if not found:
        raise cnn_model.ModelError(f"The latest run {run_dir} has no model.keras (was it "
                                   f"interrupted?): resume it with `python cnn_run.py "
                                   f"--resume={run_dir}`, or give --model=PATH.")
    return found


def run_params(model_path, defaults):
    """Return the parameters the model was trained with (its run's params.json).

    Looks beside the model and one folder up (a compare run's variants); falls
    back to `defaults` for a model from elsewhere.
    """
    for folder in (Path(model_path).parent, Path(model_path).parent.parent):
        if (folder / "params.json").is_file():
            return {**defaults, **cnn_runs.read_json(folder / "params.json")}
    return defaults


def score_images(model, paths, classes, aliases, image_size, channels):
    """Predict every image of `paths` with `model`.

    Returns (results, summary, images). results: one dict per readable image with
    path, predicted, probability, true (class name or None) and probabilities.
    summary: {"labelled", "accuracy", "loss", "skipped"}; accuracy and loss are
    None when no image is labelled. images: the uint8 [N, size, size, channels]
    the model saw.
    """
    lookup = cnn_data.class_lookup(classes, aliases)
    images, kept, skipped = cnn_data.load_images(paths, image_size, channels)
    probabilities = model.predict(images, verbose=0) if len(images) else np.zeros((0, len(classes)))
    results = []
    for row, index in zip(probabilities, kept):
        true = cnn_data.label_from_filename(paths[index], lookup)
        best = int(np.argmax(row))
        results.append({"path": str(paths[index]), "predicted": classes[best],
                        "probability": float(row[best]),
                        "true": classes[true] if true is not None else None,
                        "true_index": true, "probabilities": row.tolist()})
    labelled = [r for r in results if r["true_index"] is not None]
    summary = {"labelled": len(labelled), "accuracy": None, "loss": None,
               "skipped": skipped}
    if labelled:
        truth = np.asarray([r["true_index"] for r in labelled])
        probs = np.asarray([r["probabilities"] for r in labelled])
        summary["accuracy"] = float(np.mean(np.argmax(probs, axis=1) == truth))
        # Categorical cross-entropy as Keras computes it (probabilities clipped).
        picked = np.clip(probs[np.arange(len(truth)), truth], 1e-7, 1.0)
        summary["loss"] = float(-np.mean(np.log(picked)))
    return results, summary, images


def print_results(results, summary):
    """Print one line per image, the skipped files, then accuracy and loss."""
    width = max((len(Path(r["path"]).name) for r in results), default=10)
    for r in results:
        mark = "" if r["true"] is None else ("  ok" if r["true"] == r["predicted"] else "  wrong")
        true = f"  true {r['true']}" if r["true"] else ""
        print(f"{Path(r['path']).name:<{width}}  predicted {r['predicted']:<9} "
              f"p={r['probability']:.3f}{true}{mark}")
    for _, reason in summary["skipped"]:
        print(f"skipped: {reason}")
    if summary["labelled"]:
        print(f"accuracy {summary['accuracy']:.3f}  loss {summary['loss']:.3f}  "
              f"over {summary['labelled']} labelled image(s)")
    else:
        print("No file name states a class, so no accuracy is computed.")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    defaults = {**cnn_config.defaults(cnn_params), "model": "", "figure": True}
    try:
        params, sources = cnn_config.parse_args(argv, defaults)
        model_paths = find_models(params["model"], params["runs_dir"])
        paths = cnn_data.list_images(sources or [params["test_dir"]])
        for model_path in model_paths:
            trained = run_params(model_path, params)
            model = cnn_model.load_model(model_path)
            print(f"\nModel: {model_path}")
            results, summary, images = score_images(
                model, paths, trained["classes"], trained["aliases"],
                trained["image_size"], trained["channels"])
            print_results(results, summary)
            if params["figure"] and results:
                figure = cnn_runs.unique_path(
                    model_path.parent / f"predictions-{datetime.now():%Y%m%d-%H%M%S}.png")
                shown = min(len(results), FIGURE_IMAGES)
                cnn_plots.plot_predictions(images[:shown], results[:shown],
                                           trained["classes"], figure)
                print(f"Figure: {figure}" + (f" (the first {shown} images)"
                                             if shown < len(results) else ""))
    except (cnn_config.ConfigError, cnn_data.DataError, cnn_model.ModelError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
