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
