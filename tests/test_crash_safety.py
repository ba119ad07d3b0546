"""Crash-safe runs: a training killed at any instant resumes to the same end, and
every user mistake is one sentence, not a traceback."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import cnn_eval
import cnn_model
import cnn_run
from cnnlib import checkpoints, runs
from conftest import ROOT, make_class_folders, write_image

# Runs cnn_run.py, but SIGKILLs itself at a chosen rename of cnnlib.atomic: the
# n-th time a file whose name starts with TARGET is about to be renamed into place
# ("before": its new content is whole on disk under a temporary name) or has
# just been ("after": the files written after it in the epoch are still old).
KILLER = r"""
import os, runpy, signal, sys
target, when, nth = sys.argv[1], sys.argv[2], int(sys.argv[3])
sys.argv = ["cnn_run.py", *sys.argv[4:]]
original, seen = os.replace, [0]
def replace(source, destination):
    hit = os.path.basename(destination).startswith(target)
    seen[0] += hit
    if hit and seen[0] == nth and when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    original(source, destination)
    if hit and seen[0] == nth and when == "after":
        os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace
runpy.run_path("cnn_run.py", run_name="__main__")
"""

KILL_POINTS = [("checkpoint-", "before", 2), ("best.keras", "after", 1),
               ("model.keras", "before", 2), ("state.json", "before", 2),
               ("state.json", "after", 3)]


@pytest.fixture(scope="module")
def tiny_tree(tmp_path_factory):
    return make_class_folders(tmp_path_factory.mktemp("crash") / "data", per_class=2)


def run_script(args, timeout=180, script=None):
    command = [sys.executable, *(["-c", script] if script else []), *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.parametrize("target,when,nth", KILL_POINTS)
def test_a_kill_at_any_write_resumes_to_every_epoch_once(tiny_tree, tmp_path, target, when, nth):
    runs_dir = tmp_path / "runs"
    args = [f"--data_dir={tiny_tree}", f"--runs_dir={runs_dir}", "--epochs=3", "--verbose=0",
            "--image_size=32", f"--cache_dir={tmp_path / 'cache'}", "--test_dir="]
    killed = run_script([target, when, str(nth), *args], script=KILLER)
    assert killed.returncode == -9, killed.stderr
    run_dir = next(p for p in runs_dir.iterdir() if p.is_dir())
    assert runs.latest_run(runs_dir) is None  # a killed run is never the latest
    state = runs.read_state(run_dir)
    if state is not None:  # what the state claims is on disk, whole
        assert not state["finished"]
        history = runs.read_history(run_dir / "history.csv")
        assert history["epoch"][:state["epochs_done"]] == list(
            range(1, state["epochs_done"] + 1))

    started = []
    params = {**cnn_run.config.defaults(cnn_run.cnn_params), "resume": str(run_dir),
              "runs_dir": str(runs_dir)}
    resumed = cnn_run.run(params, extra_callbacks=[keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: started.append(epoch + 1))])
    assert resumed == run_dir and runs.latest_run(runs_dir) == run_dir
    history = runs.read_history(run_dir / "history.csv")
    assert history["epoch"] == [1.0, 2.0, 3.0]
    done = state["epochs_done"] if state else 0
    assert started == list(range(done + 1, 4))  # only the epochs not yet committed
    for name in ("model.keras", "best.keras"):
        assert cnn_model.load_model(run_dir / name).output_shape == (None, 8)
    assert runs.read_state(run_dir)["finished"] is True
    assert not list(run_dir.glob("checkpoint-*")) and not list(run_dir.glob(".*partial*"))
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == 3


@pytest.mark.slow
def test_a_diverging_run_stops_is_not_latest_and_keeps_its_last_good_epoch(tiny_params):
    def poison(batch, logs=None):  # from epoch 2 on, the weights are NaN
        if poison.epoch == 1 and batch == 0:
            model = poison.model
            model.layers[-1].kernel.assign(np.full(model.layers[-1].kernel.shape, np.nan))

    class Poison(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            poison.epoch, poison.model = epoch, self.model

        def on_train_batch_begin(self, batch, logs=None):
            poison(batch)

    with pytest.raises(checkpoints.DivergedError, match="diverged in epoch 2: loss became nan"):
        cnn_run.run({**tiny_params, "epochs": 3}, extra_callbacks=[Poison()])
    run_dir = next(p for p in Path(tiny_params["runs_dir"]).iterdir() if p.is_dir())
    assert runs.latest_run(tiny_params["runs_dir"]) is None
    assert runs.read_state(run_dir)["epochs_done"] == 1
    assert runs.read_history(run_dir / "history.csv")["epoch"] == [1.0]
    weights = cnn_model.load_model(run_dir / "model.keras").layers[-1].get_weights()[0]
    assert np.isfinite(weights).all()


@pytest.mark.slow
def test_a_model_copied_out_of_its_run_keeps_its_classes(tiny_params, tmp_path, capsys):
    seven = make_class_folders(tmp_path / "seven", per_class=2,
                               classes=["anger", "disgust", "fear", "happy", "neutral", "sad",
                                        "surprise"])
    run_dir = cnn_run.run({**tiny_params, "data_dir": str(seven), "classes": ["auto"]})
    lone = tmp_path / "elsewhere" / "mine.keras"
    lone.parent.mkdir()
    shutil.copyfile(run_dir / "model.keras", lone)
    faces = tmp_path / "faces"
    write_image(faces / "happy.jpg", (40, 40), "RGB", "JPEG", seed=3)
    write_image(faces / "negative.jpg", (40, 40), "RGB", "JPEG", seed=4)
    capsys.readouterr()
    assert cnn_eval.main([str(faces), f"--model={lone}", "--figure=False"]) == 0
    out = capsys.readouterr().out
    assert "over 1 labelled image(s)" in out  # negative is no class of this model
    assert "predicted negative" not in out

    # A model with no classes inside it, scored with the wrong number of classes.
    bare = tmp_path / "bare.keras"
    cnn_model.load_model(lone).save(bare)
    assert cnn_eval.main([str(faces), f"--model={bare}"]) == 2
    err = capsys.readouterr().err
    assert "predicts 7 classes but --classes" in err and "names 8" in err


BAD_RUNS = [
    (["--learning_rate=inf"], "--learning_rate=inf is not allowed"),
    (["--learning_rate=nan"], "--learning_rate=nan is not allowed"),
    (["--image_size=100000"], "--image_size=100000 is not allowed"),
    (["--classes="], "--classes=[] is not allowed"),
    (["--data_dir="], "--data_dir='' is not allowed"),
    (["--layers=[{\"type\": \"conv\", \"unit\": 8}, {\"type\": \"dense\", \"units\": 8}]"],
     "has the key 'unit' (did you mean 'units'?)"),
    (["--layers=[{\"type\": \"conv\""], "expected a JSON list"),
    (["--runs_dir=README.md"], "--runs_dir=README.md is a file, not a folder"),
    (["--data_dir=README.md"], "The data folder README.md is a file, not a folder"),
    (["missing_config.py"], "Failed to find the configuration file missing_config.py"),
]


@pytest.mark.parametrize("args,message", BAD_RUNS)
def test_bad_input_to_cnn_run_is_one_sentence(args, message, capsys):
    assert cnn_run.main(args) == 2  # what `python cnn_run.py ARGS` runs
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_bad_input_to_the_scripts_is_one_sentence_and_no_traceback(tmp_path):
    damaged = tmp_path / "damaged.keras"
    damaged.write_bytes(b"PK\x03\x04 not really a zip")
    cases = [(["cnn_run.py", "--learning_rate=inf"], "--learning_rate=inf is not allowed"),
             (["cnn_data.py", f"--data_dir={tmp_path / 'nowhere'}"], "nowhere does not exist"),
             (["cnn_eval.py", f"--model={damaged}"], "is not a model saved by this suite"),
             (["-m", "cnnlib.standin", "--scale=-1"], "--scale must be above 0")]
    for args, message in cases:
        done = run_script(args, timeout=120)
        assert done.returncode == 2, args
        assert "Traceback" not in done.stderr + done.stdout, args
        assert message in done.stderr, (args, done.stderr)


@pytest.mark.slow
def test_damaged_run_folders_cannot_resume_and_say_why(tiny_params, tmp_path, capsys):
    def stop(epoch, logs=None):
        raise KeyboardInterrupt  # after epoch 1's files are written

    with pytest.raises(KeyboardInterrupt):
        cnn_run.run({**tiny_params, "epochs": 2},
                    extra_callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=stop)])
    run_dir = next(p for p in Path(tiny_params["runs_dir"]).iterdir() if p.is_dir())
    cases = {"state.json": (b"{not json", "run state"),
             "params.json": (b"", "run's parameters")}
    for name, (content, message) in cases.items():
        copy = tmp_path / f"copy-{name}"
        shutil.copytree(run_dir, copy)
        (copy / name).write_bytes(content)
        code = cnn_run.main([f"--resume={copy}", f"--runs_dir={tiny_params['runs_dir']}"])
        assert code == 2
        err = capsys.readouterr().err
        assert message in err and "damaged" in err, err
    # A state naming a checkpoint that is gone: resume says so, names the file.
    copy = tmp_path / "copy-checkpoint"
    shutil.copytree(run_dir, copy)
    (copy / "checkpoint-1.keras").unlink()
    assert cnn_run.main([f"--resume={copy}", f"--runs_dir={tiny_params['runs_dir']}"]) == 2
    assert "checkpoint-1.keras is missing" in capsys.readouterr().err


def test_a_large_non_image_file_is_skipped_after_reading_its_head(tmp_path, monkeypatch):
    import builtins

    import cnn_data

    big = tmp_path / "big.jpg"
    with open(big, "wb") as handle:
        handle.write(b"not an image" * 10)
        handle.seek(50 * 2**20)
        handle.write(b"end")
    read = []
    real_open = builtins.open

    class Counting:
        def __init__(self, handle):
            self.handle = handle

        def read(self, *args):
            data = self.handle.read(*args)
            read.append(len(data))
            return data

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    def counting_open(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        return Counting(handle) if str(file) == str(big) and "b" in mode else handle

    monkeypatch.setattr(builtins, "open", counting_open)
    with pytest.warns(UserWarning, match="big.jpg is not a readable image"):
        images, kept, skipped = cnn_data.load_images([big], 32, 1)
    assert len(images) == 0 and len(skipped) == 1
    assert 0 < sum(read) < 2**20  # the head only, not 50 MiB


def test_byte_identical_train_and_validation_files_are_a_warning(tmp_path):
    import cnn_data
    from cnnlib import files

    data = make_class_folders(tmp_path / "data", per_class=2)
    leak = data / "validation" / "anger" / "copy.jpg"
    shutil.copyfile(data / "train" / "anger" / "img0.jpg", leak)
    pairs = files.identical_files(
        sorted((data / "train").rglob("*.*")), sorted((data / "validation").rglob("*.*")))
    assert pairs == [(data / "train" / "anger" / "img0.jpg", leak)]
    params = {**cnn_run.config.defaults(cnn_run.cnn_params), "data_dir": str(data),
              "cache_dir": "", "image_size": 16}
    with pytest.warns(UserWarning, match="1 validation image.* byte-identical"):
        prepared = cnn_data.prepare_data(params)
    assert len(prepared.leaks) == 1
