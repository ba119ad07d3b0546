"""Train the report's CNN: load and balance the data, train, save a run, plot.

Usage:  python cnn_run.py [configs/NAME.py] [--name=value ...]
        e.g. python cnn_run.py --epochs=5 --dropout=False --data_dir=/data/QIDER

        python cnn_run.py --compare=True        (both report variants: Table 3)
        python cnn_run.py --resume=runs/NAME    (continue an interrupted run)
        python cnn_run.py --distribute=mirrored (every local GPU; README: multiworker)

Any parameter of cnn_params.py can be overridden by its lower-case name, after a
configuration file's values. Each run writes a new folder under RUNS_DIR and
records itself as the latest run for cnn_eval.py; nothing earlier is overwritten.
A model's folder holds model.keras (last finished epoch), best.keras (lowest
validation loss), state.json (epochs done, finished), history.csv, curves.png,
confusion.png, confusion.csv, per_class.csv and metrics.json; the run folder adds
params.json, run_info.json (seed, library versions, data summary) and
table3.md/.csv. With --compare=True the two models live in no_dropout/ and
dropout/, and overlay.png compares their validation curves.

Offers (for tests and notebooks), in call order:
  check_before_work(params)   raises a UserError for a bad value, path or layer table
  resume_params(params)       -> (saved params, run folder) of --resume
  write_data_records(...)     -> run_info.json, skipped.txt, unlabeled.txt
  fit_or_reload(params, ...)  -> the trained model of one variant (training what is left)
  record_evaluation(...)      -> its metrics on train, validation and test; the files
  train_variant(params, ...)  -> both of the above
  train_and_record(params, setup) -> Path of the run folder written (the chief's work)
  run(params)                 -> the devices and strategy, then train_and_record; under
                                 multiworker a worker that is not the chief follows it
  main(argv)
"""

import sys

if __name__ == "__main__":  # first, before TensorFlow loads: a quiet start
    from cnnlib import quiet

    quiet.start()

import functools  # noqa: E402
import os  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import cnn_data  # noqa: E402
import cnn_model  # noqa: E402
import cnn_params  # noqa: E402
from cnnlib import atomic, checkpoints, config, distribute, evaluation, plots, report, runs  # noqa: E402
from cnnlib.errors import DataError, UserError, os_error_sentence  # noqa: E402

VARIANTS = {False: "no_dropout", True: "dropout"}  # the report's two models
RUNS_ON = ("device", "distribute", "cpu_devices")  # may change when a run is resumed


def check_before_work(params):
    """Raise a UserError for anything that would fail later: values, paths, layer table.

    Runs before any data is loaded, so a mistake costs seconds, not a data load.
    """
    config.check_values(params)
    runs.check_runs_dir(params["runs_dir"], params["data_dir"])
    if params["cache_dir"]:
        if Path(params["cache_dir"]).is_file():
            raise DataError(f"--cache_dir={params['cache_dir']} is a file, not a folder: give "
                            f"a folder, or --cache_dir= to turn the cache off.")
        runs.check_outside("cache_dir", params["cache_dir"], params["data_dir"])
    test_dir = params["test_dir"]
    if test_dir and not Path(test_dir).is_dir():
        what = "is a file, not a folder" if Path(test_dir).exists() else "does not exist"
        raise DataError(f"--test_dir={test_dir} {what}: give a folder of test images, or "
                        f"--test_dir= for none.")
    classes = params["classes"]
    # Built once, untrained: a layer table that leaves no pixels fails now.
    cnn_model.build_model(params["layers"], len(classes) if classes != [cnn_data.AUTO] else 2,
                          params["image_size"], params["channels"], params["dropout"],
                          params["learning_rate"], precision=params["mixed_precision"],
                          **model_options(params, 1))


def resume_params(params):
    """Return (params, run_dir) of the run --resume names: it goes on as it started."""
    run_dir = runs.find_run(params["resume"], params["runs_dir"])
    saved = runs.read_json(run_dir / "params.json", "run's parameters")
    if not isinstance(saved, dict) or set(saved) < {"data_dir", "epochs", "layers"}:
        raise runs.RunError(f"{run_dir / 'params.json'} is not the parameters of a run: "
                            f"it cannot be resumed. Start a new run.")
    # Only where runs live, and on what devices they train, may differ from the saved
    # parameters.
    here = {name: params[name] for name in ("runs_dir", *RUNS_ON) if name in params}
    params = {**params, **saved, "resume": str(run_dir), **here}
    try:
        config.check_values(params)
    except config.ConfigError as error:
        raise runs.RunError(f"{run_dir / 'params.json'} holds a value that is not allowed "
                            f"({error}), so the run cannot be resumed.") from None
    print(f"Resuming {run_dir} from its last finished epoch, with the parameters saved "
          f"in its params.json.")
    return params, run_dir


