"""Fine-tuning: a new run that starts from a saved model's architecture and weights.

Offers, in the order a run calls them:
  start_from(path, values, explicit, load_model, model_info, build_model)
                                      -> (Source, the values a run from it must use)
  read_source(path)                   -> Source: the saved model (an ensemble's first
                                         member), its classes and input
  check_compatible(source, image_size, channels, layer_table, explicit)
                                      -> (image_size, channels) the run must use; raises
                                         ModelError for a contradiction, before any data loads
  canonical_class(name, aliases)      -> the suite's own name of a class label
  map_classes(model_classes, data_classes, aliases) -> ClassMap: kept, new, dropped
  transfer(source_model, class_map, seed) -> a keras.Model (uncompiled): the source's
                                         layers, and an output layer with one row a data class
  reseed_random_layers(model, seed)   -> the model, its dropout and augmentation drawing
                                         from `seed`
  set_backbone_trainable(model, trainable) all layers but the output on or off
  record_start(path, source, class_map, freeze_epochs) writes and prints what a run
                                         started from
  check_same_start(path, source)      RunError when a resumed run's starting file has
                                         changed since record_start wrote `path`
  train_head(model, train, validation, epochs, compile_model, verbose)
                                      -> history rows of the output layer's own epochs;
                                         the model comes back whole and recompiled

A class the model knows keeps its output row (through the suite's aliases, so the
data's `angry/` keeps the model's `anger` row); a class it does not know gets a
fresh row; a class of the model that the data lacks is dropped.
"""

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnlib import ensemble, stored_info
from cnnlib.errors import ModelError, RunError
from cnnlib.labels import normalise_label


@dataclass
class Source:
    """A saved model to start from: the file, the model and what it was trained on."""
    path: Path
    model: object                      # keras.Model
    classes: list
    image_size: int
    channels: int
    sha256: str
    info: dict = field(default_factory=dict)


@dataclass
class ClassMap:
    """Which output row of the source each data class takes (None: a fresh row)."""
    data_classes: list
    source_rows: list                  # per data class: the source's row index, or None
    dropped: list                      # source classes the data lacks

    @property
    def kept(self):
        return [c for c, row in zip(self.data_classes, self.source_rows) if row is not None]

    @property
    def new(self):
        return [c for c, row in zip(self.data_classes, self.source_rows) if row is None]

    def record(self):
        """What the run writes down: the classes kept, new and dropped."""
        return {"kept": self.kept, "new": self.new, "dropped": list(self.dropped)}


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_source(path, load_model, model_info):
    """Load the model at `path` with `load_model(path, flag)`, and its info with `model_info`.

    Returns a Source; for an ensemble (cnnlib/ensemble.py), of its first member.
    Raises ModelError when the file is missing, unreadable, or not an image
    classifier whose output matches its saved classes.
    """
    path = Path(path)
    if path.is_dir():
        raise ModelError(f"--init_from={path} is a folder: give the .keras file in it (e.g. "
                         f"{path / 'model.keras'}).")
    model = load_model(path, flag="--init_from")  # its errors name the flag given
    info = model_info(path) or {}
    inside = ensemble.members(model)
    if inside:
        # An ensemble's recorded layer table is its first member's, the one it starts from.
        model = inside[0]
        print(f"{path} averages {len(inside)} networks: fine-tuning starts from the first, "
              f"{model.name}.")
    shape_in, shape_out = model.input_shape, model.output_shape
    if not (isinstance(shape_in, tuple) and len(shape_in) == 4 and shape_in[1] == shape_in[2]
            and isinstance(shape_out, tuple) and len(shape_out) == 2):
        raise ModelError(f"--init_from={path} is not an image classifier of this suite: give "
                         f"a .keras file that cnn_run.py wrote.")
    stored_info.check_matches(info, f"{stored_info.INFO_FILE} inside {path}",
                              image_size=shape_in[1], channels=shape_in[3])
    classes = info.get("classes")
    if not isinstance(classes, list) or len(classes) != shape_out[-1]:
        raise ModelError(f"--init_from={path} does not carry its class names inside: give a "
                         f".keras file that cnn_run.py wrote (they carry them).")
    return Source(path, model, [str(c) for c in classes], int(shape_in[1]), int(shape_in[3]),
                  _sha256(path), info)


