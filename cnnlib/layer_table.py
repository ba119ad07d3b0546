"""The layer table (LAYERS or --layers) checked before a model is built from it.

Offers:
  LAYER_KEYS                    the keys each kind of entry (conv, dense, global_pool) takes
  check_layer_table(layer_table) raises ModelError for an entry that cannot be built, with
                                the entry's number, and the key meant for a misspelt one
  weight_count(layer_table, num_classes, image_size, channels)
                             -> the number of weights the model will have, worked out
                                before any is made (0 when a layer leaves no pixels)
"""

import difflib

from cnnlib.errors import ModelError, shown

# The keys each kind of layer-table entry may have; anything else is a typo.
LAYER_KEYS = {
    "conv": {"type", "units", "kernel", "pool", "dropout", "padding", "batchnorm"},
    "dense": {"type", "units", "dropout", "batchnorm"},
    "global_pool": {"type"},
}


def _check_entry(index, spec):
    """Raise ModelError naming the entry of the layer table that cannot be built."""
    where = f"Layer {index + 1} of the layer table (LAYERS or --layers)"
    if not isinstance(spec, dict):
        raise ModelError(f"{where} is {shown(spec)}; write each layer as a dict such as "
                         f"{{\"type\": \"dense\", \"units\": 16}}.")
    kind = spec.get("type")
    if kind not in LAYER_KEYS:
        raise ModelError(f"{where} has type {shown(kind)}; use one of "
                         f"{', '.join(repr(k) for k in LAYER_KEYS)}.")
    for key in spec:
        if key not in LAYER_KEYS[kind]:
            close = difflib.get_close_matches(str(key), LAYER_KEYS[kind], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ModelError(f"{where} has the key {shown(key)}{hint}; a {shown(kind)} layer takes "
                             f"{', '.join(sorted(LAYER_KEYS[kind]))}.")
    if kind != "global_pool" and "units" not in spec:
        raise ModelError(f"{where} has no 'units'; give the number of "
                         f"{'filters' if kind == 'conv' else 'neurons'}.")
    for key, low in (("units", 1), ("kernel", 1), ("pool", 0)):
        value = spec.get(key, low)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 65536:
            raise ModelError(f"{where} has {key} {shown(value)}; use a whole number from {low} "
                             f"to 65536.")
    rate = spec.get("dropout", 0.0)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
        raise ModelError(f"{where} has dropout {shown(rate)}; use a rate from 0 up to (not "
                         f"including) 1.")
    if spec.get("padding", "valid") not in ("valid", "same"):
        raise ModelError(f"{where} has padding {shown(spec['padding'])}; use 'valid' or 'same'.")
    if not isinstance(spec.get("batchnorm", False), bool):
        raise ModelError(f"{where} has batchnorm {shown(spec['batchnorm'])}; use true or false.")


def check_layer_table(layer_table):
    """Raise ModelError unless `layer_table` is conv/global_pool entries, then dense ones."""
    if not isinstance(layer_table, list) or not layer_table:
        raise ModelError("The layer table (LAYERS or --layers) must be a non-empty list of "
                         "layer dicts.")
    for index, spec in enumerate(layer_table):
        _check_entry(index, spec)
    kinds = [spec["type"] for spec in layer_table]
    if kinds[-1] != "dense":
        raise ModelError("The layer table (LAYERS or --layers) must end with a 'dense' "
                         "layer, the softmax output.")
    first_dense = kinds.index("dense")
    for index, kind in enumerate(kinds):
        if kind != "dense" and index > first_dense:
            raise ModelError(f"Layer {index + 1} of the layer table is a {shown(kind)} entry after "
                             f"a 'dense' one; put conv layers (and global_pool) first.")
        if kind == "global_pool" and index + 1 < len(kinds) and kinds[index + 1] != "dense":
            raise ModelError(f"Layer {index + 1} of the layer table is 'global_pool', which "
                             f"ends the conv part; put it after the last conv layer.")


def weight_count(layer_table, num_classes, image_size, channels):
    """Return how many weights the checked `layer_table` gives, counted from the shapes
    alone (cnn_model._stack's layers: conv, batch norm, pooling, dense), so a table too
    large for the machine is refused before Keras allocates it. 0 when a layer leaves no
    pixels (Keras then says which)."""
    size, depth, flat, total = image_size, channels, None, 0
    for index, spec in enumerate(layer_table):
        kind = spec["type"]
        norm = 4 if spec.get("batchnorm") else 1  # gamma, beta and two moving statistics
        if kind == "conv":
            kernel, units = spec.get("kernel", 3), spec["units"]
            if spec.get("padding", "valid") == "valid":
                size -= kernel - 1
            total += kernel * kernel * depth * units + norm * units
            size //= spec.get("pool", 0) or 1
            depth = units
            if size <= 0:
                return 0
        elif kind == "global_pool":
            flat = depth
        else:
            inputs = flat if flat is not None else size * size * depth
            units = num_classes if index == len(layer_table) - 1 else spec["units"]
            total += inputs * units + (1 if index == len(layer_table) - 1 else norm) * units
            flat = units
    return total