def write_data_records(run_dir, params, data, devices=None):
    """Write run_info.json (seed, libraries, devices, data summary), skipped.txt and
    unlabeled.txt."""
    classes = data["classes"]
    runs.write_json(run_dir / "run_info.json", {
        "seed": params["seed"], "libraries": runs.library_versions(), "devices": devices,
        "data": {"data_dir": params["data_dir"], "layout": data["layout"],
                 "standin": data["standin"], "classes": classes,
                 "train_before": data["counts_before"].tolist(),
                 "train_after": data["counts_after"].tolist(),
                 "validation": cnn_data.class_counts(data["val_labels"], len(classes)).tolist(),
                 "class_weights": data["weights"], "skipped": len(data["skipped"]),
                 "unlabeled": len(data["unlabeled"]), "leaks": len(data["leaks"]),
                 "test": data["test_source"]}})
    if data["skipped"]:
        atomic.write_text(run_dir / "skipped.txt", "".join(  # absolute: usable from anywhere
            f"{os.path.abspath(path)}\t{reason}\n" for path, reason in data["skipped"]))
        print(f"Skipped or excluded {len(data['skipped'])} file(s), listed with the reason "
              f"in {run_dir / 'skipped.txt'}:")
        for path, reason in data["skipped"][:10]:
            print(f"  {path}: {reason}")
    if data["unlabeled"]:
        atomic.write_text(run_dir / "unlabeled.txt",
                          "".join(f"{os.path.abspath(p)}\n" for p in data["unlabeled"]))
        print(f"{len(data['unlabeled'])} image(s) have no label and were not used (score them "
              f"with cnn_eval.py); listed in {run_dir / 'unlabeled.txt'}.")


def model_options(params, steps_per_epoch):
    """The augmentation and training options of `params`, as build_model takes them."""
    cosine = params["lr_schedule"] == "cosine"
    warmup = params["warmup_epochs"] * steps_per_epoch if cosine else 0
    return {"augmentation": {name: params[f"aug_{name}"] for name in (
                "flip", "rotation", "zoom", "translation", "contrast", "brightness")},
            "optimizer": params["optimizer"], "weight_decay": params["weight_decay"],
            "label_smoothing": params["label_smoothing"], "warmup_steps": warmup,
            "decay_steps": max(1, params["epochs"] * steps_per_epoch - warmup) if cosine else 0}


def model_info(params):
    """What a saved model carries inside its file: its classes and input."""
    return {"classes": params["classes"], "aliases": params["aliases"],
            "image_size": params["image_size"], "channels": params["channels"],
            "crop_faces": params["crop_faces"], "face_margin": params["face_margin"],
            "detector": params["detector"], "align": params["align"]}


def training_callbacks(params, folder):
    """The optional callbacks of one variant's training: early stopping, plateau, TensorBoard."""
    import keras

    callbacks = []
    if params["early_stopping"] > 0:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=params["early_stopping"], restore_best_weights=True))
    if params["lr_schedule"] == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=0.5, patience=3, min_lr=params["learning_rate"] / 64))
    if params["tensorboard"]:
        callbacks.append(keras.callbacks.TensorBoard(str(folder / "tensorboard")))
    return callbacks


def load_run_model(path):
    """A run's own model file, or RunError: a damaged one ends the run's story."""
    try:
        return cnn_model.load_model(path)
    except cnn_model.ModelError:
        raise runs.RunError(f"{path} is damaged, so its run cannot go on from it: start a "
                            f"new run.") from None


