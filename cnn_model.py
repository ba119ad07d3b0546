"""Build, train, save and load the report's CNN (Table 2).

Offers, in the order a run calls them:
  check_layer_table(layer_table)            raises ModelError for an entry that cannot be built
                                               (cnnlib/layer_table.py)
  build_model(layer_table, num_classes, ...) -> compiled keras.Model (float32, or mixed
                                               precision: bfloat16 or float16)
  compile_model(model, learning_rate, ...)  -> the optimizer, loss and schedule of a run
  with_precision(model, precision)          -> the same model in another precision, with
                                               its weights and optimizer state
  model_precision(model)                    -> "none", "bfloat16" or "float16"
                                               (these two: cnnlib/precision.py)
  fit_or_reload(model, folder, train, validation, epochs, ...)
                                            -> (trained model, history rows): training
                                               only what the run folder has not done,
                                               on one device or a cluster
  training_callbacks(early_stopping, ...)   -> early stopping, plateau, TensorBoard
  train_model(model, train, validation, ...) -> keras History
  load_run_model(path)                      -> a run's own model, RunError if damaged
  save_model(model, path, info)             -> a .keras file, written atomically, that
                                               carries `info` (classes, image size) inside;
                                               always float32
  load_model(path, flag)                    -> keras.Model; errors name `flag` (--model)
  model_info(path)                          -> the `info` saved inside, or None
  ModelError                                raised for a bad layer table or model file

The model takes uint8 (or float) pixels [batch, size, size, channels] and rescales
them to [0, 1] itself, so training and inference cannot disagree on scaling.
Mixed precision (Keras' "mixed_bfloat16" / "mixed_float16" policies, set per
layer, not globally) computes in 16 bits and keeps the weights, the softmax
output and the loss in float32; a saved model is float32 whatever it trained in,
so it loads and predicts anywhere.
"""

import functools
import json
import os
import zipfile
from pathlib import Path

import cnnlib  # noqa: F401  (TensorFlow's log level, before Keras loads it)
import keras
import tensorflow as tf
from keras import layers

from cnnlib import atomic, checkpoints, cluster, multiworker, runs, stored_info
from cnnlib.errors import ModelError, RunError
from cnnlib.layer_table import check_layer_table, weight_count
from cnnlib.precision import PRECISIONS, compile_in_precision, with_precision
from cnnlib.precision import model_precision  # noqa: F401  (offered here too)

INFO_FILE = "cnn_info.json"  # inside a saved .keras file: classes, image size, channels


def _conv_block(x, spec, name, dtype=None):
    """Conv (+ BatchNorm) + ReLU, then max-pool, as the entry `spec` says."""
    kernel, padding = spec.get("kernel", 3), spec.get("padding", "valid")
    if spec.get("batchnorm", False):
        # The BatchNorm's shift replaces the conv's bias.
        x = layers.Conv2D(spec["units"], kernel, padding=padding, use_bias=False, name=name,
                          dtype=dtype)(x)
        x = layers.BatchNormalization(name=f"{name}_bn", dtype=dtype)(x)
        x = layers.Activation("relu", name=f"{name}_relu", dtype=dtype)(x)
    else:
        x = layers.Conv2D(spec["units"], kernel, padding=padding, activation="relu",
                          name=name, dtype=dtype)(x)
    if spec.get("pool", 0):
        x = layers.MaxPooling2D(spec["pool"], name=f"{name}_pool", dtype=dtype)(x)
    return x


def _dense_block(x, spec, name, num_classes, last, dtype=None):
    """Dense (+ BatchNorm) + ReLU, or the softmax output when `last`."""
    if last:
        # The output stays float32 under mixed precision: a 16-bit softmax and
        # cross-entropy lose the small probabilities.
        return layers.Dense(num_classes, activation="softmax", name=name,
                            dtype="float32" if dtype else None)(x)
    if spec.get("batchnorm", False):
        x = layers.Dense(spec["units"], use_bias=False, name=name, dtype=dtype)(x)
        x = layers.BatchNormalization(name=f"{name}_bn", dtype=dtype)(x)
        return layers.Activation("relu", name=f"{name}_relu", dtype=dtype)(x)
    return layers.Dense(spec["units"], activation="relu", name=name, dtype=dtype)(x)


