"""Ctrl-C and SIGTERM at a chosen moment: each command ends within seconds, with status
130 or 143, no unfinished output under a final name, the resume hint where it can
resume, and no process left behind (cnnlib/interrupt.py)."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import cnn_model
import cnn_params
from cnnlib import faces, interrupt
from conftest import ROOT, make_class_folders

TINY_LAYERS = [{"type": "conv", "units": 4, "kernel": 3, "pool": 2}, {"type": "dense", "units": 8}]
ENDS_WITHIN = 12.0  # seconds from the signal to the end, on a busy 2-core machine


def in_session(leader):
    """Pids of the live processes of the session `leader` started (zombies left out)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == leader and fields[0] != "Z":  # fields: state, ppid, pgrp, session
            found.append(int(name))
    return found


def interrupt_at(args, when, signum, group=False, timeout=240, env=None):
    """Run `python args...`, send `signum` once `when` holds (a regex met on its output,
    or a callable that returns True), and return (status, output, seconds to end, pids
    of the session still alive 3 s later). `group`: to the process group, as a
    terminal's Ctrl-C reaches it."""
    process = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True,
                               env={**os.environ, **(env or {})})
    lines, seen = [], threading.Event()

    def read():
        for line in process.stdout:
            lines.append(line)
            if isinstance(when, str) and re.search(when, line):
                seen.set()

    threading.Thread(target=read, daemon=True).start()
    start = time.monotonic()
    try:
        while not (seen.is_set() if isinstance(when, str) else when()):
            assert process.poll() is None, "ended before the moment came:\n" + "".join(lines)
            assert time.monotonic() - start < timeout, "".join(lines)
            time.sleep(0.01)
        sent = time.monotonic()
        (os.killpg if group else os.kill)(process.pid, signum)
        status = process.wait(timeout=60)
        seconds = time.monotonic() - sent
        for _ in range(30):  # the watchdog ends just after the process
            left = in_session(process.pid)
            if not left:
                break
            time.sleep(0.1)
        return status, "".join(lines), seconds, left
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        for pid in in_session(process.pid):
            os.kill(pid, signal.SIGKILL)


def assert_interrupted(outcome, signum):
    """Ended soon, by this signal (status 128 + signum, or killed by it), nothing left."""
    status, output, seconds, left = outcome
    assert status in (128 + signum, -signum), output
    assert seconds < ENDS_WITHIN, (seconds, output)
    assert not left, left
    assert f"Interrupted ({'Ctrl-C' if signum == signal.SIGINT else 'SIGTERM'})" in output
    assert "Traceback" not in output, output


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    model = cnn_model.build_model(TINY_LAYERS, 8, image_size=32, channels=1, seed=0)
    model.optimizer.build(model.trainable_variables)
    path = tmp_path_factory.mktemp("interrupt") / "model" / "model.keras"
    path.parent.mkdir()
    cnn_model.save_model(model, path, {"classes": cnn_params.CLASSES,
                                       "aliases": cnn_params.ALIASES, "image_size": 32,
                                       "channels": 1})
    return path


def test_the_exit_status_and_the_sentence_name_the_signal():
    assert interrupt.exit_status(KeyboardInterrupt()) == 130
    assert interrupt.exit_status(interrupt.Interrupted(signal.SIGTERM)) == 143
    assert isinstance(interrupt.Interrupted(signal.SIGTERM), KeyboardInterrupt)


def test_an_interrupted_block_removes_what_it_made_and_nothing_else(tmp_path):
    made, kept = tmp_path / "eval-1", tmp_path / "eval-2"
    made.mkdir()
    (made / "clip.csv").write_text("frame\n")
    with pytest.raises(KeyboardInterrupt):
        with interrupt.removed_if_interrupted(made):
            raise interrupt.Interrupted(signal.SIGTERM)
    with pytest.raises(ValueError):  # another error: the caller decides
        with interrupt.removed_if_interrupted(kept.with_suffix(".png")):
            kept.mkdir()
            raise ValueError("not an interruption")
    assert not made.exists() and kept.is_dir()


