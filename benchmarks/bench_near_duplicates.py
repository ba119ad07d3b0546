"""Near-duplicates in FER2013's 28,709 training faces: how many, and how fast.

Usage:  python benchmarks/bench_near_duplicates.py [--data_dir=../shared/datasets/fer2013/train]
            [--size=48] [--cache_dir=.cache] [--threshold=10] [--min_correlation=0.95]
        python benchmarks/bench_near_duplicates.py --measure=True   (how the two
            thresholds were chosen: distances of altered copies against other faces)

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
              "min_correlation": nd.MIN_CORRELATION, "measure": False}
    for arg in argv:
        name, _, value = arg.lstrip("-").partition("=")
        if name not in values:
            raise SystemExit(f"Unknown option {arg}; known: {', '.join(values)}.")
        values[name] = (value.lower() == "true") if isinstance(values[name], bool) else \
            type(values[name])(value)
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


def _altered(path, size):
    """A face file's altered copies, decoded as the suite holds them: {name: uint8 [S, S, 1]}."""
    import io

    from PIL import Image

    def jpeg(im):
        buffer = io.BytesIO()
        im.save(buffer, "JPEG", quality=50)
        return Image.open(io.BytesIO(buffer.getvalue()))

    def crop(im, f, anchor):  # anchor "centre": f/2 off each side; "side": f off the left
        w, h = im.size
        box = ((f * w / 2, f * h / 2, w - f * w / 2, h - f * h / 2) if anchor == "centre"
               else (f * w, 0, w, h) if anchor == "side" else (f * w, f * h, w, h))
        return im.crop(tuple(round(v) for v in box))

    im = Image.open(path).convert("L")
    changes = {"jpeg50": jpeg, "half": lambda i: i.resize((i.size[0] // 2, i.size[1] // 2)),
               "double": lambda i: i.resize((i.size[0] * 2, i.size[1] * 2), Image.BICUBIC),
               "crop 4% centred": lambda i: crop(i, 0.04, "centre"),
               "crop 5% one side": lambda i: crop(i, 0.05, "side"),
               "crop 5% corner": lambda i: crop(i, 0.05, "corner"),
               "mirror": lambda i: i.transpose(Image.FLIP_LEFT_RIGHT)}
    def held(i):
        return np.asarray(i.resize((size, size), Image.BILINEAR))[..., None]
    return {"original": held(im), **{name: held(change(im)) for name, change in changes.items()}}


def measure(files, size, threshold, min_correlation, rng):
    """Print the distances of altered copies (400 faces) and of other faces (3,000)."""
    picked = [files[i] for i in rng.choice(len(files), 3000, replace=False)]
    copies = [_altered(f, size) for f in picked[:400]]
    originals = nd.hash_images(np.stack([c["original"] for c in copies]))
    print(f"{'altered copy':<18} bits p50  p99  max | correlation p1   min | found")
    for name in copies[0]:
        if name == "original":
            continue
        altered = nd.hash_images(np.stack([c[name] for c in copies]))
        bits = nd.hamming(originals.hashes, altered.hashes)
        corr = (originals.features.astype(np.float32) * altered.features).sum(axis=1)
        both = nd.Hashes(np.concatenate([originals.hashes, altered.hashes]),
                         np.concatenate([originals.features, altered.features]))
        pairs = {tuple(p) for p in nd.near_pairs(both, threshold, min_correlation).tolist()}
        found = np.mean([(k, k + 400) in pairs for k in range(400)])
        print(f"{name:<18} {np.percentile(bits, 50):8.0f} {np.percentile(bits, 99):4.0f} "
              f"{bits.max():4d} | {np.percentile(corr, 1):14.3f} {corr.min():5.3f} | {found:.3f}")
    from PIL import Image

    everyone = nd.hash_images(np.stack([np.asarray(Image.open(f).convert("L").resize(
        (size, size), Image.BILINEAR))[..., None] for f in picked]))
    i, j = np.triu_indices(len(picked), 1)
    bits = nd.hamming(everyone.hashes[i], everyone.hashes[j])
    print(f"{len(i):,} pairs of 3,000 faces drawn at random (true duplicates among them "
          f"included): within t bits")
    print("  " + "  ".join(f"t={t}: {int((bits <= t).sum())}" for t in range(4, 17, 2)))
    labels = np.array([Path(f).parent.name for f in picked])
    near = nd.near_pairs(everyone, threshold, min_correlation)
    print(f"  confirmed near-duplicate pairs at t={threshold}, correlation >= "
          f"{min_correlation}: {len(near)}, of which with different labels: "
          f"{int((labels[near[:, 0]] != labels[near[:, 1]]).sum())}")


def main():
    opts = options(sys.argv[1:])
    if opts["measure"]:
        files = sorted(Path(opts["data_dir"]).glob("*/*.jpg"))
        return measure(files, opts["size"], opts["threshold"], opts["min_correlation"],
                       np.random.default_rng(0))
    from cnnlib import cache, decode  # TensorFlow loads here: only the full run needs it

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
