"""Train the report's CNN: load and balance the data, train, save a run, plot.

Usage:  python cnn_run.py [--name=value ...]
        e.g. python cnn_run.py --epochs=5 --dropout=False --data_dir=/data/QIDER

        python cnn_run.py --compare=True        (both report variants: Table 3)
        python cnn_run.py --resume=runs/NAME    (continue an interrupted run)

Any parameter of cnn_params.py can be overridden by its lower-case name. Each run
writes a new folder under RUNS_DIR and records itself as the latest run for
cnn_eval.py; nothing earlier is overwritten. A model's folder holds model.keras
(last finished epoch), best.keras (lowest validation loss), history.csv,
curves.png, confusion.png, confusion.csv, per_class.csv and metrics.json; the run
folder adds params.json, run_info.json (seed, library versions, data summary) and
table3.md/.csv. With --compare=True the two models live in no_dropout/ and
dropout/, and overlay.png compares their validation curves.

Offers (for tests and notebooks), in call order:
  prepare_data(params)        -> dict of uint8 arrays, class counts and weights
  print_class_table(...)      -> prints the data's Table 1 and Equation 1 weights
  load_test_set(...)          -> labelled test images, or None
  resume_params(params)       -> (saved params, run folder) of --resume
  write_data_records(...)     -> run_info.json, skipped.txt, unlabeled.txt
  train_variant(params, ...)  -> metrics of one trained model
  run(params)                 -> Path of the run folder written
  main(argv)
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out

import numpy as np  # noqa: E402

import cnn_cache  # noqa: E402
import cnn_config  # noqa: E402
import cnn_data  # noqa: E402
import cnn_model  # noqa: E402
import cnn_params  # noqa: E402
import cnn_plots  # noqa: E402
import cnn_report  # noqa: E402
import cnn_runs  # noqa: E402


def find_data(params):
    """cnn_data.find_dataset with the data parameters of `params`."""
    return cnn_data.find_dataset(
        params["data_dir"], params["classes"], params["aliases"],
        labels_file=params["labels_file"], image_column=params["image_column"],
        label_column=params["label_column"], images_dir=params["images_dir"],
        validation_fraction=params["validation_fraction"], seed=params["seed"])


def prepare_data(params):
    """Find, load and balance the data; weigh the classes.

    Returns a dict: classes (the effective list: "auto" resolved), aliases,
    train_images/val_images (uint8 [N, size, size, channels]),
    train_labels/val_labels (int64 [N]), counts_before/counts_after (per class),
    weights ({class: weight} or None), skipped ([(path, reason)]: unreadable or
    excluded files), unlabeled ([Path]), layout (str) and standin (bool).
    Raises DataError for data that cannot be trained on, and with STRICT for any
    file that would be skipped.
    """
    data_dir = params["data_dir"]
    if data_dir == cnn_params.DATA_DIR:  # only the default folder may be generated
        cnn_data.ensure_standin(data_dir, cnn_params.CLASSES,
                                params["standin_train_counts"],
                                params["standin_validation_total"], params["seed"])
    standin = cnn_data.is_standin(data_dir)
    if standin:
        print(f"Data: {data_dir} is the synthetic stand-in for QIDER (drawn faces, "
              f"not QIDER). Point --data_dir at QIDER to use the real data.")
    found = find_data(params)
    classes = found["classes"]
    num_classes = len(classes)
    size, channels = params["image_size"], params["channels"]
    print(f"Data: {data_dir} ({found['layout']}), {num_classes} classes, "
          f"{len(found['train'][0])} training and {len(found['validation'][0])} "
          f"validation images listed.")

    skipped = list(found["excluded"])
    loaded = {}
    for split in ("train", "validation"):
        paths, labels = found[split]
        if params["cache_dir"]:
            images, kept, unreadable = cnn_cache.load_cached(
                paths, size, channels, params["cache_dir"], cnn_data.load_images)
        else:
            images, kept, unreadable = cnn_data.load_images(paths, size, channels)
        skipped += unreadable
        loaded[split] = (images, labels[kept])
    if params["strict"] and skipped:
        raise cnn_data.DataError(f"--strict=True and {len(skipped)} file(s) cannot be used, "
                                 f"the first: {skipped[0][1].rstrip('.')}; fix or remove them, or run "
                                 f"without --strict to skip them.")
    train_images, train_labels = loaded["train"]
    val_images, val_labels = loaded["validation"]
    if len(val_labels) == 0:
        raise cnn_data.DataError(f"{data_dir} leaves no validation images: add some, or "
                                 f"raise --validation_fraction.")
    before = cnn_data.class_counts(train_labels, num_classes)
    if not before.all():
        empty = ", ".join(classes[c] for c in np.flatnonzero(before == 0))
        raise cnn_data.DataError(f"No readable training image is left for {empty} in "
                                 f"{data_dir}: see the skipped files above.")
    if params["augment"]:
        train_images, train_labels = cnn_data.augment_dataset(
            train_images, train_labels, num_classes, params["noise_sigma"], params["seed"])
    after = cnn_data.class_counts(train_labels, num_classes)
    weights = cnn_data.class_weights(after) if params["class_weights"] else None
    return {"classes": classes, "aliases": found["aliases"],
            "train_images": train_images, "train_labels": train_labels,
            "val_images": val_images, "val_labels": val_labels,
            "counts_before": before, "counts_after": after, "weights": weights,
            "skipped": skipped, "unlabeled": found["unlabeled"],
            "layout": found["layout"], "standin": standin}


def print_class_table(classes, before, after, weights):
    """Print the data's own Table 1 (counts before/after augmentation) and weights."""
    width = max(8, *(len(name) for name in classes))
    print(f"{'class':<{width}} {'before':>7} {'after':>7} {'weight':>7}")
    for index, name in enumerate(classes):
        weight = f"{weights[index]:.4f}" if weights else "-"
        print(f"{name:<{width}} {before[index]:>7} {after[index]:>7} {weight:>7}")
    print(f"{'total':<{width}} {before.sum():>7} {after.sum():>7}")


