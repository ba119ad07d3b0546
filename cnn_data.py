"""The report's data step: load, resize, balance (Table 1), weigh (Equation 1), batch.

Offers, in the order a run calls them:
  prepare_data(params, standin_dir)   -> PreparedData: everything training needs:
    find_data(data_dir, classes, ...) -> the files and labels of each split
    image_loader(crop_faces, margin, min_face, detector, align) -> (loader, cache tag):
                                         whole images, or each image's largest face
                                         (--crop_faces, cnnlib.faces; --detector, --align)
    load_split(paths, labels, ...)    -> one split decoded (or mapped from the cache)
    check_data(data, data_dir, strict) raises DataError for data that cannot train;
                                         warns of files shared by train and validation
    find_duplicates(sets, classes, cache_dir, keys) -> (groups, items): near-duplicates
                                         within and across train, validation and test
                                         (cnnlib.near_duplicates, hashes cached)
    class_counts(labels, num_classes) -> images per class (Table 1's rows)
    augment_dataset(images, labels, ...) -> the balanced training set (Table 1)
    class_weights(counts)             -> {class index: weight} (Equation 1)
    load_test_set(test_dir, lookup, size, channels) -> labelled test images, or None
  print_class_table(classes, before, after, weights)
  make_dataset(images, labels, ...)   -> tf.data.Dataset of (uint8 images, one-hot labels)
  load_images(paths, size, channels)  -> decoded, resized uint8 images (cnnlib.decode)
  main()                              -> `python cnn_data.py`: the data report
  DataError                           raised with one sentence naming the file or folder

Finding files in each layout lives in cnnlib/layouts.py, decoding in cnnlib/decode.py,
the disk cache in cnnlib/cache.py and the PreparedData record in cnnlib/prepared.py.
Pixels stay uint8 until the model: its first layer rescales them to [0, 1], so the
in-memory set is four times smaller than float32 and inference gets the same
scaling. With the cache on, the decoded files and the balanced training set are
memory-mapped from it (a warm run decodes and augments nothing), and the input
pipeline gathers each batch from those arrays, so a warm run holds one copy of the
data. Nothing here moves, renames, rewrites or deletes a file it reads.
"""

import sys

if __name__ == "__main__":  # first, before TensorFlow loads: a quiet start
    from cnnlib import quiet

    quiet.start()

import functools  # noqa: E402
import os  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import cnnlib  # noqa: F401,E402  (TensorFlow's log level, before TensorFlow loads)
import tensorflow as tf  # noqa: E402

from cnnlib import cache, files, layouts, near_duplicates, standin  # noqa: E402
from cnnlib.decode import decode_image, load_images  # noqa: F401,E402  (load and resize)
from cnnlib.errors import DataError  # noqa: F401,E402
from cnnlib.prepared import PreparedData  # noqa: E402
from cnnlib.labels import AUTO, class_lookup, label_from_filename  # noqa: F401,E402

# Training may hold up to 4x the training images after Table 1's augmentation.
_AUGMENT_FACTOR = 4
_NOISE_CHUNK = 1024  # images given noise at a time: float64 temporaries stay small


def _check_memory(count, size, channels, augment):
    """Raise DataError when `count` images of `size` cannot fit in the free memory."""
    needed = count * size * size * channels * (_AUGMENT_FACTOR if augment else 1)
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return  # not knowable here: let the load try
    if needed > 0.8 * free:
        raise DataError(f"{count} images at --image_size={size} need about "
                        f"{needed / 2**30:.1f} GiB, more than the {free / 2**30:.1f} GiB "
                        f"of free memory: lower --image_size.")