def _weight_shapes(model):
    """The shapes of every weight but the output layer's, in order."""
    return [tuple(w.shape) for layer in model.layers[:-1] for w in layer.weights]


def check_compatible(source, image_size, channels, layer_table, explicit, build=None):
    """The (image_size, channels) a run from `source` uses; ModelError on a contradiction.

    Values the user did not set (`explicit` lacks them) are the model's own. A
    layer table the user set must build the same layers as the model's, checked
    by building it (`build(layer_table, image_size, channels)` -> keras.Model) and
    comparing the shapes of the weights.
    """
    if "image_size" in explicit and image_size != source.image_size:
        raise ModelError(f"--image_size={image_size} contradicts --init_from={source.path}, "
                         f"which takes {source.image_size}x{source.image_size} images: leave "
                         f"--image_size out, or train from scratch.")
    if "channels" in explicit and channels != source.channels:
        raise ModelError(f"--channels={channels} contradicts --init_from={source.path}, which "
                         f"takes {source.channels} channel(s): leave --channels out, or train "
                         f"from scratch.")
    if "layers" in explicit and build is not None:
        built = build(layer_table, source.image_size, source.channels)
        if _weight_shapes(built) != _weight_shapes(source.model):
            raise ModelError(f"The layer table (LAYERS) is not the architecture of "
                             f"--init_from={source.path}: leave LAYERS unset to fine-tune "
                             f"that model, or train from scratch.")
    return source.image_size, source.channels


# The parameters a run from a saved model takes from it (or checks against it).
RESOLVED = ("image_size", "channels", "layers", "classes")


def start_from(path, values, explicit, load_model, model_info, build_model):
    """Read the model at `path` and return (Source, values): `values` (RESOLVED's
    parameters) as a run from it must use them. The image size, channels and layer
    table are the model's; CLASSES is "auto" unless the user set it. Raises
    ModelError, before any data loads, when something the user set contradicts it.
    """
    source = read_source(path, load_model, model_info)

    def built(layer_table, size, channels):
        return build_model(layer_table, len(source.classes), size, channels)

    size, channels = check_compatible(source, values["image_size"], values["channels"],
                                      values["layers"], explicit, built)
    return source, {"image_size": size, "channels": channels,
                    "layers": source.info.get("layers", values["layers"]),
                    "classes": values["classes"] if "classes" in explicit else ["auto"]}


def record_start(path, source, class_map, freeze_epochs):
    """Write what a run started from (the file, its hash, the class map) as JSON at
    `path`, atomically, and say it in one line."""
    from cnnlib import atomic

    atomic.write_json(path, {"path": str(source.path), "sha256": source.sha256,
                             "classes": source.classes, **class_map.record(),
                             "freeze_epochs": freeze_epochs})
    print(f"Starting from {source.path}: classes kept {class_map.kept}, new "
          f"{class_map.new}, dropped {class_map.dropped}.")


def check_same_start(path, source):
    """On --resume: refuse when the file a run started from is no longer the one it
    recorded at `path` (init_from.json), for the run would go on from other weights."""
    from cnnlib import runs

    path = Path(path)
    if not path.is_file():  # interrupted before it was written: nothing to compare
        return
    recorded = runs.read_json(path, "record of what the run started from")
    sha = recorded.get("sha256") if isinstance(recorded, dict) else None
    if not (isinstance(sha, str) and len(sha) == 64):
        raise RunError(f"{path} has no SHA-256 of the file the run started from: it was "
                       f"changed by hand, so start a new run.")
    if sha != source.sha256:
        raise RunError(f"{source.path} has changed since {path.parent} started from it "
                       f"(SHA-256 {str(sha)[:12]}… then, {source.sha256[:12]}… now): put "
                       f"the file back to resume, or start a new run.")


