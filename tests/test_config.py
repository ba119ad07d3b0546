"""Command-line overrides: types checked, unknown names listed."""

import pytest

import cnn_config
import cnn_params


@pytest.fixture
def defaults():
    return cnn_config.defaults(cnn_params)


def test_defaults_are_the_params_in_lower_case(defaults):
    assert defaults["epochs"] == 50
    assert defaults["batch_size"] == 32
    assert defaults["image_size"] == 96
    assert defaults["classes"][0] == "anger" and len(defaults["classes"]) == 8
    assert all(name == name.lower() for name in defaults)


def test_overrides_are_converted_to_the_default_type(defaults):
    params, rest = cnn_config.parse_args(
        ["--epochs=5", "--learning_rate=0.01", "--dropout=false", "--noise_sigma=1",
         "--data_dir=/tmp/x", '--layers=[{"type": "dense", "units": 8}]', "a.jpg"],
        defaults)
    assert params["epochs"] == 5
    assert params["learning_rate"] == 0.01
    assert params["dropout"] is False
    assert params["noise_sigma"] == 1.0 and isinstance(params["noise_sigma"], float)
    assert params["data_dir"] == "/tmp/x"
    assert params["layers"] == [{"type": "dense", "units": 8}]
    assert rest == ["a.jpg"]
    assert defaults["epochs"] == 50  # the defaults are not changed


def test_a_bare_bool_flag_switches_it_on(defaults):
    params, _ = cnn_config.parse_args(["--dropout=False", "--dropout"], defaults)
    assert params["dropout"] is True


def test_unknown_parameter_lists_the_known_ones(defaults):
    with pytest.raises(cnn_config.ConfigError, match="Unknown parameter --epoch;") as error:
        cnn_config.parse_args(["--epoch=3"], defaults)
    assert "--epochs" in str(error.value) and "--batch_size" in str(error.value)


@pytest.mark.parametrize("arg, expected", [
    ("--epochs=five", "a whole number"),
    ("--epochs=2.5", "a whole number"),
    ("--dropout=maybe", "true or false"),
    ("--learning_rate=fast", "a number"),
    ("--layers={}", "a JSON list"),
    ("--layers=[unclosed", "a JSON list"),
    ("--epochs", "needs a value"),
])
def test_bad_values_say_what_is_expected(defaults, arg, expected):
    with pytest.raises(cnn_config.ConfigError, match=expected):
        cnn_config.parse_args([arg], defaults)


def test_a_list_of_names_may_be_written_with_commas(defaults):
    assert cnn_config.parse_args(["--classes=auto"], defaults)[0]["classes"] == ["auto"]
    params, _ = cnn_config.parse_args(["--classes=anger, fear,happy"], defaults)
    assert params["classes"] == ["anger", "fear", "happy"]


@pytest.mark.parametrize("arg, expected", [
    ("--epochs=0", "at least 1"), ("--batch_size=-3", "at least 1"),
    ("--channels=2", "1 \\(grayscale\\) or 3"), ("--validation_fraction=1.5", "between 0 and 1"),
    ("--learning_rate=0", "above 0"), ("--verbose=5", "0, 1 or 2"),
])
def test_values_out_of_range_are_refused(defaults, arg, expected):
    with pytest.raises(cnn_config.ConfigError, match=f"{arg.split('=')[0]}=.* is not allowed: .*{expected}"):
        cnn_config.parse_args([arg], defaults)


def test_positional_arguments_can_be_refused(defaults):
    with pytest.raises(cnn_config.ConfigError, match="Unexpected argument 'photo.jpg'"):
        cnn_config.parse_args(["photo.jpg"], defaults, positional=False)