def load_test_set(test_dir, lookup, size, channels):
    """Return (images, labels) of the labelled images in `test_dir`, or None if absent."""
    if not test_dir or not os.path.isdir(test_dir):
        return None
    paths = cnn_data.list_images([test_dir])
    labels = [cnn_data.label_from_filename(p, lookup) for p in paths]
    labelled = [p for p, label in zip(paths, labels) if label is not None]
    if not labelled:
        return None
    images, kept, _ = cnn_data.load_images(labelled, size, channels)
    return images, np.asarray([label for label in labels if label is not None])[kept]


VARIANTS = {False: "no_dropout", True: "dropout"}  # the report's two models


def training_callbacks(params, variant_dir):
    """Return the callbacks of one variant's training, all writing into `variant_dir`.

    history.csv gets a row per epoch, model.keras is the last finished epoch,
    best.keras the lowest validation loss so far, and backup/ lets --resume
    continue with weights and optimizer state.
    """
    import keras

    history_path = variant_dir / "history.csv"
    best_so_far = None
    if history_path.exists():  # a resumed run must not forget its best epoch
        best_so_far = min(cnn_runs.read_history(history_path).get("val_loss", [np.inf]))
    callbacks = [
        cnn_runs.history_logger(history_path),
        keras.callbacks.ModelCheckpoint(variant_dir / "model.keras"),
        keras.callbacks.ModelCheckpoint(variant_dir / "best.keras", monitor="val_loss",
                                        save_best_only=True,
                                        initial_value_threshold=best_so_far),
        keras.callbacks.BackupAndRestore(str(variant_dir / "backup")),
    ]
    if params["tensorboard"]:
        callbacks.append(keras.callbacks.TensorBoard(str(variant_dir / "tensorboard")))
    if params["early_stopping"] > 0:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=params["early_stopping"]))
    return callbacks


