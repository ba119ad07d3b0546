"""The synthetic stand-in for QIDER: generated on first use, and marked as such.

Offers, in call order:
  ensure_standin(data_dir, classes, train_counts, validation_total, seed)
                                  -> True when it generated the set, False if present
                                     (another process generating it is waited for)
  lock_path(data_dir)             -> the hidden lock file beside `data_dir`
  is_standin(data_dir)            -> True for a generated stand-in
  validation_counts(train_counts, total) -> validation images per class
  generate_standin(folder, class_names, train_counts, validation_total, seed, workers)
                                  -> summary dict; writes <folder>/{train,validation}/<class>/
  write_test_images(folder, class_names, seed) -> the 8 test images' paths
  main(argv, defaults)            -> `python -m cnnlib.standin --out_dir=DIR [--scale=4]`

Library functions print nothing but ensure_standin's two lines; every setting is an
argument. Each image's random stream is derived from (seed, split, class, index),
so the output is byte-identical for a given seed however the work is split.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from cnnlib import atomic, interrupt, locks
from cnnlib.errors import ConfigError
from cnnlib.standin_faces import draw_face

# Written into a generated stand-in so every run can say it is not QIDER.
STANDIN_MARKER = "STANDIN.txt"

# The stand-in's classes with --classes=auto: the report's 8, in its order.
STANDIN_CLASSES = ["anger", "disgust", "fear", "happy", "negative", "neutral", "sad", "surprise"]

# Random-stream ids that keep the train, validation and test-image faces apart.
SPLIT_STREAMS = {"train": 0, "validation": 1}
TEST_IMAGE_STREAM = 2


def ensure_standin(data_dir, classes, train_counts, validation_total, seed):
    """Generate the synthetic stand-in for QIDER in `data_dir` if it is absent.

    Returns True when it generated the set, False when it was already there.
    """
    data_dir = Path(data_dir)
    if data_dir.exists():
        return False
    # Two first runs at once: one generates, the other waits for it and reuses the set.
    with locks.waiting(lock_path(data_dir), f"generating the stand-in in {data_dir}"):
        if data_dir.exists():
            print(f"Using the stand-in that another process generated in {data_dir}.",
                  flush=True)
            return False
        return _generate_once(data_dir, classes, train_counts, validation_total, seed)


def lock_path(data_dir):
    """The lock file that guards generating the stand-in in `data_dir`: hidden, beside it."""
    data_dir = Path(data_dir)
    return data_dir.parent / f".{data_dir.name}.lock"


def _generate_once(data_dir, classes, train_counts, validation_total, seed):
    """ensure_standin's work, under its lock: generate the set and say so. Returns True."""
    if list(classes) == ["auto"]:  # the stand-in's own classes: the report's
        if len(train_counts) != len(STANDIN_CLASSES):
            raise ConfigError(f"--classes=auto with the stand-in takes its {len(STANDIN_CLASSES)} "
                             f"classes, but --standin_train_counts has {len(train_counts)} "
                             f"counts: give {len(STANDIN_CLASSES)}, or name the classes.")
        classes = STANDIN_CLASSES
    print(f"Generating the synthetic stand-in for QIDER in {data_dir} "
          f"(drawn faces, not QIDER; about 15 to 30 s, once).", flush=True)
    summary = generate_standin(data_dir, classes, train_counts, validation_total, seed)
    print(f"Stand-in generated in {summary['seconds']:.1f} s.", flush=True)
    return True


def is_standin(data_dir):
    """True when `data_dir` holds the generated stand-in rather than real data."""
    return (Path(data_dir) / STANDIN_MARKER).is_file()


def validation_counts(train_counts, total):
    """Return `total` split over the classes in proportion to `train_counts`.

    Largest-remainder rounding: every class gets the floor of its exact share
    and the leftover units go to the largest fractional parts, so the result
    sums to exactly `total` and each entry is within 1 of its exact share.
    """
    train_total = sum(train_counts)
    if train_total <= 0 or total < 0:
        raise ValueError("validation_counts needs positive training counts and a non-negative total.")
    exact = [total * count / train_total for count in train_counts]
    counts = [int(share) for share in exact]
    leftover = total - sum(counts)
    by_remainder = sorted(range(len(exact)), key=lambda c: (-(exact[c] - counts[c]), c))
    for c in by_remainder[:leftover]:
        counts[c] += 1
    return counts


