"""Leaks found at data preparation: near-duplicates (duplicates.csv, --dedupe) and
subject-aware splits (--group_column, split.csv) (issue 17)."""

import csv

import numpy as np
import pytest
from PIL import Image

import cnn_data
import cnn_params
from cnnlib import config, near_duplicates, records, subject_split
from cnnlib.errors import DataError

CLASSES = ["anger", "happy", "sad"]


def smooth_image(path, seed, size=64, fmt=None):
    """A smooth random picture (a 4x4 grid upsampled): low frequencies a hash can see."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, (4, 4), dtype=np.uint8), "L")
    path.parent.mkdir(parents=True, exist_ok=True)
    small.resize((size, size), Image.BICUBIC).save(path, format=fmt)
    return path


def params_for(data_dir, tmp_path, **overrides):
    params = config.defaults(cnn_params)
    params.update(data_dir=str(data_dir), runs_dir=str(tmp_path / "runs"),
                  cache_dir=str(tmp_path / "cache"), test_dir="", epochs=1, verbose=0,
                  image_size=32, classes=["auto"], crop_faces=False)
    params.update(overrides)
    return params


@pytest.fixture
def leaky_data(tmp_path):
    """train/ and validation/ class folders; validation/anger/copy.jpg is a re-encoded,
    resized copy of train/anger/img0.png."""
    root = tmp_path / "data"
    seed = 100
    for split, count in (("train", 4), ("validation", 2)):
        for name in CLASSES:
            for i in range(count):
                smooth_image(root / split / name / f"img{i}.png", seed)
                seed += 1
    with Image.open(root / "train" / "anger" / "img0.png") as original:
        original.resize((80, 80), Image.BILINEAR).save(
            root / "validation" / "anger" / "copy.jpg", quality=70)
    return root


def test_a_reencoded_copy_across_train_and_validation_is_reported(leaky_data, tmp_path,
                                                                   capsys):
    data = cnn_data.prepare_data(params_for(leaky_data, tmp_path))
    printed = capsys.readouterr().out
    assert "Near-duplicates (perceptual hash): 1 group(s), 2 file(s)" in printed
    assert "train/validation 1" in printed
    assert len(data.duplicates) == 1 and data.duplicates[0].sets == ["train", "validation"]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    records.write_data_records(run_dir, 0, str(leaky_data), data)
    with open(run_dir / "duplicates.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["file"].rsplit("/", 2)[-2] + "/" + r["file"].rsplit("/", 1)[-1]
                  for r in rows) == ["anger/copy.jpg", "anger/img0.png"]
    assert {r["set"] for r in rows} == {"train", "validation"}
    assert all(r["conflicting"] == "0" for r in rows)
    # split.csv lists every image read once, no subject
    split_rows = subject_split.read_split(run_dir / "split.csv")
    assert len(split_rows) == 3 * 4 + 3 * 2 + 1
    assert len({f for f, _, _ in split_rows}) == len(split_rows)
    assert all(group == "" for _, _, group in split_rows)


def test_hashes_are_cached_and_change_nothing_the_run_trains_on(leaky_data, tmp_path):
    params = params_for(leaky_data, tmp_path)
    first = cnn_data.prepare_data(params)
    assert list((tmp_path / "cache").glob("phash-*.npz"))
    second = cnn_data.prepare_data(params)  # warm: balanced set and hashes from the cache
    assert len(second.duplicates) == 1
    np.testing.assert_array_equal(first.train_images, second.train_images)
    np.testing.assert_array_equal(first.train_labels, second.train_labels)
    np.testing.assert_array_equal(first.val_images, second.val_images)


def test_dedupe_leaves_out_the_training_copy_in_memory_only(leaky_data, tmp_path, capsys):
    plain = cnn_data.prepare_data(params_for(leaky_data, tmp_path, cache_dir=""))
    deduped = cnn_data.prepare_data(params_for(leaky_data, tmp_path, dedupe=True))
    assert "left out 1 near-duplicate" in capsys.readouterr().out
    assert deduped.counts_before.sum() == plain.counts_before.sum() - 1
    assert len(deduped.val_labels) == len(plain.val_labels)
    assert deduped.dropped and deduped.dropped[0].endswith("img0.png")
    assert (leaky_data / "train" / "anger" / "img0.png").is_file()  # nothing on disk touched
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    records.write_data_records(run_dir, 0, str(leaky_data), deduped)
    splits = {f.rsplit("/", 1)[-1] + s for f, s, _ in subject_split.read_split(
        run_dir / "split.csv") if "anger" in f}
    assert "img0.pngdropped" in splits and "copy.jpgvalidation" in splits


@pytest.fixture
def subject_data(tmp_path):
    """A labels CSV of 6 subjects, each with 2 images of each of 3 classes."""
    root = tmp_path / "subjects"
    rows, seed = [], 500
    for subject in range(6):
        for name in CLASSES:
            for k in range(2):
                file = f"s{subject}_{name}_{k}.png"
                smooth_image(root / "images" / file, seed)
                seed += 1
                rows.append((file, name, f"person{subject}"))
    with open(root / "legend.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "emotion", "subject"])
        writer.writerows(rows)
    return root


def test_group_column_keeps_each_subject_on_one_side(subject_data, tmp_path):
    data = cnn_data.prepare_data(params_for(subject_data, tmp_path, group_column="subject",
                                            validation_fraction=0.34))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    records.write_data_records(run_dir, 0, str(subject_data), data)
    rows = subject_split.read_split(run_dir / "split.csv")
    assert len(rows) == 36 and len({f for f, _, _ in rows}) == 36
    sides = {}
    for file, split, group in rows:
        assert group == "person" + file.rsplit("/", 1)[-1][1]
        sides.setdefault(group, set()).add(split)
    assert all(len(s) == 1 for s in sides.values())
    assert {next(iter(s)) for s in sides.values()} == {"train", "validation"}
    assert len(data.val_labels) in (12, 18)  # whole subjects of 6 images


def test_an_unknown_group_column_is_one_sentence(subject_data, tmp_path):
    with pytest.raises(DataError) as raised:
        cnn_data.prepare_data(params_for(subject_data, tmp_path, group_column="person"))
    message = str(raised.value)
    assert "legend.csv" in message and "'person'" in message and "subject" in message
    assert message.count(". ") == 0 and "\n" not in message


def test_a_group_column_without_a_labels_csv_is_one_sentence(leaky_data, tmp_path):
    with pytest.raises(DataError, match="--group_column=subject needs a labels CSV"):
        cnn_data.prepare_data(params_for(leaky_data, tmp_path, group_column="subject"))


def test_find_duplicates_with_no_sets_finds_nothing(capsys):
    groups, items = cnn_data.find_duplicates({}, CLASSES)
    assert groups == [] and items == []
    assert near_duplicates.summarise(groups).groups == 0


def test_validation_predictions_pair_two_runs(tmp_path):
    from cnnlib import compare

    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1], np.int64)
    paths = [f"/data/validation/img{i}.png" for i in range(len(labels))]
    rng = np.random.default_rng(0)
    folders = []
    for name, right in (("a", 4), ("b", 8)):
        probabilities = rng.random((len(labels), 3))
        wrong = (labels + 1) % 3
        probabilities[np.arange(8), np.where(np.arange(8) < right, labels, wrong)] += 5
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        folder = tmp_path / name
        folder.mkdir()
        records.write_predictions(folder / "validation_predictions.csv", CLASSES, paths,
                                  labels, probabilities)
        folders.append(folder)
    with open(folders[0] / "validation_predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["path"] for r in rows] == paths
    assert list(rows[0]) == ["path", "true", "predicted", "probability", "correct",
                             "p_anger", "p_happy", "p_sad"]
    result = compare.compare_files(folders[0], folders[1])
    accuracy = next(c for c in result.comparisons if c.metric == "accuracy")
    assert accuracy.a == 0.5 and accuracy.b == 1.0 and accuracy.difference == 0.5
