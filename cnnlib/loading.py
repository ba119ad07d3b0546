"""Finding a data set's files and decoding its splits, as cnn_data.prepare_data uses them.

Offers, in the order a run calls them:
  find_data(data_dir, classes, ...) -> the files and labels of each split
                                       (layouts.find_dataset), checked to fit in memory
  image_loader(crop_faces, margin, min_face, detector, align) -> (loader, cache tag):
                                       whole images, or each image's largest face
                                       (--crop_faces, cnnlib.faces; --detector, --align)
  load_split(paths, labels, ...)    -> one split decoded (or mapped from the cache)
  load_test_set(test_dir, lookup, size, channels) -> labelled test images, or None

Nothing here moves, renames, rewrites or deletes a file it reads.
"""

import functools
import os

import numpy as np

from cnnlib import cache, files, layouts
from cnnlib.decode import load_images
from cnnlib.errors import DataError
from cnnlib.labels import label_from_filename

# Training may hold up to 4x the training images after Table 1's augmentation.
_AUGMENT_FACTOR = 4


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
