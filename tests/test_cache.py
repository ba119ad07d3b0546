"""The image cache: hits, invalidation, and recovery from a damaged cache file."""

import os

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
    cache_file.write_bytes(cache_file.read_bytes()[:1000])  # truncated
    again = load(files, tmp_path, loader, expect="unusable")
    assert calls == [6, 6] and np.array_equal(again[0], good[0])


def test_a_flipped_pixel_fails_the_zip_crc_and_rebuilds(files, tmp_path):
    import zipfile

    loader, calls = counting_loader()
    good = load(files, tmp_path, loader)
    cache_file = next((tmp_path / "cache").glob("*.npz"))
    with zipfile.ZipFile(cache_file) as archive:
        member = archive.getinfo("images.npy")
    data = bytearray(cache_file.read_bytes())
    # The local header (30 bytes + name + extra), the .npy header (128), then pixels.
    name_length = int.from_bytes(data[member.header_offset + 26:member.header_offset + 28], "little")
    extra_length = int.from_bytes(data[member.header_offset + 28:member.header_offset + 30], "little")
    pixel = member.header_offset + 30 + name_length + extra_length + 128 + 100
    data[pixel] ^= 0xFF
    cache_file.write_bytes(bytes(data))
    again = load(files, tmp_path, loader, expect="unusable")
    assert calls == [6, 6] and np.array_equal(again[0], good[0])
