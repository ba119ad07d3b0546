"""Fine-tuning from a saved model: class mapping, the new head, freezing, refusals."""

import json
import subprocess
import sys

import numpy as np
import pytest

import cnn_model
import cnn_params
from cnnlib import finetune
from cnnlib.errors import ModelError

LAYERS = [{"type": "conv", "units": 4, "kernel": 3, "pool": 2, "dropout": 0.0},
          {"type": "dense", "units": 8, "dropout": 0.1},
          {"type": "dense", "units": 3}]
SOURCE_CLASSES = ["anger", "happy", "sad"]


def _tiny_source(tmp_path, size=32):
    """A small saved model of 3 classes on grayscale, as cnn_run.py saves one."""
    model = cnn_model.build_model(LAYERS, 3, size, 1, True, seed=1)
    path = tmp_path / "source.keras"
    cnn_model.save_model(model, path, info={"classes": SOURCE_CLASSES, "aliases": {},
                                            "image_size": size, "channels": 1,
                                            "layers": LAYERS})
    return path


@pytest.fixture
def source_file(tmp_path):
    """The small model at 16x16."""
    return _tiny_source(tmp_path, 16)


def read(path):
    return finetune.read_source(path, cnn_model.load_model, cnn_model.model_info)


def test_class_mapping_keeps_known_classes_through_aliases_adds_new_and_drops_missing():
    mapped = finetune.map_classes(SOURCE_CLASSES, ["angry", "contempt", "happiness"],
                                  cnn_params.ALIASES)
    assert mapped.source_rows == [0, None, 1]
    assert mapped.record() == {"kept": ["angry", "happiness"], "new": ["contempt"],
                               "dropped": ["sad"]}


def test_transfer_copies_kept_rows_and_backbone_and_gives_fresh_rows(source_file):
    source = read(source_file)
    mapped = finetune.map_classes(source.classes, ["sad", "contempt", "anger"],
                                  cnn_params.ALIASES)
    model = finetune.transfer(source.model, mapped, seed=3)
    assert model.output_shape == (None, 3)
    old_kernel, old_bias = source.model.layers[-1].get_weights()
    kernel, bias = model.layers[-1].get_weights()
    np.testing.assert_array_equal(kernel[:, 0], old_kernel[:, 2])  # sad
    np.testing.assert_array_equal(kernel[:, 2], old_kernel[:, 0])  # anger
    assert bias[0] == old_bias[2] and bias[2] == old_bias[0]
    assert not np.allclose(kernel[:, 1], old_kernel[:, 1])  # contempt: a fresh row
    # The backbone computes what it computed: the features before the head are equal.
    first = source.model.get_layer("conv1")
    assert model.get_layer("conv1") is first or np.array_equal(
        model.get_layer("conv1").get_weights()[0], first.get_weights()[0])


def test_frozen_backbone_trains_only_the_head(source_file):
    source = read(source_file)
    mapped = finetune.map_classes(source.classes, source.classes, {})
    model = finetune.transfer(source.model, mapped, seed=3)
    finetune.set_backbone_trainable(model, False)
    cnn_model.compile_model(model, 1e-2)
    before = [np.array(w) for w in model.get_weights()]
    images = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 1)).astype("uint8")
    model.fit(images, np.eye(3)[np.arange(8) % 3], epochs=2, verbose=0)
    after = model.get_weights()
    head = {id(w) for w in model.layers[-1].weights}
    for variable, old, new in zip(model.weights, before, after):
        if id(variable) in head:
            assert not np.allclose(old, new)
        else:
            np.testing.assert_array_equal(old, new)


def test_a_run_from_a_saved_model_draws_the_same_dropout_from_the_same_seed():
    from tensorflow import convert_to_tensor

    source = cnn_model.build_model(
        [{"type": "conv", "units": 4, "kernel": 3, "pool": 2, "dropout": 0.5},
         {"type": "dense", "units": 3}], 3, 16, 1, True, seed=1)
    mapped = finetune.map_classes(SOURCE_CLASSES, SOURCE_CLASSES, {})
    images = convert_to_tensor(np.random.default_rng(3).integers(0, 256, (6, 16, 16, 1)).astype(np.float32))
    answers = [finetune.reseed_random_layers(finetune.transfer(source, mapped, seed=seed),
                                             seed)(images, training=True).numpy()
               for seed in (5, 5, 6)]
    np.testing.assert_array_equal(answers[0], answers[1])
    assert not np.allclose(answers[0], answers[2])


