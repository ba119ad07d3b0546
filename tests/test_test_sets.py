"""Labelled test sets: scored by cnn_eval.py, and as Table 3's "test" column in training."""

import csv
import io
import json
import re
from contextlib import redirect_stdout

import numpy as np
import pytest

import cnn_data
import cnn_eval
import cnn_params
import cnn_run
from cnnlib import config, layouts, metrics
from conftest import ROOT, make_class_folders, write_image

CLASSES = cnn_params.CLASSES


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny run on data with a test/ split; returns (run folder, data folder, stdout)."""
    root = tmp_path_factory.mktemp("trained")
    data = make_class_folders(root / "data", per_class=3)
    for i, name in enumerate(CLASSES):
        write_image(data / "test" / name / "t.png", (40, 40), "L", "PNG", seed=300 + i)
    params = config.defaults(cnn_params)
    params.update(data_dir=str(data), runs_dir=str(root / "runs"), cache_dir=str(root / "cache"),
                  test_dir=str(ROOT / "test_images"), epochs=1, verbose=0, image_size=32)
    printed = io.StringIO()
    with redirect_stdout(printed):
        run_dir = cnn_run.run(params)
    return run_dir, data, printed.getvalue()


def test_a_test_split_is_table3s_test_column_and_the_run_says_so(trained):
    run_dir, data, out = trained
    assert "Test set (Table 3's \"test\" column): the data's own test split (8 images)" in out
    assert "test = the data's own test split" in out
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["data"]["test"].startswith("the data's own test split")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert len(metrics["test_probabilities"]) == 8  # the 8 test/ images, not test_images/


@pytest.mark.slow
def test_without_a_test_split_the_test_images_stay_the_test_set(tiny_params, capsys):
    data = cnn_data.prepare_data(tiny_params)
    assert (f"Test set (Table 3's \"test\" column): the labelled images in "
            f"{tiny_params['test_dir']} (8 images)") in capsys.readouterr().out
    assert len(data.test[1]) == 8 and data.test[0].shape[1:] == (32, 32, 1)


def write_test_set(folder):
    """A tiny class-folder test set whose folders use other names of the classes."""
    names = {"angry": 2, "Happy": 2, "sadness": 1, "surpresa": 2}
    for f, (name, count) in enumerate(names.items()):
        for i in range(count):
            write_image(folder / name / f"img{i}.jpg", (36 + i, 40), "RGB", "JPEG",
                        seed=500 + 10 * f + i)
    return folder


@pytest.mark.slow
def test_a_labelled_tree_writes_a_confusion_matrix_equal_to_its_printed_predictions(
        trained, tmp_path, capsys):
    run_dir, _, _ = trained
    test_set = write_test_set(tmp_path / "my_test")
    assert cnn_eval.main([str(test_set), f"--model={run_dir / 'model.keras'}",
                          f"--cache_dir={tmp_path / 'cache'}"]) == 0
    out = capsys.readouterr().out
    lines = re.findall(r"^(\S+)\s+true (\w+)\s+predicted (\w+)\s+p=([\d.]+)  (ok|wrong)$",
                       out, re.M)
    assert len(lines) == 7
    # angry/ is anger, Happy/ happy, sadness/ sad, surpresa/ surprise: the training aliases.
    assert {name.split("/")[0]: true for name, true, *_ in lines} == {
        "angry": "anger", "Happy": "happy", "sadness": "sad", "surpresa": "surprise"}
    recomputed = metrics.confusion_matrix([CLASSES.index(t) for _, t, *_ in lines],
                                         [CLASSES.index(p) for _, _, p, *_ in lines], 8)
    folder = next(run_dir.glob("eval-*"))
    written = np.loadtxt(folder / "confusion.csv", delimiter=",", skiprows=1, dtype=int)
    np.testing.assert_array_equal(written, recomputed)
    assert (folder / "confusion.csv").read_text().splitlines()[0] == ",".join(CLASSES)
    for name in ("confusion.png", "per_class.csv", "predictions.csv", "scores.json"):
        assert (folder / name).is_file(), name
    scores = json.loads((folder / "scores.json").read_text())
    assert scores["images"] == 7 and len(scores["accuracy_interval"]) == 2
    assert scores["accuracy"] == pytest.approx(np.trace(recomputed) / 7)
    assert (folder / "mistakes.png").is_file() == any(m == "wrong" for *_, m in lines)
    for label, method in (("accuracy", "95% Wilson"),
                          ("balanced accuracy", "95% stratified bootstrap, 1000 resamples, seed 0"),
                          ("macro-F1", "95% stratified bootstrap, 1000 resamples, seed 0")):
        assert re.search(rf"^{label}\s+[\d.]+  \({method} interval [\d.]+ to [\d.]+\)$",
                         out, re.M)
    assert scores["interval_methods"]["accuracy"] == "95% Wilson"
    assert len(scores["recall_intervals"]) == len(CLASSES)
    assert re.search(r"Scored 7 image\(s\) in [\d.]+ s: [\d.]+ images/s", out)
    with open(folder / "per_class.csv") as handle:
        per_class = {row["class"]: row for row in csv.DictReader(handle)}
    assert int(per_class["anger"]["support"]) == 2 and int(per_class["fear"]["support"]) == 0

    # A second eval writes a new folder; the first is untouched.
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert cnn_eval.main([str(test_set), f"--model={run_dir / 'model.keras'}"]) == 0
    assert len(list(run_dir.glob("eval-*"))) == 2
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


@pytest.mark.slow
def test_a_class_the_model_does_not_know_is_one_error_naming_both_sets(trained, tmp_path,
                                                                      capsys):
    run_dir, _, _ = trained
    test_set = write_test_set(tmp_path / "set")
    write_image(test_set / "contempt" / "c.jpg", (30, 30))
    before = sorted(run_dir.glob("eval-*"))
    assert cnn_eval.main([str(test_set), f"--model={run_dir / 'model.keras'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "contempt, which the model does not know" in err
    assert "the model's classes are anger, disgust, fear, happy, negative" in err
    assert "the test set's are angry, contempt, happy, sadness, surpresa" in err
    assert sorted(run_dir.glob("eval-*")) == before  # nothing written


@pytest.mark.slow
def test_the_test_split_of_a_data_folder_and_csv_rows_marked_test(trained, tmp_path, capsys):
    run_dir, data, _ = trained
    assert cnn_eval.main([str(data), f"--model={run_dir / 'model.keras'}"]) == 0
    out = capsys.readouterr().out
    assert f"Test set: the test/ split of {data}, 8 labelled image(s)." in out

    table = tmp_path / "table"
    rows = []
    for i, (label, split) in enumerate([("anger", "train"), ("Happiness", "test"),
                                        ("sad", "PrivateTest"), ("fear", "")]):
        write_image(table / "images" / f"f{i}.jpg", (30, 30), seed=i)
        rows.append(f"f{i}.jpg,{label},{split}")
    (table / "legend.csv").write_text("image,emotion,split\n" + "\n".join(rows) + "\n")
    assert cnn_eval.main([str(table), f"--model={run_dir / 'model.keras'}"]) == 0
    out = capsys.readouterr().out
    assert "the rows of" in out and "marked test, 2 labelled image(s)" in out
    assert re.search(r"f1.jpg\s+true happy", out) and re.search(r"f2.jpg\s+true sad", out)

    (data.parent / "no_test").mkdir()
    (data.parent / "no_test" / "train").symlink_to(data / "train")
    assert cnn_eval.main([str(data.parent / "no_test"), f"--model={run_dir / 'model.keras'}"]) == 2
    assert "is a training data folder with no test/ split" in capsys.readouterr().err


def test_a_labels_file_split_column_makes_train_validation_and_test(tmp_path):
    data = tmp_path / "set"
    rows = []
    marks = ["train", "Training", "", "validation", "PublicTest", "test"] * 2
    for i, mark in enumerate(marks):
        write_image(data / "images" / f"{i}.jpg", (20, 20), seed=i)
        rows.append(f"{i}.jpg,{['anger', 'happy'][i % 2]},{mark}")
    (data / "legend.csv").write_text("image,emotion,split\n" + "\n".join(rows) + "\n")
    found = layouts.find_dataset(data, ["auto"], {})
    assert "with its 'split' column" in found["layout"]
    assert sorted(p.name for p in found["train"][0]) == ["0.jpg", "1.jpg", "2.jpg", "6.jpg",
                                                         "7.jpg", "8.jpg"]
    assert sorted(p.name for p in found["validation"][0]) == ["3.jpg", "9.jpg"]
    assert sorted(p.name for p in found["test"][0]) == ["10.jpg", "11.jpg", "4.jpg", "5.jpg"]
    (data / "legend.csv").write_text("image,emotion,split\n0.jpg,anger,holdout\n")
    with pytest.raises(layouts.DataError, match="'holdout': use train, validation or test"):
        layouts.find_dataset(data, ["auto"], {})
