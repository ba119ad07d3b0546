"""Score finished runs on their validation split and write them as a shipped model.

    python benchmarks/ship_model.py RUN_DIR [RUN_DIR ...] OUT.keras [--json=F] [--cache_dir=D]

One run: OUT.keras is its model.keras as a float32 file without optimizer state.
Several runs (which must have drawn the same split, their split.csv equal, and take
the same input): OUT.keras is their ensemble (cnnlib/ensemble.py), each network
seeing the image and its mirror, their probabilities averaged; the first run's
network is the one fine-tuning starts from. Either way the file carries the run's
info, its layer table and the temperature; each network must agree with its run's
own model, and the file with what was scored, to 1e-5 on validation images.

Prints (and with --json writes) the numbers a model card gives: accuracy with
Wilson's interval, balanced accuracy, macro-F1 and per-class recall with stratified
bootstrap intervals, per-class precision; plain and with the mirror (`--tta=True`)
for one run, each member's and the ensemble's for several; again without the
validation images that are near-duplicates of training images; then the temperature
fitted on the split and the calibration error before and after.

The split is the runs' own: the first run's params.json names the data, seed and
validation fraction, so the same files are drawn as in training. Nothing here is
tuned on it.
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
from cnnlib import atomic, calibration, config, ensemble, metrics, runs, subject_split  # noqa: E402
from cnnlib.errors import RunError  # noqa: E402


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


def _network(run_dir, images, name=None):
    """The run's model.keras as float32 layers without optimizer state (renamed),
    checked to answer as the run's own model does on `images`."""
    model = cnn_model.load_model(run_dir / "model.keras")
    layout = model.get_config()
    if name:
        layout["name"] = name
    clone = keras.Model.from_config(layout)
    clone.set_weights(model.get_weights())
    difference = float(np.abs(clone.predict(images, verbose=0)
                              - model.predict(images, verbose=0)).max())
    if difference > 1e-5:
        raise SystemExit(f"The copy of {run_dir}/model.keras disagrees with it by "
                         f"{difference:.2e}: not shipped.")
    return clone


# What a model's info says of its input: every network of an ensemble must agree.
_INPUT_KEYS = ("classes", "aliases", "image_size", "channels", "crop_faces", "face_margin",
               "detector", "align")


def _check_runs(run_dirs, out_path):
    """Refuse, before any work, what cannot be shipped: a name that is not .keras, a run
    without its files, or runs that differ in their split or their input. Returns each
    run's saved parameters."""
    if out_path.suffix != ".keras" or not out_path.parent.is_dir():
        raise SystemExit(f"{out_path} must end in .keras, in a folder that exists.")
    if len({r.name for r in run_dirs}) != len(run_dirs):
        raise SystemExit("Each run may be given once (and their folder names must differ).")
    saved_params = []
    for run_dir in run_dirs:
        for name in ("params.json", "model.keras") + (("split.csv",) if len(run_dirs) > 1
                                                       else ()):
            if not (run_dir / name).is_file():
                raise SystemExit(f"{run_dir} has no {name}: give finished runs of "
                                 f"cnn_run.py (split.csv from 2026-11-30 on).")
        try:
            saved = runs.read_json(run_dir / "params.json", "parameters")
        except RunError as error:
            raise SystemExit(str(error)) from None
        if not isinstance(saved, dict) or "layers" not in saved:
            raise SystemExit(f"{run_dir}/params.json has no layer table: give runs of "
                             f"cnn_run.py, unchanged.")
        saved_params.append(saved)
    first = run_dirs[0]
    theirs = (cnn_model.model_info(first / "model.keras") or {}) if len(run_dirs) > 1 else {}
    for run_dir in run_dirs[1:]:
        try:
            differ = (subject_split.read_split(run_dir / "split.csv")
                      != subject_split.read_split(first / "split.csv"))
        except (ValueError, OSError, UnicodeDecodeError) as error:
            raise SystemExit(f"{error}: give runs of cnn_run.py, unchanged.") from None
        if differ:
            raise SystemExit(f"{run_dir} split its data unlike {first} (their split.csv "
                             f"differ): an ensemble is scored on one split.")
        mine = cnn_model.model_info(run_dir / "model.keras") or {}
        differing = [k for k in _INPUT_KEYS if mine.get(k) != theirs.get(k)]
        if differing:
            raise SystemExit(f"{run_dir} was trained on other input than {first} "
                             f"({', '.join(differing)}): an ensemble takes one input.")
    return saved_params


