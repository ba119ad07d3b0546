"""Data: loading real files, Table 1 augmentation, Equation 1 weights, pipelines."""

import numpy as np
import pytest
from PIL import Image

import cnn_data
import cnn_params
from cnnlib.labels import class_lookup, label_from_filename, normalise_label
from cnnlib import layouts
from conftest import make_class_folders, write_image

TABLE1_BEFORE = [501, 377, 336, 746, 1618, 115, 424, 404]
TABLE1_AFTER = [1618, 1508, 1344, 1618, 1618, 460, 1618, 1616]
LOOKUP = class_lookup(cnn_params.CLASSES, cnn_params.ALIASES)


def labelled_images(counts, shape=(6, 5, 1), seed=0):
    """Random mid-grey uint8 images (no clipping under noise) with `counts` per class."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(counts)), counts)
    images = rng.integers(60, 196, (len(labels), *shape), dtype=np.uint8)
    return images, labels


# ---------------------------------------------------------------- augmentation

def test_augmentation_gives_table1_after_counts_exactly():
    images, labels = labelled_images(TABLE1_BEFORE)
    out_images, out_labels = cnn_data.augment_dataset(images, labels, 8, 0.05, seed=1)
    assert cnn_data.class_counts(out_labels, 8).tolist() == TABLE1_AFTER
    assert out_images.shape == (sum(TABLE1_AFTER), 6, 5, 1)
    assert out_images.dtype == np.uint8


def test_originals_then_mirrors_then_noisy_copies():
    images, labels = labelled_images([10, 40])  # class 0 grows 4x to 40
    out_images, out_labels = cnn_data.augment_dataset(images, labels, 2, 0.05, seed=3)
    block = out_images[out_labels == 0]
    originals = images[labels == 0]
    assert np.array_equal(block[:10], originals)
    assert np.array_equal(block[10:20], originals[:, :, ::-1, :])  # left-right mirror
    assert not np.array_equal(block[10:20], originals)
    sources = np.concatenate([originals, originals[:, :, ::-1, :]]).astype(np.float32)
    for noisy in block[20:].astype(np.float32):
        distance = np.abs(sources - noisy).mean(axis=(1, 2, 3))
        # Each noisy copy is near exactly one source, off by about E|N(0, 0.05*255)|.
        assert distance.min() > 5
        assert distance.min() < 15
    # The largest class is left as it was.
    assert np.array_equal(out_images[out_labels == 1], images[labels == 1])


def test_a_capped_class_keeps_originals_first_then_some_mirrors():
    images, labels = labelled_images([10, 15])  # class 0 capped at 15: 10 + 5 mirrors
    out_images, out_labels = cnn_data.augment_dataset(images, labels, 2, 0.05, seed=0)
    block = out_images[out_labels == 0]
    originals = images[labels == 0]
    assert len(block) == 15
    assert np.array_equal(block[:10], originals)
    mirrors = originals[:, :, ::-1, :]
    for extra in block[10:]:
        assert any(np.array_equal(extra, m) for m in mirrors)


def test_augmentation_is_repeatable_from_the_seed():
    images, labels = labelled_images([3, 20])
    first = cnn_data.augment_dataset(images, labels, 2, 0.05, seed=7)[0]
    again = cnn_data.augment_dataset(images, labels, 2, 0.05, seed=7)[0]
    other = cnn_data.augment_dataset(images, labels, 2, 0.05, seed=8)[0]
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


# ---------------------------------------------------------------- class weights

def test_equation1_weights_on_table1_after_counts():
    weights = cnn_data.class_weights(TABLE1_AFTER)
    assert set(weights) == set(range(8))
    assert weights[5] == 2.0  # C6 neutral, the smallest class
    assert weights[0] == weights[3] == weights[4] == weights[6] == 1.0
    assert weights[2] == pytest.approx(2 - (1344 - 460) / (1618 - 460))
    assert weights[2] == pytest.approx(1.2366, abs=1e-4)
    assert weights[1] == pytest.approx(2 - (1508 - 460) / 1158)
    assert all(1.0 <= w <= 2.0 for w in weights.values())


def test_equal_classes_all_weigh_one():
    assert cnn_data.class_weights([5, 5, 5]) == {0: 1.0, 1: 1.0, 2: 1.0}


# ---------------------------------------------------------------- decoding

def test_decode_resizes_and_converts_to_grayscale(tmp_path):
    red = Image.new("RGB", (150, 60), (255, 0, 0))
    red.save(tmp_path / "red.jpg", quality=100)
    pixels = cnn_data.decode_image(tmp_path / "red.jpg", 96, 1)
    assert pixels.shape == (96, 96, 1) and pixels.dtype == np.uint8
    assert abs(float(pixels.mean()) - 0.299 * 255) < 3  # ITU-R 601 luma of pure red


def test_decode_resizes_rather_than_crops(tmp_path):
    # Left half black, right half white, wide: a crop to the centre would lose most
    # of the black; a resize keeps half of each.
    pixels = np.zeros((50, 300), dtype=np.uint8)
    pixels[:, 150:] = 255
    Image.fromarray(pixels, "L").save(tmp_path / "halves.png")
    out = cnn_data.decode_image(tmp_path / "halves.png", 96, 1)[..., 0]
    assert out[:, :40].max() < 10
    assert out[:, 56:].min() > 245


@pytest.mark.parametrize("mode, fmt, ext", [
    ("RGB", "JPEG", ".jpg"), ("L", "JPEG", ".jpg"), ("RGB", "PNG", ".png"),
    ("L", "PNG", ".png"), ("RGBA", "PNG", ".png"), ("RGB", "BMP", ".bmp"),
    ("L", "GIF", ".gif"),
])
def test_every_common_format_decodes(tmp_path, mode, fmt, ext):
    path = write_image(tmp_path / f"x{ext}", (70, 45), mode, fmt)
    assert cnn_data.decode_image(path, 32, 1).shape == (32, 32, 1)
    assert cnn_data.decode_image(path, 32, 3).shape == (32, 32, 3)


def test_decoded_pixels_match_the_file(tmp_path):
    gray = np.full((96, 96), 100, dtype=np.uint8)
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    assert np.all(cnn_data.decode_image(tmp_path / "g.png", 96, 1) == 100)


# ---------------------------------------------------------------- class folders

def test_class_folders_with_mixed_images_load(tmp_path):
    root = make_class_folders(tmp_path / "data", per_class=4)
    found = layouts.find_dataset(root, cnn_params.CLASSES, cnn_params.ALIASES)
    assert found["classes"] == cnn_params.CLASSES
    paths, labels = found["train"]
    images, kept, skipped = cnn_data.load_images(paths, 96, 1)
    assert images.shape == (32, 96, 96, 1) and images.dtype == np.uint8
    assert cnn_data.class_counts(labels[kept], 8).tolist() == [4] * 8
    assert skipped == []
    assert len(found["validation"][0]) == 16


def test_folders_may_use_portuguese_names_in_any_case(tmp_path):
    names = ["Raiva", "NOJO", "medo", "Feliz", "negativa", "Neutra", "TRISTE", "Surprise"]
    root = make_class_folders(tmp_path / "data", per_class=1, folder_names=names)
    _, labels = layouts.list_split(root, "train", LOOKUP)
    assert sorted(labels.tolist()) == list(range(8))
    paths, labels = layouts.list_split(root, "train", LOOKUP)
    for path, label in zip(paths, labels):
        assert normalise_label(path.parent.name) in (
            [cnn_params.CLASSES[label]] + cnn_params.ALIASES[cnn_params.CLASSES[label]])


def test_unknown_class_folder_is_an_error_listing_accepted_names(tmp_path):
    root = make_class_folders(tmp_path / "data", per_class=1)
    write_image(root / "train" / "bored" / "a.jpg", (20, 20))
    with pytest.raises(cnn_data.DataError, match="Unknown class folder .*bored") as error:
        layouts.list_split(root, "train", LOOKUP)
    assert "raiva" in str(error.value) and "surprise" in str(error.value)


def test_missing_split_folder_is_an_error(tmp_path):
    with pytest.raises(cnn_data.DataError, match="Failed to find the folder .*train"):
        layouts.list_split(tmp_path, "train", LOOKUP)


def test_non_image_files_are_passed_over_quietly(tmp_path):
    root = make_class_folders(tmp_path / "data", per_class=1)
    (root / "train" / "anger" / "notes.txt").write_text("hello")
    (root / "train" / "anger" / ".DS_Store").write_bytes(b"\0\0")
    paths, _ = layouts.list_split(root, "train", LOOKUP)
    assert len(paths) == 8


def test_an_unreadable_file_is_skipped_and_named(tmp_path):
    good = write_image(tmp_path / "good.jpg", (30, 30))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"this is not a jpeg")
    with pytest.warns(UserWarning, match="bad.jpg"):
        images, kept, skipped = cnn_data.load_images([good, bad], 32, 1)
    assert images.shape == (1, 32, 32, 1) and kept.tolist() == [0]
    assert skipped[0][0] == str(bad)
    assert bad.read_bytes() == b"this is not a jpeg"  # never touched


# ---------------------------------------------------------------- pipelines and names

def test_make_dataset_batches_uint8_images_and_one_hot_labels():
    images, labels = labelled_images([5, 6, 3], shape=(8, 8, 1))
    dataset = cnn_data.make_dataset(images, labels, 3, batch_size=4, shuffle=True, seed=1)
    batches = list(dataset)
    assert [len(x) for x, _ in batches] == [4, 4, 4, 2]
    x, y = batches[0]
    assert x.dtype.name == "uint8" and x.shape == (4, 8, 8, 1)
    assert y.shape == (4, 3) and np.allclose(np.sum(y, axis=1), 1)
    seen = np.concatenate([np.argmax(y, axis=1) for _, y in batches])
    assert np.bincount(seen).tolist() == [5, 6, 3]


@pytest.mark.parametrize("name, expected", [
    ("anger.jpg", 0), ("Raiva_02.png", 0), ("surprise.jpeg", 7), ("NEUTRA.jpg", 5),
    ("photo_12.jpg", None), ("happy-3.bmp", 3),
])
def test_label_from_filename(name, expected):
    assert label_from_filename(name, LOOKUP) == expected


def test_noise_drawn_in_chunks_is_the_noise_of_one_draw():
    # Chunks keep the float64 temporaries small; they must not change the numbers,
    # so a run's balanced set (and history) does not depend on the chunk size.
    rng = np.random.default_rng(5)
    first = rng.integers(0, 256, (7, 9, 7, 1), dtype=np.uint8)
    second = rng.integers(0, 256, (5, 9, 7, 1), dtype=np.uint8)
    chunked = cnn_data._add_noise([first, second], 0.05, np.random.default_rng(11), chunk=3)
    whole = np.random.default_rng(11).normal(
        0.0, 0.05 * 255.0, (12, 9, 7, 1))  # one draw for all of them, in order
    expected = np.clip(np.round(np.concatenate([first, second]).astype(np.float32) + whole),
                       0, 255).astype(np.uint8)
    assert np.array_equal(chunked, expected)
    # And augmenting through it gives Table 1's counts with any chunk size.
    labels = np.repeat(np.arange(4), [7, 30, 3, 12])
    images = rng.integers(0, 256, (len(labels), 9, 7, 1), dtype=np.uint8)
    out, out_labels = cnn_data.augment_dataset(images, labels, 4, 0.05, seed=11)
    assert np.bincount(out_labels).tolist() == [28, 30, 12, 30] and len(out) == 100