def fit_or_reload(params, data, folder, dropout, train, validation, extra_callbacks=(),
                  setup=None):
    """Return the trained model of one variant, training only what is not yet done.

    A finished variant (state.json says so) is reloaded; an interrupted one goes
    on from its last finished epoch, with its optimizer state; a new one is built.
    `setup` (distribute.start's) says where it trains; None is one device.
    """
    setup = setup or {"kind": "none", "strategy": None}
    state = runs.read_state(folder)
    if state and state.get("finished"):
        checkpoints.check_files(folder, state)
        return load_run_model(folder / "model.keras")
    done, checkpoint, rows, best = checkpoints.resume_point(folder)
    if checkpoint is not None and done >= params["epochs"]:  # stopped before the marker
        model = load_run_model(checkpoint)
        checkpoints.finish(folder, done, params["epochs"], best)
        return model
    multiworker = setup["kind"] == "multiworker"
    distribute.announce_training(setup, dropout, done)  # the workers build it too
    steps = -(-len(data["train_labels"]) // distribute.global_batch(params["batch_size"],
                                                                     setup))
    with distribute.scope(setup):  # the variables live on every replica
        if checkpoint is not None and not multiworker:
            model = cnn_model.with_precision(load_run_model(checkpoint),
                                             params["mixed_precision"])
        else:
            model = cnn_model.build_model(params["layers"], len(params["classes"]),
                                          params["image_size"], params["channels"], dropout,
                                          params["learning_rate"], seed=params["seed"],
                                          precision=params["mixed_precision"],
                                          **model_options(params, steps))
    # Multiworker: every worker made the same new model; the chief's checkpoint,
    # loaded outside the strategy, is sent to them all when training starts.
    resumed = load_run_model(checkpoint) if multiworker and checkpoint else None
    if checkpoint is None and params["verbose"]:
        model.summary()
    save = functools.partial(cnn_model.save_model, info=model_info(params))
    # After early stopping, so the weights it restores are the ones saved at the end.
    epoch_writer = checkpoints.EpochCheckpoint(folder, params["epochs"], save, rows, best)
    callbacks = [*training_callbacks(params, folder), epoch_writer, *extra_callbacks]
    if multiworker:
        distribute.fit(setup, model, data, params, done, callbacks, start_from=resumed)
    else:
        cnn_model.train_model(model, train, validation, params["epochs"], data["weights"],
                              callbacks, params["verbose"], initial_epoch=done)
    save(model, folder / "model.keras")  # the final weights (early stopping's best)
    checkpoints.finish(folder, len(epoch_writer.rows), params["epochs"],
                       epoch_writer.best_val_loss)
    # Scored as saved: float32, and (multiworker) outside the strategy.
    return (cnn_model.load_model(folder / "model.keras") if multiworker
            else cnn_model.with_precision(model, "none"))


def score_split(model, images, labels, num_classes, batch_size):
    """Accuracy, loss, balanced accuracy and macro-F1 (with 95% intervals) of one split.

    Returns (scores dict, probabilities [N, classes]).
    """
    scored = evaluation.score_set(model, images, labels, num_classes, batch_size)
    matrix = report.confusion_matrix(labels, np.argmax(scored["probabilities"], axis=1),
                                     num_classes)
    scores = {"loss": scored["loss"], **report.summary_scores(matrix)}
    return scores, scored["probabilities"]


def record_evaluation(params, data, model, folder, title):
    """Evaluate one trained model and write its records into `folder`.

    Returns its metrics: {split: {"accuracy", "loss", "balanced_accuracy",
    "macro_f1", their 95% intervals, "images"}} for train, validation and test
    (the data's test split, else TEST_DIR's labelled images), plus per-class
    validation scores.
    metrics.json is written last, so a variant that has it is recorded.
    """
    classes, batch = params["classes"], params["batch_size"]
    sets = {"train": (data["train_images"], data["train_labels"]),
            "validation": (data["val_images"], data["val_labels"])}
    if data["test"] is not None:
        sets["test"] = data["test"]
    metrics, probabilities = {}, {}
    for split, (images, labels) in sets.items():  # Table 3's columns for this model
        metrics[split], probabilities[split] = score_split(model, images, labels,
                                                           len(classes), batch)
    if "test" in probabilities:  # kept so anyone can check the saved model predicts the same
        metrics["test_probabilities"] = probabilities["test"].tolist()

    # Per-class insight on validation: which classes fail, and as what.
    predicted = np.argmax(probabilities["validation"], axis=1)
    _, scores = evaluation.record_confusion(folder, classes, data["val_labels"], predicted)
    print(report.format_scores(classes, scores))

    history = runs.read_history(folder / "history.csv")
    metrics["epochs"] = len(history["epoch"])
    metrics["per_class"] = dict(zip(classes, scores))
    plots.plot_history(history, folder / "curves.png", title)
    runs.write_json(folder / "metrics.json", metrics)
    for split in report.SPLITS:
        if split in metrics:
            print(report.format_summary(split, metrics[split]))
    return metrics


def train_variant(params, data, folder, dropout, extra_callbacks=(), setup=None):
    """Train (or finish training) and record one model, with or without dropout."""
    setup = setup or {"kind": "none", "strategy": None, "replicas": 1}
    # BATCH_SIZE is one replica's; a step takes one from each (Keras splits the batch).
    num_classes = len(params["classes"])
    batch = distribute.global_batch(params["batch_size"], setup)
    title = f"{'With' if dropout else 'Without'} dropout"
    print(f"\n=== {title}: {folder}")
    train = cnn_data.make_dataset(data["train_images"], data["train_labels"], num_classes,
                                  batch, shuffle=True, seed=params["seed"])
    validation = cnn_data.make_dataset(data["val_images"], data["val_labels"], num_classes,
                                       batch)
    model = fit_or_reload(params, data, folder, dropout, train, validation, extra_callbacks,
                          setup)
    return record_evaluation(params, data, model, folder, title)


