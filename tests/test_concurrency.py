"""Two processes that would do the same first-time work never both do it and never
crash: the stand-in is generated once, a run folder trains in one process at a time,
and a lock dies with its holder (cnnlib.locks, flock)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cnnlib import files, locks, runs, standin
from cnnlib.errors import RunError
from conftest import ROOT, write_image

# A process that holds a lock file, says so, and keeps it for argv[2] seconds.
HOLDER = r"""
import sys, time
from cnnlib import locks
with locks.waiting(sys.argv[1], "testing"):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _holder(path, seconds):
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), str(seconds)],
                             cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    return child


def test_a_held_run_folder_names_its_holder_and_is_free_once_it_dies(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    child = _holder(run_dir / runs.RUN_LOCK, 60)
    try:
        with pytest.raises(RunError) as error:
            runs.hold_run(run_dir)
        message = str(error.value)
        assert f"The run folder {run_dir} is in use by PID {child.pid} (" in message
        assert "started 20" in message and message.count(". ") == 0, message
    finally:
        child.kill()  # SIGKILL: no clean-up runs, the OS drops the lock
        child.wait()
    runs.hold_run(run_dir)
    runs.release_runs()


def test_a_second_process_waits_for_the_holder_and_says_for_whom(tmp_path, capsys):
    lock = tmp_path / ".work.lock"
    child = _holder(lock, 0.5)
    started = time.monotonic()
    with locks.waiting(lock, "generating"):
        assert time.monotonic() - started > 0.3  # we had the lock only once it had let go
    child.wait()
    assert f"Waiting for PID {child.pid} (" in capsys.readouterr().out
    assert locks.holder(lock)["pid"] == os.getpid()  # the last holder, for the next one


GENERATE = r"""
import sys
from cnnlib import standin
standin.ensure_standin(sys.argv[1], ["auto"], [3] * 8, 8, 1234)
"""


def test_two_first_runs_generate_the_stand_in_once(tmp_path):
    data = tmp_path / "data" / "synthetic"
    children = [subprocess.Popen([sys.executable, "-c", GENERATE, str(data)], cwd=ROOT,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(2)]
    outputs = [child.communicate(timeout=120) for child in children]
    assert [child.returncode for child in children] == [0, 0], outputs
    printed = "".join(out + err for out, err in outputs)
    assert "Traceback" not in printed and printed.count("Generating the synthetic") == 1
    assert standin.is_standin(data) and len(list(data.rglob("*.jpg"))) == 8 * 3 + 8
    assert sorted(p.name for p in data.parent.iterdir()) == [".synthetic.lock", "synthetic"]
    # The lock file is never data: hidden, so no image list holds it.
    write_image(data.parent / "face.png", (8, 8))
    assert files.list_images([data.parent]) == [data.parent / "face.png"]


# The second process: cnn_run.py, its imports done while the first starts, then
# `--resume` of the first's run folder as soon as that folder has its params.json.
RESUME_WHEN_READY = r"""
import glob, runpy, sys, time
import cnn_run
deadline = time.monotonic() + 150
while not glob.glob("runs/*/params.json") and time.monotonic() < deadline:
    time.sleep(0.2)
name = sorted(glob.glob("runs/*/params.json"))[0].split("/")[1]
sys.argv = [sys.argv[1], f"--resume={name}"]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.slow
def test_a_second_resume_while_the_first_trains_names_the_holder(tmp_path):
    # A fresh clone (no data/ yet), training long enough for the --resume meanwhile.
    first = subprocess.Popen(
        [sys.executable, str(ROOT / "cnn_run.py"), "--epochs=5000", "--image_size=16",
         "--test_dir=", "--verbose=0", "--standin_train_counts=[4,4,4,4,4,4,4,4]",
         "--standin_validation_total=16", "--classes=auto"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        second = subprocess.run([sys.executable, "-c", RESUME_WHEN_READY,
                                 str(ROOT / "cnn_run.py")], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=180)
        assert first.poll() is None, first.communicate()[0]  # still training
    finally:
        first.kill()
    printed = first.communicate()[0]
    run_dir = next(tmp_path.glob("runs/*/params.json")).parent
    assert second.returncode == 2 and "Traceback" not in second.stderr, second.stderr
    assert (f"error: The run folder {run_dir.relative_to(tmp_path)} is in use by PID "
            f"{first.pid} (") in second.stderr, second.stderr
    assert "Traceback" not in printed and standin.is_standin(tmp_path / "data" / "synthetic")


def test_a_lock_file_replaced_by_a_link_never_writes_through_it(tmp_path):
    precious = tmp_path / "precious.txt"
    precious.write_text("the user's")
    (tmp_path / ".run.lock").symlink_to(precious)
    with pytest.raises(RunError, match="is a link, not a file the suite made: delete it"):
        runs.hold_run(tmp_path)
    assert precious.read_text() == "the user's"
    os.mkfifo(tmp_path / ".other.lock")
    with pytest.raises(RunError, match="is not a regular file"):
        locks.hold(tmp_path / ".other.lock", "testing")
    (tmp_path / ".folder.lock").mkdir()
    with pytest.raises(RunError, match="is a folder, not a file the suite made"):
        locks.hold(tmp_path / ".folder.lock", "testing")


def test_a_hand_edited_lock_file_still_names_its_holder_in_one_line(tmp_path):
    lock = tmp_path / ".run.lock"
    lock.write_text('{"pid": 5, "command": 7, "started": "' + "y" * 5000 + '"}')
    described = locks._describe(lock)
    assert described.startswith("PID 5 (7, started yyy") and len(described) < 80