def image_loader(crop_faces=False, margin=0.1, min_face=30, detector="haar", align=False):
    """Return (loader, cache tag): how image files become training images.

    The loader takes (paths, size, channels) and returns (images, kept, skipped)
    like load_images. With `crop_faces` each image is its largest face, found by
    OpenCV's detector, with `margin` around it (data sets of whole photos); a file
    with no face is skipped. The tag keeps such crops apart in the cache.
    `detector` ("haar" or "mtcnn") finds the faces; `align` turns each upright
    first (MTCNN's eye landmarks).
    """
    if not crop_faces:
        return load_images, ""
    from cnnlib import faces

    faces.check_detector(detector, align)
    print(f"Cropping each image to its largest face (margin {margin}, faces of at least "
          f"{min_face} pixels, detector {detector}" + (", aligned" if align else "")
          + "); the crops are cached like decoded images.")
    return (functools.partial(faces.load_face_crops, margin=margin, min_face=min_face,
                              detector=detector, align=align),
            faces.crops_tag(margin, min_face, detector, align))


def find_data(data_dir, classes, aliases, size, channels, seed=0, augment=False,
              **layout_options):
    """Find the labelled images of `data_dir` in the first layout that fits.

    Returns layouts.find_dataset's dict (classes, aliases, layout, train,
    validation and test (or None) as (paths, labels), excluded, unlabeled). Raises DataError when
    the images could not fit in the free memory.
    """
    found = layouts.find_dataset(data_dir, classes, aliases, seed=seed, **layout_options)
    test_count = len(found["test"][0]) if found["test"] else 0
    print(f"Data: {data_dir} ({found['layout']}), {len(found['classes'])} classes, "
          f"{len(found['train'][0])} training and {len(found['validation'][0])} "
          f"validation images listed" + (f", {test_count} test images." if test_count else "."))
    _check_memory(len(found["train"][0]) + len(found["validation"][0]) + test_count, size,
                  channels, augment)
    return found


def load_split(paths, labels, size, channels, cache_dir="", key=None, loader=load_images,
               tag=""):
    """Decode one split's files (from the cache if valid; `key`: its cache key if known).

    `loader` and `tag` are image_loader's: plain decoding, or face crops.

    Returns ((uint8 images [N, size, size, channels], int64 labels [N], paths [N]),
    unreadable [(path, reason)], kept): kept indexes `paths` (int64 [N]); cached
    images are memory-mapped.
    """
    if cache_dir:
        images, kept, unreadable = cache.load_cached(paths, size, channels, cache_dir,
                                                     loader, tag, key)
    else:
        images, kept, unreadable = loader(paths, size, channels)
    return (images, labels[kept], [paths[i] for i in kept]), unreadable, kept


def check_data(data, data_dir, strict=False, twins=None):
    """Raise DataError for loaded data that cannot be trained on.

    With `strict`, any skipped file is an error. Files byte-identical in training
    and validation (a leak that inflates validation accuracy) get a warning;
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
        counts = class_counts(data["train"][1], len(data["classes"]))
        if counts.min() < 2:  # each class keeps one image for training
            raise DataError(f"Splitting {data_dir} leaves no validation image: a class needs "
                            f"two images or more to give one to validation; add images.")
        raise DataError(f"Splitting {data_dir} leaves no validation image: raise "
                        f"--validation_fraction.")
    counts = class_counts(data["train"][1], len(data["classes"]))
    if not counts.all():
        empty = ", ".join(data["classes"][c] for c in np.flatnonzero(counts == 0))
        raise DataError(f"No readable training image is left for {empty} in {data_dir}: "
                        f"see the skipped files above.")
    if twins is None:
        twins = files.identical_files(data["train"][2], data["validation"][2])
    if twins:
        warnings.warn(f"{len(twins)} validation image(s) are byte-identical to training "
                      f"images (e.g. {twins[0][1]} and {twins[0][0]}): validation accuracy "
                      f"will look better than it is; remove the copies.", stacklevel=2)
    return twins


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


def _drop_rows(split, drop):
    """(images, labels, paths) of one split without the rows `drop` (sorted indices)."""
    images, labels, paths = split
    keep = np.setdiff1d(np.arange(len(labels)), np.asarray(drop, np.int64))
    return (images[keep] if images is not None else None, labels[keep],
            [paths[i] for i in keep])


def _hashes_cached(cache_dir, key, count):
    """True when the hashes of the images with cache key `key` are in `cache_dir`."""
    if not cache_dir or not key:
        return False
    entry = cache.read_entry(cache_dir, "phash",
                             cache.derived_key(near_duplicates.HASH_CACHE_TAG, key))
    return entry is not None and len(entry[0]) == count


def _split_of_entry(found_split, small):
    """(train, unreadable, kept) as load_split gives them, from a balanced cache entry:
    the files' labels and paths, without their pixels (the balanced set has them)."""
    paths, labels = found_split
    kept = small["kept"]
    unreadable = list(zip(small["skipped_paths"].tolist(), small["skipped_reasons"].tolist()))
    for _, reason in unreadable:  # the same warnings as a fresh load
        warnings.warn(f"Skipped {reason}", stacklevel=3)
    return (None, labels[kept], [paths[i] for i in kept]), unreadable, kept


