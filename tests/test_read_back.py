"""Values read back from disk are checked like `--name=value`: a configuration file, a
run's params.json and state.json, a model's cnn_info.json. Each bad value is one
sentence naming the file and the key, and exit status 2, never a traceback."""

import json
import subprocess
import sys
import zipfile

import pytest

import cnn_params
from cnnlib import config, resume, runs, stored_info
from cnnlib.errors import ModelError, RunError
from conftest import ROOT

DEFAULTS = config.defaults(cnn_params)

# A configuration file whose assignments cannot all be applied, and what the refusal says.
REFUSED = {
    "if True:\n    EPOCHS = 3\n": "line 1: an if block",
    "try:\n    EPOCHS = 3\nexcept Exception:\n    pass\n": "line 1: a try block",
    "for n in [1]:\n    EPOCHS = n\n": "line 1: a for loop",
    "with open('x') as f:\n    EPOCHS = 3\n": "line 1: a with block",
    "def f():\n    return 3\nEPOCHS = f()\n": "line 1: a function",
    "EPOCHS = 3\nEPOCHS += 1\n": "line 2: an augmented assignment",
    "EPOCHS, SEED = 3, 4, 5\n": "line 1: unpacking into 2 names",
    "EPOCHS, *SEED = 3, 4\n": "line 1: an assignment to something other than names",
    "import os\nDATA_DIR = os.getcwd()\n": "line 1: an import",
    "LEARNING_RATE = float('nan')\n": "line 1: the value of LEARNING_RATE (a call",
    "LEARNING_RATE = 1e999\n": "line 1: LEARNING_RATE = inf is not a finite number",
    "EPOCHS = -1\n": "line 1: EPOCHS = -1 is not allowed",
    "EPOCHS = 2.5\n": "line 1: EPOCHS = 2.5 should be a whole number",
    "EPOCH: int = 3\n": "line 1: EPOCH is not a parameter",
    "EPOCHS: int\n": "line 1: an annotation without a value",
    "print('hi')\n": "line 1: an expression on its own",
    "EPOCHS = 10 ** 10 ** 10\n": "a power above 64",
    "ALIASES = {(1, [2]): 2}\n": "a list or dict in a dict's key",
    "_A = [1]\n" + "_A = [_A, _A]\n" * 30 + "LAYERS = _A\n": "more than 100000 items",
}


@pytest.mark.parametrize("text", REFUSED)
def test_a_config_file_that_cannot_be_applied_whole_is_refused(tmp_path, text):
    path = tmp_path / "mine.py"
    path.write_text(text)
    with pytest.raises(config.ConfigError) as error:
        config.read_config_file(path, DEFAULTS)
    assert str(error.value).startswith(f"{path}, ") and REFUSED[text] in str(error.value)