def _augmentation(x, augmentation, seed):
    """Random flips, rotations, zooms, shifts, contrast and brightness, training only.

    `augmentation` is {flip, rotation, zoom, translation, contrast, brightness}
    (AUG_* in cnn_params.py); a 0 or False leaves that layer out. Keras' random
    layers pass images through unchanged at inference.
    """
    amounts = augmentation or {}
    if amounts.get("flip"):
        x = layers.RandomFlip("horizontal", seed=seed, name="aug_flip")(x)
    if amounts.get("rotation"):
        x = layers.RandomRotation(amounts["rotation"], fill_mode="reflect", seed=seed,
                                  name="aug_rotation")(x)
    if amounts.get("zoom"):
        x = layers.RandomZoom(amounts["zoom"], fill_mode="reflect", seed=seed,
                              name="aug_zoom")(x)
    if amounts.get("translation"):
        shift = amounts["translation"]
        x = layers.RandomTranslation(shift, shift, fill_mode="reflect", seed=seed,
                                     name="aug_translation")(x)
    if amounts.get("contrast"):
        x = layers.RandomContrast(amounts["contrast"], value_range=(0, 1), seed=seed,
                                  name="aug_contrast")(x)
    if amounts.get("brightness"):
        x = layers.RandomBrightness(amounts["brightness"], value_range=(0, 1), seed=seed,
                                    name="aug_brightness")(x)
    return x


def _stack(layer_table, num_classes, image_size, channels, dropout, augmentation, seed,
           dtype):
    """The model's layers from the table, in the Keras dtype policy `dtype` (None for
    float32): returns (inputs, outputs) of the graph."""
    inputs = keras.Input(shape=(image_size, image_size, channels), name="image")
    x = layers.Rescaling(1.0 / 255, name="rescale", dtype=dtype)(inputs)
    x = _augmentation(x, augmentation, seed)
    counts = {"conv": 0, "dense": 0}
    flat = False
    for index, spec in enumerate(layer_table):
        kind, last = spec["type"], index == len(layer_table) - 1
        if kind == "global_pool":
            x = layers.GlobalAveragePooling2D(name="global_pool", dtype=dtype)(x)
            flat = True
            continue
        counts[kind] += 1
        name = f"{kind}{counts[kind]}"
        if kind == "conv":
            try:
                x = _conv_block(x, spec, name, dtype)
            except ValueError:  # Keras: the feature map became smaller than the kernel
                raise ModelError(f"Layer {index + 1} of the layer table leaves no pixels of "
                                 f"the {image_size}x{image_size} image; use a larger "
                                 f"--image_size, smaller kernels or fewer pools.") from None
        else:
            if not flat:
                x = layers.Flatten(name="flatten", dtype=dtype)(x)
                flat = True
            x = _dense_block(x, spec, name, num_classes, last, dtype)
        rate = spec.get("dropout", 0.0)
        if dropout and rate and not last:
            x = layers.Dropout(rate, name=f"{name}_dropout", dtype=dtype)(x)
    return inputs, x


# Bytes each weight takes in training: itself, its gradient and Adam's two moments (float32).
_TRAINING_BYTES_PER_WEIGHT = 16


def _check_fits(layer_table, num_classes, image_size, channels):
    """Raise ModelError when training the table's weights would take more than this
    machine's memory: Linux hands out memory it does not have, and the kernel then ends
    the largest process (maybe another one) instead of Keras raising."""
    weights = weight_count(layer_table, num_classes, image_size, channels)
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not on Linux: Keras' own error then
        return
    if weights * _TRAINING_BYTES_PER_WEIGHT > memory:
        need = weights * _TRAINING_BYTES_PER_WEIGHT / 2**30
        raise ModelError(f"The layer table (LAYERS or --layers) makes {weights:,} weights at "
                         f"--image_size={image_size}, {need:,.0f} GiB to train, more than this "
                         f"machine's {memory / 2**30:.0f} GiB: use fewer units, more pooling "
                         f"or a smaller image.")