def test_refusals_name_the_value_and_the_model(source_file):
    source = read(source_file)
    assert finetune.check_compatible(source, 96, 1, LAYERS, set()) == (16, 1)
    with pytest.raises(ModelError, match="--image_size=32 contradicts"):
        finetune.check_compatible(source, 32, 1, LAYERS, {"image_size"})
    with pytest.raises(ModelError, match="--channels=3 contradicts"):
        finetune.check_compatible(source, 16, 3, LAYERS, {"channels"})
    other = [dict(LAYERS[0], units=6), *LAYERS[1:]]

    def build(table, size, channels):
        return cnn_model.build_model(table, 3, size, channels, True)

    with pytest.raises(ModelError, match="not the architecture"):
        finetune.check_compatible(source, 16, 1, other, {"layers"}, build)
    assert finetune.check_compatible(source, 16, 1, LAYERS, {"layers"}, build) == (16, 1)


def test_a_model_without_its_classes_inside_is_refused(tmp_path):
    model = cnn_model.build_model(LAYERS, 3, 16, 1, True, seed=1)
    cnn_model.save_model(model, tmp_path / "bare.keras")
    with pytest.raises(ModelError, match="does not carry its class names"):
        read(tmp_path / "bare.keras")
    with pytest.raises(ModelError, match="is a folder"):
        read(tmp_path)
    (tmp_path / "text.keras").write_text("not a model")
    for path in (tmp_path / "text.keras", tmp_path / "missing.keras"):  # the flag given
        with pytest.raises(ModelError, match="give --init_from=PATH") as refused:
            read(path)
        assert "--model" not in str(refused.value)


@pytest.mark.slow
def test_a_run_from_a_saved_model_maps_classes_freezes_and_records_its_start(tmp_path):
    """cnn_run.py --init_from on class folders angry/ contempt/ happy/: anger and happy
    keep their rows, contempt is new, sad is dropped; the head trains alone first."""
    from conftest import ROOT, make_class_folders

    source = _tiny_source(tmp_path)
    data = make_class_folders(tmp_path / "data", per_class=3,
                              classes=["angry", "contempt", "happy"])
    runs_dir = tmp_path / "runs"
    done = subprocess.run(
        [sys.executable, "cnn_run.py", f"--init_from={source}", f"--data_dir={data}",
         f"--runs_dir={runs_dir}", "--epochs=1", "--freeze_epochs=1", "--verbose=0",
         f"--cache_dir={tmp_path / 'cache'}", "--test_dir="],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Training only the output layer for 1 epoch(s)" in done.stdout
    run_dir = runs_dir / (runs_dir / "latest.txt").read_text().strip()
    started = json.loads((run_dir / "init_from.json").read_text())
    assert started["kept"] == ["angry", "happy"] and started["new"] == ["contempt"]
    assert started["dropped"] == ["sad"] and len(started["sha256"]) == 64
    trained = cnn_model.load_model(run_dir / "model.keras")
    assert trained.output_shape == (None, 3)
    assert cnn_model.model_info(run_dir / "model.keras")["classes"] == [
        "angry", "contempt", "happy"]
    # The backbone moved away from the source's weights: everything trained after the head.
    before = cnn_model.load_model(source).get_layer("conv1").get_weights()[0]
    assert not np.allclose(trained.get_layer("conv1").get_weights()[0], before)


@pytest.mark.slow
def test_a_contradicting_image_size_is_one_sentence_before_any_data_loads(tmp_path):
    from conftest import ROOT

    source = _tiny_source(tmp_path)
    done = subprocess.run(
        [sys.executable, "cnn_run.py", f"--init_from={source}", "--image_size=64",
         f"--data_dir={tmp_path / 'no_such_data'}", f"--runs_dir={tmp_path / 'runs'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "--image_size=64 contradicts --init_from" in done.stderr
    assert "no_such_data" not in done.stderr and "Traceback" not in done.stderr
    missing = subprocess.run(
        [sys.executable, "cnn_run.py", f"--init_from={tmp_path / 'none.keras'}",
         f"--runs_dir={tmp_path / 'runs'}"], cwd=ROOT, capture_output=True, text=True,
        timeout=300)
    assert missing.returncode == 2 and "none.keras" in missing.stderr
    assert "Traceback" not in missing.stderr
