"""Train the report's CNN: parameters, data (Table 1, Equation 1), model (Table 2),
training, records (Table 3, Figures 1 and 2).

Usage:  python cnn_run.py [configs/NAME.py] [--name=value ...]
        e.g. python cnn_run.py --epochs=5 --dropout=False --data_dir=/data/QIDER

        python cnn_run.py --compare=True        (both report variants: Table 3)
        python cnn_run.py --resume=runs/NAME    (continue an interrupted run)
        python cnn_run.py --distribute=mirrored (every local GPU; docs/scale.md)

Any parameter of cnn_params.py can be overridden by its lower-case name. Each run
writes a new folder under RUNS_DIR (docs/runs.md); nothing earlier is overwritten.

Offers (for tests and notebooks), in call order:
  run(params, extra_callbacks) -> Path of the run folder written (None on a worker
                                  of a cluster that is not the chief)
    check_before_work(params)  raises a UserError for a bad value, path or layer table
    start_from(params, explicit, run_dir) -> (params, Source) of INIT_FROM, checked before
                                  the data (and, on a resume, against what the run started from)
    build(params, dropout, steps_per_epoch, ...) -> the compiled model of Table 2 (or
                                  the saved model INIT_FROM names, with a new head)
    train_variant(params, data, folder, dropout, ...) -> ({split: Scores}, history rows)
  (resume_params, compile_options, model_info and RUNS_ON: cnnlib/run_params.py)
  main(argv)
"""

import sys

if __name__ == "__main__":  # first, before TensorFlow loads: a quiet start
    from cnnlib import interrupt, quiet

    interrupt.install()  # SIGTERM ends it as Ctrl-C does, within seconds
    quiet.start()

from pathlib import Path  # noqa: E402

import cnn_data  # noqa: E402
import cnn_model  # noqa: E402
import cnn_params  # noqa: E402
from cnnlib import cluster, config, finetune, interrupt, records, runs  # noqa: E402
from cnnlib.errors import UserError, os_error_sentence  # noqa: E402
from cnnlib.run_params import RUNS_ON, compile_options, model_info, resume_params  # noqa: E402

VARIANTS = {False: "no_dropout", True: "dropout"}  # the report's two models


def run(params, extra_callbacks=(), explicit=()):
    """Train as `params` say and write the run folder. Returns its Path.

    With COMPARE both variants train on the same data and seed, each in its own
    subfolder, and the run folder gets Table 3 and the overlay figure.
    `extra_callbacks` are added to training (tests use them to interrupt a run).
    Under --distribute=multiworker every worker runs this same code; only the
    chief resolves --resume and writes, and a worker returns None. With INIT_FROM
    the model starts from a saved one; `explicit` names the parameters the user set,
    which must not contradict it. The run folder is locked while it trains.
    """
    try:
        return _run(params, extra_callbacks, explicit)
    finally:
        runs.release_runs()  # another process may now resume the run


