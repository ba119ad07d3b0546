"""Build, train, evaluate, save and load the report's CNN (Table 2).

Offers, in the order a run calls them:
  build_model(layers, num_classes, ...) -> compiled keras.Model
  train_model(model, train, validation, ...) -> keras History
  evaluate_model(model, dataset)          -> {"accuracy": float, "loss": float}
  save_model(model, path) / load_model(path)
  ModelError                              raised for a bad layer table or missing model

The model takes uint8 (or float) pixels [batch, size, size, channels] and rescales
them to [0, 1] itself, so training and inference cannot disagree on scaling.
"""

from pathlib import Path

import keras
from keras import layers as klayers


class ModelError(ValueError):
    """The layer table cannot be built, or a saved model cannot be found."""


def _check_layer(index, spec):
    """Raise ModelError naming the entry of the layer table that cannot be built."""
    where = f"Layer {index + 1} of the layer table (LAYERS or --layers)"
    if not isinstance(spec, dict):
        raise ModelError(f"{where} is {spec!r}; write each layer as a dict such as "
                         f"{{\"type\": \"dense\", \"units\": 16}}.")
    kind = spec.get("type")
    if kind not in ("conv", "dense"):
        raise ModelError(f"{where} has type {kind!r}; use 'conv' or 'dense'.")
    for key, low in (("units", 1), ("kernel", 1), ("pool", 0)):
        value = spec.get(key, low)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ModelError(f"{where} has {key} {value!r}; use a whole number of at least {low}.")
    rate = spec.get("dropout", 0.0)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
        raise ModelError(f"{where} has dropout {rate!r}; use a rate from 0 up to (not "
                         f"including) 1.")


def build_model(layers, num_classes, image_size=96, channels=1, dropout=True,
                learning_rate=1e-3, seed=None):
    """Build and compile the CNN described by the layer table `layers`.

    `layers` is a list of dicts as LAYERS in cnn_params.py. The last dense layer
    gets softmax and `num_classes` units (whatever its 'units' says); every other
    layer ReLU. A Flatten goes before the first dense layer. With `dropout` False
    every dropout rate is ignored (the report's "no dropout" variant).
    Returns a model compiled with Adam, categorical cross-entropy and accuracy.
    Raises ModelError for a layer table that cannot be built.
    """
    for index, spec in enumerate(layers):
        _check_layer(index, spec)
    if not layers or layers[-1]["type"] != "dense":
        raise ModelError("The layer table (LAYERS or --layers) must end with a 'dense' "
                         "layer, the softmax output.")
    if seed is not None:
        keras.utils.set_random_seed(seed)

    inputs = keras.Input(shape=(image_size, image_size, channels), name="image")
    x = klayers.Rescaling(1.0 / 255, name="rescale")(inputs)
    conv_count = dense_count = 0
    flat = False
    for index, spec in enumerate(layers):
        last = index == len(layers) - 1
        if spec["type"] == "conv":
            if flat:
                raise ModelError(f"Layer {index + 1} of the layer table is a 'conv' layer after "
                                 f"a 'dense' one; put all conv layers first.")
            conv_count += 1
            name = f"conv{conv_count}"
            kernel = spec.get("kernel", 3)
            try:
                x = klayers.Conv2D(spec["units"], kernel, activation="relu", name=name)(x)
                if spec.get("pool", 0):
                    x = klayers.MaxPooling2D(spec["pool"], name=f"{name}_pool")(x)
            except ValueError:  # Keras: the feature map became smaller than the kernel
                raise ModelError(f"Layer {index + 1} of the layer table leaves no pixels of "
                                 f"the {image_size}x{image_size} image; use a larger "
                                 f"--image_size, smaller kernels or fewer pools.") from None
        else:
            if not flat:
                x = klayers.Flatten(name="flatten")(x)
                flat = True
            dense_count += 1
            name = f"dense{dense_count}"
            if last:
                x = klayers.Dense(num_classes, activation="softmax", name=name)(x)
            else:
                x = klayers.Dense(spec["units"], activation="relu", name=name)(x)
        rate = spec.get("dropout", 0.0)
        if dropout and rate and not last:
            x = klayers.Dropout(rate, name=f"{name}_dropout")(x)

    model = keras.Model(inputs, x, name="cnn_dropout" if dropout else "cnn_no_dropout")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def train_model(model, train, validation, epochs, class_weight=None, callbacks=(),
                verbose=1):
    """Fit `model` on the `train` dataset, validating on `validation` each epoch.

    Returns the keras History (history.history holds per-epoch accuracy, loss,
    val_accuracy and val_loss).
    """
    return model.fit(train, validation_data=validation, epochs=epochs,
                     class_weight=class_weight, callbacks=list(callbacks),
                     verbose=verbose, shuffle=False)  # the dataset shuffles itself, seeded


def evaluate_model(model, dataset):
    """Return {"accuracy": float, "loss": float} of `model` on `dataset`."""
    results = model.evaluate(dataset, verbose=0, return_dict=True)
    return {"accuracy": float(results["accuracy"]), "loss": float(results["loss"])}


def save_model(model, path):
    """Save `model` in the Keras format at `path` (a .keras file)."""
    model.save(Path(path))


def load_model(path):
    """Load a model saved by save_model; raise ModelError if `path` does not exist."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"Failed to find the model {path}: train one first with "
                         f"`python cnn_run.py`, or give --model=PATH to a .keras file.")
    try:
        return keras.models.load_model(path)
    except Exception as error:  # Keras raises many types for a file it cannot read
        raise ModelError(f"{path} is not a model saved by this suite ({type(error).__name__}): "
                         f"give --model=PATH to a .keras file written by cnn_run.py.") from None