# ---------------------------------------------------------------------------
# Writing the data set
# ---------------------------------------------------------------------------

def _image_rng(seed, stream, class_index, image_index):
    """Return the random Generator of one image, independent of all others."""
    return np.random.default_rng([seed, stream, class_index, image_index])


def _write_chunk(task):
    """Draw and save one run of images of one class; return how many were written."""
    class_folder, class_name, class_index, seed, stream, first, last = task
    for image_index in range(first, last + 1):
        rng = _image_rng(seed, stream, class_index, image_index)
        image = draw_face(class_index, rng)
        quality = int(rng.integers(60, 96))
        image.save(Path(class_folder) / f"{class_name}_{image_index:05d}.jpg", "JPEG", quality=quality)
    return last - first + 1


def _chunk_tasks(partial, class_names, split_counts, split_streams, seed, chunk_size=150):
    """Return the _write_chunk tasks covering every image of every split and class.

    Also creates the class folders under `partial`.
    """
    tasks = []
    for split, counts in split_counts.items():
        for class_index, (class_name, count) in enumerate(zip(class_names, counts)):
            class_folder = partial / split / class_name
            class_folder.mkdir(parents=True)
            for first in range(1, count + 1, chunk_size):
                last = min(first + chunk_size - 1, count)
                tasks.append((str(class_folder), class_name, class_index, seed, split_streams[split], first, last))
    return tasks


def _run_tasks(tasks, workers):
    """Run _write_chunk over `tasks`, in `workers` processes when more than one."""
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            _write_chunk(task)
        return
    # Forking is much faster to start than spawning and the workers use only numpy and Pillow.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    # The workers leave Ctrl-C to this process and die with it; leaving the block
    # early (Ctrl-C, SIGTERM, an error) terminates them at once, mid-chunk.
    with context.Pool(workers, interrupt.worker_init, (os.getpid(),)) as pool:
        # Largest chunks first so the last worker is not left with a long tail.
        ordered = sorted(tasks, key=lambda task: task[6] - task[5], reverse=True)
        for _ in pool.imap_unordered(_write_chunk, ordered):
            pass
        pool.close()
        pool.join()


def _check_standin_arguments(class_names, train_counts, validation_total, seed, workers):
    """Raise ValueError with one sentence if the arguments cannot describe a data set."""
    if len(class_names) != len(train_counts):
        raise ValueError(f"Got {len(class_names)} class names but {len(train_counts)} training counts.")
    if len(set(class_names)) != len(class_names) or not all(class_names):
        raise ValueError("Class names must be distinct and non-empty.")
    if any(int(count) < 0 for count in train_counts) or sum(train_counts) <= 0:
        raise ValueError("Training counts must be non-negative and not all zero.")
    if validation_total < 0 or seed < 0 or workers < 1:
        raise ValueError("validation_total and seed must be non-negative and workers at least 1.")


def generate_standin(folder, class_names, train_counts, validation_total, seed, workers=2):
    """Write the synthetic data set to `folder` and return a summary dict.

    Layout: <folder>/train/<class>/<class>_00001.jpg ... and the same under
    validation/, with validation counts proportional to `train_counts`.
    Images go to a sibling folder <folder>.partial-<pid> that is renamed to
    `folder` only once complete, so `folder` is either absent or whole.
    Raises ValueError if `folder` (or that partial folder) already exists;
    nothing existing is ever deleted or overwritten.
    The summary is {"folder": str, "train": {class: n}, "validation":
    {class: n}, "images": total, "seconds": float}.
    """
    started = time.perf_counter()
    folder = Path(folder)
    _check_standin_arguments(class_names, train_counts, validation_total, seed, workers)
    if folder.exists():
        raise ValueError(f"Refusing to generate the stand-in: {folder} already exists.")
    partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
    if partial.exists():
        raise ValueError(f"Refusing to generate the stand-in: temporary folder {partial} already exists.")
    split_counts = {"train": [int(c) for c in train_counts],
                    "validation": validation_counts(train_counts, validation_total)}
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial.mkdir()
    try:  # an interruption, even one the watchdog ends (cnnlib/interrupt.py), removes it
        with interrupt.removed_if_interrupted(partial, folder):
            _run_tasks(_chunk_tasks(partial, class_names, split_counts, SPLIT_STREAMS, seed),
                       workers)
            if folder.exists():  # something appeared there while we were drawing
                raise ValueError(f"Refusing to finish the stand-in: {folder} appeared while "
                                 f"generating.")
            atomic.write_text(partial / STANDIN_MARKER,
                              "This folder is a synthetic stand-in for QIDER generated by "
                              "cnnlib/standin.py: drawn faces, not QIDER.\n")
            os.rename(partial, folder)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)  # only ever our own, unfinished folder
        raise
    return {
        "folder": str(folder),
        "train": dict(zip(class_names, split_counts["train"])),
        "validation": dict(zip(class_names, split_counts["validation"])),
        "images": sum(split_counts["train"]) + sum(split_counts["validation"]),
        "seconds": round(time.perf_counter() - started, 2),
    }


