"""Several networks shipped as one model: the average, the mirror, the file, and
what fine-tuning and export take from it."""

import keras
import numpy as np
import pytest

import cnn_model
from cnnlib import ensemble, export, finetune

LAYERS = [{"type": "conv", "units": 4, "kernel": 3, "pool": 2, "dropout": 0.0},
          {"type": "dense", "units": 3}]
CLASSES = ["anger", "happy", "sad"]
AUGMENTATION = {"flip": True, "rotation": 0.05, "zoom": 0.1}


def _member(seed, name, classes=3, augmentation=None):
    model = cnn_model.build_model(LAYERS, classes, 16, 1, True, seed=seed,
                                  augmentation=augmentation)
    model.name = name
    return model


def _images(count=6, seed=0):
    # Not mirror-symmetric, so a model that ignored the mirror would show it.
    return np.random.default_rng(seed).integers(0, 256, (count, 16, 16, 1)).astype(np.float32)


def test_the_output_is_the_mean_of_every_member_on_the_image_and_its_mirror():
    first, second = _member(1, "first"), _member(2, "second")
    images = _images()
    expected = np.mean([m.predict(x, verbose=0) for m in (first, second)
                        for x in (images, images[:, :, ::-1])], axis=0)
    both = ensemble.build_ensemble([first, second], mirror=True)
    np.testing.assert_allclose(both.predict(images, verbose=0), expected, atol=1e-6)
    plain = ensemble.build_ensemble([first, second], mirror=False)
    np.testing.assert_allclose(plain.predict(images, verbose=0),
                               (first.predict(images, verbose=0)
                                + second.predict(images, verbose=0)) / 2, atol=1e-6)
    assert not np.allclose(plain.predict(images, verbose=0), expected, atol=1e-4)
    assert [m.name for m in ensemble.members(both)] == ["first", "second"]
    assert ensemble.members(first) == []


def test_the_file_loads_in_plain_keras_and_answers_the_same(tmp_path):
    both = ensemble.build_ensemble([_member(1, "first"), _member(2, "second")])
    path = cnn_model.save_model(both, tmp_path / "both.keras",
                                {"classes": CLASSES, "aliases": {}, "image_size": 16,
                                 "channels": 1, "layers": LAYERS})
    loaded = keras.models.load_model(path)  # no custom layers: any Keras 3 reads it
    images = _images(seed=4)
    np.testing.assert_array_equal(loaded.predict(images, verbose=0),
                                  both.predict(images, verbose=0))
    assert [m.name for m in ensemble.members(loaded)] == ["first", "second"]


def test_members_that_disagree_on_input_or_classes_or_share_a_name_are_refused():
    with pytest.raises(ValueError, match="4 classes"):
        ensemble.build_ensemble([_member(1, "first"), _member(2, "second", classes=4)])
    with pytest.raises(ValueError, match="must differ"):
        ensemble.build_ensemble([_member(1, "same"), _member(2, "same")])
    with pytest.raises(ValueError, match="at least one"):
        ensemble.build_ensemble([])


def test_fine_tuning_from_an_ensemble_starts_from_its_first_member(tmp_path, capsys):
    first, second = _member(1, "first"), _member(2, "second")
    path = cnn_model.save_model(ensemble.build_ensemble([first, second]),
                                tmp_path / "both.keras",
                                {"classes": CLASSES, "aliases": {}, "image_size": 16,
                                 "channels": 1, "layers": LAYERS})
    source = finetune.read_source(path, cnn_model.load_model, cnn_model.model_info)
    assert source.model.name == "first" and source.classes == CLASSES
    assert (source.image_size, source.channels) == (16, 1)
    for mine, theirs in zip(source.model.get_weights(), first.get_weights()):
        np.testing.assert_array_equal(mine, theirs)
    assert "averages 2 networks: fine-tuning starts from the first, first" in \
        capsys.readouterr().out
    mapped = finetune.map_classes(source.classes, ["happy", "contempt"], {})
    assert finetune.transfer(source.model, mapped, seed=0).output_shape == (None, 2)


def test_export_drops_every_members_augmentation_and_answers_the_same():
    members = [_member(1, "first", augmentation=AUGMENTATION),
               _member(2, "second", augmentation=AUGMENTATION)]
    both = ensemble.build_ensemble(members)
    exported = export.inference_model(both)
    inside = ensemble.members(exported)
    assert len(inside) == 2
    assert not any(layer.name.startswith("aug_") for m in inside for layer in m.layers)
    assert any(layer.name.startswith("aug_") for layer in members[0].layers)
    images = _images(seed=7)
    np.testing.assert_allclose(exported.predict(images, verbose=0),
                               both.predict(images, verbose=0), atol=1e-6)


