"""Score images with a saved model: the report's test on its 8 new images.

Usage:  python cnn_eval.py [IMAGE_OR_FOLDER ...] [--model=PATH] [--name=value ...]

Without paths it scores TEST_DIR (test_images/). Without --model it loads the
latest run's model.keras. For each image it prints the predicted class and its
probability, and the true class when the file name states one (`anger.jpg`,
`raiva_2.png`); then accuracy and loss over the labelled images (Table 3's
"test" column). The classes, image size and channels are always the model's own:
saved inside the .keras file, or in its run's params.json.

It also saves a figure of each image with its true and predicted class and a bar
of the class probabilities, as predictions-<time>.png beside the model (a new
file each time, of the first 32 images; --figure=False skips it). --tta=True
averages each image's prediction with its mirror's (test-time augmentation).

Offers:
  find_models(model, runs_dir)       -> Paths of the models to score
  trained_params(model_path, model, defaults) -> the classes and input the model was
                                        trained with, checked against its output
  score_images(model, paths, ...)    -> (per-image results, summary, images)
  main(argv)
"""

import sys

if __name__ == "__main__":  # first, before TensorFlow loads: a quiet start
    from cnnlib import quiet

    quiet.start()

from datetime import datetime  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import cnn_data  # noqa: E402
import cnn_model  # noqa: E402
import cnn_params  # noqa: E402
from cnnlib import config, evaluation, layouts, plots, report, runs  # noqa: E402
from cnnlib.errors import ModelError, UserError  # noqa: E402

FIGURE_IMAGES = 32  # a figure of more images than this is too large to read


def find_models(model, runs_dir):
    """Return the model files to score: [`model`] if given, else the latest run's.

    A compare run gives both of its models (no_dropout, dropout).
    Raises ModelError when there is none.
    """
    if model:
        return [Path(model)]
    run_dir = runs.latest_run(runs_dir)
    if run_dir is None:
        raise ModelError(f"No trained model found in {runs_dir}: run `python cnn_run.py` "
                         f"first, or give --model=PATH.")
    found = [run_dir / "model.keras"] if (run_dir / "model.keras").is_file() else sorted(
        run_dir.glob("*/model.keras"))
    if not found:
        raise ModelError(f"The latest run {run_dir} has no model.keras (was it interrupted?): "
                         f"resume it with `python cnn_run.py --resume={run_dir}`, or give "
                         f"--model=PATH.")
    return found


def trained_params(model_path, model, defaults):
    """Return `defaults` with the classes and input size that `model` was trained with.

    They come from inside the .keras file, else from the run's params.json beside
    the model or one folder up (a compare run's variants), else from `defaults`
    (--classes=... and the rest on the command line). Raises ModelError when the
    model's output does not have one unit per class.
    """
    info = cnn_model.model_info(model_path)
    source = f"inside {model_path}"
    if info is None:
        for folder in (Path(model_path).parent, Path(model_path).parent.parent):
            if (folder / "params.json").is_file():
                info = runs.read_json(folder / "params.json", "run's parameters")
                source = str(folder / "params.json")
                break
    params = {**defaults, **{k: v for k, v in (info or {}).items()
                             if k in ("classes", "aliases", "image_size", "channels")}}
    outputs = model.output_shape[-1]
    if outputs != len(params["classes"]):
        where = source if info is not None else "--classes (no params.json beside the model)"
        raise ModelError(f"{model_path} predicts {outputs} classes but {where} names "
                         f"{len(params['classes'])}: give its classes in order with "
                         f"--classes=a,b,c..., or keep the model in its run folder.")
    input_shape = model.input_shape
    params["image_size"], params["channels"] = input_shape[1], input_shape[3]
    return params


def score_images(model, paths, classes, aliases, image_size, channels, batch_size=32,
                 tta=False):
    """Predict every image of `paths` with `model`.

    Returns (results, summary, images). results: one dict per readable image with
    path, predicted, probability, true (class name or None) and probabilities.
    summary: {"labelled", "accuracy", "loss", "skipped"}; accuracy and loss are
    None when no image is labelled. images: the uint8 [N, size, size, channels]
    the model saw.
    """
    lookup = layouts.class_lookup(classes, aliases)
    images, kept, skipped = cnn_data.load_images(paths, image_size, channels)
    probabilities = evaluation.predict(model, images, batch_size, tta)
    results = []
    for row, index in zip(probabilities, kept):
        true = layouts.label_from_filename(paths[index], lookup)
        best = int(np.argmax(row))
        results.append({"path": str(paths[index]), "predicted": classes[best],
                        "probability": float(row[best]),
                        "true": classes[true] if true is not None else None,
                        "true_index": true, "probabilities": row.tolist()})
    labelled = [i for i, r in enumerate(results) if r["true_index"] is not None]
    summary = {"labelled": len(labelled), "accuracy": None, "loss": None, "skipped": skipped}
    if labelled:
        truth = [results[i]["true_index"] for i in labelled]
        matrix = report.confusion_matrix(truth, np.argmax(probabilities[labelled], axis=1),
                                         len(classes))
        summary.update(report.summary_scores(matrix))
        summary["loss"] = evaluation.cross_entropy(probabilities[labelled], truth,
                                                   len(classes))
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
        print(report.format_summary("labelled", summary)
              + f"  over {summary['labelled']} labelled image(s)")
    else:
        print("No file name states a class, so no accuracy is computed.")


def main(argv=None):
    """`python cnn_eval.py [IMAGES ...] [--model=PATH] [--name=value ...]`; the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    defaults = {**config.defaults(cnn_params), "model": "", "figure": True, "tta": False}
    try:
        params, sources = config.parse_args(argv, defaults)
        model_paths = find_models(params["model"], params["runs_dir"])
        paths = layouts.list_images(sources or [params["test_dir"]])
        for model_path in model_paths:
            model = cnn_model.load_model(model_path)
            trained = trained_params(model_path, model, params)
            print(f"\nModel: {model_path}")
            results, summary, images = score_images(
                model, paths, trained["classes"], trained["aliases"],
                trained["image_size"], trained["channels"], params["batch_size"], params["tta"])
            print_results(results, summary)
            if params["figure"] and results:
                figure = runs.unique_path(
                    model_path.parent / f"predictions-{datetime.now():%Y%m%d-%H%M%S}.png")
                shown = min(len(results), FIGURE_IMAGES)
                plots.plot_predictions(images[:shown], results[:shown], trained["classes"],
                                       figure)
                print(f"Figure: {figure}" + (f" (the first {shown} images)"
                                             if shown < len(results) else ""))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
