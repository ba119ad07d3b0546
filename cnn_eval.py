"""Score images with a saved model: the report's test on its 8 new images.

Usage:  python cnn_eval.py [IMAGE_OR_FOLDER ...] [--model=PATH] [--name=value ...]

Without paths it scores TEST_DIR (test_images/). Without --model it loads the
latest run's model.keras. For each image it prints the predicted class and its
probability, and the true class when the file name states one (`anger.jpg`,
`raiva_2.png`); then accuracy and loss over the labelled images (Table 3's
"test" column). Classes and image size come from the run's params.json, so a
model trained on other classes is scored with its own.

Offers:
  find_model(model, runs_dir)        -> Path of the model to load
  score_images(model, paths, ...)    -> list of per-image results, and summary
  main(argv)
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out

import numpy as np  # noqa: E402

import cnn_config  # noqa: E402
import cnn_data  # noqa: E402
import cnn_model  # noqa: E402
import cnn_params  # noqa: E402
import cnn_runs  # noqa: E402


def find_model(model, runs_dir):
    """Return the Path of the model to score: `model` if given, else the latest run's.

    Raises ModelError when there is none.
    """
    if model:
        return Path(model)
    run_dir = cnn_runs.latest_run(runs_dir)
    if run_dir is None:
        raise cnn_model.ModelError(f"No trained model found in {runs_dir}: run "
                                   f"`python cnn_run.py` first, or give --model=PATH.")
    return run_dir / "model.keras"


def run_params(model_path, defaults):
    """Return the parameters the model was trained with (its params.json), else `defaults`."""
    saved = Path(model_path).parent / "params.json"
    return {**defaults, **cnn_runs.read_json(saved)} if saved.is_file() else defaults


def score_images(model, paths, classes, aliases, image_size, channels):
    """Predict every image of `paths` with `model`.

    Returns (results, summary). results: one dict per readable image with path,
    predicted, probability, true (class name or None) and probabilities (list).
    summary: {"labelled", "accuracy", "loss", "skipped"}; accuracy and loss are
    None when no image is labelled.
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
    return results, summary


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    defaults = {**cnn_config.defaults(cnn_params), "model": ""}
    try:
        params, sources = cnn_config.parse_args(argv, defaults)
        model_path = find_model(params["model"], params["runs_dir"])
        trained = run_params(model_path, params)
        paths = cnn_data.list_images(sources or [params["test_dir"]])
        model = cnn_model.load_model(model_path)
    except (cnn_config.ConfigError, cnn_data.DataError, cnn_model.ModelError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    print(f"Model: {model_path}")
    results, summary = score_images(model, paths, trained["classes"], trained["aliases"],
                                    trained["image_size"], trained["channels"])
    width = max(len(Path(r["path"]).name) for r in results) if results else 10
    for r in results:
        mark = "" if r["true"] is None else ("  ok" if r["true"] == r["predicted"] else "  wrong")
        true = f"  true {r['true']}" if r["true"] else ""
        print(f"{Path(r['path']).name:<{width}}  predicted {r['predicted']:<9} "
              f"p={r['probability']:.3f}{true}{mark}")
    for path, reason in summary["skipped"]:
        print(f"skipped: {reason}")
    if summary["labelled"]:
        print(f"accuracy {summary['accuracy']:.3f}  loss {summary['loss']:.3f}  "
              f"over {summary['labelled']} labelled image(s)")
    else:
        print("No file name states a class, so no accuracy is computed.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