def build_model(layer_table, num_classes, image_size=96, channels=1, dropout=True,
                learning_rate=1e-3, seed=None, augmentation=None, precision="none",
                **compile_options):
    """Build and compile the CNN described by `layer_table`.

    `layer_table` is a list of dicts as LAYERS in cnn_params.py. The last dense
    layer gets softmax and `num_classes` units (whatever its 'units' says); every
    other layer ReLU. A Flatten goes before the first dense layer unless a
    global_pool entry ends the conv part. With `dropout` False every dropout rate
    is ignored (the report's "no dropout" variant). `augmentation` adds random
    layers that act only in training (see _augmentation); `precision` is a key of
    PRECISIONS: "none" (float32) or a mixed policy, with the output in float32;
    `compile_options` go to compile_model (the defaults are the report's Adam and
    cross-entropy).
    Returns the compiled model. Raises ModelError for a layer table that cannot be built.
    """
    check_layer_table(layer_table)
    _check_fits(layer_table, num_classes, image_size, channels)
    if seed is not None:
        keras.utils.set_random_seed(seed)

    try:
        inputs, outputs = _stack(layer_table, num_classes, image_size, channels, dropout,
                                 augmentation, seed, PRECISIONS[precision])
    except (MemoryError, tf.errors.ResourceExhaustedError):
        raise ModelError(f"The layer table (LAYERS or --layers) needs more memory than this "
                         f"machine has at --image_size={image_size}: use fewer units or a "
                         f"smaller image.") from None
    model = keras.Model(inputs, outputs, name="cnn_dropout" if dropout else "cnn_no_dropout")
    return compile_model(model, learning_rate, precision=precision, **compile_options)


def compile_model(model, learning_rate=1e-3, optimizer="adam", weight_decay=0.0,
                  label_smoothing=0.0, decay_steps=0, warmup_steps=0, precision="none"):
    """Compile `model` with categorical cross-entropy and accuracy; returns it.

    `optimizer` is "adam" (the report's) or "adamw" (decoupled `weight_decay`).
    With `decay_steps` the rate follows a cosine from `learning_rate` down to 0
    over that many steps, after `warmup_steps` of linear warm-up from 0; the
    schedule counts the optimizer's own steps, so a resumed run stays on it.
    Under float16 the optimizer is wrapped in Keras' loss scaling.
    """
    if decay_steps:
        rate = keras.optimizers.schedules.CosineDecay(
            0.0 if warmup_steps else learning_rate, decay_steps,
            warmup_target=learning_rate if warmup_steps else None, warmup_steps=warmup_steps)
    else:
        rate = learning_rate
    if optimizer == "adamw":
        chosen = keras.optimizers.AdamW(rate, weight_decay=weight_decay)
    elif optimizer == "adam":
        chosen = keras.optimizers.Adam(rate)
    else:
        raise ModelError(f"--optimizer={optimizer!r} is not known: use 'adam' or 'adamw'.")
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
    compile_in_precision(model, chosen, precision, loss)
    return model


def train_model(model, train, validation, epochs, class_weight=None, callbacks=(),
                verbose=1, initial_epoch=0):
    """Fit `model` on the `train` dataset, validating on `validation` each epoch.

    Epochs run from `initial_epoch` (the epochs already done) to `epochs`.
    Returns the keras History (history.history holds per-epoch accuracy, loss,
    val_accuracy and val_loss).
    """
    return model.fit(train, validation_data=validation, epochs=epochs,
                     initial_epoch=initial_epoch, class_weight=class_weight,
                     callbacks=list(callbacks), verbose=verbose,
                     shuffle=False)  # the dataset shuffles itself, seeded


