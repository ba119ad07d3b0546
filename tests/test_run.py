"""End to end: cnn_run.py trains and writes a run; cnn_eval.py scores with it."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import cnn_data
import cnn_eval
import cnn_model
import cnn_params
import cnn_run
from cnnlib import files, layouts, metrics, runs, scoring, standin
from conftest import ROOT, assert_figure, write_image


@pytest.fixture
def test_dir(tmp_path):
    """Eight labelled test images (one per class) and one unlabelled."""
    folder = tmp_path / "test_images"
    for i, name in enumerate(cnn_params.CLASSES):
        write_image(folder / f"{name}.jpg", (50 + i, 60), "RGB", "JPEG", seed=100 + i)
    write_image(folder / "photo.png", (40, 40), "L", "PNG", seed=99)
    return folder


@pytest.mark.slow
def test_a_short_run_writes_its_folder_and_eval_scores_with_it(tiny_params, test_dir, capsys):
    tiny_params["test_dir"] = str(test_dir)
    run_dir = cnn_run.run(tiny_params)
    for name in ("model.keras", "best.keras", "params.json", "history.csv",
                 "metrics.json", "curves.png"):
        assert (run_dir / name).is_file(), name
    assert runs.latest_run(tiny_params["runs_dir"]) == run_dir
    saved = json.loads((run_dir / "params.json").read_text())
    assert saved["epochs"] == 1 and saved["image_size"] == 32
    history = runs.read_history(run_dir / "history.csv")
    assert history["epoch"] == [1.0]
    assert {"accuracy", "loss", "val_accuracy", "val_loss", "seconds"} <= set(history)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics) >= {"train", "validation", "test"}
    # Table 3's validation column is the trained model's, as the last epoch saw it.
    assert metrics["validation"]["accuracy"] == pytest.approx(history["val_accuracy"][-1])
    assert metrics["validation"]["loss"] == pytest.approx(history["val_loss"][-1], rel=1e-4)
    out = capsys.readouterr().out
    # Table 1 of this data: 3 per class before, capped at 3 after (all equal).
    assert re.search(r"anger\s+3\s+3\s+1.0000", out)
    assert re.search(r"total\s+24\s+24", out)

    # cnn_eval on the latest run: 8 labelled predictions and one unlabelled.
    code = cnn_eval.main([str(test_dir), f"--runs_dir={tiny_params['runs_dir']}"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.count("predicted") == 9
    assert "over 8 labelled image(s)" in out
    figures = list(run_dir.glob("predictions-*.png"))
    assert len(figures) == 1
    assert_figure(figures[0])

    # The saved model, loaded again, predicts what the trained one did.
    model = cnn_model.load_model(run_dir / "model.keras")
    paths = files.list_images([test_dir])
    results, summary, _ = scoring.score_images(model, paths, cnn_params.CLASSES,
                                                cnn_params.ALIASES, 32, 1)
    labelled = [r["probabilities"] for r in results if r["true"] is not None]
    np.testing.assert_allclose(labelled, metrics["test_probabilities"], atol=1e-6)
    assert summary["accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    assert summary["loss"] == pytest.approx(metrics["test"]["loss"], rel=1e-3)


@pytest.mark.slow
def test_a_second_run_never_touches_the_first(tiny_params):
    first = cnn_run.run(tiny_params)
    before = {p.name: p.read_bytes() for p in first.iterdir() if p.is_file()}
    second = cnn_run.run({**tiny_params, "epochs": 2, "tensorboard": True})
    assert second != first
    assert list((second / "tensorboard").rglob("events.out.tfevents*"))
    assert {p.name: p.read_bytes() for p in first.iterdir() if p.is_file()} == before
    assert runs.latest_run(tiny_params["runs_dir"]) == second


@pytest.mark.slow
def test_same_seed_gives_the_same_history_and_model(tiny_params):
    x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 1), dtype=np.uint8)
    histories, predictions = [], []
    for _ in range(2):
        run_dir = cnn_run.run({**tiny_params, "epochs": 2})
        histories.append(runs.read_history(run_dir / "history.csv"))
        predictions.append(cnn_model.load_model(run_dir / "model.keras").predict(x, verbose=0))
    for key in ("accuracy", "loss", "val_accuracy", "val_loss"):
        assert histories[0][key] == histories[1][key], key
    np.testing.assert_allclose(predictions[0], predictions[1], atol=1e-6)


@pytest.mark.slow
def test_early_stopping_stops_and_keeps_the_best_epoch(tiny_params):
    # A learning rate this high makes the validation loss stop improving at once.
    params = {**tiny_params, "epochs": 8, "early_stopping": 1, "learning_rate": 0.05}
    run_dir = cnn_run.run(params)
    history = runs.read_history(run_dir / "history.csv")
    best = int(np.argmin(history["val_loss"]))
    assert len(history["epoch"]) < 8
    assert best == len(history["epoch"]) - 2  # patience 1: one epoch past the best
    data = cnn_data.prepare_data(params)
    saved, _ = metrics.score_split(cnn_model.load_model(run_dir / "model.keras"),
                                   data.val_images, data.val_labels, 8, 32)
    assert saved.loss == pytest.approx(history["val_loss"][best], rel=1e-4)
    assert runs.read_state(run_dir) == {"epochs_done": len(history["epoch"]), "epochs": 8,
                                        "finished": True,
                                        "best_val_loss": pytest.approx(min(history["val_loss"]))}


def test_missing_data_folder_is_one_clear_error(tmp_path, capsys):
    code = cnn_run.main([f"--data_dir={tmp_path / 'nowhere'}", f"--runs_dir={tmp_path}"])
    assert code == 2
    err = capsys.readouterr().err
    assert "The data folder" in err and "nowhere does not exist" in err
    assert not (tmp_path / "nowhere").exists()  # never falls back to the stand-in


def test_unknown_parameter_is_one_clear_error(capsys):
    assert cnn_run.main(["--epoch=3"]) == 2
    assert "Unknown parameter --epoch" in capsys.readouterr().err
    assert cnn_eval.main(["--modle=x"]) == 2
    assert "--model" in capsys.readouterr().err


def test_eval_without_a_run_or_shipped_model_says_to_train_first(tmp_path, capsys):
    with pytest.raises(cnn_eval.ModelError, match="run `python cnn_run.py` first"):
        cnn_eval.find_models("", tmp_path / "runs", models_dir=tmp_path / "models")


@pytest.mark.slow
def test_eval_without_a_run_scores_with_the_shipped_model_outside_models(tmp_path):
    """A fresh clone: no run, so the shipped FER2013 model scores, says so, and writes
    its figure under the runs folder, never into models/."""
    before = sorted(p.name for p in (ROOT / "models").iterdir())
    result = subprocess.run(
        [sys.executable, "cnn_eval.py", str(ROOT / "test_images" / "happy.jpg"),
         f"--runs_dir={tmp_path / 'runs'}"], cwd=ROOT, capture_output=True, text=True,
        timeout=300)
    assert result.returncode == 0, result.stderr
    assert "using the shipped model" in result.stdout
    assert "fer2013.keras" in result.stdout
    line = next(l for l in result.stdout.splitlines() if l.startswith("happy.jpg"))
    predicted = line.split("predicted")[1].split()[0]
    assert predicted in ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
    assert list((tmp_path / "runs" / "fer2013").glob("predictions-*.png"))
    assert sorted(p.name for p in (ROOT / "models").iterdir()) == before
    named = subprocess.run(
        [sys.executable, "cnn_eval.py", str(ROOT / "test_images" / "happy.jpg"),
         "--model=fer2013", f"--runs_dir={tmp_path / 'runs'}"], cwd=ROOT,
        capture_output=True, text=True, timeout=300)
    assert named.returncode == 0 and "shipped" not in named.stdout
    assert "models/fer2013.keras" in named.stdout
    wrong = subprocess.run(
        [sys.executable, "cnn_eval.py", "--model=nosuch", f"--runs_dir={tmp_path / 'runs'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert wrong.returncode == 2 and "one of: fer2013" in wrong.stderr
    assert "Traceback" not in wrong.stderr


@pytest.mark.slow
def test_default_folder_generates_a_marked_standin(tiny_params, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    tiny_params.update(data_dir=cnn_params.DATA_DIR,
                       standin_train_counts=[3, 2, 2, 2, 4, 1, 2, 2],
                       standin_validation_total=18)
    data = cnn_data.prepare_data(tiny_params, standin_dir=cnn_params.DATA_DIR)
    out = capsys.readouterr().out
    assert "synthetic stand-in for QIDER" in out
    assert standin.is_standin(tmp_path / cnn_params.DATA_DIR)
    assert data.standin
    assert data.counts_before.tolist() == [3, 2, 2, 2, 4, 1, 2, 2]
    assert data.counts_after.tolist() == [4, 4, 4, 4, 4, 4, 4, 4]
    assert len(data.val_labels) == 18


def test_committed_test_images_are_eight_rgb_jpegs_named_after_classes():
    folder = ROOT / "test_images"
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(f"{c}.jpg" for c in cnn_params.CLASSES)
    for path in folder.iterdir():
        with Image.open(path) as image:
            assert image.format == "JPEG" and image.mode == "RGB"
