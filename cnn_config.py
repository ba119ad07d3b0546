"""Command-line overrides of the values in `cnn_params.py`, type-checked.

Offers:
  defaults(module)            -> dict of the module's UPPER_CASE values, lower-cased keys
  parse_args(argv, defaults)  -> (params dict, positional arguments)
  check_values(params)        raises ConfigError for a value out of its range
  ConfigError                 raised with one sentence for an unknown name or bad value

`--name=value` sets `name` (the lower-case form of a parameter in cnn_params.py).
The value must fit the default's type: int, float (an int is fine), bool
(true/false/1/0/yes/no), str, or JSON for lists and dicts (e.g. --layers='[...]');
a list of names may also be written with commas (--classes=anger,fear, --classes=auto).
"""

import json


class ConfigError(ValueError):
    """A command-line override names no parameter or has a value of the wrong type."""


def defaults(module):
    """Return {lower-case name: value} for every UPPER_CASE value of `module`."""
    return {name.lower(): getattr(module, name) for name in dir(module)
            if name.isupper() and not name.startswith("_")}


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _convert(name, text, default):
    """Return `text` converted to the type of `default`, or raise ConfigError."""
    def bad(expected):
        return ConfigError(f"--{name}={text}: expected {expected} "
                           f"(the default is {default!r}).")

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


def parse_args(argv, defaults, positional=True):
    """Apply `--name=value` overrides from `argv` to a copy of `defaults`.

    Returns (params, positional): the effective parameters and the arguments that
    do not start with `--`, in order (e.g. image paths for cnn_eval.py).
    Raises ConfigError for an unknown name (listing the known ones), a bad value
    (wrong type or out of range, see check_values), or, with `positional` False,
    any argument that is not --name=value.
    """
    allow_positional = positional
    params = dict(defaults)
    positional = []
    for arg in argv:
        if not arg.startswith("--"):
            if not allow_positional:
                raise ConfigError(f"Unexpected argument {arg!r}: parameters are written "
                                  f"--name=value.")
            positional.append(arg)
            continue
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


# What a value must be, for parameters whose type alone does not keep them sensible.
_RULES = {
    "epochs": (lambda v: v >= 1, "at least 1"),
    "batch_size": (lambda v: v >= 1, "at least 1"),
    "image_size": (lambda v: v >= 8, "at least 8"),
    "channels": (lambda v: v in (1, 3), "1 (grayscale) or 3 (RGB)"),
    "learning_rate": (lambda v: v > 0, "above 0"),
    "noise_sigma": (lambda v: v >= 0, "0 or more"),
    "validation_fraction": (lambda v: 0 < v < 1, "between 0 and 1"),
    "early_stopping": (lambda v: v >= 0, "0 (off) or a number of epochs"),
    "verbose": (lambda v: v in (0, 1, 2), "0, 1 or 2"),
}


def check_values(params):
    """Raise ConfigError if a parameter's value is outside what it allows."""
    for name, (allowed, text) in _RULES.items():
        if name in params and not allowed(params[name]):
            raise ConfigError(f"--{name}={params[name]} is not allowed: it must be {text}.")
