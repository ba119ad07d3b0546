"""The training loop of --distribute=multiworker: every worker in step, the chief writing.

Offers:
  fit(setup, model, data, epochs, batch_size, seed, ...) -> history rows: train `model`
                                   from the chief's weights on every worker
  fingerprint(model)            -> a short hash of the weights, equal on every worker

Keras 3.15's model.fit fails under MultiWorkerMirroredStrategy in multi-worker mode
(keras-team/keras#20585; docs/scale.md says where), so this loop stands in for it.
Each step every replica takes its own slice of the same shuffled global batch;
gradients are summed across replicas (Keras' optimizer all-reduces them), so every
replica applies the same update and the weights stay equal.
"""

import hashlib
import math
import time

import numpy as np

from cnnlib import cluster
from cnnlib.cluster import scope
from cnnlib.errors import ConfigError, RunError


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
    if setup.chief and start_from is not None:
        source = [*start_from.weights, *start_from.optimizer.variables]
        if [tuple(v.shape) for v in source] != [tuple(v.shape) for v in variables]:
            raise RunError("The checkpoint to resume from does not fit the model the "
                           "parameters build: start a new run.")
    values = cluster.all_sum(setup, [np.asarray(v.numpy()) for v in source], True)
    for variable, value in zip(variables, values):
        variable.assign(value)


def fit(setup, model, data, epochs, batch_size, seed=0, initial_epoch=0, callbacks=(),
        start_from=None, verbose=1, precision="none"):
    """Train `model` (made in scope(setup)) from `initial_epoch` to EPOCHS on every worker.

    Every worker starts from the chief's weights: `start_from`'s (a resumed
    checkpoint, on the chief) or the chief's new model's.
    The loop of --distribute=multiworker: BATCH_SIZE images per replica a step,
    the class weights of Equation 1 as Keras applies them (loss = sum of weight x
    cross-entropy over the global batch / its images; accuracy unweighted),
    validation on every worker's share of the validation set. Each epoch's order
    is drawn from the run's seed (TRAINING_SEED when set, else SEED) and the epoch
    number alone.
    The chief runs `callbacks` (keras callbacks: the epoch checkpoint, early
    stopping...) and tells the workers after each epoch whether to go on, so an
    error or early stop on the chief stops everyone at the same epoch.
    Returns the history rows of the epochs trained (dicts like Keras' logs).
    """
    import keras
    import tensorflow as tf

    if precision == "float16":  # every worker stops here, the same way
        raise ConfigError("--mixed_precision=float16 needs Keras' own loss scaling in "
                          "model.fit, which --distribute=multiworker does not use: use "
                          "--mixed_precision=bfloat16.")
    strategy, batch = setup.strategy, batch_size
    classes = len(data.classes)
    weights = ([data.weights[c] for c in range(classes)] if data.weights
               else [1.0] * classes)
    size = batch * setup.replicas
    steps = math.ceil(len(data.train_labels) / size)
    val_steps = math.ceil(len(data.val_labels) / size)
    count = len(data.train_labels)

    def epoch_order(epoch):
        # The same on every worker, and after a resume: numbers of the seed and the
        # epoch only (TensorFlow's shuffle also depends on each process's past).
        return np.random.default_rng([seed, epoch]).permutation(count)

    validation = strategy.distribute_datasets_from_function(_replica_dataset(
        data.val_images, data.val_labels, [1.0] * classes, batch,
        np.arange(len(data.val_labels))))
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
    for epoch in range(initial_epoch, epochs):
        callbacks.on_epoch_begin(epoch)
        started = time.perf_counter()
        train = strategy.distribute_datasets_from_function(_replica_dataset(
            data.train_images, data.train_labels, weights, batch, epoch_order(epoch)))
        trained = run_epoch(train, train_step, steps)
        checked = run_epoch(validation, validate_step, val_steps)
        logs = {"accuracy": trained[1] / trained[2], "loss": trained[0] / trained[2],
                "val_accuracy": checked[1] / checked[2], "val_loss": checked[0] / checked[2]}
        rows.append({"epoch": epoch + 1, **logs})
        if setup.chief and verbose:
            print(f"Epoch {epoch + 1}/{epochs} - {time.perf_counter() - started:.0f}s"
                  + "".join(f" - {key}: {value:.4f}" for key, value in logs.items()), flush=True)
        stop = None
        if setup.chief:
            try:
                callbacks.on_epoch_end(epoch, logs)
            except BaseException as error:
                cluster.stop_workers(setup, error)  # the workers wait at the end of this epoch
                raise
            stop = "early stopping" if model.stop_training else None
            cluster.broadcast(setup, {"stop": stop, "epoch": epoch + 1})
        else:  # a message that the chief stopped raises RunError
            stop = cluster.broadcast(setup)["stop"]
        if stop:
            break
    print(f"Worker {setup.worker} of {setup.workers}: weights after training "
          f"{fingerprint(model)} (equal on every worker when the replicas stayed in step).",
          flush=True)
    callbacks.on_train_end()
    setup.workers_wait = True  # for the chief's next message
    return rows


def fingerprint(model):
    """A short hash of the model's weights: equal weights, equal fingerprints."""
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.asarray(weight.numpy()).tobytes())
    return digest.hexdigest()[:16]
