"""The report's data step: load, resize, balance (Table 1), weigh (Equation 1), batch.

Offers, in the order a run calls them:
  prepare_data(params, standin_dir)   -> PreparedData: everything training needs:
    find_data(data_dir, classes, ...) -> the files and labels of each split
    image_loader(crop_faces, ...)     -> (loader, cache tag): whole images or faces
    load_split(paths, labels, ...)    -> one split decoded (or mapped from the cache)
                                         (these three, and load_test_set: cnnlib/loading.py)
    check_data_cached(data, ...)      raises DataError for data that cannot train;
                                         warns of files shared by train and validation
                                         and of a class with no validation image
    find_duplicates(sets, classes, cache_dir, keys) -> (groups, items): near-duplicates
                                         within and across the sets (these two:
                                         cnnlib/data_checks.py)
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
    from cnnlib import interrupt, quiet

    interrupt.install()  # SIGTERM ends it as Ctrl-C does, within seconds
    quiet.start()

import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import cnnlib  # noqa: F401,E402  (TensorFlow's log level, before TensorFlow loads)
import tensorflow as tf  # noqa: E402

from cnnlib import cache, decode, near_duplicates, standin  # noqa: E402
from cnnlib.data_checks import check_data_cached, find_duplicates, hashes_cached  # noqa: E402
from cnnlib.decode import decode_image, load_images  # noqa: F401,E402  (load and resize)
from cnnlib.errors import DataError, SuiteWarning  # noqa: F401,E402
from cnnlib.prepared import PreparedData  # noqa: E402
from cnnlib.labels import AUTO, class_lookup, label_from_filename  # noqa: F401,E402
from cnnlib.loading import find_data, image_loader, load_split, load_test_set  # noqa: E402

_NOISE_CHUNK = 1024  # images given noise at a time: float64 temporaries stay small


def _drop_rows(split, drop):
    """(images, labels, paths) of one split without the rows `drop` (sorted indices)."""
    images, labels, paths = split
    keep = np.setdiff1d(np.arange(len(labels)), np.asarray(drop, np.int64))
    return (images[keep] if images is not None else None, labels[keep],
            [paths[i] for i in keep])


def _split_of_entry(found_split, small):
    """(train, unreadable, kept) as load_split gives them, from a balanced cache entry:
    the files' labels and paths, without their pixels (the balanced set has them)."""
    paths, labels = found_split
    kept = small["kept"]
    unreadable = list(zip(small["skipped_paths"].tolist(), small["skipped_reasons"].tolist()))
    for _, reason in unreadable:  # the same warnings as a fresh load
        warnings.warn(f"Skipped {reason}", SuiteWarning, stacklevel=3)
    return (None, labels[kept], [paths[i] for i in kept]), unreadable, kept


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
    decode.set_max_pixels(params["max_pixels"])  # every image's size, from its header
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
    leaks = check_data_cached({"classes": classes, "layout": found["layout"], "train": train,
                      "validation": validation, "skipped": skipped},
                     data_dir, params["strict"], cache_dir, keys)

    # Near-duplicates: hashing only reads the decoded images (no array, order or seed
    # changes); a warm balanced run maps the originals only when the hashes are not cached.
    sets = {"train": train, "validation": validation}
    if test is not None:
        sets["test"] = test
    if train[0] is None and not hashes_cached(cache_dir, keys["train"], len(train[1])):
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
    from cnnlib import config, interrupt, plots, runs
    from cnnlib.errors import UserError, os_error_sentence

    try:
        params, _ = config.parse_args(sys.argv[1:] if argv is None else argv,
                                      config.defaults(cnn_params), positional=False,
                                      usage=main.__doc__)
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
        duplicates = path.with_name(path.stem + "-duplicates.csv")
        with interrupt.removed_if_interrupted(path), \
                interrupt.removed_if_interrupted(duplicates):
            plots.plot_examples(images, labels, data.classes, path, augmented=augmented)
            near_duplicates.write_groups(duplicates, data.duplicates, data.duplicate_items)
    except KeyboardInterrupt as error:  # Ctrl-C or SIGTERM
        runs.remove_empty_made()  # a runs folder made, nothing in it yet
        return interrupt.report(error)
    except UserError as error:
        runs.remove_empty_made()
        if interrupt.pending():  # a library made the Ctrl-C its own error
            return interrupt.report(interrupt.pending())
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        runs.remove_empty_made()
        if interrupt.pending():
            return interrupt.report(interrupt.pending())
        print(f"error: {os_error_sentence(error)}", file=sys.stderr)
        return 2
    print(f"Examples per class: {path}")
    print(f"Near-duplicate groups: {duplicates}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
