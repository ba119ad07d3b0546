"""Parameters from `cnn_params.py`, a configuration file and the command line, checked.

Offers:
  defaults(module)                  -> {lower-case name: value} of the module's UPPER_CASE values
  parse_args(argv, defaults, ...)   -> (params, positional arguments); -h or --help
                                    prints `usage` and every parameter, and exits 0
  split_options(argv)               -> (the arguments before `--`, those after it)
  explicit_names(argv, config_values) -> the parameter names the user set: --name=value
                                    before `--`, and a configuration file's
  read_config_file(path, defaults)  -> {name: value} set by a configuration file
  check_saved(values, defaults, source, extra) -> values read back from a file, checked
                                    like --name=value (ConfigError names file and key)
  check_values(params, source)      raises ConfigError for a value outside its range

A configuration file (nanoGPT's config/*.py) is plain Python that assigns some of
the UPPER_CASE names of cnn_params.py, read without running it; `--name=value` on
the command line then overrides both. `--name=value` sets `name` (the lower-case
form of a parameter); `--` ends them, so a file named `--x.jpg` can follow it.
The value must fit the default's type: int, float (an int is fine), bool
(true/false/1/0/yes/no), str, or JSON for lists and dicts (e.g. --layers='[...]');
a list of names may also be written with commas (--classes=anger,fear, --classes=auto).
"""

import inspect
import json
import math

from cnnlib import config_file
from cnnlib.errors import ConfigError, shown


def defaults(module):
    """Return {lower-case name: value} for every UPPER_CASE value of `module`."""
    return {name.lower(): getattr(module, name) for name in dir(module)
            if name.isupper() and not name.startswith("_")}


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _convert(name, text, default):
    """Return `text` converted to the type of `default`, or raise ConfigError."""
    def bad(expected):
        return ConfigError(f"--{name}={shown(text)[1:-1]}: expected {expected} "
                           f"(the default is {shown(default)}).")

    if isinstance(default, bool):  # before int: bool is a subclass of int
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise bad("true or false")
    if isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            raise bad("a whole number") from None
    if isinstance(default, float):
        try:
            return float(text)
        except ValueError:
            raise bad("a number") from None
    if isinstance(default, (list, dict)):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            if isinstance(default, list) and all(isinstance(v, str) for v in default):
                # A list of names may be written plainly: --classes=auto, --classes=a,b
                return [part.strip() for part in text.split(",") if part.strip()]
            raise bad(f"a JSON {type(default).__name__}") from None
        if not isinstance(value, type(default)):
            raise bad(f"a JSON {type(default).__name__}")
        return value
    return text


def _fits_type(value, default):
    """True when `value` may stand where `default` stands (an int may be a float)."""
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, type(default)) and not (
        isinstance(value, bool) and not isinstance(default, bool))


