"""Near-duplicates in FER2013's 28,709 training faces: how many, and how fast.

Usage:  python benchmarks/bench_near_duplicates.py [--data_dir=../shared/datasets/fer2013/train]
            [--size=48] [--cache_dir=.cache] [--threshold=10] [--min_correlation=0.95]

Decodes every face with the suite's decoder and image cache (cnnlib.decode,
cnnlib.cache; a second run reads the cache), hashes them, groups them, and prints,
numbers only: groups found, files in groups, groups with conflicting labels, the
largest group, the seconds for hashing and for grouping; and, as a check, the
pixel-identical groups of the decoded faces (SOURCE.md counts 1,035 groups, 2,271
files, 39 conflicting) and how many of their pairs the near-duplicate groups hold.
Writes benchmarks/out/near_duplicates.csv (the groups) and near_duplicates.png (20
groups that are not pixel-identical, drawn at random, for a person to judge).
"""

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from cnnlib import near_duplicates as nd  # noqa: E402

OUT = ROOT / "benchmarks" / "out"
SOURCE_COUNTS = (1035, 2271, 39)  # pixel-identical groups, files, conflicting (SOURCE.md)


def options(argv):
    values = {"data_dir": str(ROOT.parent / "shared" / "datasets" / "fer2013" / "train"),
              "size": 48, "cache_dir": str(ROOT / ".cache"), "threshold": nd.THRESHOLD,
              "min_correlation": nd.MIN_CORRELATION}
    for arg in argv:
        name, _, value = arg.lstrip("-").partition("=")
        if name not in values:
            raise SystemExit(f"Unknown option {arg}; known: {', '.join(values)}.")
        values[name] = type(values[name])(value)
    return values


def exact_groups(images):
    """Groups (lists of indices) of byte-identical images, two or more each."""
    import hashlib

    seen = {}
    for i, image in enumerate(images):
        seen.setdefault(hashlib.blake2b(np.ascontiguousarray(image).tobytes()).digest(),
                        []).append(i)
    return [members for members in seen.values() if len(members) > 1]


def montage(images, groups, path, rng, shown=20):
    """Save up to `shown` groups (first 6 members each), one a row, as a PNG."""
    from PIL import Image

    from cnnlib import atomic

    picked = [groups[i] for i in sorted(rng.choice(len(groups), min(shown, len(groups)),
                                                   replace=False))]
    size = images.shape[1]
    canvas = np.full((len(picked) * (size + 2), 6 * (size + 2)), 255, np.uint8)
    for row, members in enumerate(picked):
        for col, i in enumerate(members[:6]):
            canvas[row * (size + 2):row * (size + 2) + size,
                   col * (size + 2):col * (size + 2) + size] = images[i][..., 0]
    with atomic.writing(path) as partial:
        Image.fromarray(canvas).save(partial, format="PNG")


def main():
    from cnnlib import cache, decode

    opts = options(sys.argv[1:])
    folder = Path(opts["data_dir"])
    files = sorted(folder.glob("*/*.jpg"))
    if not files:
        raise SystemExit(f"Failed to find {folder}/<class>/*.jpg.")
    labels = [f.parent.name for f in files]
    start = time.perf_counter()
    images, kept, skipped = cache.load_cached([str(f) for f in files], opts["size"], 1,
                                              opts["cache_dir"], decode.load_images)
    images = np.asarray(images)
    decode_seconds = time.perf_counter() - start
    files, labels = [files[i] for i in kept], [labels[i] for i in kept]
    print(f"{len(files)} faces from {folder} at {opts['size']}x{opts['size']} "
          f"({len(skipped)} skipped), decoded or read from the cache in {decode_seconds:.1f} s")

    start = time.perf_counter()
    hashes = nd.hash_images(images)
    hash_seconds = time.perf_counter() - start
    items = [nd.Item("train", str(f.relative_to(folder)), label)
             for f, label in zip(files, labels)]
    start = time.perf_counter()
    groups = nd.find_groups(hashes, items, opts["threshold"], opts["min_correlation"])
    group_seconds = time.perf_counter() - start
    summary = nd.summarise(groups)
    print(f"near-duplicates (threshold {opts['threshold']} bits, correlation >= "
          f"{opts['min_correlation']}): {summary.groups} groups, {summary.files} files in "
          f"groups, {summary.conflicting} groups with conflicting labels, largest "
          f"{summary.largest}")
    print(f"hashing {hash_seconds:.2f} s ({len(files) / hash_seconds:,.0f} faces/s), "
          f"grouping {group_seconds:.2f} s")

    exact = exact_groups(images)
    conflicting = sum(len({labels[i] for i in g}) > 1 for g in exact)
    print(f"pixel-identical (decoded faces): {len(exact)} groups, "
          f"{sum(map(len, exact))} files, {conflicting} conflicting "
          f"(SOURCE.md: {SOURCE_COUNTS[0]:,}, {SOURCE_COUNTS[1]:,}, {SOURCE_COUNTS[2]})")
    group_of = np.full(len(files), -1)
    for g in groups:
        group_of[g.members] = g.group_id
    held = sum(len({group_of[i] for i in g}) == 1 and group_of[g[0]] >= 0 for g in exact)
    print(f"pixel-identical groups held whole by one near-duplicate group: {held} of {len(exact)}")
    beyond = [g.members for g in groups
              if len({images[i].tobytes() for i in g.members}) > 1]
    print(f"near-duplicate groups that are not all pixel-identical: {len(beyond)}")

    OUT.mkdir(parents=True, exist_ok=True)
    nd.write_groups(OUT / "near_duplicates.csv", groups, items)
    if beyond:
        montage(images, beyond, OUT / "near_duplicates.png", np.random.default_rng(0))
    print(f"Written: {OUT / 'near_duplicates.csv'}, {OUT / 'near_duplicates.png'}")


if __name__ == "__main__":
    main()