def test_an_error_a_library_makes_of_a_signal_is_the_interruption(tmp_path, monkeypatch):
    # Keras turned a Ctrl-C during a SavedModel export into "cannot convert Flatten";
    # waitress returns quietly from one: both are reported as the signal they were.
    monkeypatch.setattr(interrupt, "_received", [])
    monkeypatch.setattr(interrupt, "_removed", [])
    assert interrupt.pending() is None
    made = tmp_path / "export"
    made.mkdir()
    with pytest.raises(ValueError):
        with interrupt.removed_if_interrupted(made):
            try:
                interrupt._raise(signal.SIGTERM, None)
            except KeyboardInterrupt:
                raise ValueError("Exception encountered when calling Flatten.call()")
    assert not made.exists()
    assert interrupt.exit_status(interrupt.pending()) == 143
    interrupt.handled()  # an expected stop (a webcam) is no interruption
    assert interrupt.pending() is None
    # A Ctrl-C raised inside a finalizer (TensorFlow's __del__) is dropped by Python: the
    # block ends normally, and the next output block is where it takes effect.
    made.mkdir()
    interrupt._received.append(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        with interrupt.removed_if_interrupted(made):
            (made / "report.png").write_bytes(b"finished?")
    assert not made.exists()


@pytest.mark.slow
@pytest.mark.parametrize("signum,group", [(signal.SIGINT, True), (signal.SIGTERM, False)])
def test_standin_generation_stops_with_its_workers_and_leaves_no_folder(tmp_path, signum,
                                                                       group):
    out = tmp_path / "standin"
    started = lambda: any(tmp_path.glob("standin.partial-*/train/*/*.jpg"))  # noqa: E731
    outcome = interrupt_at(["-m", "cnnlib.standin", f"--out_dir={out}", "--scale=0.5",
                            "--workers=2"], started, signum, group)
    assert_interrupted(outcome, signum)
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its partial one


@pytest.mark.slow
def test_training_stopped_mid_epoch_keeps_its_epochs_says_how_to_resume(tmp_path):
    data = make_class_folders(tmp_path / "data", per_class=6)
    runs_dir = tmp_path / "runs"
    outcome = interrupt_at(["cnn_run.py", f"--data_dir={data}", f"--runs_dir={runs_dir}",
                            f"--cache_dir={tmp_path / 'cache'}", "--epochs=500",
                            "--image_size=32", "--verbose=1", "--test_dir="],
                           r"Epoch 2/", signal.SIGTERM)
    assert_interrupted(outcome, signal.SIGTERM)
    (run_dir,) = [p for p in runs_dir.iterdir() if p.is_dir()]
    assert f"resume with `python cnn_run.py --resume={run_dir}`" in outcome[1]
    state = json.loads((run_dir / "state.json").read_text())
    assert state["epochs_done"] >= 1 and not state["finished"]
    assert not (runs_dir / "latest.txt").exists()
    assert not list(run_dir.glob(".*partial*"))


def write_long_video(path, frames=3000):
    cv2 = faces.opencv()
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (96, 72))
    ramp = np.tile(np.arange(96), (72, 1))
    for i in range(frames):
        writer.write(np.dstack([(ramp + i) % 256] * 3).astype(np.uint8))
    writer.release()
    return path


@pytest.mark.slow
def test_a_video_stopped_while_scored_leaves_no_outputs(tmp_path, model_path):
    clip = write_long_video(tmp_path / "clip.mp4")
    folder = model_path.parent
    writing = lambda: any(folder.glob("eval-*/.clip-annotated*"))  # noqa: E731
    outcome = interrupt_at(["cnn_eval.py", str(clip), f"--model={model_path}",
                            "--detector=haar"], writing, signal.SIGINT)
    assert_interrupted(outcome, signal.SIGINT)
    assert "removed the unfinished" in outcome[1]
    assert sorted(p.name for p in folder.iterdir()) == ["model.keras"]


@pytest.mark.slow
def test_a_test_set_stopped_while_scored_leaves_no_outputs(tmp_path, model_path):
    data = make_class_folders(tmp_path / "set", per_class=30)
    folder = model_path.parent
    outcome = interrupt_at(["cnn_eval.py", str(data / "train"), f"--model={model_path}",
                            "--faces=false"], lambda: any(folder.glob("eval-*")),
                           signal.SIGTERM)
    assert_interrupted(outcome, signal.SIGTERM)
    assert sorted(p.name for p in folder.iterdir()) == ["model.keras"]


@pytest.mark.slow
def test_a_worker_waiting_for_its_peers_ends_at_ctrl_c(tmp_path):
    data = make_class_folders(tmp_path / "data", per_class=2)
    cluster = {"cluster": {"worker": ["localhost:23391", "localhost:23392"]},
               "task": {"type": "worker", "index": 0}}
    outcome = interrupt_at(["cnn_run.py", "--distribute=multiworker", f"--data_dir={data}",
                            f"--runs_dir={tmp_path / 'runs'}", "--image_size=32"],
                           r"waiting for every worker", signal.SIGINT,
                           env={"TF_CONFIG": json.dumps(cluster)})
    assert_interrupted(outcome, signal.SIGINT)  # the peer never comes: TensorFlow blocks
