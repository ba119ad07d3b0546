"""Command-line overrides of the values in `cnn_params.py`, type-checked.

Offers:
  defaults(module)            -> dict of the module's UPPER_CASE values, lower-cased keys
  parse_args(argv, defaults)  -> (params dict, positional arguments)
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


def parse_args(argv, defaults):
    """Apply `--name=value` overrides from `argv` to a copy of `defaults`.

    Returns (params, positional): the effective parameters and the arguments that
    do not start with `--`, in order (e.g. image paths for cnn_eval.py).
    Raises ConfigError for an unknown name (listing the known ones) or a bad value.
    """
    params = dict(defaults)
    positional = []
    for arg in argv:
        if not arg.startswith("--"):
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
    return params, positional
