"""Near-duplicates by perceptual hash (cnnlib.near_duplicates), on real faces read in place."""

import csv
import io

import numpy as np
import pytest
from PIL import Image

from cnnlib import cache, near_duplicates as nd
from conftest import SHARED_SET

FER = SHARED_SET.parent / "fer2013" / "train"
REAL_FACE = SHARED_SET / "images" / "AJ_Cook_0001.jpg"  # 350x350 grayscale, read in place
SIZE = 48  # the size configs/modern.py decodes to; the hash works on any size


def _decoded(image):
    """The face as the suite holds it: grayscale, resized to SIZE, uint8 [SIZE, SIZE, 1]."""
    return np.asarray(image.convert("L").resize((SIZE, SIZE), Image.BILINEAR))[..., None]


def _jpeg(image, quality):
    buffer = io.BytesIO()
    image.convert("L").save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue()))


def _crop(image, fraction):
    """Cut `fraction` of the width and height away, half on each side."""
    w, h = image.size
    dx, dy = fraction * w / 2, fraction * h / 2
    return image.crop((round(dx), round(dy), round(w - dx), round(h - dy)))


COPIES = {
    "jpeg quality 50": lambda im: _jpeg(im, 50),
    "resized 0.5x": lambda im: im.resize((im.size[0] // 2, im.size[1] // 2), Image.BILINEAR),
    "resized 2x": lambda im: im.resize((im.size[0] * 2, im.size[1] * 2), Image.BICUBIC),
    "cropped 3%": lambda im: _crop(im, 0.03),
    "cropped 5%": lambda im: _crop(im, 0.05),
}


def _faces():
    """The real face and FER2013 faces of four classes (the first file of each, by name)."""
    if not REAL_FACE.is_file() or not FER.is_dir():
        pytest.skip(f"the shared data sets are not at {SHARED_SET.parent}")
    files = [REAL_FACE] + [sorted((FER / c).glob("*.jpg"))[0]
                           for c in ("angry", "happy", "sad", "surprise")]
    return [Image.open(f) for f in files]


def _copies_and_mirrors():
    """Each face, its COPIES and its mirror, decoded; with (face, kind) beside each."""
    images, kinds = [], []
    for k, face in enumerate(_faces()):
        images.append(_decoded(face))
        kinds.append((k, "original"))
        for name, change in COPIES.items():
            images.append(_decoded(change(face)))
            kinds.append((k, name))
        images.append(_decoded(face.transpose(Image.FLIP_LEFT_RIGHT)))
        kinds.append((k, "mirror"))
    return np.stack(images), kinds


def test_copies_are_found_mirrors_and_other_faces_are_not():
    images, kinds = _copies_and_mirrors()
    items = [nd.Item("train", f"face{k}-{kind}.jpg", "happy") for k, kind in kinds]
    groups = nd.find_groups(nd.hash_images(images), items)
    by_face = {}
    for group in groups:
        faces = {kinds[i][0] for i in group.members}
        assert len(faces) == 1, f"different faces grouped: {[items[i].file for i in group.members]}"
        assert all(kinds[i][1] != "mirror" for i in group.members), "a mirror was grouped"
        by_face[faces.pop()] = {kinds[i][1] for i in group.members}
    for k in range(5):
        assert by_face.get(k) == {"original", *COPIES}, f"face {k}: found only {by_face.get(k)}"


def test_distances_of_copies_mirrors_and_other_faces():
    images, kinds = _copies_and_mirrors()
    hashes = nd.hash_images(images)
    original = {k: i for i, (k, kind) in enumerate(kinds) if kind == "original"}
    for i, (k, kind) in enumerate(kinds):
        distance = int(nd.hamming(hashes.hashes[original[k]], hashes.hashes[i]))
        if kind == "mirror":
            assert distance > 20, (k, kind, distance)
        elif kind != "original":
            assert distance <= nd.THRESHOLD, (k, kind, distance)
    originals = list(original.values())
    for a in originals:
        for b in originals:
            if a < b:
                assert nd.hamming(hashes.hashes[a], hashes.hashes[b]) > nd.THRESHOLD


def test_hash_of_colour_and_batches_agrees():
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (5000, 20, 24, 1), dtype=np.uint8)  # more than one batch
    colour = np.repeat(gray, 3, axis=3)
    first, second = nd.hash_images(gray), nd.hash_images(colour)
    assert np.array_equal(first.hashes, second.hashes)
    assert np.array_equal(nd.hash_images(gray[4100:4101]).hashes, first.hashes[4100:4101])
    with pytest.raises(ValueError):
        nd.hash_images(np.zeros((2, 8, 8, 2), np.uint8))


def test_hashes_round_trip_through_the_image_cache(tmp_path):
    hashes = nd.hash_images(np.random.default_rng(1).integers(0, 256, (7, 48, 48, 1), np.uint8))
    key = cache.derived_key(nd.HASH_CACHE_TAG, "images-key")
    cache.write_entry(tmp_path, "phash", key, hashes.as_array())
    stored, _ = cache.read_entry(tmp_path, "phash", key)
    back = nd.Hashes.from_array(stored)
    assert np.array_equal(back.hashes, hashes.hashes)
    assert np.array_equal(back.features, hashes.features)


def test_groups_across_sets_conflicts_csv_and_dedupe(tmp_path):
    rng = np.random.default_rng(2)
    faces = rng.integers(0, 256, (4, 32, 32, 1), np.uint8)
    blank = np.full((32, 32, 1), 128, np.uint8)
    images = np.stack([faces[0], faces[0], faces[1], faces[1], faces[1], faces[2], faces[3],
                       blank, blank + 1])
    weird = 'a, "quoted"\nname.jpg'
    items = [nd.Item("train", "t0.jpg", "happy"), nd.Item("test", "x0.jpg", "happy"),
             nd.Item("train", "t1.jpg", "sad"), nd.Item("validation", weird, "anger"),
             nd.Item("train", "t1b.jpg", "sad"), nd.Item("train", "t2.jpg", "sad"),
             nd.Item("test", "x3.jpg", ""), nd.Item("train", "blank1.png", "neutral"),
             nd.Item("train", "blank2.png", "neutral")]
    groups = nd.find_groups(nd.hash_images(images), items)
    assert [g.members for g in groups] == [[2, 3, 4], [0, 1], [7, 8]]
    assert [g.conflicting for g in groups] == [True, False, False]
    assert groups[0].sets == ["train", "validation"]
    summary = nd.summarise(groups)
    assert (summary.groups, summary.files, summary.conflicting, summary.across_sets,
            summary.largest) == (3, 7, 1, 2, 3)
    path = nd.write_groups(tmp_path / "duplicates.csv", groups, items)
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["group", "set", "file", "label", "conflicting"]
    assert ["1", "validation", weird, "anger", "1"] in rows and len(rows) == 8
    # --dedupe: the test copy stays, the validation one beats training copies.
    assert nd.to_drop(groups, items) == [0, 2, 4, 8]
    assert nd.to_drop(groups, items, keep_sets=("train",)) == [1, 3, 4, 8]
    assert nd.find_groups(nd.hash_images(np.zeros((0, 8, 8, 1), np.uint8)), []) == []


def test_multi_index_search_finds_close_pairs_among_30000():
    rng = np.random.default_rng(3)
    hashes = nd.Hashes(rng.integers(0, 2**63, 30000, dtype=np.int64).astype(np.uint64),
                       np.zeros((30000, nd.FEATURES), np.float16))
    hashes.hashes[:10] = hashes.hashes[10:20] ^ np.uint64(0b101)  # 10 pairs, 2 bits apart
    pairs = nd._candidates(hashes.hashes, nd.THRESHOLD)
    assert {(int(a), int(b)) for a, b in pairs} >= {(i, i + 10) for i in range(10)}