def _not_finite(value):
    """The first number in `value` (lists and dicts searched) that is not finite, or None.

    Searched without recursion: a file read back may nest lists a thousand deep."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return item
        if isinstance(item, (list, tuple)):
            stack.extend(reversed(item))
        elif isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
    return None


_KINDS = {bool: "true or false", int: "a whole number", float: "a number", str: "a string",
          list: "a list", dict: "a dict"}


def check_saved(values, defaults, source, extra=()):
    """Return `values` read back from a file, checked like `--name=value`.

    Every key must be a parameter of `defaults` (or in `extra`), of its default's
    type (an int may stand for a float, and becomes one), with every number finite
    (JSON's NaN and Infinity included), and within check_values' range. `source`
    names the file in the one-sentence ConfigError, which also names the key.
    """
    if not isinstance(values, dict):
        raise ConfigError(f"{source} is damaged: it should hold a JSON object of "
                          f"parameters, not {type(values).__name__}.")
    checked = {}
    for key, value in values.items():
        if key in extra:
            checked[key] = value
            continue
        if key not in defaults:
            raise ConfigError(f"{source}: {key} is not a parameter of cnn_params.py; the "
                              f"file was changed by hand or by another version.")
        default = defaults[key]
        if not _fits_type(value, default):
            kind = _KINDS.get(type(default), type(default).__name__)
            hint = (f" such as [{shown(value)}]" if isinstance(value, str)
                    and isinstance(default, list) else "")  # CLASSES = "auto"
            raise ConfigError(f"{source}: {key} = {shown(value)} should be {kind}{hint}.")
        bad = _not_finite(value)
        if bad is not None:
            what = f"= {value!r} is" if isinstance(value, float) else f"holds {bad!r},"
            raise ConfigError(f"{source}: {key} {what} not a finite number.")
        checked[key] = float(value) if isinstance(default, float) else value
    check_values(checked, source)
    return checked


def read_config_file(path, defaults):
    """Return {lower-case name: value} of the UPPER_CASE names a configuration file sets.

    The file is plain Python (e.g. `EPOCHS = 60`, `LAYERS = [...]`) but is never run
    (cnnlib/config_file.py reads it): it may hold only a docstring, comments and
    top-level `NAME = value` lines. Anything else is refused, never partly ignored:
    ConfigError names the file and the line, as it does for an unknown name, a value
    of the wrong type, range, or a number that is not finite, and a missing file.
    """
    values = {}
    for name, (value, line) in config_file.read_assignments(path, defaults).items():
        key, where = name.lower(), f"{path}, line {line}"
        try:
            values.update(check_saved({key: value}, defaults, where))
        except ConfigError as error:  # the name as the file writes it
            raise ConfigError(str(error).replace(f"{where}: {key} ", f"{where}: {name} ", 1)
                              ) from None
    return values


def parse_args(argv, defaults, positional=True, usage=""):
    """Apply configuration files, then `--name=value` overrides, to a copy of `defaults`.

    Arguments ending in `.py` are configuration files, applied in order before
    any `--name=value`. Returns (params, positional): the effective parameters
    and the other arguments that do not start with `--`, in order (e.g. image
    paths for cnn_eval.py). When a configuration file was given, params also
    holds "config_file" (its path) and "config_values" (what it set).
    Raises ConfigError for an unknown name (listing the known ones), a bad value
    (wrong type or out of range, see check_values), or, with `positional` False,
    any other argument that is not --name=value.
    """
    allow_positional = positional
    params = dict(defaults)
    positional, overrides, files = [], [], []
    options, after = split_options(argv)
    if "-h" in options or "--help" in options:
        _print_help(usage, defaults)
        raise SystemExit(0)  # as argparse does: help is an answer, not an error
    for arg in options:
        if arg.startswith("--"):
            overrides.append(arg)
        elif arg.endswith(".py"):
            files.append(arg)
        elif allow_positional:
            positional.append(arg)
        else:
            raise ConfigError(f"Unexpected argument {shown(arg)}: parameters are written "
                              f"--name=value, and a configuration file ends in .py.")
    if after and not allow_positional:
        raise ConfigError(f"Unexpected argument {shown(after[0])}: this script takes no "
                          f"files, only --name=value and configuration files.")
    positional += after
    for path in files:
        values = read_config_file(path, defaults)
        params.update(values)
        params["config_file"] = path
        params["config_values"] = {**params.get("config_values", {}), **values}
    for arg in overrides:
        name, has_value, text = arg[2:].partition("=")
        name = name.replace("-", "_").lower()
        if name not in defaults:
            known = ", ".join(f"--{key}" for key in sorted(defaults))
            raise ConfigError(f"Unknown parameter --{name}; known parameters are: {known}.")
        if not has_value:
            if isinstance(defaults[name], bool):  # a bare flag switches a bool on
                params[name] = True
                continue
            raise ConfigError(f"--{name} needs a value: write --{name}=VALUE "
                              f"(the default is {defaults[name]!r}).")
        params[name] = _convert(name, text, defaults[name])
    check_values(params)
    return params, positional


def split_options(argv):
    """(arguments before `--`, arguments after it): everything after `--` is a name,
    never a parameter, so a file may be called `--x.jpg`."""
    argv = list(argv)
    if "--" not in argv:
        return argv, []
    return argv[:argv.index("--")], argv[argv.index("--") + 1:]


def explicit_names(argv, config_values=None):
    """The parameter names the user set: `--name=value` (or a bare `--name`) before
    `--`, in parse_args' spelling, and those a configuration file set."""
    options, _ = split_options(argv)
    given = {arg[2:].partition("=")[0].replace("-", "_").lower()
             for arg in options if arg.startswith("--")}
    return given | set(config_values or {})


def _print_help(usage, defaults):
    """Print `usage` (the script's docstring) and every --name with its default."""
    if usage:
        print(inspect.cleandoc(usage) + "\n")
    print("Parameters, written --name=value, with their defaults:")
    for name in sorted(defaults):  # written as --name=value takes them: JSON for lists
        value = defaults[name]
        value = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
        print(f"  --{name}={value if len(value) <= 60 else value[:57] + '...'}")


def _number(low=None, high=None, low_open=False, high_open=False):
    """A rule: a finite number within [low, high] (or open at either end)."""
    def allowed(value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if not math.isfinite(value):
            return False
        if low is not None and (value <= low if low_open else value < low):
            return False
        return high is None or (value < high if high_open else value <= high)

    left = "(" if low_open else "["
    right = ")" if high_open else "]"
    return allowed, (f"a finite number in {left}{low}, {high}{right}" if high is not None
                     else f"a finite number {'above' if low_open else 'of at least'} {low}")


def _names(value):
    return (isinstance(value, list) and (len(value) >= 2 or value == ["auto"])
            and all(isinstance(v, str) and v.strip() for v in value)
            and len({v.strip().lower() for v in value}) == len(value))


def _text(value):
    return isinstance(value, str) and bool(value.strip())


# What a value must be, for parameters whose type alone does not keep them sensible.
# Upper limits keep a typo (an extra zero or two) from starting a run that cannot end.
_RULES = {
    "epochs": _number(1, 100_000),
    "batch_size": _number(1, 65_536),
    "image_size": _number(8, 1024),
    "channels": (lambda v: v in (1, 3), "1 (grayscale) or 3 (RGB)"),
    "learning_rate": _number(0, 10, low_open=True),
    "noise_sigma": _number(0, 1),
    "validation_fraction": _number(0, 1, low_open=True, high_open=True),
    "early_stopping": _number(0, 100_000),
    "freeze_epochs": _number(0, 100_000),
    "verbose": (lambda v: v in (0, 1, 2), "0, 1 or 2"),
    "seed": _number(0, 2**32 - 1),
    "training_seed": _number(-1, 2**32 - 1),
    "standin_validation_total": _number(0, 1_000_000),
    "standin_train_counts": (lambda v: isinstance(v, list) and all(
        isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= 1_000_000 for n in v)
        and sum(v) > 0, "a list of whole numbers from 0 to 1,000,000, not all 0"),
    "classes": (_names, "a list of two or more distinct, non-empty class names, or auto"),
    "aliases": (lambda v: isinstance(v, dict) and all(
        isinstance(k, str) and isinstance(a, list) and all(isinstance(x, str) for x in a)
        for k, a in v.items()), "a dict of {class: [other names]}"),
    "optimizer": (lambda v: v in ("adam", "adamw"), "adam or adamw"),
    "weight_decay": _number(0, 1),
    "label_smoothing": _number(0, 1, high_open=True),
    "lr_schedule": (lambda v: v in ("none", "cosine", "plateau"), "none, cosine or plateau"),
    "warmup_epochs": _number(0, 100_000),
    "aug_rotation": _number(0, 0.5),
    "aug_zoom": _number(0, 0.9),
    "aug_translation": _number(0, 0.9),
    "aug_contrast": _number(0, 1),
    "aug_brightness": _number(0, 1),
    "data_dir": (_text, "a folder"),
    "runs_dir": (_text, "a folder"),
    "image_column": (_text, "a column name"),
    "label_column": (_text, "a column name"),
    "faces": (lambda v: isinstance(v, str) and v.strip().lower() in {
        "true", "false", "auto", "yes", "no", "1", "0", "on", "off"}, "true, false or auto"),
    "face_margin": _number(0, 2),
    "min_face_size": _number(24, 4096),
    "detector": (lambda v: v in ("haar", "mtcnn"), "haar or mtcnn"),
    "camera": _number(-1, 99),
    "max_frames": _number(0, 10**9),
    "smoothing": _number(0, 3600),
    "min_confidence": _number(0, 1),
    "device": (lambda v: v in ("auto", "cpu", "gpu"), "auto, cpu or gpu"),
    "distribute": (lambda v: v in ("none", "mirrored", "multiworker"),
                   "none, mirrored or multiworker"),
    "cpu_devices": _number(1, 256),
    "max_pixels": _number(64 * 64, 10**9),
    "check_images": _number(1, 1_000_000),
    "calibration_images": _number(1, 1_000_000),
    "mixed_precision": (lambda v: v in ("none", "bfloat16", "float16"),
                        "none, bfloat16 or float16"),
}


def check_values(params, source=None):
    """Raise ConfigError if a parameter's value is outside what it allows.

    The sentence names `--name=value`, or, given the `source` file it was read
    from, the file and the key.
    """
    for name, (allowed, text) in _RULES.items():
        if name in params and not allowed(params[name]):
            if source:
                raise ConfigError(f"{source}: {name} = {shown(params[name])} is not allowed: it "
                                  f"must be {text}.")
            raise ConfigError(f"--{name}={shown(params[name])} is not allowed: it must be {text}.")