def _checked(data, data_dir, strict, cache_dir, keys):
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


def prepare_data(params, standin_dir=None):
    """Find, load, check and balance the data that `params` name; weigh the classes.

    The stand-in is generated when `params["data_dir"]` is `standin_dir` (the
    default data folder) and absent; any other missing folder is an error.
    Returns a PreparedData (cnnlib/prepared.py): the effective classes ("auto"
    resolved), the balanced training set and the validation set, Table 1's counts
    and Equation 1's weights, the test set of Table 3 and what was left out.
    The test set is the data's own test split (a test/ folder, or CSV rows marked
    test) when it has one, else TEST_DIR's labelled images (the report's 8 test
    images of the stand-in).
    Near-duplicates within and across the sets are found (find_duplicates) and
    kept on the PreparedData; with DEDUPE their copies leave the in-memory training
    and validation arrays before balancing (the test set is never shrunk), and the
    balanced set is then not cached. With GROUP_COLUMN the split keeps each subject
    on one side. Raises DataError for data that cannot be trained on, and with
    STRICT for any file that would be skipped.
    """
    data_dir, seed = params["data_dir"], params["seed"]
    if standin_dir is not None and data_dir == standin_dir:
        standin.ensure_standin(data_dir, params["classes"], params["standin_train_counts"],
                               params["standin_validation_total"], seed)
    is_standin = standin.is_standin(data_dir)
    if is_standin:
        print(f"Data: {data_dir} is the synthetic stand-in for QIDER (drawn faces, "
              f"not QIDER). Point --data_dir at QIDER to use the real data.")
    size, channels, cache_dir = params["image_size"], params["channels"], params["cache_dir"]
    found = find_data(data_dir, params["classes"], params["aliases"], size, channels,
                      seed, params["augment"], labels_file=params["labels_file"],
                      image_column=params["image_column"], label_column=params["label_column"],
                      images_dir=params["images_dir"],
                      validation_fraction=params["validation_fraction"],
                      split_column=params["split_column"],
                      group_column=params.get("group_column", ""))
    dedupe = bool(params.get("dedupe", False))
    classes, num_classes = found["classes"], len(found["classes"])
    loader, tag = image_loader(params["crop_faces"], params["face_margin"],
                               params["min_face_size"], params["detector"], params["align"])
    keys = {split: cache.cache_key(found[split][0], size, channels, tag) if cache_dir else None
            for split in ("train", "validation")}
    # The balanced set is cached too: a warm run maps it from disk, never decoding,
    # augmenting or holding the training originals beside it.
    balanced_key = (cache.derived_key("balanced", keys["train"], found["train"][1], num_classes,
                                      params["noise_sigma"], seed)
                    if cache_dir and params["augment"] and not dedupe else None)
    balanced = cache.read_entry(cache_dir, "balanced", balanced_key) if balanced_key else None
    if balanced is None:
        train, train_unreadable, kept = load_split(*found["train"], size, channels, cache_dir,
                                                   keys["train"], loader, tag)
    else:
        train, train_unreadable, kept = _split_of_entry(found["train"], balanced[1])
    validation, val_unreadable, _ = load_split(*found["validation"], size, channels, cache_dir,
                                               keys["validation"], loader, tag)
    test, test_unreadable = None, []
    if found["test"] is not None:
        keys["test"] = cache.cache_key(found["test"][0], size, channels, tag) if cache_dir else None
        test, test_unreadable, _ = load_split(*found["test"], size, channels, cache_dir,
                                              keys["test"], loader, tag)
    skipped = (list(found["excluded"]) + train_unreadable + val_unreadable + test_unreadable)
    leaks = _checked({"classes": classes, "layout": found["layout"], "train": train,
                      "validation": validation, "skipped": skipped},
                     data_dir, params["strict"], cache_dir, keys)

    # Near-duplicates: hashing only reads the decoded images (no array, order or seed
    # changes); a warm balanced run maps the originals only when the hashes are not cached.
    sets = {"train": train, "validation": validation}
    if test is not None:
        sets["test"] = test
    if train[0] is None and not _hashes_cached(cache_dir, keys["train"], len(train[1])):
        with warnings.catch_warnings():  # its skipped files were reported already
            warnings.simplefilter("ignore")
            sets["train"] = load_split(*found["train"], size, channels, cache_dir,
                                       keys["train"], loader, tag)[0]
    groups, items = find_duplicates(sets, classes, cache_dir, keys)
    split_files = {name: [str(p) for p in split[2]] for name, split in sets.items()}
    dropped = []
    if dedupe and groups:
        drop = [i for i in near_duplicates.to_drop(groups, items) if items[i].set_name != "test"]
        dropped = [items[i].file for i in drop]
        offset = 0
        for name in ("train", "validation"):
            count = len(sets[name][1])
            mine = [i - offset for i in drop if offset <= i < offset + count]
            if name == "train":
                train = _drop_rows(train, mine)
            else:
                validation = _drop_rows(validation, mine)
            offset += count
        print(f"--dedupe=True: left out {len(drop)} near-duplicate copies "
              f"({sum(i < len(sets['train'][1]) for i in drop)} training, "
              f"{len(drop) - sum(i < len(sets['train'][1]) for i in drop)} validation), "
              f"in memory only; nothing on disk was touched.")
    elif dedupe:
        print("--dedupe=True: no near-duplicates to leave out.")

    # Table 1: originals, mirrors, noisy copies; then Equation 1's weights.
    before = class_counts(train[1], num_classes)
    if balanced is not None:  # the same set, mapped from the cache
        train_images, train_labels = balanced[0], balanced[1]["labels"]
    elif params["augment"]:
        train_images, train_labels = augment_dataset(train[0], train[1], num_classes,
                                                     params["noise_sigma"], seed)
    else:
        train_images, train_labels = train[0], train[1]
    after = class_counts(train_labels, num_classes)
    weights = class_weights(after) if params["class_weights"] else None
    if balanced is None and balanced_key:
        train_images = cache.write_entry(
            cache_dir, "balanced", balanced_key, train_images, labels=train_labels,
            kept=kept, skipped_paths=np.asarray([p for p, _ in train_unreadable], dtype=str),
            skipped_reasons=np.asarray([r for _, r in train_unreadable], dtype=str))

    if test is not None:
        test = test[:2]
        test_source = f"the data's own test split ({len(test[1])} images)"
    else:  # no test split: the report's test images, named after their class
        test = load_test_set(params["test_dir"], class_lookup(classes, found["aliases"]),
                             size, channels, loader)
        test_source = (f"the labelled images in {params['test_dir']} ({len(test[1])} images)"
                       if test is not None else "none (no test split, no labelled images in "
                       f"{params['test_dir']})")
    print(f"Test set (Table 3's \"test\" column): {test_source}.")
    return PreparedData(classes=classes, aliases=found["aliases"], train_images=train_images,
                        train_labels=train_labels, val_images=validation[0],
                        val_labels=validation[1], counts_before=before, counts_after=after,
                        weights=weights, layout=found["layout"], standin=is_standin,
                        test=test, test_source=test_source, skipped=skipped,
                        unlabeled=found["unlabeled"], leaks=leaks,
                        val_paths=[str(p) for p in validation[2]], duplicates=groups,
                        duplicate_items=items, split_files=split_files,
                        subjects=found.get("groups", {}), dropped=dropped)


