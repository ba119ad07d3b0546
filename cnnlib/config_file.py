"""Read a configuration file's NAME = value lines without running the file.

Offers:
  read_assignments(path, defaults) -> {NAME: (value, line)} of the parameters it sets

A configuration file (nanoGPT's config/*.py) is plain Python, but the suite never
runs it: a file that only partly applies (a value set inside an `if` or `try`) would
train with defaults and say nothing. So it may hold only a docstring, comments and
top-level `NAME = value` lines (`A, B = 1, 2` too), whose values are worked out
from what is written: literals, names set above, arithmetic on numbers, `+` on
lists and strings, `{**_BLOCK, ...}`. Names starting with "_" are the file's own
helpers; any other name must be a parameter of cnn_params.py. Everything else is a
ConfigError naming the file and the line. cnnlib/config.py checks the values.
"""

import ast
import copy
from pathlib import Path

from cnnlib.errors import ConfigError

# Integers a file may compute stay below this many bits: a parameter never needs
# more, and 9**9**9-like values would take minutes and gigabytes to compute.
_MAX_BITS = 4096
_MAX_ITEMS = 100_000  # and values (items of lists and dicts, nested, and strings' characters)
_MAX_FILE_BYTES = 16 * 2**20  # a configuration file is a few kilobytes

# What each statement of a configuration file that is not NAME = value would be called.
_STATEMENTS = {ast.If: "an if block", ast.Try: "a try block", ast.For: "a for loop",
               ast.While: "a while loop", ast.With: "a with block",
               ast.FunctionDef: "a function", ast.AsyncFunctionDef: "a function",
               ast.ClassDef: "a class", ast.Import: "an import", ast.ImportFrom: "an import",
               ast.Delete: "a del statement", ast.Expr: "an expression on its own",
               ast.Global: "a global statement", ast.Pass: "a pass statement",
               ast.Assert: "an assert", ast.Raise: "a raise", ast.Match: "a match block"}
_OPERATORS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
              ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b,
              ast.FloorDiv: lambda a, b: a // b, ast.Mod: lambda a, b: a % b,
              ast.Pow: lambda a, b: a ** b}


class _NotStatic(Exception):
    """A value of a configuration file that cannot be worked out without running it."""


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _too_many_bits(op, left, right):
    """Whether integer `left` op `right` would exceed _MAX_BITS (judged before computing)."""
    if not (isinstance(left, int) and isinstance(right, int)):
        return False
    if isinstance(op, ast.Pow):
        return right > 0 and abs(left).bit_length() * right > _MAX_BITS
    if isinstance(op, ast.Mult):
        return abs(left).bit_length() + abs(right).bit_length() > _MAX_BITS
    return False


def _items(value, limit=_MAX_ITEMS):
    """How many items `value` holds, nested lists and dicts counted through (a string
    counts its characters); stops counting past `limit`."""
    count, stack = 0, [value]
    while stack and count <= limit:
        item = stack.pop()
        count += len(item) if isinstance(item, str) else 1
        if isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
    return count


def _bounded(value):
    """`value`, unless it holds more than _MAX_ITEMS items: a few lines that refer to
    each other (_A = [_A, _A], thirty times) would otherwise build billions."""
    if _items(value) > _MAX_ITEMS:
        raise _NotStatic(f"a value of more than {_MAX_ITEMS} items")
    return value


def _static_value(node, names):
    """The value of the expression `node`, worked out without running anything.

    Literals, lists, tuples, dicts (with **), names the file set above, unary minus
    and arithmetic on numbers (and + on lists and strings). Raises _NotStatic.
    """
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        items = []
        for element in node.elts:
            if isinstance(element, ast.Starred):
                inner = _static_value(element.value, names)
                if not isinstance(inner, (list, tuple)):
                    raise _NotStatic("* of something that is not a list")
                items.extend(inner)
            else:
                items.append(_static_value(element, names))
        return _bounded(items if isinstance(node, ast.List) else tuple(items))
    if isinstance(node, ast.Dict):
        result = {}
        for key, value in zip(node.keys, node.values):
            if key is None:  # {**_BLOCK, ...}
                inner = _static_value(value, names)
                if not isinstance(inner, dict):
                    raise _NotStatic("** of something that is not a dict")
                result.update(inner)
            else:
                key = _static_value(key, names)
                try:
                    result[key] = _static_value(value, names)
                except TypeError:  # unhashable: a list, or a tuple holding one
                    raise _NotStatic("a list or dict in a dict's key") from None
        return _bounded(result)
    if isinstance(node, ast.Name):
        if node.id not in names:
            raise _NotStatic(f"{node.id} is not set above it in the file")
        return copy.deepcopy(names[node.id])
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _static_value(node.operand, names)
        if not _is_number(value):
            raise _NotStatic("a sign before something that is not a number")
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _static_value(node.left, names), _static_value(node.right, names)
        numbers = _is_number(left) and _is_number(right)
        joined = (isinstance(node.op, ast.Add) and type(left) is type(right)
                  and isinstance(left, (list, str)))
        if not (numbers or joined):
            raise _NotStatic("arithmetic on something that is not a number")
        if isinstance(node.op, ast.Pow) and abs(right) > 64:
            raise _NotStatic("a power above 64")
        if joined and len(left) + len(right) > _MAX_ITEMS:
            raise _NotStatic(f"a list or string of more than {_MAX_ITEMS} items")
        if _too_many_bits(node.op, left, right):
            raise _NotStatic(f"a number of more than {_MAX_BITS} bits")
        try:
            return _OPERATORS[type(node.op)](left, right)
        except (ArithmeticError, ValueError) as error:
            raise _NotStatic(str(error)) from None
    kind = {ast.Call: "a call", ast.Attribute: "an attribute", ast.Subscript: "an item",
            ast.Compare: "a comparison", ast.IfExp: "an if expression"}.get(
        type(node), type(node).__name__)
    raise _NotStatic(f"{kind} is more than a written-out value")