def write_test_images(folder, class_names, seed):
    """Write one 128 px RGB JPEG per class to <folder>/<class>.jpg; return their paths.

    The faces come from a random stream the data set never uses, at a fairly
    strong intensity so the expression reads well.  Raises ValueError, and
    writes nothing, if any of the files already exists.
    """
    folder = Path(folder)
    paths = [folder / f"{class_name}.jpg" for class_name in class_names]
    existing = [str(path) for path in paths if path.exists()]
    if existing:
        raise ValueError(f"Refusing to overwrite existing test images: {', '.join(existing)}.")
    folder.mkdir(parents=True, exist_ok=True)
    for class_index, path in enumerate(paths):
        rng = _image_rng(seed, TEST_IMAGE_STREAM, class_index, 0)
        image = draw_face(class_index, rng, size=(128, 128), mode="RGB", intensity=0.85)
        with atomic.writing(path) as partial:
            image.save(partial, "JPEG", quality=90)
    return paths


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def main(argv, defaults):
    """`python -m cnnlib.standin --out_dir=DIR [--scale=4] [--seed=N] [--workers=2]`.

    Writes a stand-in of `scale` times the report's counts to DIR, or with
    --test_images=DIR the 8 test images. `defaults` holds classes,
    standin_train_counts, standin_validation_total and seed (cnn_params.py's).
    Returns the exit status.
    """
    from cnnlib.config import parse_args
    from cnnlib.errors import UserError, os_error_sentence

    options = {"out_dir": "", "test_images": "", "scale": 1.0, "workers": 2,
               "seed": defaults["seed"]}
    try:
        chosen, _ = parse_args(argv, options, positional=False)
        if not 0 < chosen["scale"] <= 1000 or not 1 <= chosen["workers"] <= 64:
            raise UserError("--scale must be above 0 (up to 1000) and --workers from 1 to 64.")
        if not chosen["out_dir"] and not chosen["test_images"]:
            raise UserError("Give --out_dir=DIR for a stand-in data set, or "
                            "--test_images=DIR for the 8 test images.")
        if chosen["test_images"]:
            written = write_test_images(chosen["test_images"], defaults["classes"],
                                        chosen["seed"])
            print(f"Wrote {len(written)} test images to {chosen['test_images']}.")
        if chosen["out_dir"]:
            counts = [round(n * chosen["scale"]) for n in defaults["standin_train_counts"]]
            summary = generate_standin(
                chosen["out_dir"], defaults["classes"], counts,
                round(defaults["standin_validation_total"] * chosen["scale"]),
                chosen["seed"], chosen["workers"])
            print(f"Wrote {summary['images']} images to {summary['folder']} in "
                  f"{summary['seconds']} s.")
    except KeyboardInterrupt as error:  # Ctrl-C or SIGTERM: 130 or 143
        return interrupt.report(error)
    except (UserError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: {os_error_sentence(error)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    interrupt.install()  # SIGTERM ends it as Ctrl-C does
    import cnn_params  # the entry point, not the library, reads the parameters
    from cnnlib.config import defaults as parameter_defaults

    sys.exit(main(sys.argv[1:], parameter_defaults(cnn_params)))
