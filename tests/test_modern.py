"""Beyond the report: configuration files, a richer layer table, augmentation inside
the model, AdamW, label smoothing, learning-rate schedules, test-time augmentation."""

import json

import keras
import numpy as np
import pytest

import cnn_eval
import cnn_model
import cnn_params
import cnn_run
from cnnlib import config, errors, runs, scoring
from conftest import ROOT, make_class_folders, write_image


@pytest.fixture
def defaults():
    return config.defaults(cnn_params)


def test_the_report_config_file_is_the_defaults(defaults):
    params, _ = config.parse_args([str(ROOT / "configs" / "report.py")], defaults)
    assert params["config_values"] == {}
    assert {k: v for k, v in params.items() if not k.startswith("config_")} == defaults


def test_a_config_file_sets_values_and_the_command_line_wins(defaults, tmp_path):
    path = tmp_path / "mine.py"
    path.write_text('"""Mine."""\nEPOCHS = 7\nIMAGE_SIZE = 48\nAUG_FLIP = True\n'
                    'LEARNING_RATE = 1  # an int is fine for a float\n')
    params, _ = config.parse_args([str(path), "--epochs=3"], defaults)
    assert (params["epochs"], params["image_size"], params["aug_flip"]) == (3, 48, True)
    assert params["learning_rate"] == 1.0 and isinstance(params["learning_rate"], float)
    assert params["config_file"] == str(path)
    assert params["config_values"] == {"epochs": 7, "image_size": 48, "aug_flip": True,
                                       "learning_rate": 1.0}


@pytest.mark.parametrize("text,message", [
    ("EPOCHS = 5\nEPOHCS = 5\n", r"mine.py, line 2: EPOHCS is not a parameter"),
    ("_SIZE = 5\nepochs = _SIZE\n", r"mine.py, line 2: epochs is not a parameter .* EPOCHS"),
    ("EPOCHS = 'five'\n", r"mine.py, line 1: EPOCHS = 'five' should be a whole number"),
    ("EPOCHS = (\n", r"mine.py, line 1: not valid Python"),
    ("EPOCHS = 1 / 0\n", r"mine.py, line 1: the value of EPOCHS \(division by zero\)"),
    ("EPOCHS = 0\n", r"mine.py, line 1: EPOCHS = 0 is not allowed"),
])
def test_a_bad_config_file_names_the_file_and_line(defaults, tmp_path, text, message):
    path = tmp_path / "mine.py"
    path.write_text(text)
    with pytest.raises(errors.ConfigError, match=message):
        config.parse_args([str(path)], defaults)


MODERN_TABLE = [
    {"type": "conv", "units": 8, "kernel": 3, "padding": "same", "batchnorm": True, "pool": 2},
    {"type": "conv", "units": 16, "kernel": 3, "padding": "same", "batchnorm": True,
     "pool": 2, "dropout": 0.1},
    {"type": "global_pool"},
    {"type": "dense", "units": 16, "batchnorm": True, "dropout": 0.2},
    {"type": "dense", "units": 8},
]


def test_the_richer_layer_table_builds_what_it_says():
    model = cnn_model.build_model(MODERN_TABLE, 5, image_size=32, channels=1)
    names = [layer.name for layer in model.layers]
    assert "flatten" not in names and "global_pool" in names
    assert model.get_layer("conv1").use_bias is False
    assert model.get_layer("conv1").padding == "same"
    assert model.get_layer("conv2_pool").output.shape == (None, 8, 8, 16)  # "same" keeps 32
    assert model.output_shape == (None, 5)
    # conv 9*8 + BN 4*8, conv 72*16 + BN 4*16, dense 16*16 + BN 4*16, dense 16*5 + 5
    weights = 72 + 32 + 1152 + 64 + 256 + 64 + 85
    assert model.count_params() == weights


@pytest.mark.parametrize("table,message", [
    ([{"type": "conv", "units": 8, "padding": "full"}, {"type": "dense", "units": 2}],
     "padding 'full'"),
    ([{"type": "global_pool"}, {"type": "conv", "units": 8}, {"type": "dense", "units": 2}],
     "ends the conv part"),
    ([{"type": "conv", "units": 8, "batchnorm": "yes"}, {"type": "dense", "units": 2}],
     "batchnorm 'yes'"),
    ([{"type": "conv", "kernel": 3}, {"type": "dense", "units": 2}], "has no 'units'"),
])
def test_bad_entries_of_the_richer_table_are_clear_errors(table, message):
    with pytest.raises(errors.ModelError, match=message):
        cnn_model.build_model(table, 2, image_size=32)


