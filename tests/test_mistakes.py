"""User mistakes that once ended in a traceback, and outputs that must never collide.

- `--classes=auto` on a fresh clone, before the stand-in exists, trains on the
  stand-in's classes;
- a file name holding a line break survives every list of files the suite writes
  (unlabeled.txt, skipped.csv) and is read back by cnn_eval.py's list reader;
- two processes started in the same second never write the same report file.
"""

import csv
import os
import sys
from pathlib import Path

import numpy as np
import pytest

import cnn_data
import cnn_params
import cnn_run
from cnnlib import config, files, runs
from conftest import make_class_folders, write_image

@pytest.mark.slow
def test_classes_auto_on_a_fresh_clone_trains_on_the_standins_classes(tmp_path, monkeypatch,
                                                                      capsys):
    monkeypatch.chdir(tmp_path)  # a fresh clone: no data/ yet
    code = cnn_run.main(["--classes=auto", "--epochs=1", "--image_size=32", "--verbose=0",
                         "--standin_train_counts=[3,3,3,3,3,3,3,3]",
                         "--standin_validation_total=16", "--cache_dir=", "--test_dir="])
    err = capsys.readouterr().err
    assert code == 0, err
    run_dir = runs.latest_run(tmp_path / "runs")
    info = runs.read_json(run_dir / "run_info.json")
    assert info["data"]["classes"] == sorted(cnn_params.CLASSES)


def _labels_csv_data(root, odd_name):
    """A labels-CSV data set whose images folder also holds an unlisted image `odd_name`."""
    rows = [["image", "emotion"]]
    for c, name in enumerate(cnn_params.CLASSES):
        for i in range(3):
            write_image(root / "images" / f"{name}{i}.png", (20, 20), "L", "PNG", c * 3 + i)
            rows.append([f"{name}{i}.png", name])
    with open(root / "legend.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return write_image(root / "images" / odd_name, (20, 20), "L", "PNG", 99)


@pytest.mark.slow
def test_a_file_name_with_a_line_break_survives_the_lists_a_run_writes(tmp_path):
    odd = _labels_csv_data(tmp_path / "data", "two\nlines\tand tab.png")
    broken = tmp_path / "data" / "images" / "bro\nken.png"
    broken.write_bytes(b"not an image")
    params = {**config.defaults(cnn_params), "data_dir": str(tmp_path / "data"),
              "runs_dir": str(tmp_path / "runs"), "cache_dir": "", "epochs": 1,
              "verbose": 0, "image_size": 32, "validation_fraction": 0.34,
              "test_dir": ""}
    with open(tmp_path / "data" / "legend.csv", "a", newline="") as handle:
        csv.writer(handle).writerow(["bro\nken.png", "anger"])
    with pytest.warns(UserWarning):
        run_dir = cnn_run.run(params)
    # cnn_eval.py reads a .txt list of images with the same reader.
    assert files.list_images([run_dir / "unlabeled.txt"]) == [odd.absolute()]
    with open(run_dir / "skipped.csv", newline="") as handle:
        skipped = list(csv.DictReader(handle))
    assert [Path(row["path"]) for row in skipped] == [broken.absolute()]


def test_a_hand_written_list_of_paths_still_reads_one_path_a_line(tmp_path):
    one = write_image(tmp_path / "a b.png", (8, 8))
    two = write_image(tmp_path / "sub" / "c.png", (8, 8))
    (tmp_path / "list.txt").write_text("a b.png\n\nsub/c.png\n")
    assert files.list_images([tmp_path / "list.txt"]) == [tmp_path / "a b.png",
                                                          tmp_path / "sub" / "c.png"]
    assert one.is_file() and two.is_file()


def test_two_data_reports_in_the_same_second_get_two_files(tmp_path, monkeypatch):
    data = make_class_folders(tmp_path / "data")
    args = [f"--data_dir={data}", f"--runs_dir={tmp_path / 'runs'}", "--cache_dir=",
            "--image_size=32"]
    import datetime

    from cnnlib import plots

    class Frozen(datetime.datetime):  # both processes start in the same second
        @classmethod
        def now(cls, tz=None):
            return cls(2030, 1, 2, 3, 4, 5)

    monkeypatch.setattr(datetime, "datetime", Frozen)
    plot = plots.plot_examples
    calls = []

    def second_process_meanwhile(*a, **k):
        # The other process chooses its name after this one chose, before it wrote.
        calls.append(1)
        if len(calls) == 1:
            assert cnn_data.main(args) == 0
        return plot(*a, **k)

    monkeypatch.setattr(plots, "plot_examples", second_process_meanwhile)
    assert cnn_data.main(args) == 0
    reports = sorted((tmp_path / "runs").glob("data_report-*.png"))
    assert len(reports) == 2 and all(p.stat().st_size > 0 for p in reports)


def test_claimed_paths_are_never_handed_out_twice(tmp_path):
    first = runs.claim_path(tmp_path / "x.png")
    second = runs.claim_path(tmp_path / "x.png")
    assert first != second and first.exists() and second.exists()


def test_a_runs_folder_made_for_a_command_that_stops_on_a_mistake_is_removed(tmp_path):
    import cnn_data

    runs_dir = tmp_path / "new" / "runs"
    assert cnn_data.main([f"--data_dir={tmp_path / 'missing'}", f"--runs_dir={runs_dir}"]) == 2
    assert not (tmp_path / "new").exists()


def test_a_folder_where_latest_txt_belongs_is_found_before_training(tmp_path):
    from cnnlib import runs
    from cnnlib.errors import RunError

    (tmp_path / "runs" / runs.LATEST_FILE).mkdir(parents=True)
    with pytest.raises(RunError, match="latest.txt is not a file .a folder"):
        runs.check_runs_dir(tmp_path / "runs")


def test_output_names_made_from_a_long_name_still_fit(tmp_path):
    from cnnlib import atomic

    long_stem = "\u00fc" * 125  # 250 bytes: a legal name; ours add to it
    folder = runs.new_output_dir(tmp_path, f"{long_stem}-onnx")
    assert folder.is_dir() and folder.name[-16:-6].startswith("-20")  # the time is kept
    assert len(os.fsencode(folder.name)) <= atomic.NAME_MAX - 5  # room for a counter
    marked = atomic.fitting_name(long_stem, "-faces.jpg")
    assert marked.endswith("-faces.jpg") and len(os.fsencode(marked)) <= atomic.NAME_MAX - 5
    assert marked != atomic.fitting_name(long_stem[:-1] + "x", "-faces.jpg")  # hash differs
    assert atomic.fitting_name("face", "-faces.jpg") == "face-faces.jpg"  # short: unchanged
