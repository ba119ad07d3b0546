"""Mixed precision: the Keras dtype policies a model computes in, and a model moved
between them with its weights and optimizer state.

Offers:
  PRECISIONS                        MIXED_PRECISION's values and each one's Keras policy
  compile_in_precision(model, optimizer, precision, loss) compiles with accuracy, and
                                    loss scaling under float16
  model_precision(model)            -> "none", "bfloat16" or "float16"
  with_precision(model, precision)  -> the same model in another precision, with its
                                       weights and optimizer state

Layers get their policy one by one, never globally; the output and the random
augmentation layers stay float32, as cnn_model.build_model has them.
"""

import keras

# MIXED_PRECISION's values and the Keras dtype policy of each (None: float32 throughout).
PRECISIONS = {"none": None, "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


def model_precision(model):
    """The key of PRECISIONS `model` computes in ("none" for float32)."""
    names = {layer.dtype_policy.name for layer in model.layers[1:-1]}
    return next((key for key, policy in PRECISIONS.items() if policy in names), "none")


def with_precision(model, precision="none"):
    """Return `model` in `precision`, with the same weights and optimizer state.

    `model` itself when it already computes in `precision`; else a rebuilt copy:
    how a mixed-precision model is saved as float32, and a saved model goes on
    training in mixed precision after a resume.
    """
    if model_precision(model) == precision:
        return model
    policy = PRECISIONS[precision]
    output = model.layers[-1]

    def rebuilt(layer):
        config = layer.get_config()
        # The output and the random augmentation layers stay float32, as build_model has them.
        keep = policy is None or layer is output or layer.name.startswith("aug_")
        config["dtype"] = "float32" if keep else policy
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=rebuilt)
    copy.set_weights(model.get_weights())
    source = getattr(model.optimizer, "inner_optimizer", model.optimizer)
    compile_in_precision(copy, source.__class__.from_config(source.get_config()), precision,
                         model.loss)
    if source.built:
        target = getattr(copy.optimizer, "inner_optimizer", copy.optimizer)
        target.build(copy.trainable_variables)
        for mine, theirs in zip(target.variables, source.variables):
            mine.assign(theirs)
    return copy


def compile_in_precision(model, optimizer, precision, loss):
    """Compile with accuracy; float16 gets loss scaling (bfloat16 has float32's range)."""
    if precision == "float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