def fit_or_reload(model, folder, train, validation, epochs, class_weight=None, callbacks=(),
                  extra_callbacks=(), verbose=1, info=None, precision="none", setup=None,
                  data=None, batch_size=32, seed=0):
    """Return (trained model, history rows) of one model, training only what is not done.

    `model` is the new compiled model (build_model's) to train from scratch;
    `folder` the model's run folder, where the epoch checkpoints go. A finished
    folder (state.json says so) is reloaded; an interrupted one goes on from its
    last finished epoch, with its optimizer state; `train` and `validation` are
    make_dataset's. `callbacks` run before the epoch's checkpoint is written (early
    stopping restores its weights first), `extra_callbacks` after it. The trained
    model comes back float32, as saved; `info` goes inside every saved file. `setup` (cluster.start's) says where it trains: None
    is one device, as in a notebook; under "multiworker" every worker calls this
    with the same arguments (and `data`, `batch_size`, `seed` for its loop), only
    the chief has the folder, and a worker gets (None, []) once training ends.
    """
    multi = setup is not None and setup.kind == "multiworker"
    folder = Path(folder)
    chief = setup is None or setup.chief
    state = runs.read_state(folder) if chief else None
    done, checkpoint, rows, best = 0, None, [], None
    if chief and not (state and state.get("finished")):
        done, checkpoint, rows, best = checkpoints.resume_point(folder)
    finished = bool(state and (state.get("finished") or done >= epochs))
    start = cluster.from_chief(setup, {"finished": finished, "done": done})  # the chief's
    if start["finished"]:
        if not chief:
            return None, []
        if state.get("finished"):
            checkpoints.check_files(folder, state)
        else:  # stopped after its last epoch, before the mark
            checkpoints.finish(folder, done, epochs, best)
        return (load_run_model(folder / "model.keras"),
                runs.read_history_rows(folder / "history.csv"))
    if checkpoint is not None and not multi:
        with cluster.scope(setup):  # the variables live on every replica
            model = with_precision(load_run_model(checkpoint), precision)
    # Multiworker: the chief's checkpoint, loaded outside the strategy, is sent to
    # every worker when training starts.
    resumed = load_run_model(checkpoint) if multi and checkpoint else None
    if checkpoint is None and verbose and chief:
        model.summary()
    save = functools.partial(save_model, info=info)
    # After early stopping, so the weights it restores are the ones saved at the end.
    epoch_writer = checkpoints.EpochCheckpoint(folder, epochs, save, rows, best)
    callbacks = [*callbacks, epoch_writer, *extra_callbacks] if chief else []
    if multi:
        multiworker.fit(setup, model, data, epochs, batch_size, seed, start["done"],
                        callbacks, start_from=resumed, verbose=verbose, precision=precision)
        if not setup.chief:
            return None, []
    else:
        train_model(model, train, validation, epochs, class_weight, callbacks, verbose,
                    initial_epoch=start["done"])
    save(model, folder / "model.keras")  # the final weights (early stopping's best)
    checkpoints.finish(folder, len(epoch_writer.rows), epochs, epoch_writer.best_val_loss)
    # Scored as saved: float32, and (multiworker) outside the strategy.
    return (load_model(folder / "model.keras") if multi else with_precision(model, "none"),
            epoch_writer.rows)


def training_callbacks(early_stopping=0, plateau=False, learning_rate=1e-3,
                       tensorboard_dir=None):
    """The optional callbacks of training: early stopping after `early_stopping` epochs
    without a better validation loss (the best weights kept), halving the rate on a
    plateau (down to `learning_rate` / 64), TensorBoard logs in `tensorboard_dir`."""
    callbacks = []
    if early_stopping > 0:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=early_stopping, restore_best_weights=True))
    if plateau:
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=0.5, patience=3, min_lr=learning_rate / 64))
    if tensorboard_dir is not None:
        callbacks.append(keras.callbacks.TensorBoard(str(tensorboard_dir)))
    return callbacks


def load_run_model(path):
    """A run's own model file, or RunError: a damaged one ends the run's story."""
    try:
        return load_model(path)
    except ModelError:
        raise RunError(f"{path} is damaged, so its run cannot go on from it: start a "
                       f"new run.") from None


def save_model(model, path, info=None):
    """Save `model` as a .keras file at `path`, atomically, with `info` inside it.

    `info` (JSON-able: classes, aliases, image_size, channels) travels with the
    file, so a model copied out of its run folder still knows its classes.
    A mixed-precision model is saved as its float32 copy (weights and optimizer
    state included), so the file loads and predicts anywhere.
    """
    model = with_precision(model, "none")
    with atomic.writing(path) as partial:
        model.save(partial)
        if info is not None:
            with zipfile.ZipFile(partial, "a") as archive:
                archive.writestr(INFO_FILE, json.dumps(info))
    return Path(path)


def _missing_model(path, flag="--model"):
    return ModelError(f"Failed to find the model {path}: train one first with "
                      f"`python cnn_run.py`, or give {flag}=PATH to a .keras file.")


def load_model(path, flag="--model"):
    """Load a model saved by save_model; ModelError if it is missing or unreadable.

    `flag` is the option the user gave the path with, named in the error.
    """
    path = Path(path)
    if not path.is_file():
        raise _missing_model(path, flag)
    try:
        return keras.models.load_model(path)
    except Exception as error:  # Keras raises many types for a file it cannot read
        raise ModelError(f"{path} is not a model saved by this suite, or is damaged "
                         f"({type(error).__name__}): give {flag}=PATH to a .keras file "
                         f"written by cnn_run.py.") from None


def model_info(path):
    """Return the info saved inside the .keras file `path` (checked: ModelError names a
    bad key), or None if it has none."""
    return stored_info.read_info(path)
