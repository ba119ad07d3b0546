"""Training on several devices and machines: the strategy, who writes, and the loop
that trains across machines.

Offers, in the order a run calls them:
  start(params)                 -> the run's setup (a dict: strategy, kind, chief,
                                   worker, workers, replicas, devices); call it before
                                   TensorFlow's first operation
  read_tf_config(text)          -> (cluster, task) of a TF_CONFIG, checked
  scope(setup)                  -> the strategy's scope (nothing for one device)
  global_batch(batch_size, setup) -> BATCH_SIZE x replicas: the batch of one step
  leading(setup)                -> the chief's context: an error tells the workers to stop
  share_start(setup, params, data) (chief) / follow_chief(setup, prepare, build) (worker)
                                   the chief's parameters and data check; a worker's run
  announce_training(setup, dropout, initial_epoch)
                                   (chief) the workers build the variant and join in
  fit(setup, model, data, params, initial_epoch, callbacks)
                                -> history rows: the training loop of "multiworker"
  fingerprint(model)            -> a short hash of the weights, equal on every worker

"none" is today's path: no strategy at all. "mirrored" is tf.distribute's
MirroredStrategy with Keras' own model.fit. "multiworker" is
MultiWorkerMirroredStrategy with the loop below, not model.fit: in Keras 3.15
model.fit fails under it in multi-worker mode (keras-team/keras#20585; the README
says where). One engine, TensorFlow, runs every mode.

Under "multiworker" every worker runs the same command; the chief (task "chief",
or worker 0) resolves the parameters (and --resume), sends them to the others,
and alone writes the run folder, checkpoints and figures. Each step every replica
takes its own slice of the same shuffled global batch; gradients are summed
across replicas (Keras' optimizer all-reduces them), so every replica applies the
same update and the weights stay equal. The chief's messages travel as
all-reduces in which only replica 0 (the chief's) contributes.
"""

import contextlib
import hashlib
import json
import math
import os
import time

import numpy as np

from cnnlib import devices
from cnnlib.errors import ConfigError, DataError, RunError, UserError


# ---------------------------------------------------------------- setting up

def read_tf_config(text):
    """Return (cluster, task) of the TF_CONFIG JSON `text`; ConfigError if it is unusable."""
    example = ('{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
               '"task": {"type": "worker", "index": 0}}')
    if not text:
        raise ConfigError(f"--distribute=multiworker needs the cluster in the environment "
                          f"variable TF_CONFIG on every machine, e.g. TF_CONFIG='{example}' "
                          f"(index 1 on the second machine; see the README).")
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        kind, index = task["type"], int(task["index"])
        addresses = cluster[kind][index]
        if set(cluster) - {"chief", "worker"} or not isinstance(addresses, str):
            raise ValueError("only chief and worker tasks")
    except (ValueError, KeyError, TypeError, IndexError) as error:
        raise ConfigError(f"TF_CONFIG is not a usable cluster ({error}): write it as "
                          f"TF_CONFIG='{example}'.") from None
    return cluster, {"type": kind, "index": index}


