"""The image cache: hits, invalidation, and recovery from a damaged cache file."""

import os
from pathlib import Path

import numpy as np
import pytest

import cnn_data
from cnnlib import cache
from conftest import write_image


@pytest.fixture
def files(tmp_path):
    paths = [write_image(tmp_path / "img" / f"{i}.jpg", (30 + i, 40), seed=i) for i in range(5)]
    (tmp_path / "img" / "bad.jpg").write_bytes(b"garbage")
    return paths + [tmp_path / "img" / "bad.jpg"]


def counting_loader():
    calls = []

    def loader(paths, size, channels):
        calls.append(len(paths))
        return cnn_data.load_images(paths, size, channels)

    return loader, calls


def load(files, tmp_path, loader, size=24, expect=None):
    """Load through the cache; return its result. bad.jpg always warns of its skip."""
    with pytest.warns(UserWarning) as record:
        result = cache.load_cached(files, size, 1, tmp_path / "cache", loader)
    messages = [str(w.message) for w in record]
    assert any("bad.jpg" in m for m in messages)
    if expect:
        assert any(expect in m for m in messages), messages
    return result


def test_a_second_load_comes_from_the_cache(files, tmp_path):
    loader, calls = counting_loader()
    first = load(files, tmp_path, loader)
    second = load(files, tmp_path, loader)
    assert calls == [6]  # decoded once
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    assert second[2] == first[2] and "bad.jpg" in second[2][0][0]
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1


def test_a_changed_file_or_parameter_rebuilds(files, tmp_path):
    loader, calls = counting_loader()
    load(files, tmp_path, loader)
    write_image(files[0], (60, 20), seed=99)  # new content, size and time
    stat = os.stat(files[0])
    os.utime(files[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    changed = load(files, tmp_path, loader)
    assert calls == [6, 6]
    assert np.array_equal(changed[0][0], cnn_data.decode_image(files[0], 24, 1))
    load(files, tmp_path, loader, size=16)  # another image size: another cache
    assert calls == [6, 6, 6]


def test_a_damaged_cache_file_is_rebuilt_not_trusted(files, tmp_path):
    loader, calls = counting_loader()
    good = load(files, tmp_path, loader)
    cache_file = next((tmp_path / "cache").glob("*.npz"))
    cache_file.write_bytes(cache_file.read_bytes()[:100])  # truncated
    again = load(files, tmp_path, loader, expect="unusable")
    assert calls == [6, 6] and np.array_equal(again[0], good[0])


def test_a_truncated_images_file_is_rebuilt(files, tmp_path):
    loader, calls = counting_loader()
    good = np.array(load(files, tmp_path, loader)[0])  # a copy: the map sees the damage
    images_file = next((tmp_path / "cache").glob("*.npy"))
    images_file.write_bytes(images_file.read_bytes()[:-10])
    again = load(files, tmp_path, loader, expect="unusable")
    assert calls == [6, 6] and np.array_equal(again[0], good)


def test_a_flipped_pixel_fails_the_crc_and_rebuilds(files, tmp_path):
    loader, calls = counting_loader()
    good = np.array(load(files, tmp_path, loader)[0])  # a copy: the map sees the damage
    images_file = next((tmp_path / "cache").glob("*.npy"))
    data = bytearray(images_file.read_bytes())
    data[-100] ^= 0xFF  # a pixel, well past the .npy header
    images_file.write_bytes(bytes(data))
    again = load(files, tmp_path, loader, expect="unusable")
    assert calls == [6, 6] and np.array_equal(again[0], good)


def test_a_warm_load_maps_the_images_instead_of_copying_them(files, tmp_path):
    loader, _ = counting_loader()
    load(files, tmp_path, loader)
    images = load(files, tmp_path, loader)[0]
    assert isinstance(images, np.memmap) and not images.flags.writeable


def test_a_warm_run_maps_the_balanced_set_from_the_cache(tiny_params):
    first = cnn_data.prepare_data(tiny_params)
    second = cnn_data.prepare_data(tiny_params)
    assert isinstance(second.train_images, np.memmap)
    assert isinstance(second.val_images, np.memmap)
    for key in ("train_images", "train_labels", "val_images", "val_labels", "counts_before",
                "counts_after"):
        assert np.array_equal(getattr(first, key), getattr(second, key)), key
    assert first.weights == second.weights
    # Another seed draws other noisy copies: another balanced set, same decoded files.
    other = cnn_data.prepare_data({**tiny_params, "seed": 7})
    assert len(list(Path(tiny_params["cache_dir"]).glob("balanced-*.npz"))) == 2
    assert len(list(Path(tiny_params["cache_dir"]).glob("images-*.npz"))) == 2  # train, val
    assert np.array_equal(other.val_images, first.val_images)


def test_the_pixel_limit_keys_what_was_decoded(files):
    from cnnlib import decode

    before = decode.max_pixels()
    try:
        default_key = cache.cache_key(files, 16, 1)
        decode.set_max_pixels(4096)  # a smaller limit skips other images: another entry
        assert cache.cache_key(files, 16, 1) != default_key
        decode.set_max_pixels(before)
        assert cache.cache_key(files, 16, 1) == default_key
    finally:
        decode.set_max_pixels(before)
