"""Score a finished run on its own validation split and write it as a shipped model.

    python benchmarks/ship_model.py RUN_DIR OUT.keras [--json=numbers.json] [--cache_dir=DIR]

Prints (and with --json writes) the numbers a model card gives: accuracy with
Wilson's interval, balanced accuracy, macro-F1 and per-class recall with stratified
bootstrap intervals, per-class precision, each plain and with the mirror
(`--tta=True`), and again without the validation images that are near-duplicates of
training images; then the temperature fitted on the split and the calibration error
before and after. OUT.keras is the run's model.keras as a float32 file without
optimizer state, carrying the run's info, its layer table and the temperature; it
must agree with the run's model to 1e-5 on the validation images.

The split is the run's own: its params.json names the data, seed and validation
fraction, so the same files are drawn as in training. Nothing here is tuned on it.
"""

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import keras  # noqa: E402

import cnn_data  # noqa: E402
import cnn_model  # noqa: E402
import cnn_params  # noqa: E402
from cnnlib import atomic, calibration, config, metrics  # noqa: E402


def _scores(labels, probabilities, classes):
    predicted = probabilities.argmax(1)
    matrix = metrics.confusion_matrix(labels, predicted, len(classes))
    summary = metrics.summary_scores(matrix, labels, predicted)
    per_class = metrics.per_class_scores(matrix)
    summary["per_class"] = {
        name: {"images": int(per_class[i]["support"]), "recall": per_class[i]["recall"],
               "recall_interval": summary["recall_intervals"][i],
               "precision": per_class[i]["precision"]}
        for i, name in enumerate(classes)}
    del summary["recall_intervals"]
    return summary


def _leaked_validation(data):
    """Boolean [validation images]: the validation images with a training near-duplicate."""
    row = {path: i for i, path in enumerate(map(str, data.val_paths))}
    leaked = np.zeros(len(data.val_labels), bool)
    for group in data.duplicates:
        if "train" in group.sets and "validation" in group.sets:
            for member in group.members:
                item = data.duplicate_items[member]
                if item.set_name == "validation" and item.file in row:
                    leaked[row[item.file]] = True
    return leaked


def ship(run_dir, out_path, cache_dir=None):
    run_dir, out_path = Path(run_dir), Path(out_path)
    # Parameters added since the run was made take their defaults, as on --resume.
    params = {**config.defaults(cnn_params), **json.loads((run_dir / "params.json").read_text())}
    if cache_dir is not None:
        params["cache_dir"] = cache_dir
    data = cnn_data.prepare_data(params)
    classes, labels = data.classes, np.asarray(data.val_labels)
    model = cnn_model.load_model(run_dir / "model.keras")
    plain = metrics.predict(model, data.val_images, 256)
    mirrored = metrics.predict(model, data.val_images, 256, tta=True)
    leaked = _leaked_validation(data)
    fitted = calibration.calibrate(plain, labels)
    numbers = {
        "run": run_dir.name, "classes": classes,
        "train_images": int(len(data.train_labels)), "validation_images": int(len(labels)),
        "validation_near_duplicates_of_train": int(leaked.sum()),
        "plain": _scores(labels, plain, classes),
        "tta": _scores(labels, mirrored, classes),
        "plain_without_near_duplicates": _scores(labels[~leaked], plain[~leaked], classes),
        "tta_without_near_duplicates": _scores(labels[~leaked], mirrored[~leaked], classes),
        "calibration": fitted.as_dict(),
    }
    # The shipped file: float32 weights, no optimizer state, what eval and
    # fine-tuning read kept inside.
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    info = dict(cnn_model.model_info(run_dir / "model.keras") or {})
    info.update(layers=params["layers"], source_run=run_dir.name,
                trained_on=f"{params['data_dir']} (the run's training split)")
    info.pop("calibration", None)
    # Written beside OUT and put in its place only once it agrees with the run's model.
    candidate = out_path.with_name(f".{out_path.stem}.candidate{out_path.suffix}")
    try:
        cnn_model.save_model(clone, candidate, info=info)
        calibration.store_calibration(candidate, fitted)
        check = cnn_model.load_model(candidate).predict(data.val_images[:512], verbose=0)
        numbers["max_difference_after_save"] = float(np.abs(check - plain[:512]).max())
        numbers["file_bytes"] = candidate.stat().st_size
        if numbers["max_difference_after_save"] > 1e-5:
            raise SystemExit(f"The file written for {out_path} disagrees with "
                             f"{run_dir}/model.keras by "
                             f"{numbers['max_difference_after_save']:.2e}: not shipped.")
        candidate.replace(out_path)
    finally:
        candidate.unlink(missing_ok=True)
    return numbers


def main(argv):
    positional = [a for a in argv if not a.startswith("--")]
    options = dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)
    if len(positional) != 2:
        raise SystemExit(__doc__.strip().splitlines()[2].strip())
    numbers = ship(*positional, cache_dir=options.get("cache_dir"))
    text = json.dumps(numbers, indent=1, default=float)
    if options.get("json"):
        atomic.write_text(options["json"], text)
    print(text)


if __name__ == "__main__":
    main(sys.argv[1:])