def start(params):
    """Make the devices and the strategy `params` ask for; print and return the setup.

    Must run before TensorFlow's first operation (a strategy and logical devices
    can only be made then). Returns a dict: strategy (None for "none"), kind,
    chief (True when this process writes the run), worker and workers (index and
    count of the processes), replicas (devices in step), devices (described).
    Raises UserError for a GPU asked for but not usable, or a bad TF_CONFIG.
    """
    import tensorflow as tf

    kind = params["distribute"]
    setup = {"strategy": None, "kind": kind, "chief": True, "worker": 0, "workers": 1,
             "replicas": 1, "workers_wait": False}
    if kind == "multiworker":
        cluster, task = read_tf_config(os.environ.get("TF_CONFIG"))
        order = [(t, i) for t in ("chief", "worker") for i in range(len(cluster.get(t, [])))]
        setup.update(worker=order.index((task["type"], task["index"])), workers=len(order))
        setup["chief"] = setup["worker"] == 0
    names = devices.configure(params["device"], kind, params["cpu_devices"])
    if kind == "mirrored":
        setup["strategy"] = tf.distribute.MirroredStrategy(devices=names)
    elif kind == "multiworker":
        print(f"Worker {setup['worker']} of {setup['workers']}: waiting for every worker of "
              f"TF_CONFIG to connect...", flush=True)
        setup["strategy"] = tf.distribute.MultiWorkerMirroredStrategy()
        setup["workers_wait"] = True  # for the chief's first message
        names = list(setup["strategy"].extended.worker_devices)
    if setup["strategy"] is not None:
        setup["replicas"] = setup["strategy"].num_replicas_in_sync
    setup["devices"] = devices.describe(names)
    role = (f"worker {setup['worker']} of {setup['workers']}"
            f"{' (chief: writes the run)' if setup['chief'] else ''}, " if kind == "multiworker"
            else "")
    print(f"Devices: {role}{devices.summary(setup['devices'])}; {setup['replicas']} "
          f"replica(s) in step ({kind}).", flush=True)
    return setup


def scope(setup):
    """The strategy's scope, where variables are made on every replica; else nothing."""
    strategy = setup["strategy"]
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def global_batch(batch_size, setup):
    """The images of one step: BATCH_SIZE on each replica."""
    return batch_size * setup["replicas"]


def record(setup):
    """What run_info.json records of the devices and the strategy."""
    return {"distribute": setup["kind"], "replicas": setup["replicas"],
            "workers": setup["workers"], "devices": setup["devices"]}


# ---------------------------------------------------------------- the chief's messages

def _all_sum(setup, values, first_only=False):
    """Sum the NumPy arrays `values` over the replicas; with `first_only`, only replica
    0's (the chief's) count, so every worker gets the chief's values.

    All of them travel as one float64 vector (exact for float32, and for integers
    below 2**53) through one traced function: one collective a call.
    """
    import tensorflow as tf

    strategy = setup["strategy"]
    if "all_sum" not in setup:
        def replica(vector, first):
            context = tf.distribute.get_replica_context()
            keep = tf.logical_or(tf.equal(context.replica_id_in_sync_group, 0),
                                 tf.logical_not(first))
            return context.all_reduce(tf.distribute.ReduceOp.SUM,
                                      tf.where(keep, vector, tf.zeros_like(vector)))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float64),
                                      tf.TensorSpec([], tf.bool)])
        def total(vector, first):
            return strategy.run(replica, args=(vector, first))

        setup["all_sum"] = total
    arrays = [np.asarray(v) for v in values]
    flat = np.concatenate([a.astype(np.float64).reshape(-1) for a in arrays])
    summed = strategy.experimental_local_results(
        setup["all_sum"](tf.constant(flat), tf.constant(first_only)))[0].numpy()
    out, at = [], 0
    for array in arrays:
        out.append(summed[at:at + array.size].reshape(array.shape).astype(array.dtype))
        at += array.size
    return out


def _exchange(setup, message=None):
    """The chief's `message` (JSON-able), on every worker; the others pass None."""
    payload = json.dumps(message).encode() if setup["chief"] else b""
    length = int(_all_sum(setup, [np.array(len(payload), np.int64)], True)[0])
    data = (np.frombuffer(payload, np.uint8) if setup["chief"] else np.zeros(length, np.uint8))
    setup["workers_wait"] = False
    return json.loads(bytes(_all_sum(setup, [data], True)[0]))


def _count_workers(setup, flag):
    """The number of workers whose `flag` is true (every worker must call it)."""
    local = len(setup["strategy"].extended.worker_devices)
    return round(float(_all_sum(setup, [np.array(float(flag) / local)])[0]))


def _stop(setup, error):
    """Tell waiting workers that the chief stopped, and why."""
    text = str(error) if isinstance(error, UserError) else (
        "it was interrupted" if isinstance(error, KeyboardInterrupt)
        else f"{type(error).__name__}: {error}")
    _exchange(setup, {"stop": text})


