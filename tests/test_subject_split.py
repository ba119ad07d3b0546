"""Subject-aware splits (cnnlib.subject_split): no subject on both sides, classes stratified."""

import numpy as np
import pytest

from cnnlib import subject_split


def _subjects(seed=0, subjects=60, classes=("anger", "happy", "sad", "surprise")):
    """Labels and subjects of a CK+-like set: each subject posing 2-12 images of a few classes."""
    rng = np.random.default_rng(seed)
    labels, groups = [], []
    for s in range(subjects):
        posed = rng.choice(classes, rng.integers(1, 4), replace=False)
        for _ in range(rng.integers(2, 13)):
            labels.append(str(rng.choice(posed)))
            groups.append(f"S{s:03d}")
    return np.array(labels), groups


def test_no_subject_straddles_and_classes_are_stratified():
    labels, groups = _subjects()
    split = subject_split.split_by_group(labels, groups, 0.2, seed=1)
    assert subject_split.straddling(groups, split) == set()
    assert sorted(np.concatenate([split.train, split.validation]).tolist()) == list(
        range(len(labels)))
    assert len(split.validation) / len(labels) == pytest.approx(0.2, abs=0.03)
    for name, share in subject_split.class_shares(labels, split).items():
        assert share == pytest.approx(0.2, abs=0.07), name


def test_split_is_seeded_and_reproducible():
    labels, groups = _subjects(seed=2)
    first = subject_split.split_by_group(labels, groups, 0.25, seed=7)
    again = subject_split.split_by_group(labels, groups, 0.25, seed=7)
    other = subject_split.split_by_group(labels, groups, 0.25, seed=8)
    assert np.array_equal(first.validation, again.validation)
    assert not np.array_equal(first.validation, other.validation)


def test_images_without_a_subject_are_their_own_groups():
    labels = ["a"] * 10 + ["b"] * 10
    groups = ["P1"] * 6 + [""] * 4 + [None] * 5 + ["P2"] * 5
    split = subject_split.split_by_group(labels, groups, 0.5, seed=0)
    assert subject_split.straddling(groups, split) == set()
    assert len(split.train) and len(split.validation)


def test_one_big_subject_still_leaves_both_sides():
    split = subject_split.split_by_group(["a"] * 12, ["P1"] * 10 + ["P2"] * 2, 0.2)
    assert len(split.train) and len(split.validation)
    with pytest.raises(ValueError):
        subject_split.split_by_group(["a"], ["P1", "P2"], 0.2)


def test_split_csv_round_trip(tmp_path):
    files = ["a.jpg", 'odd, "name"\n.png', "c.jpg", "d.jpg"]
    groups = ["P1", "P1", None, "P, 2"]
    path = subject_split.write_split(tmp_path / "split.csv", files,
                                     {"train": [0, 1], "validation": [3], "test": [2]}, groups)
    assert subject_split.read_split(path) == [
        ("a.jpg", "train", "P1"), ('odd, "name"\n.png', "train", "P1"), ("c.jpg", "test", ""),
        ("d.jpg", "validation", "P, 2")]
    assert [p.name for p in tmp_path.iterdir()] == ["split.csv"]