def test_config_files_are_read_without_running_them(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text('"""Mine."""\n# a comment\n_BLOCK = {"type": "conv", "kernel": 3}\n'
                    'LAYERS = [{**_BLOCK, "units": 8, "pool": 2}, {"type": "dense", '
                    '"units": 2}]\nEPOCHS = 3\nEPOCHS = 2 * 2\nLEARNING_RATE = 1\n'
                    'CLASSES = ["a"] + ["b"]\nSEED: int = -(-5)\n')
    values = config.read_config_file(path, DEFAULTS)
    assert values["epochs"] == 4 and values["layers"][0]["units"] == 8
    assert values["learning_rate"] == 1.0 and isinstance(values["learning_rate"], float)
    assert values["classes"] == ["a", "b"] and values["seed"] == 5
    for shipped in (ROOT / "configs").glob("*.py"):  # the shipped ones still read
        config.read_config_file(shipped, DEFAULTS)


def _state(**changes):
    return {"epochs_done": 1, "epochs": 2, "finished": False, "best_val_loss": 0.5, **changes}


@pytest.mark.parametrize("changes,key", [
    ({"epochs_done": -3}, "epochs_done"), ({"epochs_done": 3}, "epochs_done"),
    ({"epochs_done": "1"}, "epochs_done"), ({"epochs_done": True}, "epochs_done"),
    ({"epochs": 0}, "epochs"), ({"epochs": 2.0}, "epochs"), ({"finished": "yes"}, "finished"),
    ({"best_val_loss": float("nan")}, "best_val_loss"),
    ({"best_val_loss": float("inf")}, "best_val_loss"), ({"best_val_loss": "0.5"},
                                                         "best_val_loss")])
def test_a_hand_edited_state_names_the_file_and_key(tmp_path, changes, key):
    path = tmp_path / "state.json"
    path.write_text(json.dumps(_state(**changes)))  # NaN and Infinity as JSON literals
    with pytest.raises(RunError) as error:
        runs.read_state(tmp_path)
    assert str(error.value).startswith(f"{path}: {key} = "), error.value
    path.write_text(json.dumps(_state()))
    assert runs.read_state(tmp_path) == _state()


@pytest.mark.parametrize("changes,expected", [
    ({"epochs": "3"}, "epochs = '3' should be a whole number"),
    ({"learning_rate": float("nan")}, "learning_rate = nan is not a finite number"),
    ({"epochs": -2}, "epochs = -2 is not allowed"),
    ({"augment": 1}, "augment = 1 should be true or false"),
    ({"layers": [{"type": "dense", "units": float("inf")}]}, "layers holds inf"),
    ({"nonsense": 1}, "nonsense is not a parameter")])
def test_saved_parameters_are_checked_like_the_command_line(changes, expected):
    with pytest.raises(config.ConfigError) as error:
        config.check_saved({**DEFAULTS, **changes}, DEFAULTS, "runs/x/params.json")
    assert str(error.value).startswith("runs/x/params.json: " + expected), error.value


def _model_with_info(path, info):
    with zipfile.ZipFile(path, "w") as archive:  # what is read back: the info entry
        archive.writestr(stored_info.INFO_FILE, info if isinstance(info, str)
                         else json.dumps(info))
    return path


@pytest.mark.parametrize("info,key", [
    ({"classes": "anger"}, "classes"), ({"classes": ["a", "a"]}, "classes"),
    ({"image_size": 48.5}, "image_size"), ({"image_size": 5}, "image_size"),
    ({"channels": 2}, "channels"), ({"layers": [1, 2]}, "layers"),
    ('{"face_margin": NaN}', "face_margin"),
    ({"calibration": {"temperature": -1}}, "calibration"),
    ('{"calibration": {"temperature": Infinity}}', "calibration")])
def test_a_models_stored_info_is_checked(tmp_path, info, key):
    path = _model_with_info(tmp_path / "m.keras", info)
    with pytest.raises(ModelError) as error:
        stored_info.read_info(path)
    message = str(error.value)
    assert f"cnn_info.json inside {path}" in message and key in message, message
    assert message.count(". ") == 0  # one sentence


def test_stored_info_that_contradicts_the_model_is_refused(tmp_path):
    info = stored_info.read_info(_model_with_info(
        tmp_path / "m.keras", {"classes": ["a", "b", "c"], "image_size": 48, "channels": 1}))
    stored_info.check_matches(info, "here", image_size=48, channels=1, outputs=3)
    with pytest.raises(ModelError, match="here, key image_size: 48 does not match"):
        stored_info.check_matches(info, "here", image_size=32)
    with pytest.raises(ModelError, match="here, key classes: names 3 classes but the model "
                                         "has 2 output units"):
        stored_info.check_matches(info, "here", outputs=2)


# One process, the scripts' own main(), every kind of hand-edited file: what a user sees.
HAND_EDITED = r"""
import json, shutil, sys, zipfile
from pathlib import Path
import cnn_eval, cnn_model, cnn_params, cnn_run
from cnnlib import config, stored_info
tmp, root = Path(sys.argv[1]), Path(sys.argv[2])
params = {**config.defaults(cnn_params), "epochs": 2, "image_size": 16,
          "classes": ["a", "b"], "layers": [{"type": "dense", "units": 2}]}
run = tmp / "runs" / "good"
run.mkdir(parents=True)
(run / "params.json").write_text(json.dumps(params))
(run / "state.json").write_text(json.dumps({"epochs_done": 0, "epochs": 2,
                                            "finished": False, "best_val_loss": None}))
model = cnn_model.build_model(params["layers"], 2, 16, 1, False, 1e-3)
cnn_model.save_model(model, run / "model.keras", {"classes": ["a", "b"], "image_size": 16,
                                                  "channels": 1})
def case(name, file, edit):
    copy = tmp / "runs" / name
    shutil.copytree(run, copy)
    edit(copy / file)
    return copy
def json_edit(**changes):
    def edit(path):
        path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))
    return edit
def info_edit(**changes):
    def edit(path):
        with zipfile.ZipFile(path) as old:
            items = [(i, old.read(i)) for i in old.infolist()]
        with zipfile.ZipFile(path, "w") as new:
            for item, data in items:
                if item.filename == stored_info.INFO_FILE:
                    data = json.dumps({**json.loads(data), **changes})
                new.writestr(item, data)
    return edit
cases = [
    ("params", "params.json", json_edit(learning_rate=float("nan"))),
    ("params_type", "params.json", json_edit(epochs="3")),
    ("state", "state.json", json_edit(epochs_done=-1)),
    ("state_nan", "state.json", lambda p: p.write_text(p.read_text().replace("null", "NaN"))),
    ("info", "model.keras", info_edit(image_size=48)),
]
for name, file, edit in cases:
    copy = case(name, file, edit)
    code = cnn_run.main([f"--resume={copy}", f"--runs_dir={tmp / 'runs'}"])
    print(f"CASE {name} {code}", flush=True)
copy = case("eval", "model.keras", info_edit(classes=["a", "b", "c"]))
code = cnn_eval.main([f"--model={copy / 'model.keras'}", str(root / "test_images")])
print(f"CASE eval {code}", flush=True)
bad = tmp / "bad.py"
bad.write_text("if True:\n    EPOCHS = 3\n")
print(f"CASE config {cnn_run.main([str(bad)])}", flush=True)
"""


@pytest.mark.slow
def test_hand_edited_files_end_the_scripts_with_one_sentence(tmp_path):
    done = subprocess.run([sys.executable, "-c", HAND_EDITED, str(tmp_path), str(ROOT)],
                          cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert "Traceback" not in done.stderr, done.stderr
    codes = [line.split()[1:] for line in done.stdout.splitlines() if line.startswith("CASE")]
    assert codes == [[name, "2"] for name in ("params", "params_type", "state", "state_nan",
                                               "info", "eval", "config")], done.stdout
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    runs_dir = tmp_path / "runs"
    expected = [f"{runs_dir}/params/params.json: learning_rate = nan",
                f"{runs_dir}/params_type/params.json: epochs = '3'",
                f"{runs_dir}/state/state.json: epochs_done = -1",
                f"{runs_dir}/state_nan/state.json: best_val_loss = nan",
                f"cnn_info.json inside {runs_dir}/info/model.keras, key image_size",
                f"cnn_info.json inside {runs_dir}/eval/model.keras, key classes",
                f"{tmp_path}/bad.py, line 1: an if block"]
    assert len(errors) == len(expected), done.stderr
    for line, start in zip(errors, expected):
        assert line.startswith(f"error: {start}"), (line, start)


@pytest.mark.parametrize("name", ["../elsewhere", "/tmp", "..", "a\nb", "a\0b", "x" * 5_000_000,
                                  "\udcff"])
def test_a_latest_txt_naming_a_path_is_refused(tmp_path, name):
    (tmp_path / runs.LATEST_FILE).write_bytes(name.encode(errors="surrogateescape") + b"\n")
    with pytest.raises(RunError, match=f"{tmp_path / runs.LATEST_FILE} names") as error:
        runs.latest_run(tmp_path)
    assert len(str(error.value)) < 400


def test_a_latest_txt_linked_to_an_endless_file_is_read_no_further_than_a_name(tmp_path):
    (tmp_path / runs.LATEST_FILE).symlink_to("/dev/zero")
    with pytest.raises(RunError, match="which is not a folder name"):
        runs.latest_run(tmp_path)


def test_json_nested_thousands_deep_is_damage_not_a_traceback(tmp_path):
    deep = "[" * 100_000 + "]" * 100_000
    (tmp_path / "state.json").write_text(deep)
    with pytest.raises(RunError, match="damaged or unreadable .RecursionError"):
        runs.read_state(tmp_path)
    with pytest.raises(ModelError, match="damaged .not JSON"):
        stored_info.read_info(_model_with_info(tmp_path / "m.keras", deep))


def test_a_models_info_that_is_huge_or_cannot_be_unpacked_is_refused(tmp_path):
    path = tmp_path / "big.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(stored_info.INFO_FILE, " " * (17 * 2**20) + "{}")  # 17 KB packed
    with pytest.raises(ModelError, match="17,825,794 bytes, more than any model's info"):
        stored_info.read_info(path)
    path = tmp_path / "damaged.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(stored_info.INFO_FILE, json.dumps({"classes": ["a", "b"] * 500}))
    data = bytearray(path.read_bytes())
    start = data.index(stored_info.INFO_FILE.encode()) + len(stored_info.INFO_FILE)
    data[start + 8:start + 40] = bytes(32)  # the packed bytes, not the header
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="damaged .it cannot be unpacked"):
        stored_info.read_info(path)


def test_a_params_json_missing_what_defines_the_run_is_not_filled_with_defaults(tmp_path):
    run_dir = tmp_path / "runs" / "r"
    run_dir.mkdir(parents=True)
    saved = {key: value for key, value in DEFAULTS.items() if key != "layers"}
    (run_dir / "params.json").write_text(json.dumps(saved))
    with pytest.raises(RunError, match="params.json has no layers, which every run saves"):
        resume.resumed_params(str(run_dir), dict(DEFAULTS), {}, config.check_values)
    runs.release_runs()


def test_a_huge_value_is_quoted_short_in_its_one_sentence(tmp_path):
    path = tmp_path / "long.py"
    path.write_text('CLASSES = ["a", "' + "b" * 90_000 + '", "a"]\n')
    with pytest.raises(config.ConfigError) as error:
        config.read_config_file(path, DEFAULTS)
    assert len(str(error.value)) < 400 and "CLASSES = ['a', 'bbb" in str(error.value)


def test_a_file_read_back_is_never_read_whole_when_far_too_large(tmp_path):
    big = tmp_path / "big.py"
    with big.open("wb") as handle:
        handle.truncate(100 * 2**20)  # sparse: no disk used
    with pytest.raises(config.ConfigError, match="big.py is larger than 16 MiB"):
        config.read_config_file(big, DEFAULTS)
    with (tmp_path / "state.json").open("wb") as handle:
        handle.truncate(100 * 2**20)
    with pytest.raises(RunError, match="state.json is larger than 64 MiB"):
        runs.read_state(tmp_path)


def test_a_resumed_layer_table_is_checked_before_any_data_naming_params_json(tmp_path):
    run_dir = tmp_path / "runs" / "r"
    run_dir.mkdir(parents=True)
    deep = "[" * 900 + "]" * 900  # json reads it; every check must too, without recursing
    saved = json.dumps({**DEFAULTS, "layers": [{"type": "dense", "unit": 3}]})
    for text in (saved, saved.replace('[{"type": "dense", "unit": 3}]', deep)):
        (run_dir / "params.json").write_text(text)
        with pytest.raises(RunError) as error:
            resume.resumed_params(str(run_dir), dict(DEFAULTS), {}, config.check_values)
        runs.release_runs()
        message = str(error.value)
        assert message.startswith(f"{run_dir / 'params.json'}, key layers: Layer 1"), message
        assert len(message) < 400


def test_an_unfinished_state_beside_recorded_metrics_is_refused_before_any_data(tmp_path):
    run_dir = tmp_path / "runs" / "r"
    run_dir.mkdir(parents=True)
    (run_dir / "params.json").write_text(json.dumps({**DEFAULTS, "epochs": 2}))
    (run_dir / "state.json").write_text(json.dumps(
        {"epochs_done": 1, "epochs": 2, "finished": False, "best_val_loss": 2.0}))
    (run_dir / "metrics.json").write_text("{}")  # written only once training finished
    with pytest.raises(RunError, match="metrics.json records a trained model but state.json "
                                       "says 1 of 2 epochs are done"):
        resume.resumed_params(str(run_dir), dict(DEFAULTS), {}, config.check_values)
    runs.release_runs()