def run(params, extra_callbacks=()):
    """Train as `params` say and write the run folder. Returns its Path.

    With COMPARE both variants train on the same data and seed, each in its own
    subfolder, and the run folder gets Table 3 and the overlay figure.
    `extra_callbacks` are added to training (tests use them to interrupt a run).
    The devices and strategy come first, before TensorFlow starts; under
    --distribute=multiworker only the chief writes, and a worker that is not the
    chief follows it and returns None.
    """
    setup = distribute.start(params)
    if not setup["chief"]:
        return distribute.follow_chief(setup, worker_data, worker_model)
    with distribute.leading(setup):  # a chief that stops tells the workers
        return train_and_record(params, setup, extra_callbacks)


def worker_data(params):
    """A worker's data: the chief's parameters, this machine's files."""
    import tensorflow as tf

    if params["deterministic"]:
        tf.config.experimental.enable_op_determinism()
    return cnn_data.prepare_data(params, standin_dir=cnn_params.DATA_DIR)


def worker_model(params, dropout, data, setup):
    """A worker's new model: the one the chief builds (the same options and schedule)."""
    steps = -(-len(data["train_labels"]) // distribute.global_batch(params["batch_size"],
                                                                     setup))
    return cnn_model.build_model(params["layers"], len(params["classes"]), params["image_size"],
                                 params["channels"], dropout, params["learning_rate"],
                                 seed=params["seed"], precision=params["mixed_precision"],
                                 **model_options(params, steps))


def train_and_record(params, setup, extra_callbacks=()):
    """The chief's work: resolve the parameters, prepare the data, train each variant
    and write the run folder. Returns its Path."""
    import tensorflow as tf

    params, run_dir = resume_params(params) if params["resume"] else (params, None)
    check_before_work(params)
    if params["deterministic"]:
        tf.config.experimental.enable_op_determinism()
    data = cnn_data.prepare_data(params, standin_dir=cnn_params.DATA_DIR)
    params = {**params, "classes": data["classes"], "aliases": data["aliases"]}  # "auto" resolved
    distribute.share_start(setup, params, data)  # multiworker: the same on every worker
    if params["mixed_precision"] != "none":
        print(f"Mixed precision: {params['mixed_precision']} (weights, output and loss in "
              f"float32; the saved models are float32).")
    classes = data["classes"]
    cnn_data.print_class_table(classes, data["counts_before"], data["counts_after"],
                               data["weights"])
    if run_dir is None:  # the folder is made only once the data is known to be good
        tag = "compare" if params["compare"] else VARIANTS[params["dropout"]]
        run_dir = runs.new_run_dir(params["runs_dir"], tag)
        runs.write_json(run_dir / "params.json", params)
    write_data_records(run_dir, params, data, distribute.record(setup))
    print(f"Run folder: {run_dir}")

    variants = [False, True] if params["compare"] else [params["dropout"]]
    results = {}
    try:
        for dropout in variants:
            folder = run_dir / VARIANTS[dropout] if params["compare"] else run_dir
            folder.mkdir(exist_ok=True)
            if (folder / "metrics.json").is_file():  # recorded before a resume
                state = runs.read_state(folder)
                if state is not None:
                    checkpoints.check_files(folder, state)
                results[VARIANTS[dropout]] = runs.read_json(folder / "metrics.json", "metrics")
                continue
            results[VARIANTS[dropout]] = train_variant(params, data, folder, dropout,
                                                       extra_callbacks, setup)
    except KeyboardInterrupt:
        print(f"\nInterrupted. The finished epochs are saved in {run_dir}; continue with "
              f"python cnn_run.py --resume={run_dir}")
        raise
    report.write_table3(run_dir, results)
    if params["compare"]:
        plots.plot_overlay({name: runs.read_history(run_dir / name / "history.csv")
                            for name in results}, run_dir / "overlay.png")
    print(f"\nTable 3 (accuracy and loss; test = {data['test_source']}):\n"
          + (run_dir / "table3.md").read_text())
    runs.mark_latest(run_dir.parent, run_dir)  # where the run lives, even when resumed
    print(f"Saved {run_dir}")
    return run_dir


def main(argv=None):
    """`python cnn_run.py [CONFIG.py] [--name=value ...]`; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        params, _ = config.parse_args(argv, config.defaults(cnn_params), positional=False)
        allowed = {f"--{name}" for name in ("resume", "runs_dir", *RUNS_ON)}
        given = [arg.split("=")[0] for arg in argv if arg.split("=")[0] not in allowed]
        if params["resume"] and given:
            raise config.ConfigError(f"--resume goes on with the run's own saved parameters, so "
                                     f"{', '.join(given)} would be ignored: give only --resume "
                                     f"(and --runs_dir, --device, --distribute, --cpu_devices).")
        run(params)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # the disk: permissions, space, a path that vanished
        print(f"error: {os_error_sentence(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
