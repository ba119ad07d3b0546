"""Train the report's CNN: load and balance the data, train, save a run, plot.

Usage:  python cnn_run.py [--name=value ...]
        e.g. python cnn_run.py --epochs=5 --dropout=False --data_dir=/data/QIDER

Any parameter of cnn_params.py can be overridden by its lower-case name. Each run
writes a new folder under RUNS_DIR with model.keras (last epoch), best.keras
(lowest validation loss), params.json, history.csv, metrics.json and curves.png,
and records itself as the latest run for cnn_eval.py.

Offers (for tests and notebooks):
  prepare_data(params) -> dict of uint8 arrays, class counts and weights
  run(params)          -> Path of the run folder written
  main(argv)
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out

import numpy as np  # noqa: E402

import cnn_config  # noqa: E402
import cnn_data  # noqa: E402
import cnn_model  # noqa: E402
import cnn_params  # noqa: E402
import cnn_plots  # noqa: E402
import cnn_runs  # noqa: E402


def prepare_data(params):
    """Load training and validation images, balance the training set, weigh classes.

    Returns a dict: train_images/val_images (uint8 [N, size, size, channels]),
    train_labels/val_labels (int64 [N]), counts_before/counts_after (per class),
    weights ({class: weight} or None), skipped ([(path, reason)]), standin (bool).
    """
    data_dir = params["data_dir"]
    if data_dir == cnn_params.DATA_DIR:  # only the default folder may be generated
        cnn_data.ensure_standin(data_dir, params["classes"],
                                params["standin_train_counts"],
                                params["standin_validation_total"], params["seed"])
    elif not os.path.isdir(data_dir):
        raise cnn_data.DataError(f"Failed to find the data folder {data_dir}: check "
                                 f"--data_dir (it must hold train/ and validation/).")
    standin = cnn_data.is_standin(data_dir)
    if standin:
        print(f"Data: {data_dir} is the synthetic stand-in for QIDER (drawn faces, "
              f"not QIDER). Point --data_dir at QIDER to use the real data.")
    lookup = cnn_data.class_lookup(params["classes"], params["aliases"])
    num_classes = len(params["classes"])
    size, channels = params["image_size"], params["channels"]

    train_images, train_labels, skipped = cnn_data.load_split(
        data_dir, "train", lookup, size, channels)
    val_images, val_labels, val_skipped = cnn_data.load_split(
        data_dir, "validation", lookup, size, channels)
    before = cnn_data.class_counts(train_labels, num_classes)
    if params["augment"]:
        train_images, train_labels = cnn_data.augment_dataset(
            train_images, train_labels, num_classes, params["noise_sigma"], params["seed"])
    after = cnn_data.class_counts(train_labels, num_classes)
    weights = cnn_data.class_weights(after) if params["class_weights"] else None
    return {"train_images": train_images, "train_labels": train_labels,
            "val_images": val_images, "val_labels": val_labels,
            "counts_before": before, "counts_after": after, "weights": weights,
            "skipped": skipped + val_skipped, "standin": standin}


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


def run(params):
    """Train one model as `params` say and write its run folder. Returns its Path."""
    import keras

    data = prepare_data(params)
    classes = params["classes"]
    num_classes = len(classes)
    print_class_table(classes, data["counts_before"], data["counts_after"], data["weights"])
    if data["skipped"]:
        print(f"Skipped {len(data['skipped'])} unreadable file(s); see skipped.txt in the run folder.")

    variant = "dropout" if params["dropout"] else "no_dropout"
    run_dir = cnn_runs.new_run_dir(params["runs_dir"], variant)
    cnn_runs.write_json(run_dir / "params.json", params)
    if data["skipped"]:
        (run_dir / "skipped.txt").write_text(
            "".join(f"{path}\t{reason}\n" for path, reason in data["skipped"]))
    print(f"Run folder: {run_dir}")

    model = cnn_model.build_model(params["layers"], num_classes, params["image_size"],
                                  params["channels"], params["dropout"],
                                  params["learning_rate"], seed=params["seed"])
    if params["verbose"]:
        model.summary()
    batch = params["batch_size"]
    train = cnn_data.make_dataset(data["train_images"], data["train_labels"], num_classes,
                                  batch, shuffle=True, seed=params["seed"])
    validation = cnn_data.make_dataset(data["val_images"], data["val_labels"],
                                       num_classes, batch)
    callbacks = [
        cnn_runs.history_logger(run_dir / "history.csv"),
        keras.callbacks.ModelCheckpoint(run_dir / "best.keras", monitor="val_loss",
                                        save_best_only=True),
    ]
    try:
        history = cnn_model.train_model(model, train, validation, params["epochs"],
                                        data["weights"], callbacks, params["verbose"])
        epochs_done = len(history.history.get("loss", []))
    except KeyboardInterrupt:
        print("\nInterrupted: saving what was trained so far.")
        epochs_done = None
    cnn_model.save_model(model, run_dir / "model.keras")

    # Table 3's columns for this model: train, validation and the test images.
    metrics = {"train": cnn_model.evaluate_model(model, train),
               "validation": cnn_model.evaluate_model(model, validation)}
    test = load_test_set(params["test_dir"], cnn_data.class_lookup(classes, params["aliases"]),
                         params["image_size"], params["channels"])
    if test is not None:
        metrics["test"] = cnn_model.evaluate_model(
            model, cnn_data.make_dataset(*test, num_classes, batch))
    metrics["epochs"] = epochs_done
    metrics["standin"] = data["standin"]
    cnn_runs.write_json(run_dir / "metrics.json", metrics)

    history_path = run_dir / "history.csv"
    if history_path.exists():
        title = f"{'With' if params['dropout'] else 'Without'} dropout"
        cnn_plots.plot_history(cnn_runs.read_history(history_path),
                               run_dir / "curves.png", title)
    cnn_runs.mark_latest(params["runs_dir"], run_dir)
    for split in ("train", "validation", "test"):
        if split in metrics:
            print(f"{split:<10} accuracy {metrics[split]['accuracy']:.3f}  "
                  f"loss {metrics[split]['loss']:.3f}")
    print(f"Saved {run_dir}")
    return run_dir


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        params, extra = cnn_config.parse_args(argv, cnn_config.defaults(cnn_params))
        if extra:
            raise cnn_config.ConfigError(f"Unexpected argument {extra[0]!r}: "
                                         f"parameters are written --name=value.")
        run(params)
    except (cnn_config.ConfigError, cnn_data.DataError, cnn_model.ModelError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
