"""Issue 17's calibration and intervals in a run and in cnn_eval.py (tiny models)."""

import csv
import io
import json
import shutil
from contextlib import redirect_stdout

import numpy as np
import pytest

import cnn_eval
import cnn_model
import cnn_params
import cnn_run
from cnnlib import calibration, config
from conftest import ROOT, make_class_folders, write_image

CLASSES = cnn_params.CLASSES


class _Fixed:
    """A stand-in model that always gives the same probabilities."""
    output_shape = (None, 3)

    def __init__(self, rows):
        self.rows = np.asarray(rows, np.float32)

    def predict(self, images, batch_size=32, verbose=0):
        return self.rows[:len(images)]

    def predict_on_batch(self, images):
        return self.rows[:len(images)]


def test_calibrated_applies_the_temperature_at_one_place():
    rows = [[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]
    model = calibration.Calibrated(_Fixed(rows), 2.0)
    expected = calibration.apply_temperature(rows, 2.0)
    np.testing.assert_allclose(model.predict(np.zeros((2, 4))), expected, rtol=1e-6)
    np.testing.assert_allclose(model.predict_on_batch(np.zeros((2, 4))), expected, rtol=1e-6)
    assert model.output_shape == (None, 3)  # everything else is the model's
    np.testing.assert_allclose(calibration.Calibrated(_Fixed(rows), None).predict(
        np.zeros((2, 4))), rows)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("calibrated")
    data = make_class_folders(root / "data", per_class=3)
    params = config.defaults(cnn_params)
    params.update(data_dir=str(data), runs_dir=str(root / "runs"), cache_dir="",
                  test_dir=str(ROOT / "test_images"), epochs=1, verbose=0, image_size=32)
    with redirect_stdout(io.StringIO()):
        return cnn_run.run(params)


@pytest.mark.slow
def test_a_run_fits_stores_and_records_a_temperature(run_dir):
    recorded = json.loads((run_dir / "metrics.json").read_text())
    fitted = recorded["calibration"]
    assert fitted["T"] == fitted["temperature"] > 0
    assert 0 <= fitted["ece_before"] <= 1 and 0 <= fitted["ece_after"] <= 1
    assert fitted["nll_after"] <= fitted["nll_before"] + 1e-9
    for name in ("model.keras", "best.keras"):
        assert calibration.read_temperature(run_dir / name) == pytest.approx(fitted["T"])
    assert (run_dir / "reliability.png").is_file()
    methods = recorded["validation"]["interval_methods"]
    assert methods["accuracy"] == "95% Wilson"
    assert methods["macro_f1"] == "95% stratified bootstrap, 1000 resamples, seed 0"
    assert len(recorded["validation"]["recall_intervals"]) == len(CLASSES)


@pytest.mark.slow
def test_eval_applies_the_stored_temperature_unless_told_not_to(run_dir, tmp_path, capsys):
    model_path = tmp_path / "model.keras"
    shutil.copy(run_dir / "model.keras", model_path)
    calibration.store_calibration(model_path, {"temperature": 2.5})
    images = tmp_path / "faces"
    for i, name in enumerate(("anger", "happy", "sad")):
        write_image(images / f"{name}.png", (32, 32), "L", "PNG", seed=70 + i)
    model = cnn_model.load_model(model_path)
    x = np.stack([np.asarray(__import__("PIL.Image").Image.open(p).convert("L"))[..., None]
                  for p in sorted(images.iterdir())])
    raw = model.predict(x, verbose=0)
    scaled = cnn_eval.calibrated(model, model_path, {"calibrated": True})
    np.testing.assert_allclose(scaled.predict(x, verbose=0),
                               calibration.apply_temperature(raw, 2.5), atol=1e-6)
    assert not np.allclose(scaled.predict(x, verbose=0), raw, atol=1e-4)
    assert cnn_eval.calibrated(model, model_path, {"calibrated": False}) is model
    capsys.readouterr()

    def printed(*flags):
        assert cnn_eval.main([str(images), f"--model={model_path}", "--figure=False",
                              "--faces=false", *flags]) == 0
        out = capsys.readouterr().out
        return out, {line.split()[0]: float(line.split("p=")[1].split()[0])
                     for line in out.splitlines() if " p=" in line}

    out, calibrated = printed()
    assert "Probabilities calibrated with the model's temperature T=2.500" in out
    out, plain = printed("--calibrated=False")
    assert "uncalibrated" in out
    top_raw = raw.max(axis=1)
    top_scaled = calibration.apply_temperature(raw, 2.5).max(axis=1)
    for name, r, s in zip(sorted(p.name for p in images.iterdir()), top_raw, top_scaled):
        assert plain[name] == pytest.approx(r, abs=2e-3)
        assert calibrated[name] == pytest.approx(s, abs=2e-3)


@pytest.mark.slow
def test_a_labelled_test_set_reports_its_calibration_error(run_dir, tmp_path, capsys):
    test_set = make_class_folders(tmp_path / "set", per_class=1)
    capsys.readouterr()
    assert cnn_eval.main([str(test_set / "validation"), f"--model={run_dir / 'model.keras'}"]) == 0
    out = capsys.readouterr().out
    assert "calibration error" in out and "T=" in out
    folder = max(run_dir.glob("eval-*"))
    scores = json.loads((folder / "scores.json").read_text())
    assert 0 <= scores["ece"] <= 1 and scores["temperature"] > 0
    assert (folder / "reliability.png").is_file()
    with open(folder / "predictions.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(CLASSES)


def test_min_confidence_is_a_probability():
    params = config.defaults(cnn_params)
    assert params["min_confidence"] == 0.0
    with pytest.raises(config.ConfigError):
        config.check_values({**params, "min_confidence": 1.5})
    assert calibration.label_or_uncertain([[0.5, 0.3, 0.2], [0.98, 0.01, 0.01]],
                                          ["a", "b", "c"], 0.99) == ["uncertain", "uncertain"]


@pytest.mark.slow
def test_min_confidence_marks_images_and_test_rows_uncertain(run_dir, tmp_path, capsys):
    images = tmp_path / "faces"
    for i, name in enumerate(("anger", "happy", "sad")):
        write_image(images / f"{name}.png", (32, 32), "L", "PNG", seed=90 + i)
    model_path = str(run_dir / "model.keras")
    capsys.readouterr()
    assert cnn_eval.main([str(images), f"--model={model_path}", "--faces=false",
                          "--min_confidence=0.99", "--figure=False"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if " p=" in line]
    assert len(lines) == 3 and all("predicted uncertain" in line for line in lines)
    assert cnn_eval.main([str(images), f"--model={model_path}", "--faces=false",
                          "--figure=False"]) == 0
    assert "uncertain" not in capsys.readouterr().out.split("Model:")[-1].split("\n", 2)[-1]

    test_set = make_class_folders(tmp_path / "set", per_class=1)
    assert cnn_eval.main([str(test_set / "validation"), f"--model={model_path}",
                          "--min_confidence=0.99"]) == 0
    out = capsys.readouterr().out
    assert "predicted uncertain" in out
    folder = max(run_dir.glob("eval-*"))
    with open(folder / "predictions.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and all(row["predicted"] == "uncertain" for row in rows)
