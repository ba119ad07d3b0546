"""Near-duplicate images found by perceptual hash, within and across named sets.

Offers, in the order data preparation uses them:
  hash_images(images)           -> Hashes of uint8 images [N, H, W, C]: a 64-bit pHash
                                   (uint64 [N]) and the 63 low-frequency coefficients
                                   it is made from, normalised (float16 [N, 63])
  hamming(a, b)                 -> int [...]: differing bits of uint64 hashes
  near_pairs(hashes, threshold, min_correlation)
                                -> int64 [P, 2] index pairs (i < j) of near-duplicates
  Item                           a record: set name, file, label
  Group                          a record: group id, its items' indices, conflicting labels
  find_groups(hashes, items, threshold, min_correlation) -> [Group], largest first
  summarise(groups)             -> GroupSummary: counts to print
  write_groups(path, groups, items)   -> CSV (group, set, file, label, conflicting)
  to_drop(groups, items, keep_sets)   -> sorted indices to leave out (--dedupe=True)
  HASH_CACHE_TAG, Hashes.as_array / Hashes.from_array   for cnnlib.cache (below)

The hash (pHash, Zauner 2010): grayscale, an area-average downscale to 32x32, the
8x8 lowest frequencies of its 2-D DCT, one bit each for "above the median of the
63 AC coefficients". Low frequencies survive JPEG re-encoding, resizing and a crop
of a few percent. Two stages decide a pair, both measured on FER2013 (docs/trust.md):
  1. candidates: hashes within THRESHOLD bits, found by multi-index hashing
     (Norouzi et al. 2012): the 64 bits are 4 chunks of 16, and two hashes within
     t bits agree within t // 4 bits on at least one chunk, so each chunk's keys are
     probed with their flipped variants (137 at t = 10) in a table indexed by
     key, with no Python loop over pairs;
  2. confirmation: the correlation of the 63 coefficients is at least
     MIN_CORRELATION. Faces are aligned and alike in their lowest frequencies, so 64
     bits alone match different people (measured: 1 pair in 25,000 within 10 bits);
     the coefficients' magnitudes tell them apart.
A left-right mirror negates every odd horizontal frequency, so a pair is kept only
when it correlates better as it is than with one side mirrored: a mirror image is
never grouped with its original, however symmetric the face. Groups are connected
components of the pairs (scipy.sparse.csgraph).

Caching: hashes depend only on the decoded uint8 images, so keep them with
cnnlib.cache like the images: key = cache.derived_key(HASH_CACHE_TAG, images_key)
(images_key: the cache_key of the images hashed), then
cache.write_entry(cache_dir, "phash", key, hashes.as_array()) and, on the next run,
Hashes.from_array(cache.read_entry(cache_dir, "phash", key)[0]).
"""

import csv
import io
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from cnnlib import atomic

HASH_BITS = 64
HASH_SIZE = 8           # the DCT's lowest 8x8 frequencies: 64 bits, 63 AC coefficients
DOWNSCALE = 32          # the grayscale image the DCT sees (pHash's 32x32)
THRESHOLD = 10          # bits, stage 1; a measured choice, see docs/trust.md
MIN_CORRELATION = 0.95  # stage 2; a measured choice, see docs/trust.md
CHUNKS = 4              # multi-index hashing: 4 chunks of 16 bits
FEATURES = HASH_SIZE * HASH_SIZE - 1
HASH_CACHE_TAG = f"phash-v1-{DOWNSCALE}-{HASH_SIZE}"
_BATCH = 4096           # images hashed at a time: bounded memory for any set size
_PAIR_BATCH = 200_000   # candidate pairs confirmed at a time


@dataclass
class Hashes:
    """The perceptual hash of each image and the coefficients it is made from."""
    hashes: np.ndarray    # uint64 [N]
    features: np.ndarray  # float16 [N, 63]: AC coefficients, unit length (zeros: flat image)

    def as_array(self):
        """uint8 [N, 134]: both as bytes (little-endian), for cnnlib.cache.write_entry."""
        return np.concatenate(
            [self.hashes.astype("<u8").view(np.uint8).reshape(-1, 8),
             self.features.astype("<f2").view(np.uint8).reshape(-1, 2 * FEATURES)], axis=1)

    @classmethod
    def from_array(cls, array):
        """Hashes from the uint8 [N, 134] array of as_array (e.g. read from the cache)."""
        array = np.ascontiguousarray(array, dtype=np.uint8)
        return cls(array[:, :8].copy().view("<u8").reshape(-1).astype(np.uint64),
                   array[:, 8:].copy().view("<f2").reshape(-1, FEATURES).astype(np.float16))

    def __len__(self):
        return len(self.hashes)


@dataclass
class Item:
    """One image to look for among the others."""
    set_name: str  # "train", "validation", "test", ...
    file: str
    label: str     # "" when unlabelled


@dataclass
class Group:
    """Near-duplicates: two or more items, by index into the items list."""
    group_id: int
    members: list      # int indices, sorted
    conflicting: bool  # its items carry more than one (non-empty) label
    sets: list         # the set names it spans, sorted