def _refuse(path, node, what, cure):
    return ConfigError(f"{path}, line {node.lineno}: {what} cannot be applied safely; "
                       f"{cure}.")


_ONLY = ("a configuration file holds only a docstring, comments and NAME = value lines, "
         "so set the value on a line of its own (or give --name=value)")


def _target_names(path, node, target):
    """The names `target` assigns: one for NAME, several for NAME, NAME (unpacking)."""
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)) and all(
            isinstance(element, ast.Name) for element in target.elts):
        return [element.id for element in target.elts]
    raise _refuse(path, node, "an assignment to something other than names (a starred "
                  "name, an item or an attribute)",
                  "write one NAME = value line for each parameter")


def _check_name(path, node, name, defaults):
    if not name.startswith("_") and (not name.isupper() or name.lower() not in defaults):
        hint = (f"write it as {name.upper()}" if name.lower() in defaults
                else "check its spelling, or start a helper's name with _")
        raise ConfigError(f"{path}, line {node.lineno}: {name} is not a parameter "
                          f"of cnn_params.py; {hint}.")


def _parse(path):
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"The configuration file {path} is a folder: give the path of a "
                          f".py file such as configs/report.py.")
    if not path.is_file():
        raise ConfigError(f"Failed to find the configuration file {path}: give the path "
                          f"of a .py file such as configs/report.py.")
    try:
        with path.open("rb") as handle:  # a file far larger than any configuration: refused
            source = handle.read(_MAX_FILE_BYTES + 1)
    except OSError as error:
        raise ConfigError(f"{path} cannot be read ({error.strerror or error}): check its "
                          f"permissions.") from None
    if len(source) > _MAX_FILE_BYTES:
        raise ConfigError(f"{path} is larger than {_MAX_FILE_BYTES // 2**20} MiB: a "
                          f"configuration file holds a few NAME = value lines.")
    try:
        return ast.parse(source, filename=str(path))
    except SyntaxError as error:
        raise ConfigError(f"{path}, line {error.lineno or 1}: not valid Python "
                          f"({error.msg}).") from None
    except (ValueError, OSError, RecursionError) as error:  # NUL bytes, unreadable, deep
        raise ConfigError(f"{path} cannot be read as Python ({type(error).__name__}): "
                          f"write plain NAME = value lines.") from None


def read_assignments(path, defaults):
    """Return {NAME: (value, line)} for each parameter the file at `path` sets.

    `defaults` ({lower-case name: default}) says which names are parameters. The
    file's own helpers (names starting with "_") may be used in later values but are
    not returned. Raises ConfigError naming the file and the line for a missing or
    unparsable file, a statement that is not NAME = value, an unknown name, or a
    value that cannot be worked out without running the file.
    """
    names, found = {}, {}
    for node in _parse(path).body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) \
                and isinstance(node.value.value, str):
            continue  # the docstring, or a string used as a comment
        if isinstance(node, ast.AugAssign):
            raise _refuse(path, node, "an augmented assignment (+= and the like)",
                          "write the whole value once, NAME = value")
        if isinstance(node, ast.AnnAssign):
            if node.value is None:
                raise _refuse(path, node, "an annotation without a value",
                              "give the name a value, NAME = value")
            targets = [node.target]
        elif isinstance(node, ast.Assign):
            targets = node.targets
        else:
            what = _STATEMENTS.get(type(node), f"a {type(node).__name__} statement")
            raise _refuse(path, node, what, _ONLY)
        groups = [_target_names(path, node, target) for target in targets]
        for name in (name for group in groups for name in group):
            _check_name(path, node, name, defaults)
        try:
            value = _static_value(node.value, names)
        except _NotStatic as reason:
            raise _refuse(path, node, f"the value of {groups[0][0]} ({reason})",
                          "write the value out (a number, a string, a list or a dict)"
                          ) from None
        except RecursionError:
            raise _refuse(path, node, f"the value of {groups[0][0]} (nested too deeply)",
                          "write the value out plainly") from None
        for target, group in zip(targets, groups):
            if isinstance(target, ast.Name):
                pairs = [(group[0], value)]
            elif isinstance(value, (list, tuple)) and len(value) == len(group):
                pairs = zip(group, value)
            else:
                raise _refuse(path, node, f"unpacking into {len(group)} names",
                              f"give exactly {len(group)} values, or one NAME = value "
                              f"line each")
            for name, item in pairs:
                names[name] = copy.deepcopy(item)
                if not name.startswith("_"):
                    found[name] = (names[name], node.lineno)
    return found
