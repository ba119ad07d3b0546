"""Calibration error, reliability diagram, temperature scaling, "uncertain" (cnnlib.calibration)."""

import json
import zipfile

import numpy as np
import pytest

from cnnlib import calibration


def _softmax(logits):
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _calibrated(n, seed, classes=7):
    """Logits [n, classes] and labels drawn from softmax(logits): calibrated by construction."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, (n, classes))
    cumulative = _softmax(logits).cumsum(axis=1)
    labels = (rng.random((n, 1)) > cumulative).sum(axis=1)
    return logits, np.minimum(labels, classes - 1)


def test_ece_of_known_bins():
    # Two images at confidence 0.9, one right: bin (0.8667, 0.9333] accuracy 0.5, gap 0.4.
    probabilities = np.array([[0.9, 0.1], [0.9, 0.1], [0.3, 0.7], [1.0, 0.0]])
    labels = np.array([0, 1, 1, 0])
    found = calibration.reliability(probabilities, labels, bins=15)
    assert found.counts.sum() == 4 and found.counts[-1] == 1  # 1.0 lands in the last bin
    assert found.ece == pytest.approx((2 * 0.4 + 1 * 0.3 + 0) / 4)
    assert np.isnan(found.accuracy[0])


def test_temperature_fixes_an_over_confident_model():
    validation_logits, validation_labels = _calibrated(4000, seed=1)
    test_logits, test_labels = _calibrated(4000, seed=2)
    over = _softmax(3 * validation_logits)  # logits scaled by 3: far too sure
    temperature = calibration.fit_temperature(over, validation_labels)
    assert 2.5 < temperature < 3.5
    test_over = _softmax(3 * test_logits)
    before = calibration.expected_calibration_error(test_over, test_labels)
    after = calibration.expected_calibration_error(
        calibration.apply_temperature(test_over, temperature), test_labels)
    assert before > 0.1 and after < 0.03 and after < before / 3
    assert np.array_equal(calibration.apply_temperature(test_over, temperature).argmax(axis=1),
                          test_over.argmax(axis=1))  # no prediction changes


def test_temperature_of_a_calibrated_model_is_about_one():
    logits, labels = _calibrated(4000, seed=3)
    assert calibration.fit_temperature(_softmax(logits), labels) == pytest.approx(1.0, abs=0.1)
    assert calibration.fit_temperature(logits, labels, from_logits=True) == pytest.approx(
        calibration.fit_temperature(_softmax(logits), labels), abs=1e-3)


def test_calibrate_reports_before_and_after():
    logits, labels = _calibrated(2000, seed=4)
    found = calibration.calibrate(_softmax(3 * logits), labels)
    assert found.temperature > 1 and found.ece_after < found.ece_before
    assert found.nll_after < found.nll_before and found.images == 2000


def test_reliability_diagram_is_a_png(tmp_path):
    logits, labels = _calibrated(500, seed=5)
    before = calibration.reliability(_softmax(3 * logits), labels)
    after = calibration.reliability(_softmax(logits), labels)
    path = calibration.plot_reliability(before, tmp_path / "reliability.png", after=after)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["reliability.png"]  # no partial left


def _fake_keras(path):
    """A zip like a .keras file saved by cnn_model.save_model (weights stand-in, info)."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", '{"class_name": "Sequential"}')
        archive.writestr("model.weights.h5", b"\x00" * 100)
        archive.writestr(calibration.INFO_FILE, json.dumps({"classes": ["a", "b"]}))
    return path


def test_temperature_round_trip_keeps_the_model_file(tmp_path):
    path = _fake_keras(tmp_path / "model.keras")
    assert calibration.read_temperature(path) is None
    logits, labels = _calibrated(500, seed=6)
    calibration.store_calibration(path, calibration.calibrate(_softmax(2 * logits), labels))
    stored = calibration.read_temperature(path)
    assert stored > 1
    calibration.store_calibration(path, {"temperature": 1.5})  # replaced, not appended
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        info = json.loads(archive.read(calibration.INFO_FILE))
        assert archive.read("model.weights.h5") == b"\x00" * 100
    assert sorted(names) == sorted(["config.json", "model.weights.h5", calibration.INFO_FILE])
    assert info["classes"] == ["a", "b"] and info["calibration"]["temperature"] == 1.5
    assert calibration.read_temperature(tmp_path / "missing.keras") is None
    with pytest.raises(ValueError):
        calibration.store_calibration(path, {"temperature": 0})


def test_info_file_is_the_models():
    import ast

    from conftest import ROOT

    tree = ast.parse((ROOT / "cnn_model.py").read_text())  # without importing Keras
    values = [node.value.value for node in tree.body if isinstance(node, ast.Assign)
              and any(getattr(t, "id", "") == "INFO_FILE" for t in node.targets)]
    assert values == [calibration.INFO_FILE]


@pytest.mark.slow
def test_temperature_in_a_real_keras_file(tmp_path):
    import keras

    import cnn_model

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    path = cnn_model.save_model(model, tmp_path / "model.keras", info={"classes": ["a", "b", "c"]})
    calibration.store_calibration(path, {"temperature": 2.0})
    assert cnn_model.model_info(path)["calibration"]["temperature"] == 2.0
    assert cnn_model.model_info(path)["classes"] == ["a", "b", "c"]
    x = np.ones((2, 4), np.float32)
    assert np.allclose(cnn_model.load_model(path).predict(x, verbose=0),
                       model.predict(x, verbose=0))


def test_uncertain_rows():
    probabilities = np.array([[0.5, 0.3, 0.2], [0.9, 0.05, 0.05], [0.34, 0.33, 0.33]])
    assert calibration.uncertain(probabilities, 0.6).tolist() == [True, False, True]
    assert not calibration.uncertain(probabilities, 0.0).any()
    assert calibration.label_or_uncertain(probabilities, ["a", "b", "c"], 0.6) == [
        "uncertain", "a", "uncertain"]
    assert calibration.uncertain(np.zeros((0, 3)), 0.5).shape == (0,)


def test_a_temperature_at_the_end_of_its_range_is_said(tmp_path, capsys):
    from cnnlib import records

    labels = np.array([0, 1, 2, 0, 1, 2])
    wrong = np.full((6, 3), 0.01)
    wrong[np.arange(6), (labels + 1) % 3] = 0.98  # sure, and always wrong
    record = records.write_calibration(tmp_path, wrong, labels)
    assert record["T"] == pytest.approx(calibration.TEMPERATURE_RANGE[1], rel=0.01)
    assert "note: T reached the end of its range" in capsys.readouterr().out
    assert (tmp_path / "reliability.png").is_file()
    right = np.full((6, 3), 0.2)
    right[np.arange(6), labels] = 0.6
    right[0] = [0.2, 0.6, 0.2]  # five of six right at 0.6: near calibrated
    records.write_calibration(tmp_path, right, labels)
    assert "note:" not in capsys.readouterr().out
    right[0] = [0.6, 0.2, 0.2]  # all right: T runs to its lower end, and why is said
    records.write_calibration(tmp_path, right, labels)
    assert "note: every one of the 6 validation images is right" in capsys.readouterr().out


def test_a_class_without_validation_images_is_warned_of():
    from cnnlib import data_checks

    paths = [f"/data/{n}.png" for n in range(5)]
    data = {"classes": ["anger", "happy", "sad"], "skipped": [], "layout": "class folders",
            "train": (None, np.array([0, 1, 2]), paths[:3]),
            "validation": (None, np.array([1, 1]), paths[3:])}
    with pytest.warns(UserWarning, match="has no image of anger, sad: its recall"):
        assert data_checks.check_data(data, "/data") == []
