"""Checks of loaded data: what cannot train, and what leaks between the sets.

Offers, in the order cnn_data.prepare_data calls them:
  check_data_cached(data, data_dir, strict, cache_dir, keys) -> check_data's pairs,
                                       cached by the files' cache keys
    check_data(data, data_dir, strict, twins) raises DataError for data that cannot
                                       train; warns of files shared by train and
                                       validation, and of a class with no validation
                                       image; returns those pairs
  hashes_cached(cache_dir, key, count) -> True when a set's perceptual hashes are cached
  find_duplicates(sets, classes, cache_dir, keys) -> (groups, items): near-duplicates
                                       within and across train, validation and test
                                       (cnnlib.near_duplicates, hashes cached)
"""

import warnings

import numpy as np

from cnnlib import cache, files, near_duplicates
from cnnlib.errors import DataError, SuiteWarning


def _class_counts(data, split="train"):
    """The images of each class in `split` of `data`, an int64 array [classes]."""
    return np.bincount(np.asarray(data[split][1], dtype=np.int64),
                       minlength=len(data["classes"]))


def check_data(data, data_dir, strict=False, twins=None):
    """Raise DataError for loaded data that cannot be trained on.

    With `strict`, any skipped file is an error. Files byte-identical in training
    and validation (a leak that inflates validation accuracy) get a warning, and so does
    a class with no validation image;
    `twins`, when given, are those pairs already found (from the cache).
    Returns the pairs.
    """
    skipped = data["skipped"]
    if strict and skipped:
        raise DataError(f"--strict=True and {len(skipped)} file(s) cannot be used, the "
                        f"first: {skipped[0][1].rstrip('.')}; fix or remove them, or run "
                        f"without --strict to skip them.")
    if len(data["validation"][1]) == 0:
        if "split" not in data["layout"]:  # a validation/ folder of its own
            raise DataError(f"No validation image of {data_dir} could be read: see the "
                            f"skipped files above, and fix or replace them.")
        counts = _class_counts(data)
        if counts.min() < 2:  # each class keeps one image for training
            raise DataError(f"Splitting {data_dir} leaves no validation image: a class needs "
                            f"two images or more to give one to validation; add images.")
        raise DataError(f"Splitting {data_dir} leaves no validation image: raise "
                        f"--validation_fraction.")
    counts = _class_counts(data)
    if not counts.all():
        empty = ", ".join(data["classes"][c] for c in np.flatnonzero(counts == 0))
        raise DataError(f"No readable training image is left for {empty} in {data_dir}: "
                        f"see the skipped files above.")
    in_validation = _class_counts(data, "validation")
    if not in_validation.all():
        absent = ", ".join(data["classes"][c] for c in np.flatnonzero(in_validation == 0))
        warnings.warn(f"The validation split of {data_dir} has no image of {absent}: its "
                      f"recall and balanced accuracy leave that class out, and the "
                      f"calibration is fitted without it; add validation images of it.",
                      SuiteWarning, stacklevel=2)
    if twins is None:
        twins = files.identical_files(data["train"][2], data["validation"][2])
    if twins:
        warnings.warn(f"{len(twins)} validation image(s) are byte-identical to training "
                      f"images (e.g. {twins[0][1]} and {twins[0][0]}): validation accuracy "
                      f"will look better than it is; remove the copies.", SuiteWarning,
                      stacklevel=2)
    return twins


def check_data_cached(data, data_dir, strict, cache_dir, keys):
    """check_data, with the train/validation duplicates cached by the files' keys.

    Finding byte-identical files reads every file whose size another shares: at
    scale, most of them; the pairs found only change when a file does.
    """
    key = cache.derived_key("leaks", keys["train"], keys["validation"]) if cache_dir else None
    twins = cache.read_note(cache_dir, "leaks", key) if key else None
    leaks = check_data(data, data_dir, strict,
                       [tuple(pair) for pair in twins] if twins is not None else None)
    if key and twins is None:
        cache.write_note(cache_dir, "leaks", key, [[str(a), str(b)] for a, b in leaks])
    return leaks


def find_duplicates(sets, classes, cache_dir="", keys=None):
    """Find near-duplicate images within and across `sets`, and print one line of counts.

    `sets` is {set name: (uint8 images or None, int labels, paths)} ("train",
    "validation", "test"); `keys` {set name: the images' cache key} lets each set's
    hashes be read from and written to `cache_dir` (images None: only from the cache,
    so a key is needed). Hashing reads the images only: no array, order or random
    state changes. Returns (groups, items): near_duplicates Groups, largest first,
    and the Items (set, file, class name) their indices point into, in `sets` order.
    """
    keys = keys or {}
    hashes, items = [], []
    for name, (images, labels, paths) in sets.items():
        key = (cache.derived_key(near_duplicates.HASH_CACHE_TAG, keys[name])
               if cache_dir and keys.get(name) else None)
        cached = cache.read_entry(cache_dir, "phash", key) if key else None
        if cached is not None and len(cached[0]) == len(paths):
            found = near_duplicates.Hashes.from_array(cached[0])
        else:
            found = near_duplicates.hash_images(images)
            if key:
                cache.write_entry(cache_dir, "phash", key, found.as_array())
        hashes.append(found)
        items += [near_duplicates.Item(name, str(path), classes[int(label)])
                  for path, label in zip(paths, labels)]
    every = near_duplicates.Hashes(
        np.concatenate([h.hashes for h in hashes]) if hashes else np.zeros(0, np.uint64),
        np.concatenate([h.features for h in hashes]) if hashes
        else np.zeros((0, near_duplicates.FEATURES), np.float16))
    groups = near_duplicates.find_groups(every, items)
    summary = near_duplicates.summarise(groups)
    across = {pair: sum(set(pair) <= set(g.sets) for g in groups)
              for pair in (("train", "validation"), ("train", "test"), ("validation", "test"))}
    print(f"Near-duplicates (perceptual hash): {summary.groups} group(s), {summary.files} "
          f"file(s) in them, {summary.across_sets} across sets (train/validation "
          f"{across[('train', 'validation')]}, train/test {across[('train', 'test')]}, "
          f"validation/test {across[('validation', 'test')]}), {summary.conflicting} with "
          f"conflicting labels.")
    return groups, items


def hashes_cached(cache_dir, key, count):
    """True when the hashes of the images with cache key `key` are in `cache_dir`."""
    if not cache_dir or not key:
        return False
    entry = cache.read_entry(cache_dir, "phash",
                             cache.derived_key(near_duplicates.HASH_CACHE_TAG, key))
    return entry is not None and len(entry[0]) == count
