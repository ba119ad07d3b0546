"""The prepared data of a run: what cnn_data.prepare_data returns and training uses.

Offers:
  PreparedData    the data of one run, ready to train on (a dataclass)

Images are uint8 [N, size, size, channels] (memory-mapped from the cache when it
is on); labels are int64 [N] class indices into `classes`.
"""

from dataclasses import dataclass, field

import numpy as np


@dataclass
class PreparedData:
    """Training, validation and test data, after Table 1's balancing and Equation 1."""
    classes: list                  # the effective class names ("auto" resolved)
    aliases: dict                  # {class: [other names]}
    train_images: np.ndarray       # uint8 [N, size, size, channels], balanced (Table 1)
    train_labels: np.ndarray       # int64 [N]
    val_images: np.ndarray         # uint8 [M, size, size, channels]
    val_labels: np.ndarray         # int64 [M]
    counts_before: np.ndarray      # int64 [classes]: Table 1's row A, of this data
    counts_after: np.ndarray       # int64 [classes]: Table 1's row D
    weights: dict | None           # {class index: weight} of Equation 1, or None
    layout: str = ""               # how the files were found (cnnlib/layouts.py)
    standin: bool = False          # the data is the synthetic stand-in
    test: tuple | None = None      # (images, labels) of Table 3's "test" column, or None
    test_source: str = ""          # what that test set is, in words
    skipped: list = field(default_factory=list)    # [(path, reason)] left out
    unlabeled: list = field(default_factory=list)  # [Path] of images with no label
    leaks: list = field(default_factory=list)      # [(train path, validation path)] twins
    val_paths: list = field(default_factory=list)  # [str] file of each validation image
    duplicates: list = field(default_factory=list)       # [near_duplicates.Group], largest first
    duplicate_items: list = field(default_factory=list)  # [near_duplicates.Item] groups index
    split_files: dict = field(default_factory=dict)      # {split: [file]} read, before --dedupe
    subjects: dict = field(default_factory=dict)         # {file: subject} of --group_column
    dropped: list = field(default_factory=list)          # [file] left out by --dedupe
