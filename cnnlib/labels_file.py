"""Reading a labels CSV: image paths, their labels, split and subject columns.

Offers:
  read_labels_file(csv, ...)          -> (paths, label names, excluded, unlabeled, splits)
  read_group_column(csv, ...)         -> {path: subject} of a labels CSV's group column

Both read the CSV as UTF-8 and resolve an image's path relative to the CSV's folder
or the images folder inside it; cnnlib/layouts.py finds the CSV and uses them.
Nothing here moves, renames, rewrites or deletes a file.
"""

import csv
import os
from pathlib import Path

from cnnlib.errors import DataError
from cnnlib.files import _is_candidate
from cnnlib.labels import normalise_label, split_name

def _resolved(path):
    """`path` made absolute with links resolved; None for one the system cannot name."""
    try:
        return Path(path).resolve()
    except (OSError, ValueError):  # e.g. a NUL byte in a CSV's path
        return None


def _read_rows(csv_path, required, cure):
    """The rows of a UTF-8 CSV as stripped {column: text}; DataError, one sentence ending
    in `cure`, when a `required` column is missing or the file is not a readable CSV."""
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            for column in required:
                if column not in columns:
                    raise DataError(f"{csv_path} has no column {column!r} (it has "
                                    f"{', '.join(columns)}): {cure}.")
            return [{k.strip(): (v or "").strip() for k, v in row.items() if k}
                    for row in reader]
    except UnicodeDecodeError:
        raise DataError(f"{csv_path} is not UTF-8 text: save it as a UTF-8 CSV.") from None
    except csv.Error as error:  # e.g. a NUL byte, or a field longer than csv allows
        raise DataError(f"{csv_path} is not a CSV this suite can read ({error}): save it "
                        f"as a plain UTF-8 CSV.") from None


def read_labels_file(csv_path, image_column, label_column, images_dir="", split_column=""):
    """Read a CSV of image paths and labels (and, if it has one, a split column).

    Image paths may be relative to the CSV's folder or to `images_dir` inside it.
    Returns (paths, names, excluded, unlabeled, splits): the labelled images that
    exist (Paths), their normalised label names, (path, reason) for every listed
    image left out (missing file, conflicting labels or splits), the images in
    the images folder that the CSV does not list (sorted Paths), and each path's
    split ("train", "validation", "test" or "" when blank or the CSV has no
    column `split_column`).
    A row with an empty label leaves its image unlabeled.
    Raises DataError when the CSV lacks one of the two columns, is not text, or
    has a split value other than those of SPLIT_VALUES.
    """
    csv_path = Path(csv_path)
    base = csv_path.parent
    rows = _read_rows(csv_path, (image_column, label_column),
                      "set --image_column and --label_column")
    has_splits = bool(split_column) and bool(rows) and split_column in rows[0]

    labels_of, splits_of = {}, {}  # listed image -> set of normalised labels, of splits
    for row in rows:
        if row[image_column] and normalise_label(row[label_column]):
            labels_of.setdefault(row[image_column], set()).add(normalise_label(row[label_column]))
            if has_splits:
                splits_of.setdefault(row[image_column], set()).add(split_name(
                    row.get(split_column, ""), f"{csv_path} (column {split_column!r})"))
    folders = [base / images_dir, base] if images_dir else [base]
    paths, names, excluded, splits = [], [], [], []
    inside = Path(os.path.normpath(os.path.abspath(base)))
    for image in sorted(labels_of):
        found = next((f / image for f in folders if (f / image).is_file()), None)
        image_splits = splits_of.get(image, {""})
        # By the path as written: a linked images folder is still the data set's own.
        if found is not None and inside not in Path(
                os.path.normpath(os.path.abspath(found))).parents:
            # The data set is the folder: a path out of it (../x, /etc/x) is not its own.
            excluded.append((str(found), f"listed in {csv_path.name} but outside {base}"))
        elif found is None:
            excluded.append((str(folders[0] / image), f"listed in {csv_path.name} but not found"))
        elif len(labels_of[image]) > 1:
            excluded.append((str(found), f"listed in {csv_path.name} with conflicting labels "
                                         f"{', '.join(sorted(labels_of[image]))}"))
        elif len(image_splits) > 1:
            named = ", ".join(sorted(split or "blank" for split in image_splits))
            excluded.append((str(found), f"listed in {csv_path.name} in more than one split "
                                         f"({named})"))
        else:
            paths.append(found)
            names.append(next(iter(labels_of[image])))
            splits.append(next(iter(image_splits)))
    listed = {p.resolve() for p in paths} | {_resolved(p) for p, _ in excluded}
    image_folder = next(f for f in folders if f.is_dir())  # base always is one
    unlabeled = sorted(p for p in image_folder.iterdir()
                       if _is_candidate(p) and p.resolve() not in listed
                       and p.resolve() != csv_path.resolve())
    return paths, names, excluded, unlabeled, splits


def read_group_column(csv_path, image_column, group_column, images_dir=""):
    """Return {str(path): subject} from the `group_column` of a labels CSV.

    Paths resolve as read_labels_file resolves them (relative to the CSV's folder or
    `images_dir`); a blank subject is left out (the image is a group of its own), and
    the first non-blank subject of an image listed twice wins.
    Raises DataError, one sentence naming the CSV and the column, when the CSV has
    no such column.
    """
    csv_path = Path(csv_path)
    base = csv_path.parent
    folders = [base / images_dir, base] if images_dir else [base]
    rows = _read_rows(csv_path, (group_column,),
                      "name one of them with --group_column, or leave it empty")
    groups = {}
    for row in rows:
        image, group = row.get(image_column, ""), row.get(group_column, "")
        if not image or not group:
            continue
        found = next((f / image for f in folders if (f / image).is_file()), None)
        if found is not None:
            groups.setdefault(str(found), group)
    return groups
