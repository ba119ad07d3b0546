"""Finding labelled images on disk, in any of the layouts the suite reads.

Offers, in the order a run calls them:
  find_dataset(data_dir, classes, ...) -> classes and (paths, labels) of train,
                                         validation and test (when the data has a test
                                         split), in the first layout that fits:
    find_split_folders(...)           <data_dir>/train/<class>/* (+ validation/, test/)
    find_labels_file(...)             a labels CSV in <data_dir> (+ a split column)
    find_class_tree(...)              <data_dir>/<class>/*
  find_test_set(folder, classes, ...) -> (paths, labels) of a labelled test set for
                                         cnn_eval.py, in the same layouts
  list_split(data_dir, split, lookup) -> (paths, labels) of <data_dir>/<split>/<class>/*
  folder_labels(root)                 -> the normalised names of the class folders
  read_labels_file(csv, ...)          -> (paths, label names, excluded, unlabeled, splits)
  read_group_column(csv, ...)         -> {path: subject} of a labels CSV's group column
                                         (these two: cnnlib/labels_file.py)
  is_labelled_folder(path, labels_file) -> True for a folder of class folders or a labels CSV
  stratified_split(labels, ...)       -> (train, validation) indices, per class
                                         (subject_split.split_by_group with a group column)

Class names live in cnnlib/labels.py, listing files in cnnlib/files.py. Nothing
here reads more of a file than it must, or moves, renames, rewrites or deletes one.
"""

from pathlib import Path

import numpy as np

from cnnlib.errors import DataError
from cnnlib.files import _is_candidate
from cnnlib.labels import choose_classes, class_lookup, normalise_label
from cnnlib.labels_file import read_group_column, read_labels_file


def _accepted(lookup):
    return ", ".join(sorted(lookup))


def _class_dirs(root):
    """Sub-folders of `root` that may be class folders (not hidden), sorted."""
    return sorted(p for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith("."))


def list_split(data_dir, split, lookup):
    """List the images of `<data_dir>/<split>/<class folder>/*`.

    Class folders match a class by name or alias in any letter case.
    Returns (paths, labels): sorted paths (list of Path) and their class indices
    (int64 array of the same length).
    Raises DataError for a missing split folder, an unknown class folder or a
    class folder with no images.
    """
    split_dir = Path(data_dir) / split
    if not split_dir.is_dir():
        raise DataError(f"Failed to find the folder {split_dir}: the data folder must "
                        f"hold {split}/<class>/ image folders (see the README).")
    paths, labels = [], []
    for class_dir in _class_dirs(split_dir):
        key = normalise_label(class_dir.name)
        if key not in lookup:
            raise DataError(f"Unknown class folder {class_dir}: rename it to one of "
                            f"{_accepted(lookup)}, or change CLASSES in cnn_params.py "
                            f"(or use --classes=auto).")
        files = sorted(p for p in class_dir.iterdir() if _is_candidate(p))
        if not files:
            raise DataError(f"The class folder {class_dir} has no images: add some, "
                            f"or move the empty folder out of {split_dir}.")
        paths.extend(files)
        labels.extend([lookup[key]] * len(files))
    if not paths:
        raise DataError(f"No images found under {split_dir}: put images in "
                        f"{split_dir}/<class>/ folders.")
    return paths, np.asarray(labels, dtype=np.int64)


def folder_labels(root):
    """Return the normalised names of the class folders under `root` (sorted, unique)."""
    return sorted({normalise_label(p.name) for p in _class_dirs(root)})


