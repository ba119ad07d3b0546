"""The Table 2 network: layers, parameter count, variants, save and load."""

import numpy as np
import pytest

import cnn_model
import cnn_params

TABLE2_ORDER = ["image", "rescale", "conv1", "conv1_pool", "conv2", "conv2_dropout",
                "conv3", "conv3_pool", "conv3_dropout", "flatten", "dense1",
                "dense1_dropout", "dense2", "dense2_dropout", "dense3"]


def trainable_parameters(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def test_table2_model_has_263000_parameters_in_report_order():
    model = cnn_model.build_model(cnn_params.LAYERS, 8)
    assert trainable_parameters(model) == 263_000
    assert [layer.name for layer in model.layers] == TABLE2_ORDER
    assert model.input_shape == (None, 96, 96, 1)
    assert model.output_shape == (None, 8)
    rates = {layer.name: layer.rate for layer in model.layers if "dropout" in layer.name}
    assert rates == {"conv2_dropout": 0.3, "conv3_dropout": 0.1,
                     "dense1_dropout": 0.4, "dense2_dropout": 0.1}
    filters = [model.get_layer(f"conv{i}").filters for i in (1, 2, 3)]
    assert filters == [32, 16, 24]
    assert model.get_layer("dense3").activation.__name__ == "softmax"


def test_no_dropout_variant_has_the_same_weights_and_no_dropout_layers():
    model = cnn_model.build_model(cnn_params.LAYERS, 8, dropout=False)
    assert trainable_parameters(model) == 263_000
    assert not [layer for layer in model.layers if "dropout" in layer.name]


def test_output_follows_the_number_of_classes():
    model = cnn_model.build_model(cnn_params.LAYERS, 7, image_size=48)
    assert model.output_shape == (None, 7)


@pytest.mark.parametrize("layers, message", [
    ([{"type": "conv", "units": 4}], "must end with a 'dense'"),
    ([{"type": "pool", "units": 4}, {"type": "dense", "units": 8}], "type 'pool'"),
    ([{"type": "dense", "units": 0}, {"type": "dense", "units": 8}], "whole number from 1 to"),
    ([{"type": "dense", "units": 4, "dropout": 1.5}, {"type": "dense", "units": 8}], "dropout"),
    ([{"type": "dense", "units": 4}, {"type": "conv", "units": 4},
      {"type": "dense", "units": 8}], "after a 'dense'"),
    ([1, {"type": "dense", "units": 8}], "Layer 1 .* is 1; write each layer as a dict"),
    ([{"type": "conv", "units": 4, "kernel": "3"}, {"type": "dense", "units": 8}], "kernel '3'"),
    ([{"type": "conv", "units": 4, "kernel": 200}, {"type": "dense", "units": 8}],
     "leaves no pixels"),
])
def test_bad_layer_tables_are_clear_errors(layers, message):
    with pytest.raises(cnn_model.ModelError, match=message):
        cnn_model.build_model(layers, 8)


def test_save_and_load_give_the_same_predictions(tmp_path):
    model = cnn_model.build_model(cnn_params.LAYERS, 8, image_size=32, seed=1)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (16, 32, 32, 1), dtype=np.uint8)
    y = np.eye(8)[rng.integers(0, 8, 16)]
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    cnn_model.save_model(model, tmp_path / "m.keras")
    again = cnn_model.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(model.predict(x, verbose=0), again.predict(x, verbose=0),
                               rtol=1e-6, atol=1e-6)


def test_missing_model_says_to_train_first(tmp_path):
    with pytest.raises(cnn_model.ModelError, match="cnn_run.py"):
        cnn_model.load_model(tmp_path / "none.keras")


def test_a_damaged_model_file_is_a_clear_error(tmp_path):
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    with pytest.raises(cnn_model.ModelError, match="broken.keras is not a model saved"):
        cnn_model.load_model(tmp_path / "broken.keras")


def test_a_layer_table_too_large_for_the_machine_is_refused_before_it_is_made():
    from cnnlib.layer_table import weight_count

    table = [{"type": "conv", "units": 4, "kernel": 3, "pool": 2, "batchnorm": True},
             {"type": "conv", "units": 6, "kernel": 5, "pool": 2, "padding": "same"},
             {"type": "dense", "units": 16, "batchnorm": True}, {"type": "dense", "units": 8}]
    for layers, size in ((table, 33), (cnn_params.LAYERS, 48)):
        model = cnn_model.build_model(layers, 8, size, 3)
        assert weight_count(layers, 8, size, 3) == model.count_params()
    huge = [{"type": "conv", "units": 64, "kernel": 3}, {"type": "dense", "units": 65536},
            {"type": "dense", "units": 8}]
    with pytest.raises(cnn_model.ModelError, match="1,090,939,060,872 weights at --image_size=512, "
                                         "16,256 GiB to train, more than this machine's"):
        cnn_model.build_model(huge, 8, 512, 1)