def print_class_table(classes, before, after, weights):
    """Print the data's own Table 1 (counts before/after augmentation) and weights."""
    width = max(8, *(len(name) for name in classes))
    print(f"{'class':<{width}} {'before':>7} {'after':>7} {'weight':>7}")
    for index, name in enumerate(classes):
        weight = f"{weights[index]:.4f}" if weights else "-"
        print(f"{name:<{width}} {before[index]:>7} {after[index]:>7} {weight:>7}")
    print(f"{'total':<{width}} {before.sum():>7} {after.sum():>7}")


def load_test_set(test_dir, lookup, size, channels, loader=None):
    """Return (images, labels) of the labelled images in `test_dir`, or None if absent.

    A file's class comes from its name (`anger.jpg`, `raiva_2.png`), as the report's
    8 test images are named. `loader` is image_loader's (default: load_images).
    """
    if not test_dir or not os.path.isdir(test_dir):
        return None
    paths = files.list_images([test_dir])
    labels = [label_from_filename(p, lookup) for p in paths]
    labelled = [p for p, label in zip(paths, labels) if label is not None]
    if not labelled:
        return None
    images, kept, _ = (loader or load_images)(labelled, size, channels)
    if not len(kept):
        return None
    return images, np.asarray([label for label in labels if label is not None])[kept]


