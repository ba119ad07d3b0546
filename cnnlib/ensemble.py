"""Several trained networks shipped as one model: their probabilities averaged.

Offers:
  build_ensemble(member_models, mirror=True, name) -> a keras.Model averaging each
                                  member's softmax, on the image and (with `mirror`)
                                  its left-right mirror
  members(model)               -> the member networks inside an ensemble ([] for a
                                  plain model of this suite)
  mirrors(model)               -> True when the model already averages each image with
                                  its mirror (so --tta would add nothing)
  rebuilt(model, change_member) -> the same ensemble, each member passed through
                                  change_member (export drops their augmentation so)

The ensemble is built from Keras' own layers only (the mirror is a fixed Dense
layer that reverses the columns), so its .keras file loads in any Keras 3 without
this suite, and exports as the members do. Its input and output are the members':
images in, class probabilities out, so eval, the server and export use it as
they use one network.
"""

import numpy as np

MIRROR_LAYER = "mirror_columns"  # the fixed layer that mirrors an image left to right


def _mirrored(image, width):
    """`image` [N, H, W, C] mirrored left to right, by a fixed 0/1 matrix on the
    columns: exact in float32 (each output is one input times 1, plus zeros)."""
    import keras

    reverse = keras.layers.Dense(width, use_bias=False, trainable=False, name=MIRROR_LAYER)
    columns_last = keras.layers.Permute((1, 3, 2), name="columns_last")(image)
    flipped = reverse(columns_last)
    reverse.set_weights([np.eye(width, dtype=np.float32)[::-1]])
    return keras.layers.Permute((1, 3, 2), name="columns_back")(flipped)


def build_ensemble(member_models, mirror=True, name="ensemble"):
    """One model whose output is the mean of `member_models`' outputs.

    Every member must take the same input shape, give the same number of
    classes and compute in float32, as saved models do (ValueError otherwise).
    With `mirror`, each member also sees the image's left-right mirror, and its
    two answers count equally.
    """
    import keras

    from cnnlib.precision import model_precision

    member_models = list(member_models)
    if not member_models:
        raise ValueError("An ensemble needs at least one member network.")
    shape, classes = member_models[0].input_shape[1:], member_models[0].output_shape[-1]
    for member in member_models[1:]:
        if member.input_shape[1:] != shape or member.output_shape[-1] != classes:
            raise ValueError(f"Member {member.name} takes {member.input_shape[1:]} and gives "
                             f"{member.output_shape[-1]} classes, unlike "
                             f"{member_models[0].name} ({shape}, {classes}).")
    mixed = [m.name for m in member_models if model_precision(m) != "none"]
    if mixed:
        raise ValueError(f"Members {mixed} compute in mixed precision: give float32 "
                         f"models (load them from their .keras files).")
    names = [member.name for member in member_models]
    if len(set(names)) != len(names):
        raise ValueError(f"Member names must differ (they are {names}): rename them.")
    image = keras.Input(shape, name="image")
    views = [image, _mirrored(image, shape[1])] if mirror else [image]
    answers = [member(view) for member in member_models for view in views]
    output = (keras.layers.Average(name="mean_probabilities")(answers) if len(answers) > 1
              else answers[0])
    return keras.Model(image, output, name=name)


def members(model):
    """The networks an ensemble averages, in order; [] for a plain model."""
    import keras

    return [layer for layer in model.layers if isinstance(layer, keras.Model)]


def mirrors(model):
    """True when `model` averages each image with its mirror inside (an ensemble)."""
    return any(layer.name == MIRROR_LAYER for layer in model.layers)


def rebuilt(model, change_member):
    """`model` again with change_member(member) for each member; a plain model unchanged."""
    inside = members(model)
    if not inside:
        return model
    return build_ensemble([change_member(member) for member in inside], mirror=mirrors(model),
                          name=model.name)