def test_augmentation_acts_in_training_only():
    augmentation = {"flip": True, "rotation": 0.05, "zoom": 0.1, "translation": 0.1,
                    "contrast": 0.2, "brightness": 0.2}
    model = cnn_model.build_model(MODERN_TABLE, 3, image_size=32, augmentation=augmentation,
                                  seed=1)
    assert {f"aug_{n}" for n in augmentation} <= {layer.name for layer in model.layers}
    x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 1)).astype("float32")
    np.testing.assert_array_equal(model(x, training=False), model(x, training=False))
    augmented = keras.Model(model.input, model.get_layer("aug_brightness").output)
    assert not np.allclose(augmented(x, training=True), augmented(x, training=False))
    np.testing.assert_allclose(augmented(x, training=False), x / 255, rtol=1e-6)


def test_adamw_with_cosine_warmup_and_label_smoothing_compile_as_asked():
    model = cnn_model.build_model(MODERN_TABLE, 3, image_size=32, learning_rate=0.01,
                                  optimizer="adamw", weight_decay=0.05, label_smoothing=0.1,
                                  decay_steps=90, warmup_steps=10)
    optimizer = model.optimizer
    assert isinstance(optimizer, keras.optimizers.AdamW) and optimizer.weight_decay == 0.05
    schedule = optimizer._learning_rate  # the schedule itself, not its current value
    assert float(schedule(0)) == pytest.approx(0.0)
    assert float(schedule(10)) == pytest.approx(0.01)      # the peak, after warm-up
    assert float(schedule(55)) == pytest.approx(0.005, rel=1e-3)  # half way down the cosine
    assert float(schedule(100)) == pytest.approx(0.0, abs=1e-6)
    assert model.loss.get_config()["label_smoothing"] == 0.1


@pytest.mark.slow
def test_a_modern_run_trains_records_the_config_and_eval_uses_tta(tiny_params, tmp_path,
                                                                 capsys):
    config_file = tmp_path / "tiny_modern.py"
    config_file.write_text(
        f"LAYERS = {MODERN_TABLE!r}\nAUGMENT = False\nCLASS_WEIGHTS = False\n"
        "AUG_FLIP = True\nAUG_ROTATION = 0.05\nOPTIMIZER = 'adamw'\nWEIGHT_DECAY = 0.01\n"
        "LABEL_SMOOTHING = 0.1\nLR_SCHEDULE = 'cosine'\nWARMUP_EPOCHS = 1\nEPOCHS = 3\n")
    args = [str(config_file)] + [f"--{k}={v}" for k, v in tiny_params.items()
                                 if k in ("data_dir", "runs_dir", "cache_dir", "image_size",
                                          "verbose")]
    assert cnn_run.main(args) == 0
    run_dir = runs.latest_run(tiny_params["runs_dir"])
    saved = json.loads((run_dir / "params.json").read_text())
    assert saved["config_file"] == str(config_file)
    assert saved["config_values"]["optimizer"] == "adamw" and saved["optimizer"] == "adamw"
    assert saved["epochs"] == 3 and saved["image_size"] == 32  # the command line's
    assert len(runs.read_history(run_dir / "history.csv")["epoch"]) == 3
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "accuracy_interval"):
        assert key in metrics["validation"]
    table = (run_dir / "table3.md").read_text()
    assert "| BAL ACC |" in table and "| MACRO F1 |" in table and "| ACC 95% CI (Wilson) |" in table

    # Test-time augmentation: the mean of each image's and its mirror's prediction.
    images = tmp_path / "faces"
    for i, name in enumerate(("anger", "happy", "sad")):
        write_image(images / f"{name}.png", (32, 32), "L", "PNG", seed=40 + i)
    model = cnn_model.load_model(run_dir / "model.keras")
    paths = sorted(images.iterdir())
    plain, _, x = scoring.score_images(model, paths, cnn_params.CLASSES, cnn_params.ALIASES,
                                        32, 1)
    both, summary, _ = scoring.score_images(model, paths, cnn_params.CLASSES,
                                             cnn_params.ALIASES, 32, 1, tta=True)
    flipped = model.predict(np.ascontiguousarray(x[:, :, ::-1]), verbose=0)
    expected = (np.asarray([r["probabilities"] for r in plain]) + flipped) / 2
    np.testing.assert_allclose([r["probabilities"] for r in both], expected, atol=1e-6)
    assert summary["labelled"] == 3
    capsys.readouterr()
    assert cnn_eval.main([str(images), f"--runs_dir={tiny_params['runs_dir']}", "--tta=True",
                          "--figure=False"]) == 0
    out = capsys.readouterr().out
    assert "only 3 images: the interval" in out and "balanced" in out