def train_variant(params, data, variant_dir, dropout, extra_callbacks=()):
    """Train, evaluate and record one model (with or without dropout) in `variant_dir`.

    Returns its metrics: {split: {"accuracy", "loss"}} for train, validation and
    (when TEST_DIR has labelled images) test, plus per-class validation scores.
    metrics.json is written last, so a variant that has it is finished.
    """
    classes = params["classes"]
    num_classes, batch = len(classes), params["batch_size"]
    print(f"\n=== {'With' if dropout else 'Without'} dropout: {variant_dir}")
    train = cnn_data.make_dataset(data["train_images"], data["train_labels"], num_classes,
                                  batch, shuffle=True, seed=params["seed"])
    validation = cnn_data.make_dataset(data["val_images"], data["val_labels"],
                                       num_classes, batch)
    # Keras deletes backup/ when training ends, so epochs on record without it mean
    # the run stopped after training but before its records: keep the trained model.
    trained = ((variant_dir / "history.csv").exists() and (variant_dir / "model.keras").exists()
               and not (variant_dir / "backup").exists())
    if trained:
        model = cnn_model.load_model(variant_dir / "model.keras")
    else:
        model = cnn_model.build_model(params["layers"], num_classes, params["image_size"],
                                      params["channels"], dropout, params["learning_rate"],
                                      seed=params["seed"])
        if params["verbose"]:
            model.summary()
        callbacks = training_callbacks(params, variant_dir) + list(extra_callbacks)
        cnn_model.train_model(model, train, validation, params["epochs"], data["weights"],
                              callbacks, params["verbose"])

    # Table 3's columns for this model: train, validation and the test images.
    metrics = {"train": cnn_model.evaluate_model(model, train),
               "validation": cnn_model.evaluate_model(model, validation)}
    if data["test"] is not None:
        test_images, test_labels = data["test"]
        metrics["test"] = cnn_model.evaluate_model(
            model, cnn_data.make_dataset(test_images, test_labels, num_classes, batch))
        # Kept so anyone can check that the saved model predicts the same.
        metrics["test_probabilities"] = model.predict(test_images, verbose=0).tolist()

    # Per-class insight on validation: which classes fail, and as what.
    predicted = np.argmax(model.predict(validation, verbose=0), axis=1)
    matrix = cnn_report.confusion_matrix(data["val_labels"], predicted, num_classes)
    scores = cnn_report.per_class_scores(matrix)
    cnn_report.write_scores(variant_dir / "per_class.csv", classes, scores)
    np.savetxt(variant_dir / "confusion.csv", matrix, fmt="%d", delimiter=",",
               header=",".join(classes), comments="")
    cnn_plots.plot_confusion(matrix, classes, variant_dir / "confusion.png")
    print(cnn_report.format_scores(classes, scores))

    history = cnn_runs.read_history(variant_dir / "history.csv")
    metrics["epochs"] = len(history["epoch"])
    metrics["per_class"] = dict(zip(classes, scores))
    title = f"{'With' if dropout else 'Without'} dropout"
    cnn_plots.plot_history(history, variant_dir / "curves.png", title)
    cnn_runs.write_json(variant_dir / "metrics.json", metrics)
    for split in cnn_report.SPLITS:
        if split in metrics:
            print(f"{split:<10} accuracy {metrics[split]['accuracy']:.3f}  "
                  f"loss {metrics[split]['loss']:.3f}")
    return metrics


def resume_params(params):
    """Return (params, run_dir) of the run --resume names: it goes on as it started."""
    run_dir = cnn_runs.find_run(params["resume"], params["runs_dir"])
    saved = cnn_runs.read_json(run_dir / "params.json")
    print(f"Resuming {run_dir} from its last finished epoch, with the parameters saved "
          f"in its params.json.")
    # Only where runs live may differ from the saved parameters.
    return {**params, **saved, "resume": str(run_dir), "runs_dir": params["runs_dir"]}, run_dir


