"""Class names: their canonical form, aliases, --classes=auto, and names read from files.

Offers, in the order a run calls them:
  normalise_label(text)               -> a class name in canonical form
  class_lookup(classes, aliases)      -> {normalised name: class index}
  choose_classes(classes, aliases, found) -> the given classes, or those found ("auto")
  split_name(value, where)            -> "train", "validation", "test" or "" of a CSV cell
  label_from_filename(path, lookup)   -> class index named by a file, or None
"""

import re
from pathlib import Path

from cnnlib.errors import DataError

# CLASSES = ["auto"] takes the classes found in the data.
AUTO = "auto"

# Values of a labels CSV's split column (FER2013's "Usage" column holds Training,
# PublicTest and PrivateTest); a blank cell is training data, split as usual.
SPLIT_VALUES = {"train": "train", "training": "train",
                "validation": "validation", "valid": "validation", "val": "validation",
                "dev": "validation",
                "test": "test", "testing": "test", "publictest": "test", "privatetest": "test"}


def normalise_label(text):
    """Return a class name in canonical form: lower case, spaces/dashes as '_'."""
    return re.sub(r"[\s\-_]+", "_", str(text).strip().lower())


def class_lookup(classes, aliases=None):
    """Return {normalised name or alias: class index} for `classes` in order."""
    lookup = {normalise_label(name): index for index, name in enumerate(classes)}
    for index, name in enumerate(classes):
        for alias in (aliases or {}).get(name, []):
            lookup.setdefault(normalise_label(alias), index)  # a class's own name wins
    return lookup


def choose_classes(classes, aliases, found):
    """Return (classes, aliases): the classes to train and the other names of each.

    `classes` is a list of names, or ["auto"] to take the normalised names `found`
    in the data, sorted.
    """
    if list(classes) == [AUTO]:
        if not found:
            raise DataError("--classes=auto found no class names in the data: check "
                            "--data_dir and its layout (see the README).")
        found = sorted(found)
        if len(found) < 2:
            raise DataError(f"--classes=auto found only the class {found[0]} in the data: a "
                            f"classifier needs at least two classes.")
        # A found class that is a known class or alias (happiness, feliz) also
        # answers to that class's other names, so test files like happy.jpg count.
        known = {normalise_label(n): [name, *(aliases or {}).get(name, [])]
                 for name in (aliases or {}) for n in [name, *aliases[name]]}
        return found, {f: known.get(f, []) for f in found}
    return list(classes), dict(aliases or {})


def split_name(value, where="the split column"):
    """Return "train", "validation", "test" or "" (blank) for a split column's cell.

    Raises DataError naming `where` for any other value.
    """
    key = re.sub(r"[\s\-_]+", "", str(value).strip().lower())
    if not key:
        return ""
    if key not in SPLIT_VALUES:
        raise DataError(f"{where} has the value {value!r}: use train, validation or test "
                        f"(or leave it blank for training data).")
    return SPLIT_VALUES[key]


def label_from_filename(path, lookup):
    """Return the class index a file name states (`anger.jpg`, `Raiva_02.png`), or None."""
    stem = Path(path).stem
    key = normalise_label(re.split(r"[^A-Za-z]", stem)[0] if stem else "")
    return lookup.get(key, lookup.get(normalise_label(stem)))