@contextlib.contextmanager
def leading(setup):
    """The chief's whole run: if it stops while workers wait for a message, they stop too."""
    try:
        yield
    except BaseException as error:
        if setup["kind"] == "multiworker" and setup["chief"] and setup["workers_wait"]:
            _stop(setup, error)
        raise
    if setup["kind"] == "multiworker" and setup["chief"]:
        _exchange(setup, {"done": True})


def _data_fingerprint(data):
    """A short hash of the prepared data: counts, labels and a sample of the pixels."""
    digest = hashlib.sha256()
    for key in ("train_labels", "val_labels"):
        digest.update(np.asarray(data[key], np.int64).tobytes())
    for key in ("train_images", "val_images"):
        images = data[key]
        digest.update(repr(images.shape).encode())
        step = max(1, len(images) // 64)  # 64 whole images, spread over the set
        digest.update(np.ascontiguousarray(images[::step]).tobytes())
    return digest.hexdigest()[:16]


def share_start(setup, params, data):
    """(Chief) send the parameters and the data's fingerprint; raise if a worker differs.

    Every worker prepares its data from the chief's parameters and compares; a
    worker that failed or found other data makes every process raise DataError.
    """
    if setup["kind"] != "multiworker":
        return
    _exchange(setup, {"params": params, "data": _data_fingerprint(data)})
    _check_workers(setup, problem=False)


def _check_workers(setup, problem):
    different = _count_workers(setup, problem)
    setup["workers_wait"] = True  # next, the workers wait for what to train
    if different:
        raise DataError(f"{different} of the {setup['workers']} workers could not prepare "
                        f"the chief's data, or found other data (see each worker's output): "
                        f"give every machine the same data at the same path.")


def announce_training(setup, dropout, initial_epoch):
    """(Chief) tell the workers to build this variant and train from `initial_epoch` on."""
    if setup["kind"] == "multiworker":
        _exchange(setup, {"train": {"dropout": dropout, "initial_epoch": initial_epoch}})


def follow_chief(setup, prepare, build):
    """A worker's whole run: the chief's parameters, the data, then each training.

    `prepare(params)` returns the prepared data (cnn_data.prepare_data's dict);
    `build(params, dropout, data, setup)` returns a new compiled model. The worker writes
    nothing: the chief writes the run. Raises RunError when the chief stops.
    """
    message = _exchange(setup)
    if "stop" in message:
        raise RunError(f"The chief stopped before training: {message['stop']}")
    params = message["params"]
    try:
        data = prepare(params)
        problem = _data_fingerprint(data) != message["data"]
        if problem:
            print(f"Worker {setup['worker']}: this machine's data differs from the chief's.")
    except UserError as error:
        print(f"error: {error}")
        data, problem = None, True
    _check_workers(setup, problem)
    while True:
        message = _exchange(setup)
        if "stop" in message:
            raise RunError(f"The chief stopped: {message['stop']}")
        if message.get("done"):
            print(f"Worker {setup['worker']}: the chief has finished and written the run.")
            return
        train = message["train"]
        with scope(setup):
            model = build(params, train["dropout"], data, setup)
        fit(setup, model, data, params, train["initial_epoch"])


# ---------------------------------------------------------------- the training loop

def _replica_dataset(images, labels, weights, batch, order):
    """Return dataset_fn for distribute_datasets_from_function.

    Each worker cuts the same `order` (indices into the images) into global
    batches of batch x replicas, and gives each of its replicas its own slice,
    padded to `batch` with weight-0 entries (an empty slice would break the
    convolutions, and padding keeps one shape for every step).
    Elements: (uint8 images [batch, ...], one-hot labels, per-image weight, images
    in the global batch).
    """
    import tensorflow as tf

    labels = np.asarray(labels, np.int64)
    num_classes = len(weights)
    weights = np.asarray(weights, np.float32)
    shape = images.shape[1:]

    def gather(indices):
        return np.asarray(images[indices]), labels[indices]

    def dataset_fn(context):
        local = context.num_replicas_in_sync // context.num_input_pipelines
        first = context.input_pipeline_id * local
        size = batch * context.num_replicas_in_sync

        def slices(indices):
            # This worker's replicas in turn: tf.distribute feeds them round-robin.
            count = tf.cast(tf.shape(indices)[0], tf.float32)
            parts, masks = [], []
            for replica in range(first, first + local):
                part = indices[replica * batch:(replica + 1) * batch]
                pad = batch - tf.shape(part)[0]
                parts.append(tf.concat([part, tf.zeros([pad], tf.int64)], 0))
                masks.append(tf.concat([tf.ones([batch - pad]), tf.zeros([pad])], 0))
            return tf.data.Dataset.from_tensor_slices(
                (tf.stack(parts), tf.stack(masks), tf.fill([local], count)))

        def load(indices, mask, count):
            x, y = tf.numpy_function(gather, [indices], (tf.uint8, tf.int64), stateful=False)
            x.set_shape([batch, *shape])
            y.set_shape([batch])
            return x, tf.one_hot(y, num_classes), tf.gather(weights, y) * mask, count

        return (tf.data.Dataset.from_tensor_slices(np.asarray(order, np.int64)).batch(size)
                .flat_map(slices).map(load, num_parallel_calls=tf.data.AUTOTUNE)
                .prefetch(tf.data.AUTOTUNE))

    return dataset_fn


def _sync_from_chief(setup, model, start_from=None):
    """Give every worker the chief's weights and optimizer state.

    They are `model`'s own on the chief, or those of `start_from` (a resumed
    checkpoint, loaded outside the strategy) when given. Every worker makes the
    same variables in the same order: under the strategy, making a variable is
    itself a collective step.
    """
    with scope(setup):
        model.optimizer.build(model.trainable_variables)
    variables = [*model.weights, *model.optimizer.variables]
    source = variables
    if setup["chief"] and start_from is not None:
        source = [*start_from.weights, *start_from.optimizer.variables]
        if [tuple(v.shape) for v in source] != [tuple(v.shape) for v in variables]:
            raise RunError("The checkpoint to resume from does not fit the model the "
                           "parameters build: start a new run.")
    values = _all_sum(setup, [np.asarray(v.numpy()) for v in source], True)
    for variable, value in zip(variables, values):
        variable.assign(value)


def fit(setup, model, data, params, initial_epoch=0, callbacks=(), start_from=None):
    """Train `model` (made in scope(setup)) from `initial_epoch` to EPOCHS on every worker.

    Every worker starts from the chief's weights: `start_from`'s (a resumed
    checkpoint, on the chief) or the chief's new model's.
    The loop of --distribute=multiworker: BATCH_SIZE images per replica a step,
    the class weights of Equation 1 as Keras applies them (loss = sum of weight x
    cross-entropy over the global batch / its images; accuracy unweighted),
    validation on every worker's share of the validation set. Each epoch's order
    is drawn from SEED and the epoch number alone.
    The chief runs `callbacks` (keras callbacks: the epoch checkpoint, early
    stopping...) and tells the workers after each epoch whether to go on, so an
    error or early stop on the chief stops everyone at the same epoch.
    Returns the history rows of the epochs trained (dicts like Keras' logs).
    """
    import keras
    import tensorflow as tf

    if params["mixed_precision"] == "float16":  # every worker stops here, the same way
        raise ConfigError("--mixed_precision=float16 needs Keras' own loss scaling in "
                          "model.fit, which --distribute=multiworker does not use: use "
                          "--mixed_precision=bfloat16.")
    strategy, batch = setup["strategy"], params["batch_size"]
    classes = len(params["classes"])
    weights = ([data["weights"][c] for c in range(classes)] if data["weights"]
               else [1.0] * classes)
    size = batch * setup["replicas"]
    steps = math.ceil(len(data["train_labels"]) / size)
    val_steps = math.ceil(len(data["val_labels"]) / size)
    count = len(data["train_labels"])

    def epoch_order(epoch):
        # The same on every worker, and after a resume: numbers of the seed and the
        # epoch only (TensorFlow's shuffle also depends on each process's past).
        return np.random.default_rng([params["seed"], epoch]).permutation(count)

    validation = strategy.distribute_datasets_from_function(_replica_dataset(
        data["val_images"], data["val_labels"], [1.0] * classes, batch,
        np.arange(len(data["val_labels"]))))
    _sync_from_chief(setup, model, start_from)
    optimizer = model.optimizer
    # The loss the model was compiled with: label smoothing included, as fit uses it.
    smoothing = float(model.loss.get_config().get("label_smoothing", 0.0)
                      if hasattr(model.loss, "get_config") else 0.0)

    def sums(y, probabilities, weight):
        per_image = keras.losses.categorical_crossentropy(y, probabilities,
                                                          label_smoothing=smoothing)
        correct = tf.cast(tf.equal(tf.argmax(y, -1), tf.argmax(probabilities, -1)), tf.float32)
        real = tf.cast(weight > 0, tf.float32)  # not the padding; Keras' accuracy is unweighted
        return per_image, tf.stack([tf.reduce_sum(per_image * weight),
                                    tf.reduce_sum(correct * real), tf.reduce_sum(real)])

    def train_replica(x, y, weight, count):
        with tf.GradientTape() as tape:
            probabilities = model(x, training=True)
            per_image, totals = sums(y, probabilities, weight)
            # Summed over replicas by the optimizer: the global batch's mean.
            loss = tf.reduce_sum(per_image * weight) / count
        variables = model.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return totals

    def validate_replica(x, y, weight, count):
        return sums(y, model(x, training=False), weight)[1]

    @tf.function
    def train_step(iterator):
        totals = strategy.run(train_replica, args=next(iterator))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, totals, axis=None)

    @tf.function
    def validate_step(iterator):
        totals = strategy.run(validate_replica, args=next(iterator))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, totals, axis=None)

    def run_epoch(dataset, step, count):
        iterator, total = iter(dataset), np.zeros(3)
        for _ in range(count):
            total += step(iterator).numpy()
        return total

    callbacks = keras.callbacks.CallbackList(list(callbacks), model=model)
    callbacks.on_train_begin()
    rows = []
    for epoch in range(initial_epoch, params["epochs"]):
        callbacks.on_epoch_begin(epoch)
        started = time.perf_counter()
        train = strategy.distribute_datasets_from_function(_replica_dataset(
            data["train_images"], data["train_labels"], weights, batch, epoch_order(epoch)))
        trained = run_epoch(train, train_step, steps)
        checked = run_epoch(validation, validate_step, val_steps)
        logs = {"accuracy": trained[1] / trained[2], "loss": trained[0] / trained[2],
                "val_accuracy": checked[1] / checked[2], "val_loss": checked[0] / checked[2]}
        rows.append({"epoch": epoch + 1, **logs})
        if setup["chief"] and params["verbose"]:
            print(f"Epoch {epoch + 1}/{params['epochs']} - {time.perf_counter() - started:.0f}s"
                  + "".join(f" - {key}: {value:.4f}" for key, value in logs.items()), flush=True)
        stop = None
        if setup["chief"]:
            try:
                callbacks.on_epoch_end(epoch, logs)
            except BaseException as error:
                _stop(setup, error)  # the workers wait at the end of this epoch
                raise
            stop = "early stopping" if model.stop_training else None
            _exchange(setup, {"stop": stop, "epoch": epoch + 1})
        else:
            message = _exchange(setup)
            if message["stop"] and message["stop"] != "early stopping":
                raise RunError(f"The chief stopped after epoch {epoch + 1}: {message['stop']}")
            stop = message["stop"]
        if stop:
            break
    print(f"Worker {setup['worker']} of {setup['workers']}: weights after training "
          f"{fingerprint(model)} (equal on every worker when the replicas stayed in step).",
          flush=True)
    callbacks.on_train_end()
    setup["workers_wait"] = True  # for the chief's next message
    return rows


def fingerprint(model):
    """A short hash of the model's weights: equal weights, equal fingerprints."""
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.asarray(weight.numpy()).tobytes())
    return digest.hexdigest()[:16]