def write_data_records(run_dir, params, data):
    """Write run_info.json (seed, libraries, data summary), skipped.txt and unlabeled.txt."""
    classes = data["classes"]
    cnn_runs.write_json(run_dir / "run_info.json", {
        "seed": params["seed"], "libraries": cnn_runs.library_versions(),
        "data": {"data_dir": params["data_dir"], "layout": data["layout"],
                 "standin": data["standin"], "classes": classes,
                 "train_before": data["counts_before"].tolist(),
                 "train_after": data["counts_after"].tolist(),
                 "validation": cnn_data.class_counts(data["val_labels"], len(classes)).tolist(),
                 "class_weights": data["weights"], "skipped": len(data["skipped"]),
                 "unlabeled": len(data["unlabeled"])}})
    if data["skipped"]:
        (run_dir / "skipped.txt").write_text(  # absolute paths: usable from any folder
            "".join(f"{Path(path).resolve()}\t{reason}\n" for path, reason in data["skipped"]))
        print(f"Skipped or excluded {len(data['skipped'])} file(s), listed with the reason "
              f"in {run_dir / 'skipped.txt'}:")
        for path, reason in data["skipped"][:10]:
            print(f"  {path}: {reason}")
    if data["unlabeled"]:
        (run_dir / "unlabeled.txt").write_text(
            "".join(f"{Path(p).resolve()}\n" for p in data["unlabeled"]))
        print(f"{len(data['unlabeled'])} image(s) have no label and were not used (score them "
              f"with cnn_eval.py); listed in {run_dir / 'unlabeled.txt'}.")


def check_model(params):
    """Build the model once, untrained, so a bad layer table is an error up front."""
    classes = params["classes"]
    cnn_model.build_model(params["layers"], len(classes) if classes != [cnn_data.AUTO] else 2,
                          params["image_size"], params["channels"], params["dropout"],
                          params["learning_rate"])


def run(params, extra_callbacks=()):
    """Train as `params` say and write the run folder. Returns its Path.

    With COMPARE both variants train on the same data and seed, each in its own
    subfolder, and the run folder gets Table 3 and the overlay figure.
    `extra_callbacks` are added to training (tests use them to interrupt a run).
    """
    import tensorflow as tf

    params, run_dir = resume_params(params) if params["resume"] else (params, None)
    check_model(params)  # a bad layer table fails now, not after loading the data
    if params["deterministic"]:
        tf.config.experimental.enable_op_determinism()
    data = prepare_data(params)
    params = {**params, "classes": data["classes"], "aliases": data["aliases"]}  # "auto" resolved
    classes = data["classes"]
    print_class_table(classes, data["counts_before"], data["counts_after"], data["weights"])
    data["test"] = load_test_set(params["test_dir"], cnn_data.class_lookup(
        classes, params["aliases"]), params["image_size"], params["channels"])
    if run_dir is None:  # the folder is made only once the data is known to be good
        tag = "compare" if params["compare"] else VARIANTS[params["dropout"]]
        run_dir = cnn_runs.new_run_dir(params["runs_dir"], tag)
        cnn_runs.write_json(run_dir / "params.json", params)
    write_data_records(run_dir, params, data)
    print(f"Run folder: {run_dir}")

    variants = [False, True] if params["compare"] else [params["dropout"]]
    results = {}
    try:
        for dropout in variants:
            variant_dir = run_dir / VARIANTS[dropout] if params["compare"] else run_dir
            variant_dir.mkdir(exist_ok=True)
            if (variant_dir / "metrics.json").is_file():  # finished before a resume
                results[VARIANTS[dropout]] = cnn_runs.read_json(variant_dir / "metrics.json")
                continue
            results[VARIANTS[dropout]] = train_variant(params, data, variant_dir, dropout,
                                                       extra_callbacks)
    except KeyboardInterrupt:
        print(f"\nInterrupted. The finished epochs are saved in {run_dir}; continue with "
              f"python cnn_run.py --resume={run_dir}")
        raise
    cnn_report.write_table3(run_dir, results)
    if params["compare"]:
        cnn_plots.plot_overlay({name: cnn_runs.read_history(run_dir / name / "history.csv")
                                for name in results}, run_dir / "overlay.png")
    print("\nTable 3 (accuracy and loss; test = the labelled images in "
          f"{params['test_dir']}):\n" + (run_dir / "table3.md").read_text())
    cnn_runs.mark_latest(params["runs_dir"], run_dir)
    print(f"Saved {run_dir}")
    return run_dir


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        params, _ = cnn_config.parse_args(argv, cnn_config.defaults(cnn_params),
                                          positional=False)
        run(params)
    except (cnn_config.ConfigError, cnn_data.DataError, cnn_model.ModelError,
            FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
