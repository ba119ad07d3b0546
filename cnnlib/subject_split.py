"""Subject-aware training/validation splits: each person's images on one side only.

Offers, in the order a run uses them:
  Split                               a record: training and validation indices
  split_by_group(labels, groups, validation_fraction, seed)
                                      -> Split: whole groups on each side, stratified by
                                         class as far as the groups allow
  straddling(groups, split)           -> the groups found on both sides (none, if sound)
  class_shares(labels, split)         -> {class: validation share}: how well it stratified
  write_split(path, files, splits, groups) -> split.csv (file, split, group), atomically
  read_split(path)                    -> [(file, split, group)] as written

Why: a random per-image split puts one person's photos on both sides, and the model
is then scored partly on faces it has learnt (CK+ scores of 99% come from that).
The split is greedy, in the spirit of scikit-learn's StratifiedGroupKFold: groups
are taken largest first (ties in a seeded random order), and each goes to the side
whose class counts it brings closer to their targets (validation_fraction of every
class on the validation side). A group's images never part. An image with no group
(an empty value) is a group of its own.
"""

import csv
import io
from dataclasses import dataclass

import numpy as np

from cnnlib import atomic

SPLIT_COLUMNS = ("file", "split", "group")


@dataclass
class Split:
    """Indices into the images given, sorted: which train and which validate."""
    train: np.ndarray       # int64 [K]
    validation: np.ndarray  # int64 [M]


def _group_ids(groups):
    """int64 [N] group index of each image; an empty group is the image's own."""
    ids, seen = np.empty(len(groups), np.int64), {}
    for i, group in enumerate(groups):
        key = ("", i) if group is None or str(group).strip() == "" else ("g", str(group).strip())
        ids[i] = seen.setdefault(key, len(seen))
    return ids


def split_by_group(labels, groups, validation_fraction=0.2, seed=0):
    """Split images into training and validation with every group on one side only.

    `labels`: class of each image (int or str) [N]; `groups`: its subject (any
    value, "" or None for none) [N]. Each class's validation count aims at
    `validation_fraction` of it; whole groups make that approximate. With two or
    more groups, both sides get at least one. The same arguments give the same
    Split. Returns Split.
    """
    labels = np.asarray(labels)
    if len(labels) != len(groups):
        raise ValueError(f"{len(labels)} labels but {len(groups)} groups")
    if not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction must be between 0 and 1; got "
                         f"{validation_fraction}")
    _, classes = np.unique(labels, return_inverse=True)
    ids = _group_ids(groups)
    n_groups, n_classes = (int(ids.max()) + 1 if len(ids) else 0), int(classes.max(initial=-1)) + 1
    counts = np.zeros((n_groups, n_classes), np.int64)
    np.add.at(counts, (ids, classes), 1)
    target = validation_fraction * counts.sum(axis=0)           # per class, validation side
    rest = (1 - validation_fraction) * counts.sum(axis=0)       # per class, training side
    weight = 1.0 / np.maximum(counts.sum(axis=0), 1)            # each class counts alike
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_groups)
    order = order[np.argsort(-counts.sum(axis=1)[order], kind="stable")]  # largest first
    validation_counts = np.zeros(n_classes)
    train_counts = np.zeros(n_classes)
    on_validation = np.zeros(n_groups, bool)
    for group in order:
        g = counts[group]
        # Squared shortfall of each side after the move, class-weighted: where it hurts less.
        cost_validation = (np.sum(weight * (target - validation_counts - g) ** 2)
                           + np.sum(weight * (rest - train_counts) ** 2))
        cost_train = (np.sum(weight * (target - validation_counts) ** 2)
                      + np.sum(weight * (rest - train_counts - g) ** 2))
        if cost_validation < cost_train:
            on_validation[group] = True
            validation_counts += g
        else:
            train_counts += g
    if n_groups >= 2 and (on_validation.all() or not on_validation.any()):
        # Degenerate (e.g. one huge group): move the smallest group across.
        on_validation[order[-1]] = not on_validation[order[-1]]
    side = on_validation[ids]
    return Split(np.flatnonzero(~side).astype(np.int64), np.flatnonzero(side).astype(np.int64))


def straddling(groups, split):
    """Return the set of (non-empty) groups with images on both sides of `split`."""
    def named(indices):
        return {str(groups[i]).strip() for i in indices
                if groups[i] is not None and str(groups[i]).strip()}
    return named(split.train) & named(split.validation)


def class_shares(labels, split):
    """Return {class: share of its images on the validation side}."""
    labels = np.asarray(labels)
    shares = {}
    for name in np.unique(labels):
        total = int(np.sum(labels == name))
        shares[name.item() if hasattr(name, "item") else name] = \
            float(np.sum(labels[split.validation] == name)) / total
    return shares


def write_split(path, files, splits, groups=None):
    """Write split.csv: one row an image, file, split, group (empty when none).

    `splits` maps a split's name ("train", "validation", "test") to indices into
    `files`; `groups` is each file's group or None. csv.QUOTE_ALL and UTF-8, so any
    legal file name reads back exactly. Written atomically. Returns `path`.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow(SPLIT_COLUMNS)
    rows = []
    for name, indices in splits.items():
        for i in np.asarray(indices, np.int64):
            group = "" if groups is None or groups[i] is None else str(groups[i])
            rows.append((int(i), name, group))
    for i, name, group in sorted(rows):
        writer.writerow([str(files[i]), name, group])
    with atomic.writing(path) as partial:
        with open(partial, "w", newline="", encoding="utf-8") as handle:
            handle.write(buffer.getvalue())
    return path


def read_split(path):
    """Return [(file, split, group)] from a split.csv written by write_split."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if tuple(header or ()) != SPLIT_COLUMNS:
            raise ValueError(f"{path} is not a split.csv (its header is {header}).")
        return [tuple(row) for row in reader]