def class_counts(labels, num_classes):
    """Return the number of images of each class, an int64 array [num_classes]."""
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)


def _add_noise(sources, sigma, rng, chunk=_NOISE_CHUNK):
    """Return uint8 copies of the images of `sources` (arrays, in order) with Gaussian
    noise of std `sigma` (in [0, 1] units), as one array.

    The noise is drawn `chunk` images at a time, in order: the same numbers as
    one draw for all of them, without a float64 copy of the whole class.
    """
    total = sum(len(images) for images in sources)
    out = np.empty((total, *sources[0].shape[1:]), dtype=np.uint8)
    at = 0
    for images in sources:
        for start in range(0, len(images), chunk):
            part = images[start:start + chunk]
            noisy = part.astype(np.float32) + rng.normal(0.0, sigma * 255.0, part.shape)
            out[at:at + len(part)] = np.clip(np.round(noisy), 0, 255).astype(np.uint8)
            at += len(part)
    return out


def augment_dataset(images, labels, num_classes, noise_sigma, seed):
    """Balance the classes as the report does (Table 1).

    Each class gets its originals, then their left-right mirrors, then noisy copies
    of both, and is cut at the size of the largest class:
    after = min(4 x before, max(before)). When a class is cut, originals are kept
    first, then mirrors, then noisy copies; which ones is drawn from `seed`.
    Takes uint8 images [N, H, W, C] and labels [N]; returns (images, labels) of the
    augmented set, grouped by class in class order. The result is written into one
    array made up front, so the peak is the input, the result and one class's
    noisy copies.
    """
    labels = np.asarray(labels, dtype=np.int64)
    counts = class_counts(labels, num_classes)
    target = int(counts.max()) if len(labels) else 0
    rooms = np.minimum(4 * counts, target)
    rng = np.random.default_rng(seed)

    def take(stage, need):
        # A cut stage keeps a seeded random subset, in its original order.
        if len(stage) <= need:
            return stage
        return stage[np.sort(rng.choice(len(stage), size=need, replace=False))]

    out_images = np.empty((int(rooms.sum()), *images.shape[1:]), dtype=np.uint8)
    at = 0
    for c in range(num_classes):
        n, room = int(counts[c]), int(rooms[c])
        if n == 0:
            continue
        originals = images[labels == c]
        mirrors = originals[:, :, ::-1, :]  # the report's "180 degrees about Y"
        parts = [originals]
        if room > n:
            parts.append(take(mirrors, room - n))
        if room > 2 * n:
            parts.append(take(_add_noise([originals, mirrors], noise_sigma, rng), room - 2 * n))
        for part in parts:
            out_images[at:at + len(part)] = part
            at += len(part)
    return out_images, np.repeat(np.arange(num_classes, dtype=np.int64), rooms)