@dataclass
class GroupSummary:
    """What a report prints about the groups found."""
    groups: int
    files: int         # items in a group
    conflicting: int   # groups with more than one label
    across_sets: int   # groups spanning two or more sets
    largest: int


def _area_matrix(source, target):
    """[target, source] weights of an area-average (box) resize along one axis.

    Each output pixel averages the input it covers, weighted by overlap, so a
    downscale low-passes before sampling (what makes the hash survive resizing).
    """
    edges = np.linspace(0, source, target + 1)
    starts, ends = edges[:-1, None], edges[1:, None]
    pixels = np.arange(source)[None, :]
    overlap = np.clip(np.minimum(ends, pixels + 1) - np.maximum(starts, pixels), 0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


def _dct_matrix(size, keep):
    """The first `keep` rows of the orthonormal DCT-II matrix of `size` points."""
    k, n = np.arange(keep)[:, None], np.arange(size)[None, :]
    matrix = np.cos(np.pi * (2 * n + 1) * k / (2 * size)) * np.sqrt(2 / size)
    matrix[0] /= np.sqrt(2)
    return matrix


_POWERS = np.uint64(1) << np.arange(HASH_BITS, dtype=np.uint64)
# Odd horizontal frequencies change sign in a left-right mirror (DCT-II of a reversed row).
_MIRROR = np.tile(np.where(np.arange(HASH_SIZE) % 2 == 1, -1.0, 1.0), HASH_SIZE)[1:]
_FLAT = 0.5  # AC energy below this (grey levels, on the 32x32 scale) is a blank image


def hash_images(images):
    """Return the Hashes of uint8 `images` [N, H, W, C] (C 1 or 3) or [N, H, W].

    Works on the arrays the suite decodes and caches, at any size; colour is
    reduced to luminance (ITU-R 601, as Pillow's "L"). Bit 0 is the DC term's
    (always set); bits 1-63 say whether each AC coefficient is above their median
    (all clear for a blank image, so blank images of any grey share one hash).
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"images must be [N, H, W, C] with C 1 or 3; got {images.shape}")
    n, height, width = images.shape[:3]
    # One matrix product a side: DCT rows times the area downscale, [8, H] and [8, W].
    rows = (_dct_matrix(DOWNSCALE, HASH_SIZE) @ _area_matrix(height, DOWNSCALE)).astype(np.float32)
    cols = (_dct_matrix(DOWNSCALE, HASH_SIZE) @ _area_matrix(width, DOWNSCALE)).astype(np.float32)
    hashes, features = np.zeros(n, np.uint64), np.zeros((n, FEATURES), np.float16)
    for start in range(0, n, _BATCH):
        batch = images[start:start + _BATCH].astype(np.float32)
        gray = (batch[..., 0] if batch.shape[-1] == 1 else
                batch[..., 0] * 0.299 + batch[..., 1] * 0.587 + batch[..., 2] * 0.114)
        ac = (rows @ gray @ cols.T).reshape(len(batch), -1)[:, 1:]  # the DC term is brightness
        norm = np.linalg.norm(ac, axis=1, keepdims=True)
        shaped = norm > _FLAT  # a blank image's AC terms are rounding noise: no bits
        bits = np.concatenate([np.ones((len(batch), 1), bool),
                               (ac > np.median(ac, axis=1, keepdims=True)) & shaped], axis=1)
        hashes[start:start + len(batch)] = np.bitwise_or.reduce(
            np.where(bits, _POWERS, np.uint64(0)), axis=1)
        features[start:start + len(batch)] = np.where(shaped, ac / np.maximum(norm, 1e-12), 0.0)
    return Hashes(hashes, features)


def hamming(a, b):
    """Return the number of differing bits of uint64 hashes `a` and `b` (broadcast)."""
    return np.bitwise_count(np.bitwise_xor(np.asarray(a, np.uint64), np.asarray(b, np.uint64)))


def _flip_masks(bits, radius):
    """All uint64 masks of `bits` bits with at most `radius` bits set (0 included)."""
    masks = [0]
    for r in range(1, radius + 1):
        masks += [sum(1 << b for b in chosen) for chosen in combinations(range(bits), r)]
    return np.array(masks, np.uint64)


def _candidates(hashes, threshold):
    """int64 [P, 2] unique pairs (i < j) of `hashes` within `threshold` bits.

    Multi-index hashing: for each 16-bit chunk, every key probes the table of keys
    (sorted, indexed by key) with each mask of at most threshold // CHUNKS bits;
    each probe's matches are checked in full at once, so memory stays at one
    probe's candidates.
    """
    width = HASH_BITS // CHUNKS
    masks = _flip_masks(width, threshold // CHUNKS)
    everyone = np.arange(len(hashes))
    found = []
    for chunk in range(CHUNKS):
        keys = ((hashes >> np.uint64(chunk * width)) & np.uint64((1 << width) - 1)).astype(np.int64)
        order = np.argsort(keys, kind="stable")
        # A 16-bit key indexes its run in `order` directly: no search needed.
        sizes = np.bincount(keys, minlength=1 << width)
        starts = np.cumsum(sizes) - sizes
        for mask in masks.astype(np.int64):
            probe = keys ^ mask
            low, counts = starts[probe], sizes[probe]
            total = int(counts.sum())
            if not total:
                continue
            # Expand each query's range of matches into (query, match) pairs.
            queries = np.repeat(everyone, counts)
            offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
            matches = order[np.repeat(low, counts) + offsets]
            keep = queries < matches
            keep[keep] = hamming(hashes[queries[keep]], hashes[matches[keep]]) <= threshold
            found.append(np.stack([queries[keep], matches[keep]], axis=1))
    pairs = np.concatenate(found) if found else np.zeros((0, 2), np.int64)
    return np.unique(pairs, axis=0) if len(pairs) else pairs.astype(np.int64)


def _confirm(hashes, pairs, min_correlation):
    """bool [P]: pairs whose coefficients correlate at least `min_correlation` and
    better as they are than with one side mirrored; two blank images always match."""
    keep = np.zeros(len(pairs), bool)
    for start in range(0, len(pairs), _PAIR_BATCH):
        a, b = pairs[start:start + _PAIR_BATCH].T
        fa = hashes.features[a].astype(np.float32)
        fb = hashes.features[b].astype(np.float32)
        same = (fa * fb).sum(axis=1)
        mirrored = (fa * fb * _MIRROR).sum(axis=1)
        blank = ~fa.any(axis=1) & ~fb.any(axis=1)
        keep[start:start + len(a)] = blank | ((same >= min_correlation) & (same > mirrored))
    return keep


def near_pairs(hashes, threshold=THRESHOLD, min_correlation=MIN_CORRELATION):
    """Return int64 [P, 2] pairs (i < j) of near-duplicates among `hashes` (Hashes).

    A pair's hashes differ in at most `threshold` bits, its coefficients correlate
    at least `min_correlation`, and better as it is than with one side mirrored.
    """
    if not 0 <= threshold < HASH_BITS:
        raise ValueError(f"threshold must be 0 to {HASH_BITS - 1} bits; got {threshold}")
    pairs = _candidates(hashes.hashes, threshold)
    return pairs[_confirm(hashes, pairs, min_correlation)]


def find_groups(hashes, items, threshold=THRESHOLD, min_correlation=MIN_CORRELATION):
    """Return the groups of two or more near-duplicates among `items`, largest first.

    `hashes` (Hashes) and `items` (Item) are parallel: give every set's items
    together (train, validation, test) to find groups within and across them. A
    group is a connected component of near_pairs; it is `conflicting` when its
    items carry more than one non-empty label. Group ids count from 1.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if len(items) != len(hashes):
        raise ValueError(f"{len(items)} items but {len(hashes)} hashes")
    n = len(items)
    if n == 0:
        return []
    pairs = near_pairs(hashes, threshold, min_correlation)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    sizes = np.bincount(component, minlength=n)
    members = {}
    for index in np.flatnonzero(sizes[component] > 1):
        members.setdefault(int(component[index]), []).append(int(index))
    ordered = sorted(members.values(), key=lambda m: (-len(m), m[0]))
    groups = []
    for group_id, indices in enumerate(ordered, start=1):
        labels = {items[i].label for i in indices} - {""}
        groups.append(Group(group_id, indices, len(labels) > 1,
                            sorted({items[i].set_name for i in indices})))
    return groups


def summarise(groups):
    """Return GroupSummary: groups, files in them, conflicting, across sets, the largest."""
    return GroupSummary(len(groups), sum(len(g.members) for g in groups),
                        sum(g.conflicting for g in groups), sum(len(g.sets) > 1 for g in groups),
                        max((len(g.members) for g in groups), default=0))


def write_groups(path, groups, items):
    """Write one CSV row an item in a group: group, set, file, label, conflicting.

    Every field is quoted (csv.QUOTE_ALL) and the file is UTF-8, so a file name
    with commas, quotes or line breaks reads back exactly with Python's csv
    module. Written atomically. Returns `path`.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow(["group", "set", "file", "label", "conflicting"])
    for group in groups:
        for i in group.members:
            writer.writerow([group.group_id, items[i].set_name, items[i].file, items[i].label,
                             int(group.conflicting)])
    with atomic.writing(path) as partial:
        with open(partial, "w", newline="", encoding="utf-8") as handle:
            handle.write(buffer.getvalue())
    return path


def to_drop(groups, items, keep_sets=("test", "validation", "train")):
    """Return the sorted indices of items to leave out so each group keeps one member.

    The member kept is in the first set of `keep_sets` the group spans (by default
    the test set keeps its image and training loses its copies, so a score is not
    inflated and the test set is not shrunk), the first such in the items' order;
    sets not named rank last. A conflicting group keeps one member too, with its
    label. Only indices are returned: nothing on disk is touched.
    """
    rank = {name: k for k, name in enumerate(keep_sets)}
    drop = []
    for group in groups:
        keep = min(group.members, key=lambda i: (rank.get(items[i].set_name, len(rank)), i))
        drop += [i for i in group.members if i != keep]
    return sorted(drop)