def stratified_split(labels, fraction, seed):
    """Split indices into (train, validation), `fraction` of each class to validation.

    Reproducible from `seed`; every class keeps at least one training image.
    Returns two sorted int64 arrays of indices into `labels`.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, validation = [], []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        held = min(int(round(len(members) * fraction)), len(members) - 1)
        validation.extend(members[:held])
        train.extend(members[held:])
    return np.sort(np.asarray(train, np.int64)), np.sort(np.asarray(validation, np.int64))


def _with_split(paths, labels, fraction, seed, groups=None):
    """{"train": (paths, labels), "validation": ...}: `fraction` of each class held out.

    With `groups` ({str(path): subject}), subject_split.split_by_group keeps each
    subject's images on one side.
    """
    if groups is not None:
        from cnnlib import subject_split

        split = subject_split.split_by_group(labels, [groups.get(str(p), "") for p in paths],
                                             fraction, seed)
        train, validation = split.train, split.validation
    else:
        train, validation = stratified_split(labels, fraction, seed)
    return {"train": ([paths[i] for i in train], labels[train]),
            "validation": ([paths[i] for i in validation], labels[validation])}


def find_split_folders(data_dir, classes, aliases, validation_fraction, seed):
    """Layout 1: <data_dir>/train/<class>/*, and validation/<class>/* or a split of train;
    test/<class>/* when present is the test split.

    Returns (layout, classes, aliases, splits) as the layouts below do.
    """
    data_dir = Path(data_dir)
    has_validation = (data_dir / "validation").is_dir()
    has_test = (data_dir / "test").is_dir()
    found = set(folder_labels(data_dir / "train"))
    for split, present in (("validation", has_validation), ("test", has_test)):
        if present:
            found |= set(folder_labels(data_dir / split))
    classes, aliases = choose_classes(classes, aliases, sorted(found))
    lookup = class_lookup(classes, aliases)
    paths, labels = list_split(data_dir, "train", lookup)
    if has_validation:
        splits = {"train": (paths, labels),
                  "validation": list_split(data_dir, "validation", lookup)}
        layout = "train/validation class folders"
    else:
        splits = _with_split(paths, labels, validation_fraction, seed)
        layout = "train class folders, split"
    if has_test:
        splits["test"] = list_split(data_dir, "test", lookup)
        layout += ", test/ split"
    return layout, classes, aliases, splits


def find_labels_file(data_dir, classes, aliases, labels_file, image_column, label_column,
                     images_dir, validation_fraction, seed, split_column="", group_column=""):
    """Layout 2: a CSV in `data_dir` with image and label columns, split.

    With a column `split_column`, rows marked test are the test split and rows
    marked validation the validation split; the rest (train or blank) are training
    data, split by `validation_fraction` only when no row is marked validation.
    With `group_column`, that split keeps each subject of the column on one side.
    Returns (layout, classes, aliases, splits, excluded, unlabeled, groups): groups
    {str(path): subject}, None without `group_column`.
    """
    csv_path = Path(data_dir) / labels_file
    paths, names, excluded, unlabeled, marks = read_labels_file(
        csv_path, image_column, label_column, images_dir, split_column)
    groups = (read_group_column(csv_path, image_column, group_column, images_dir)
              if group_column else None)
    classes, aliases = choose_classes(classes, aliases, sorted(set(names)))
    lookup = class_lookup(classes, aliases)
    unknown = sorted({n for n in names if n not in lookup})
    if unknown:
        raise DataError(f"{csv_path} has label(s) {', '.join(unknown)} outside the classes "
                        f"{', '.join(classes)}: use --classes=auto, or add them to CLASSES "
                        f"or ALIASES in cnn_params.py.")
    if not paths:
        raise DataError(f"{csv_path} lists no image that exists with a label: check "
                        f"--images_dir and the paths in --image_column={image_column}.")
    labels = np.asarray([lookup[n] for n in names], np.int64)
    layout = f"labels file {labels_file}"
    if group_column:
        layout += f", subjects of its {group_column!r} column"
    if not any(marks):
        return (layout, classes, aliases,
                _with_split(paths, labels, validation_fraction, seed, groups),
                excluded, unlabeled, groups)

    def rows(*wanted):
        keep = [i for i, mark in enumerate(marks) if mark in wanted]
        return [paths[i] for i in keep], labels[keep]

    train_paths, train_labels = rows("train", "")
    if "validation" in marks:
        splits = {"train": (train_paths, train_labels), "validation": rows("validation")}
    else:
        splits = _with_split(train_paths, train_labels, validation_fraction, seed, groups)
    if "test" in marks:
        splits["test"] = rows("test")
    return (f"{layout} with its {split_column!r} column", classes, aliases, splits, excluded,
            unlabeled, groups)


def find_class_tree(data_dir, classes, aliases, validation_fraction, seed):
    """Layout 3: one tree <data_dir>/<class>/*, split.

    Returns (layout, classes, aliases, splits).
    """
    data_dir = Path(data_dir)
    classes, aliases = choose_classes(classes, aliases, folder_labels(data_dir))
    lookup = class_lookup(classes, aliases)
    paths, labels = list_split(data_dir.parent, data_dir.name, lookup)
    return ("class folders, split", classes, aliases,
            _with_split(paths, labels, validation_fraction, seed))


def find_dataset(data_dir, classes, aliases, labels_file="legend.csv", image_column="image",
                 label_column="emotion", images_dir="images", validation_fraction=0.2,
                 seed=0, split_column="split", group_column=""):
    """Find the labelled images of `data_dir` in the first supported layout that fits.

    Layouts, tried in this order: split class folders (train/ and validation/,
    and test/ when present), a labels CSV (`labels_file`, whose `split_column`
    may mark train, validation and test rows), one class-folder tree. Splits take
    `validation_fraction` of each class, reproducibly from `seed`; with
    `group_column` (a subject column of the labels CSV) no subject straddles them.
    Returns a dict: layout (str), classes (list), aliases ({class: other names}),
    train and validation (each (paths, int64 labels)), test ((paths, labels) of
    the data's own test split, or None), excluded ([(path, reason)]),
    unlabeled ([Path]), groups ({str(path): subject}, empty without `group_column`).
    Raises DataError for anything that stops training: a missing folder, an
    unknown class or label, a class with no images, a group column that is not there.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        what = "is a file, not a folder" if data_dir.exists() else "does not exist"
        raise DataError(f"The data folder {data_dir} {what}: check --data_dir.")
    excluded, unlabeled, groups = [], [], None
    has_csv = bool(labels_file) and (data_dir / labels_file).is_file()
    if group_column and ((data_dir / "train").is_dir() or not has_csv):
        raise DataError(f"--group_column={group_column} needs a labels CSV "
                        f"{data_dir / (labels_file or 'legend.csv')} that names each image's "
                        f"subject, and {data_dir} is split by folders instead: leave "
                        f"--group_column empty.")
    if (data_dir / "train").is_dir():
        layout, classes, aliases, splits = find_split_folders(
            data_dir, classes, aliases, validation_fraction, seed)
    elif has_csv:
        layout, classes, aliases, splits, excluded, unlabeled, groups = find_labels_file(
            data_dir, classes, aliases, labels_file, image_column, label_column, images_dir,
            validation_fraction, seed, split_column, group_column)
    elif _class_dirs(data_dir):
        layout, classes, aliases, splits = find_class_tree(
            data_dir, classes, aliases, validation_fraction, seed)
    else:
        raise DataError(f"{data_dir} holds neither train/, {labels_file or 'a labels file'} "
                        f"nor class folders: see the README for the layouts.")
    missing = [classes[c] for c in range(len(classes)) if not np.any(splits["train"][1] == c)]
    if missing:
        raise DataError(f"Class(es) {', '.join(missing)} have no training images in "
                        f"{data_dir}: add images, remove them from CLASSES, or use "
                        f"--classes=auto.")
    return {"layout": layout, "classes": classes, "aliases": aliases, "train": splits["train"],
            "validation": splits["validation"], "test": splits.get("test"),
            "excluded": excluded, "unlabeled": unlabeled, "groups": groups or {}}


def is_labelled_folder(path, labels_file="legend.csv"):
    """True when `path` is a folder holding class folders (or train/, test/) or a labels CSV."""
    path = Path(path)
    if not path.is_dir():
        return False
    return bool(labels_file and (path / labels_file).is_file()) or bool(_class_dirs(path))


def _unknown_classes(where, unknown, found, lookup, classes):
    """DataError for test-set class names the model does not know, listing both sets."""
    return DataError(f"{where} has the class(es) {', '.join(unknown)}, which the model does "
                     f"not know: the model's classes are {', '.join(classes)} (also written "
                     f"{', '.join(sorted(set(lookup) - set(classes)))}), the test set's are "
                     f"{', '.join(found)}; rename the folders or labels to the model's names.")


def find_test_set(folder, classes, aliases, labels_file="legend.csv", image_column="image",
                  label_column="emotion", images_dir="images", split_column="split"):
    """Find a labelled test set in `folder`, in the layouts training reads.

    - `folder`/test/<class>/* (a data folder with a test split): that split;
    - a labels CSV `labels_file`: its rows marked test in `split_column`, or all
      its labelled rows when none is marked;
    - `folder`/<class>/*: every image.
    Class names map through `aliases` to `classes` (the model's), as in training.
    Returns a dict: paths (list of Path), labels (int64 [N]), source (str, what
    was read), excluded ([(path, reason)]).
    Raises DataError for a class the model does not know (naming both sets), a
    data folder with train/ but no test/ split, or a set with no images.
    """
    folder = Path(folder)
    lookup = class_lookup(classes, aliases)
    excluded = []
    if (folder / "test").is_dir():
        tree, source = folder / "test", f"the test/ split of {folder}"
    elif (folder / "train").is_dir():
        raise DataError(f"{folder} is a training data folder with no test/ split: give a "
                        f"folder of class folders to score (e.g. {folder / 'validation'}), "
                        f"or add a test/ split.")
    elif labels_file and (folder / labels_file).is_file():
        csv_path = folder / labels_file
        paths, names, excluded, _, marks = read_labels_file(
            csv_path, image_column, label_column, images_dir, split_column)
        if "test" in marks:
            keep = [i for i, mark in enumerate(marks) if mark == "test"]
            paths, names = [paths[i] for i in keep], [names[i] for i in keep]
            source = f"the rows of {csv_path} marked test"
        else:
            source = f"every labelled image of {csv_path}"
        unknown = sorted({n for n in names if n not in lookup})
        if unknown:
            raise _unknown_classes(csv_path, unknown, sorted(set(names)), lookup, classes)
        if not paths:
            raise DataError(f"{csv_path} lists no image that exists with a label: check "
                            f"--images_dir and the paths in --image_column={image_column}.")
        return {"paths": paths, "labels": np.asarray([lookup[n] for n in names], np.int64),
                "source": source, "excluded": excluded}
    else:
        tree, source = folder, f"the class folders of {folder}"
    found = folder_labels(tree)
    unknown = [name for name in found if name not in lookup]
    if unknown:
        raise _unknown_classes(tree, unknown, found, lookup, classes)
    paths, labels = list_split(tree.parent, tree.name, lookup)
    return {"paths": paths, "labels": labels, "source": source, "excluded": excluded}


