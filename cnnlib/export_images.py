"""The real images an export is verified and int8-calibrated on, in the model's own
preprocessing.

Offers, for cnnlib/export.py:
  ImageSet                                a record: images, labels and where they came from
  verification_images(model_path, trained, given, ...) -> (check, calibration) ImageSets

For checking: the images given, else the run's validation images (when the run's
params.json says where its data is and it is still there), else TEST_DIR; for
calibration, the run's training images, else the checking images. At most the
counts asked for, chosen reproducibly.
"""

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlib import decode, files, layouts, runs
from cnnlib.errors import DataError, UserError
from cnnlib.labels import class_lookup, label_from_filename

@dataclass
class ImageSet:
    """Real images in the model's own preprocessing, with where they came from."""
    images: np.ndarray   # uint8 [N, size, size, channels]
    labels: np.ndarray   # int64 [N], the class index, or -1 where unknown
    source: str          # a sentence: which images, how many


def _sample(paths, labels, count, seed=0):
    """At most `count` of (paths, labels), chosen reproducibly."""
    if len(paths) <= count:
        return list(paths), np.asarray(labels, np.int64)
    picked = np.sort(np.random.default_rng(seed).choice(len(paths), count, replace=False))
    return [paths[i] for i in picked], np.asarray(labels, np.int64)[picked]


def _run_dataset(model_path, trained):
    """The run's find_dataset dict (train and validation paths), or None if it cannot tell."""
    for folder in (Path(model_path).parent, Path(model_path).parent.parent):
        if (folder / "params.json").is_file():
            try:
                p = runs.read_json(folder / "params.json", "run's parameters")
                return layouts.find_dataset(
                    p["data_dir"], trained["classes"], trained["aliases"],
                    p.get("labels_file", "legend.csv"), p.get("image_column", "image"),
                    p.get("label_column", "emotion"), p.get("images_dir", "images"),
                    p.get("validation_fraction", 0.2), p.get("seed", 0),
                    p.get("split_column", "split"))
            except (UserError, OSError, KeyError, TypeError, ValueError):
                return None
    return None


def _load(paths, labels, trained, min_face, what):
    """An ImageSet of `paths` in the model's preprocessing (its face crop if it has one)."""
    size, channels = trained["image_size"], trained["channels"]
    if trained.get("crop_faces"):
        from cnnlib import faces

        images, kept, _ = faces.load_face_crops(paths, size, channels,
                                                trained.get("face_margin", 0.1), min_face)
    else:
        images, kept, _ = decode.load_images(paths, size, channels)
    if not len(kept):
        raise DataError(f"None of the {len(paths)} {what} could be read: give readable "
                        f"images of faces.")
    return ImageSet(images, np.asarray(labels, np.int64)[kept], f"{len(kept)} {what}")


def _named(sources):
    """The sources given, shortened for a report: the first three and how many more."""
    names = [str(s) for s in sources]
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def verification_images(model_path, trained, given=(), test_dir="test_images",
                        check_count=200, calibration_count=200, min_face=30):
    """Return (check, calibration): the real images to score and to calibrate int8 on.

    See the module's docstring for which images are used. Raises DataError when
    there are none.
    """
    lookup = class_lookup(trained["classes"], trained["aliases"])
    found = _run_dataset(model_path, trained)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a skipped file is counted, not listed
        if given or found is None:
            paths = files.list_images(list(given) or [test_dir])
            if not paths:
                raise DataError(f"No image found in {', '.join(map(str, given or [test_dir]))}"
                                f" to verify the export with: give image files or folders.")
            labels = [label_from_filename(p, lookup) for p in paths]
            paths, labels = _sample(paths, [-1 if v is None else v for v in labels],
                                    check_count)
            check = _load(paths, labels, trained, min_face,
                          f"image(s) given ({_named(given)})" if given
                          else f"image(s) of {test_dir}")
        else:
            paths, labels = _sample(*found["validation"], check_count)
            check = _load(paths, labels, trained, min_face, "validation image(s) of the run")
        if found is not None:
            paths, labels = _sample(*found["train"], calibration_count, seed=1)
            calibration = _load(paths, labels, trained, min_face, "training image(s) of the run")
        else:
            calibration = check
    return check, calibration