def _run(params, extra_callbacks, explicit):
    """run()'s work, while this process holds its run folder."""
    import tensorflow as tf

    interrupt.resume_hint(None)  # until this run has a folder to resume
    # Parameters. The devices come first, before TensorFlow starts.
    setup = cluster.start(params["distribute"], params["device"], params["cpu_devices"])
    with cluster.leading(setup):
        run_dir = None
        if setup.chief:
            params, run_dir = resume_params(params) if params["resume"] else (params, None)
            # A resumed run (and a worker, below) keeps the classes it resolved already.
            params, source = start_from(params, {"classes"} if run_dir else set(explicit),
                                        run_dir)
            check_before_work(params)
        params = cluster.from_chief(setup, params)  # every worker trains the chief's
        if not setup.chief:
            source = start_from(params, {"classes"})[1]
        if params["deterministic"]:
            tf.config.experimental.enable_op_determinism()

        # Data: the files, Table 1's balancing and Equation 1's weights.
        data = cnn_data.prepare_data(params, standin_dir=cnn_params.DATA_DIR)
        cluster.same_data(setup, cluster.data_fingerprint(
            data.train_images, data.train_labels, data.val_images, data.val_labels))
        cluster.check_batches(setup, params["batch_size"], {
            "training": len(data.train_labels), "validation": len(data.val_labels)})
        params = {**params, "classes": data.classes, "aliases": data.aliases}  # "auto" resolved
        class_map = finetune.map_classes(source.classes, data.classes,
                                         data.aliases) if source else None
        if params["mixed_precision"] != "none":
            print(f"Mixed precision: {params['mixed_precision']} (weights, output and loss in "
                  f"float32; the saved models are float32).")
        cnn_data.print_class_table(data.classes, data.counts_before, data.counts_after,
                                   data.weights)
        if setup.chief:
            if run_dir is None:  # made only once the data is known to be good
                tag = "compare" if params["compare"] else VARIANTS[params["dropout"]]
                run_dir = runs.new_run_dir(params["runs_dir"], tag)
                runs.write_json(run_dir / "params.json", params)
            records.write_data_records(run_dir, params["seed"], params["data_dir"], data,
                                       cluster.describe_setup(setup))
            if source:  # what the run started from
                finetune.record_start(run_dir / "init_from.json", source, class_map,
                                      params["freeze_epochs"])
            print(f"Run folder: {run_dir}")
            interrupt.resume_hint(f"the finished epochs are kept in {run_dir}; resume with "
                                  f"`python cnn_run.py --resume={run_dir}`")

        # The model (Table 2) and its training, for each variant.
        results, histories = {}, {}
        for dropout in [False, True] if params["compare"] else [params["dropout"]]:
            name = VARIANTS[dropout]
            folder = Path(run_dir or params["runs_dir"])
            folder = folder / name if params["compare"] else folder
            recorded = setup.chief and (folder / "metrics.json").is_file()
            if cluster.from_chief(setup, recorded):  # recorded before a resume
                if setup.chief:
                    results[name], histories[name] = records.read_variant(folder)
                continue
            if setup.chief:
                folder.mkdir(exist_ok=True)
            results[name], histories[name] = train_variant(
                params, data, folder, dropout, setup, extra_callbacks,
                (source.model, class_map) if source else None)
        if not setup.chief:
            return None

        # Records: Table 3 and, for two models, the overlay of their curves.
        records.write_run(run_dir, results, histories, data.test_source)
        runs.mark_latest(run_dir.parent, run_dir)  # where the run lives, even when resumed
        print(f"Saved {run_dir}")
        return run_dir


def check_before_work(params):
    """Raise a UserError for anything that would fail later: values, paths, layer table.

    Runs before any data is loaded, so a mistake costs seconds, not a data load.
    """
    config.check_values(params)
    runs.check_folders(params["runs_dir"], params["data_dir"], params["cache_dir"],
                       params["test_dir"])
    classes = params["classes"]
    # Built once, untrained: a layer table that leaves no pixels fails now.
    build(params, params["dropout"], 1, len(classes) if classes != [cnn_data.AUTO] else 2)


def start_from(params, explicit, run_dir=None):
    """(params, finetune.Source or None) of INIT_FROM, checked against what the user set
    (`explicit`) before the data and, on a resume, against what `run_dir` started from."""
    if not params["init_from"]:
        return params, None
    source, resolved = finetune.start_from(
        params["init_from"], {k: params[k] for k in finetune.RESOLVED}, explicit,
        cnn_model.load_model, cnn_model.model_info, cnn_model.build_model)
    if run_dir:
        finetune.check_same_start(run_dir / "init_from.json", source)
    return {**params, **resolved}, source


def build(params, dropout, steps_per_epoch, num_classes=None, seed=None, setup=None,
          start=None):
    """The compiled model of Table 2 that `params` describe: the one function that builds
    it, for the check before work, training, and every worker of a cluster.

    `steps_per_epoch` sets the cosine schedule's length; `setup` the strategy whose
    replicas hold the variables (None: one device). `start` (a saved model and the
    finetune.ClassMap of the data's classes) gives its layers and weights instead of
    the layer table's random ones.
    """
    options = compile_options(params, steps_per_epoch)
    with cluster.scope(setup):
        if start is not None:
            model = finetune.transfer(*start, seed=seed)
            cnn_model.compile_model(model, params["learning_rate"], **options)
            model = cnn_model.with_precision(model, params["mixed_precision"])
            return finetune.reseed_random_layers(model, seed)  # after any copy of it
        return cnn_model.build_model(
            params["layers"], num_classes or len(params["classes"]), params["image_size"],
            params["channels"], dropout, params["learning_rate"], seed=seed,
            precision=params["mixed_precision"],
            augmentation={name: params[f"aug_{name}"] for name in (
                "flip", "rotation", "zoom", "translation", "contrast", "brightness")},
            **options)