def test_mixed_precision_members_are_refused_and_tta_does_not_ask_twice():
    from cnnlib import metrics, precision

    member = _member(1, "first")
    with pytest.raises(ValueError, match="mixed precision"):
        ensemble.build_ensemble([precision.with_precision(member, "bfloat16")])
    both = ensemble.build_ensemble([member])
    assert ensemble.mirrors(both) and not ensemble.mirrors(member)
    images = _images(seed=9)
    np.testing.assert_array_equal(metrics.predict(both, images, tta=True),
                                  metrics.predict(both, images))
    assert not np.allclose(metrics.predict(member, images, tta=True),
                           metrics.predict(member, images), atol=1e-6)


def test_a_resume_refuses_a_starting_file_that_changed_since(tmp_path):
    from cnnlib.errors import RunError

    path = cnn_model.save_model(_member(1, "first"), tmp_path / "start.keras",
                                {"classes": CLASSES, "aliases": {}, "image_size": 16,
                                 "channels": 1, "layers": LAYERS})
    source = finetune.read_source(path, cnn_model.load_model, cnn_model.model_info)
    record = tmp_path / "run" / "init_from.json"
    finetune.check_same_start(record, source)  # not written yet: nothing to compare
    record.parent.mkdir()
    finetune.record_start(record, source, finetune.map_classes(CLASSES, CLASSES, {}), 0)
    finetune.check_same_start(record, source)
    cnn_model.save_model(_member(2, "first"), path, {"classes": CLASSES, "aliases": {},
                                                     "image_size": 16, "channels": 1})
    changed = finetune.read_source(path, cnn_model.load_model, cnn_model.model_info)
    with pytest.raises(RunError, match=r"start\.keras has changed since .*run started from "
                                       r"it .*put the file back"):
        finetune.check_same_start(record, changed)
    for damaged in ("[]", "{}", '{"sha256": 5}'):
        record.write_text(damaged)
        with pytest.raises(RunError, match="init_from.json has no SHA-256 .* start a new run"):
            finetune.check_same_start(record, changed)


@pytest.mark.slow
def test_two_runs_on_one_split_ship_as_an_ensemble(tiny_params, tmp_path):
    """TRAINING_SEED draws other weights on the same split; ship_model.py averages the
    two runs into one file, and refuses runs whose split differs."""
    import shutil

    import cnn_run
    from conftest import make_class_folders

    data = make_class_folders(tmp_path / "two_classes", per_class=4, classes=["happy", "sad"])
    runs = [cnn_run.run({**tiny_params, "data_dir": str(data), "classes": ["auto"],
                         "runs_dir": str(tmp_path / name), "image_size": 16, "test_dir": "",
                         "cache_dir": "", "validation_fraction": 0.5,
                         "training_seed": training_seed})
            for name, training_seed in (("first", -1), ("second", 7))]
    assert (runs[0] / "split.csv").read_text() == (runs[1] / "split.csv").read_text()
    weights = [cnn_model.load_model(r / "model.keras").get_layer("conv1").get_weights()[0]
               for r in runs]
    assert not np.allclose(*weights)
    ship_model = _ship_model_module()
    out = tmp_path / "shipped.keras"
    scored = ship_model.ship(runs, out, cache_dir="")
    model = keras.models.load_model(out)
    assert [m.name for m in ensemble.members(model)] == ["member1", "member2"]
    info = cnn_model.model_info(out)
    assert [m["source_run"] for m in info["ensemble"]["members"]] == [r.name for r in runs]
    assert info["classes"] == ["happy", "sad"] and "temperature" in info["calibration"]
    assert set(scored["members"]) == {r.name for r in runs}
    assert scored["validation_images"] == 4 and scored["max_difference_after_save"] <= 1e-5
    # A run whose split.csv differs (edited here by hand) is refused before any work.
    other = tmp_path / "other"
    shutil.copytree(runs[1], other)
    lines = (other / "split.csv").read_text().splitlines()
    (other / "split.csv").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(SystemExit, match="split its data unlike"):
        ship_model.ship([runs[0], other], tmp_path / "refused.keras", cache_dir="")
    assert not (tmp_path / "refused.keras").exists()


def _ship_model_module():
    """benchmarks/ship_model.py, imported (it is a script, not a package module)."""
    import importlib.util

    from conftest import ROOT

    spec = importlib.util.spec_from_file_location("ship_model",
                                                  ROOT / "benchmarks" / "ship_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ship_model_refuses_what_it_cannot_ship_before_any_work(tmp_path):
    ship = _ship_model_module().ship
    run = tmp_path / "runs" / "20261130-000000-dropout"
    run.mkdir(parents=True)
    cases = [([run], tmp_path / "model.h5", "must end in .keras"),
             ([run], tmp_path / "missing" / "m.keras", "in a folder that exists"),
             ([run, run], tmp_path / "m.keras", "given once"),
             ([run], tmp_path / "m.keras", "has no params.json")]
    (run / "model.keras").write_bytes(b"")
    for runs, out, message in cases:
        with pytest.raises(SystemExit, match=message):
            ship(runs, out, cache_dir="")
    (run / "params.json").write_text("[1, 2]")
    with pytest.raises(SystemExit, match="has no layer table"):
        ship([run], tmp_path / "m.keras", cache_dir="")
    assert not list(tmp_path.glob("*.keras"))