def class_weights(counts):
    """Equation 1: w_c = 2 - (n_c - min) / (max - min), so weights lie in [1, 2].

    `counts` are the images per class after augmentation. Returns
    {class index: weight} for Keras `class_weight`; every weight is 1 when all
    classes are the same size. Classes with no images get weight 1 (they never occur).
    """
    counts = np.asarray(counts, dtype=np.float64)
    present = counts[counts > 0]
    low, high = present.min(), present.max()
    if high == low:
        return {c: 1.0 for c in range(len(counts))}
    return {c: float(2.0 - (n - low) / (high - low)) if n > 0 else 1.0
            for c, n in enumerate(counts)}


def make_dataset(images, labels, num_classes, batch_size, shuffle=False, seed=None):
    """Return a tf.data pipeline of (uint8 images [B, H, W, C], one-hot float32 [B, classes]).

    The arrays are already decoded, so the pipeline only shuffles (each epoch,
    reproducibly from `seed`), batches and prefetches. It shuffles and batches
    indices and gathers each batch from `images`, so the images are never
    copied into TensorFlow: a memory-mapped cache is read a batch at a time and
    stays one copy. (The order is the same as shuffling the images themselves.)
    """
    labels = np.asarray(labels, np.int64)
    shape = images.shape[1:]

    def gather(indices):
        return np.asarray(images[indices]), labels[indices]

    def load(indices):
        x, y = tf.numpy_function(gather, [indices], (tf.uint8, tf.int64), stateful=False)
        x.set_shape([None, *shape])
        y.set_shape([None])
        return x, tf.one_hot(y, num_classes)

    dataset = tf.data.Dataset.range(len(labels))
    if shuffle:
        dataset = dataset.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size).map(load, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def main(argv=None):
    """`python cnn_data.py [--name=value ...]`: the data report, without training.

    Prints the class counts before and after augmentation (the data's own Table 1)
    and the Equation 1 weights, and saves a grid of preprocessed examples per
    class, with one augmented example each, as RUNS_DIR/data_report-<time>.png,
    and the near-duplicate groups as data_report-<time>-duplicates.csv beside it.
    Returns the exit status.
    """
    from datetime import datetime

    import cnn_params
    from cnnlib import config, plots, runs
    from cnnlib.errors import UserError, os_error_sentence

    try:
        params, _ = config.parse_args(sys.argv[1:] if argv is None else argv,
                                      config.defaults(cnn_params), positional=False)
        runs.check_runs_dir(params["runs_dir"], params["data_dir"])
        if params["cache_dir"]:
            runs.check_outside("cache_dir", params["cache_dir"], params["data_dir"])
        data = prepare_data(params, standin_dir=cnn_params.DATA_DIR)
        print_class_table(data.classes, data.counts_before, data.counts_after, data.weights)
        images, labels = data.train_images, data.train_labels
        # Augmented copies follow the originals of each class: the last one is one.
        augmented = {c: images[np.flatnonzero(labels == c)[-1]]
                     for c in range(len(data.classes))
                     if data.counts_after[c] > data.counts_before[c]}
        # Claimed at once: a process started in the same second gets another name.
        path = runs.claim_path(Path(params["runs_dir"]) /
                               f"data_report-{datetime.now():%Y%m%d-%H%M%S}.png")
        plots.plot_examples(images, labels, data.classes, path, augmented=augmented)
        duplicates = near_duplicates.write_groups(
            path.with_name(path.stem + "-duplicates.csv"), data.duplicates, data.duplicate_items)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: {os_error_sentence(error)}", file=sys.stderr)
        return 2
    print(f"Examples per class: {path}")
    print(f"Near-duplicate groups: {duplicates}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