def train_variant(params, data, folder, dropout, setup=None, extra_callbacks=(), start=None):
    """Train (or finish training) one model, with or without dropout, and record it.

    Returns ({split: metrics.Scores} of Table 3's columns, history rows); a worker
    of a cluster that is not the chief trains in step and gets (None, []).
    """
    num_classes = len(data.classes)
    # BATCH_SIZE is one replica's; a step takes one from each (Keras splits the batch).
    batch = cluster.global_batch(params["batch_size"], setup)
    # SEED drew the split; TRAINING_SEED, when set, draws the weights and data order alone.
    seed = params["seed"] if params["training_seed"] < 0 else params["training_seed"]
    title = f"{'With' if dropout else 'Without'} dropout"
    print(f"\n=== {title}: {folder}")
    train = cnn_data.make_dataset(data.train_images, data.train_labels, num_classes, batch,
                                  shuffle=True, seed=seed)
    validation = cnn_data.make_dataset(data.val_images, data.val_labels, num_classes, batch)
    steps = -(-len(data.train_labels) // batch)
    model = build(params, dropout, steps, seed=seed, setup=setup, start=start)
    if start is not None and params["freeze_epochs"] and runs.read_state(folder) is None:
        finetune.train_head(model, train, validation, params["freeze_epochs"],
                            lambda m: cnn_model.compile_model(
                                m, params["learning_rate"], precision=params["mixed_precision"],
                                **compile_options(params, steps)), params["verbose"])
    model, history = cnn_model.fit_or_reload(
        model, folder, train, validation, params["epochs"], data.weights,
        cnn_model.training_callbacks(params["early_stopping"], params["lr_schedule"] == "plateau",
                                     params["learning_rate"],
                                     folder / "tensorboard" if params["tensorboard"] else None),
        extra_callbacks, params["verbose"],
        model_info(params), params["mixed_precision"], setup, data, params["batch_size"], seed)
    if model is None:  # a worker: the chief records
        return None, []
    scores = records.score_variant(folder, title, model, data, history, params["batch_size"])
    return scores, history


def main(argv=None):
    """`python cnn_run.py [CONFIG.py] [--name=value ...]`; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        params, _ = config.parse_args(argv, config.defaults(cnn_params), positional=False,
                                      usage=__doc__)
        allowed = {f"--{name}" for name in ("resume", "runs_dir", *RUNS_ON)}
        given = [arg.split("=")[0] for arg in config.split_options(argv)[0]
                 if arg.split("=")[0] not in allowed]
        if params["resume"] and given:
            raise config.ConfigError(f"--resume goes on with the run's own saved parameters, so "
                                     f"{', '.join(given)} would be ignored: give only --resume "
                                     f"(and --runs_dir, --device, --distribute, --cpu_devices).")
        if params["resume"] and params["distribute"] != "multiworker":
            runs.hold_run(runs.find_run(params["resume"], params["runs_dir"]))  # busy? stop now
        run(params, explicit=config.explicit_names(argv, params.get("config_values")))
    except UserError as error:
        runs.remove_empty_made()  # an output folder never written to
        if interrupt.pending():  # a library made the Ctrl-C its own error
            return interrupt.report(interrupt.pending())
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # the disk: permissions, space, a path that vanished
        runs.remove_empty_made()
        if interrupt.pending():
            return interrupt.report(interrupt.pending())
        print(f"error: {os_error_sentence(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as error:  # Ctrl-C or SIGTERM: 130 or 143, and how to resume
        runs.remove_empty_made()  # a run folder made, nothing in it yet
        return interrupt.report(error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