def ship(run_dirs, out_path, cache_dir=None):
    """Score the run (or the ensemble of the runs) and write it to `out_path`."""
    run_dirs, out_path = [Path(r) for r in run_dirs], Path(out_path)
    saved_params = _check_runs(run_dirs, out_path)
    # Parameters added since the run was made take their defaults, as on --resume.
    params = {**config.defaults(cnn_params), **saved_params[0]}
    if cache_dir is not None:
        params["cache_dir"] = cache_dir
    data = cnn_data.prepare_data(params)
    classes, labels = data.classes, np.asarray(data.val_labels)
    leaked = _leaked_validation(data)
    numbers = {
        "runs": [r.name for r in run_dirs], "classes": classes,
        "train_images": int(len(data.train_labels)), "validation_images": int(len(labels)),
        "validation_near_duplicates_of_train": int(leaked.sum())}
    if len(run_dirs) == 1:
        model = _network(run_dirs[0], data.val_images[:512])
        plain = metrics.predict(model, data.val_images, 256)
        mirrored = metrics.predict(model, data.val_images, 256, tta=True)
        numbers.update(
            plain=_scores(labels, plain, classes), tta=_scores(labels, mirrored, classes),
            plain_without_near_duplicates=_scores(labels[~leaked], plain[~leaked], classes),
            tta_without_near_duplicates=_scores(labels[~leaked], mirrored[~leaked], classes))
    else:
        # Each member on its own, then the shipped ensemble (which mirrors inside).
        networks = [_network(r, data.val_images[:512], f"member{i + 1}")
                    for i, r in enumerate(run_dirs)]
        numbers["members"] = {}
        for run_dir, network in zip(run_dirs, networks):
            alone = metrics.predict(network, data.val_images, 256)
            both = metrics.predict(network, data.val_images, 256, tta=True)
            numbers["members"][run_dir.name] = {
                "plain": _scores(labels, alone, classes), "tta": _scores(labels, both, classes)}
        model = ensemble.build_ensemble(networks, mirror=True, name="fer_ensemble")
        plain = metrics.predict(model, data.val_images, 256)
        numbers.update(plain=_scores(labels, plain, classes),
                       plain_without_near_duplicates=_scores(labels[~leaked], plain[~leaked],
                                                             classes))
    fitted = calibration.calibrate(plain, labels)
    numbers["calibration"] = fitted.as_dict()
    # The shipped file: float32 weights, no optimizer state, what eval and
    # fine-tuning read kept inside (an ensemble's layer table is its first member's).
    info = dict(cnn_model.model_info(run_dirs[0] / "model.keras") or {})
    info.update(layers=params["layers"], trained_on=f"{params['data_dir']} (the training "
                f"split of {'its runs' if len(run_dirs) > 1 else 'its run'})")
    if len(run_dirs) == 1:
        info["source_run"] = run_dirs[0].name
    else:
        info["ensemble"] = {"mirror": True, "members": [
            {"name": f"member{i + 1}", "source_run": r.name, "layers": saved["layers"]}
            for i, (r, saved) in enumerate(zip(run_dirs, saved_params))]}
    info.pop("calibration", None)
    # Written beside OUT and put in its place only once it agrees with what was scored.
    candidate = out_path.with_name(f".{out_path.stem}.candidate{out_path.suffix}")
    try:
        cnn_model.save_model(model, candidate, info=info)
        calibration.store_calibration(candidate, fitted)
        check = cnn_model.load_model(candidate).predict(data.val_images[:512], verbose=0)
        numbers["max_difference_after_save"] = float(np.abs(check - plain[:512]).max())
        numbers["file_bytes"] = candidate.stat().st_size
        if numbers["max_difference_after_save"] > 1e-5:
            raise SystemExit(f"The file written for {out_path} disagrees with what was "
                             f"scored by {numbers['max_difference_after_save']:.2e}: not "
                             f"shipped.")
        candidate.replace(out_path)
    finally:
        candidate.unlink(missing_ok=True)
    return numbers


def main(argv):
    positional = [a for a in argv if not a.startswith("--")]
    options = dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)
    if len(positional) < 2:
        raise SystemExit(__doc__.strip().splitlines()[2].strip())
    numbers = ship(positional[:-1], positional[-1], cache_dir=options.get("cache_dir"))
    text = json.dumps(numbers, indent=1, default=float)
    if options.get("json"):
        atomic.write_text(options["json"], text)
    print(text)


if __name__ == "__main__":
    main(sys.argv[1:])
