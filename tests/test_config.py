"""Command-line overrides: types checked, unknown names listed, help and `--`."""

import pytest

import cnn_params
from cnnlib import config, errors


@pytest.fixture
def defaults():
    return config.defaults(cnn_params)


def test_defaults_are_the_params_in_lower_case(defaults):
    assert defaults["epochs"] == 50
    assert defaults["batch_size"] == 32
    assert defaults["image_size"] == 96
    assert defaults["classes"][0] == "anger" and len(defaults["classes"]) == 8
    assert all(name == name.lower() for name in defaults)


def test_overrides_are_converted_to_the_default_type(defaults):
    params, rest = config.parse_args(
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
    params, _ = config.parse_args(["--dropout=False", "--dropout"], defaults)
    assert params["dropout"] is True


def test_unknown_parameter_lists_the_known_ones(defaults):
    with pytest.raises(errors.ConfigError, match="Unknown parameter --epoch;") as error:
        config.parse_args(["--epoch=3"], defaults)
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
    with pytest.raises(errors.ConfigError, match=expected):
        config.parse_args([arg], defaults)


def test_a_list_of_names_may_be_written_with_commas(defaults):
    assert config.parse_args(["--classes=auto"], defaults)[0]["classes"] == ["auto"]
    params, _ = config.parse_args(["--classes=anger, fear,happy"], defaults)
    assert params["classes"] == ["anger", "fear", "happy"]


@pytest.mark.parametrize("arg, expected", [
    ("--epochs=0", r"in \[1, 100000\]"), ("--batch_size=-3", r"in \[1, 65536\]"),
    ("--channels=2", "1 \\(grayscale\\) or 3"), ("--validation_fraction=1.5", r"in \(0, 1\)"),
    ("--learning_rate=0", r"in \(0, 10\]"), ("--verbose=5", "0, 1 or 2"),
    ("--check_images=-1", r"in \[1, 1000000\]"), ("--check_images=0", r"in \[1, 1000000\]"),
])
def test_values_out_of_range_are_refused(defaults, arg, expected):
    if arg.startswith("--check_images"):
        defaults = {**defaults, "check_images": 200}
    with pytest.raises(errors.ConfigError, match=f"{arg.split('=')[0]}=.* is not allowed: .*{expected}"):
        config.parse_args([arg], defaults)


def test_positional_arguments_can_be_refused(defaults):
    with pytest.raises(errors.ConfigError, match="Unexpected argument 'photo.jpg'"):
        config.parse_args(["photo.jpg"], defaults, positional=False)


def test_double_dash_ends_the_parameters(defaults):
    params, rest = config.parse_args(["--epochs=3", "--", "--x.jpg", "a.jpg"], defaults)
    assert params["epochs"] == 3 and rest == ["--x.jpg", "a.jpg"]
    with pytest.raises(errors.ConfigError, match="Unexpected argument '--x.jpg'"):
        config.parse_args(["--", "--x.jpg"], defaults, positional=False)


def test_help_prints_the_usage_and_every_parameter_and_exits_0(defaults, capsys):
    import cnn_run

    for argv in (["--help"], ["--epochs=3", "-h"]):
        with pytest.raises(SystemExit) as ended:
            cnn_run.main(argv)
        assert ended.value.code == 0
        shown = capsys.readouterr().out
        assert "Usage:  python cnn_run.py" in shown
        assert "--epochs=50" in shown and "--layers=[" in shown
    assert config.parse_args(["--", "-h"], defaults)[1] == ["-h"]  # a file named -h


def test_a_folder_given_as_the_configuration_file_is_named_as_one(defaults, tmp_path):
    (tmp_path / "mine.py").mkdir()
    with pytest.raises(errors.ConfigError, match=r"mine.py is a folder: give the path of a "
                                                 r"\.py file"):
        config.parse_args([str(tmp_path / "mine.py")], defaults)
