"""What a saved model carries inside its .keras file (cnn_info.json), read back checked.

Offers:
  read_info(path)                      -> the info stored in the .keras file `path`,
                                          checked, or None when it stores none
  check_matches(info, source, **expected) raises ModelError for a stored value that
                                          contradicts the model or the run (image_size=...)

cnn_model.save_model writes the info: the classes, their aliases, the input (image
size, channels), the face settings, the layer table, and, once calibrated, the
temperature. Each value read back is checked like `--name=value` (cnnlib.config):
type, range, finiteness (JSON's NaN and Infinity too). A value that fails is one
sentence naming the file and the key, never a traceback or a silent default.
"""

import json
import math
import zipfile
import zlib
from pathlib import Path

from cnnlib import config
from cnnlib.errors import ConfigError, ModelError, shown

INFO_FILE = "cnn_info.json"  # the entry inside a .keras file
# The parameters a model's info may hold, each with a value of its type (for the check).
_TYPES = {"classes": [], "aliases": {}, "image_size": 0, "channels": 0, "crop_faces": False,
          "face_margin": 0.0, "detector": "", "align": False, "layers": []}
_MAX_INFO_BYTES = 16 * 2**20  # a layer table and classes take kilobytes
_MAX_TEMPERATURE = 100.0  # calibration.fit_temperature never gives more


def _where(path, key=None):
    """How a message names the info of the model file `path` (and one of its keys)."""
    return f"{INFO_FILE} inside {path}" + (f", key {key}" if key else "")


def _check_layers(layers, path):
    if not all(isinstance(layer, dict) and isinstance(layer.get("type"), str)
               for layer in layers):
        raise ModelError(f"{_where(path, 'layers')}: each layer should be a dict with a "
                         f"type; the file was changed by hand, so give a model cnn_run.py wrote.")


def _check_calibration(record, path):
    temperature = record.get("temperature") if isinstance(record, dict) else None
    if not (isinstance(temperature, (int, float)) and not isinstance(temperature, bool)
            and math.isfinite(temperature) and 0 < temperature <= _MAX_TEMPERATURE):
        raise ModelError(f"{_where(path, 'calibration')}: temperature = {shown(temperature)} "
                         f"should be a finite number in (0, {_MAX_TEMPERATURE:g}]; calibrate "
                         f"the model again (cnn_eval.py --calibrate).")


def read_info(path):
    """Return the info dict stored inside the .keras file `path`, checked.

    None when the file stores none, or is not a zip archive (loading the model
    says what is wrong with it). Raises ModelError for a damaged info file or a
    value of the wrong type, out of range or not finite, naming the key.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            if INFO_FILE not in archive.namelist():
                return None
            size = archive.getinfo(INFO_FILE).file_size
            # Read no more than the entry's stated size (zipfile stops there), and refuse
            # a stated size no info needs: a small file may unpack to gigabytes.
            raw = archive.read(INFO_FILE) if size <= _MAX_INFO_BYTES else None
    except (OSError, zipfile.BadZipFile):
        return None
    except (zlib.error, EOFError, RuntimeError, NotImplementedError):  # damaged, encrypted
        raise ModelError(f"The {_where(path)} is damaged (it cannot be unpacked): give a "
                         f"model cnn_run.py wrote.") from None
    if raw is None:
        raise ModelError(f"The {_where(path)} is {size:,} bytes, more than any model's "
                         f"info ({_MAX_INFO_BYTES:,}): give a model cnn_run.py wrote.")
    try:
        info = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ModelError(f"The {_where(path)} is damaged (not JSON): give a model "
                         f"cnn_run.py wrote.") from None
    if not isinstance(info, dict):
        raise ModelError(f"The {_where(path)} is damaged (not a JSON object): give a "
                         f"model cnn_run.py wrote.")
    try:
        # Notes such as "trained_on" are for people; what the suite uses is checked.
        config.check_saved({k: v for k, v in info.items() if k in _TYPES}, _TYPES,
                           _where(Path(path)))
    except ConfigError as error:
        raise ModelError(f"{error}".rstrip(".") + "; give a model cnn_run.py wrote.") \
            from None
    if "layers" in info:
        _check_layers(info["layers"], path)
    if "calibration" in info:
        _check_calibration(info["calibration"], path)
    return info


def check_matches(info, source, **expected):
    """Raise ModelError when `info` stores a value that differs from `expected`.

    `expected` holds what the model or the run says (image_size=48, channels=1,
    outputs=8 against the number of classes, classes=[...]); `source` names where
    the info was read ("cnn_info.json inside runs/NAME/model.keras", or a
    params.json). Keys the info does not store are not checked.
    """
    info = info or {}
    for key, value in expected.items():
        if key == "outputs":
            if "classes" in info and value is not None and len(info["classes"]) != value:
                raise ModelError(f"{source}, key classes: names {len(info['classes'])} "
                                 f"classes but the model has {value} output units; give a "
                                 f"model cnn_run.py wrote, unchanged.")
            continue
        if info.get(key) is not None and value is not None and info[key] != value:
            raise ModelError(f"{source}, key {key}: {shown(info[key])} does not match the "
                             f"model or its run ({shown(value)}); the file was changed by hand, so "
                             f"give a model cnn_run.py wrote, or start a new run.")