def canonical_class(name, aliases):
    """The suite's name of `name`: the ALIASES key it is listed under, else itself."""
    key = normalise_label(name)
    for canonical, others in (aliases or {}).items():
        if key == normalise_label(canonical) or key in {normalise_label(o) for o in others}:
            return normalise_label(canonical)
    return key


def map_classes(model_classes, data_classes, aliases):
    """Return the ClassMap of the data's classes onto the model's output rows."""
    rows = {canonical_class(c, aliases): i for i, c in enumerate(model_classes)}
    source_rows = [rows.get(canonical_class(c, aliases)) for c in data_classes]
    used = {row for row in source_rows if row is not None}
    dropped = [c for i, c in enumerate(model_classes) if i not in used]
    return ClassMap(list(data_classes), source_rows, dropped)


def reseed_random_layers(model, seed):
    """Give each random layer (dropout, augmentation) of `model` its own state drawn
    from `seed`, and return the model. A loaded model's dropout starts from an
    unsaved, random state, so a run from it would not repeat otherwise."""
    import keras

    if seed is None:
        return model
    generators = [value for layer in model.layers for value in vars(layer).values()
                  if isinstance(value, keras.random.SeedGenerator)]
    starts = np.random.default_rng(seed).integers(1, 2**31, len(generators))
    for generator, start in zip(generators, starts):
        generator.state.assign(np.array([start, 0], dtype=generator.state.dtype))
    return model


def transfer(source_model, class_map, seed=None):
    """A new model: the source's layers and weights, and an output layer for the data.

    Kept classes take the source's output row (kernel column and bias); new
    classes a freshly initialised one. Returns the keras.Model, uncompiled.
    """
    import keras

    output = source_model.layers[-1]
    config = output.get_config()
    config.update(units=len(class_map.data_classes),
                  kernel_initializer=keras.initializers.GlorotUniform(seed=seed))
    head = output.__class__.from_config(config)
    features = output.input
    model = keras.Model(source_model.inputs, head(features), name=source_model.name)
    kernel, bias = (np.asarray(w) for w in output.get_weights())
    new_kernel, new_bias = (np.array(w) for w in head.get_weights())
    for column, row in enumerate(class_map.source_rows):
        if row is not None:
            new_kernel[:, column], new_bias[column] = kernel[:, row], bias[row]
    head.set_weights([new_kernel, new_bias])
    return model


def set_backbone_trainable(model, trainable):
    """Make every layer but the output trainable or frozen (recompile afterwards).

    A frozen BatchNormalization runs in inference mode, so the head learns on the
    features the backbone will give in use.
    """
    for layer in model.layers[:-1]:
        layer.trainable = trainable
    model.layers[-1].trainable = True
    return model


def train_head(model, train, validation, epochs, compile_model, verbose=1):
    """Train only the output layer for `epochs` epochs, then unfreeze everything.

    `compile_model(model)` compiles with the run's optimizer and schedule; it is
    called for the frozen model and again for the whole one, so the full training
    that follows starts its schedule (warm-up, cosine) from step 0. Returns the
    head epochs' history rows ({"epoch", "accuracy", "loss", "val_accuracy",
    "val_loss"}).
    """
    set_backbone_trainable(model, False)
    compile_model(model)
    print(f"Training only the output layer for {epochs} epoch(s), then every layer.")
    fitted = model.fit(train, validation_data=validation, epochs=epochs, verbose=verbose,
                       shuffle=False)
    set_backbone_trainable(model, True)
    compile_model(model)
    return [{"epoch": epoch + 1, **{k: float(v[epoch]) for k, v in fitted.history.items()}}
            for epoch in range(len(fitted.history.get("loss", [])))]
