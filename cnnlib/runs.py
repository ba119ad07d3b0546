"""Run folders: each training run writes its own, and nothing earlier is touched.

Offers:
  check_runs_dir(runs_dir, data_dir) raises RunError unless runs can be written there
  check_outside(name, folder, data_dir) raises RunError for a folder inside the data
  check_folders(runs_dir, data_dir, cache_dir, test_dir) raises a UserError for any of
                                      a run's folders that cannot serve
  hold_run(run_dir)                locks a run folder for this process (RunError naming
                                   the process that holds it already)
  release_runs()                   gives back the run folders this process holds
  new_run_dir(runs_dir, tag)       -> Path of a new folder runs/<time>-<tag>, held
  new_output_dir(parent, prefix)   -> Path of a new, empty folder <parent>/<prefix>-<time>
                                      (cnn_eval.py's eval-<time>/ beside the model)
  (resuming a run, with its saved files checked: cnnlib/resume.py)
  remove_empty_made()              removes the folders the two above (and the files
                                      claim_path) made that are still empty; the scripts
                                      call it when they stop on an error
  write_json(path, data) / read_json(path, what)
  write_history(path, rows)        -> history.csv from a list of per-epoch dicts
  read_history(path)               -> {column: [values]} from a history CSV
  read_history_rows(path)          -> [{column: value}] of a history CSV, one an epoch
  read_state(folder) / write_state(folder, **state)
                                   -> the run's state.json: epochs done, finished
  check_state(state, path)         -> the state, or RunError naming the file and the key
  mark_latest(runs_dir, run_dir)   -> records run_dir as the latest run
  latest_run(runs_dir)             -> Path of the latest run, or None (RunError when
                                      latest.txt names a path, not a folder of runs_dir)
  claim_path(path)                 -> `path`, or `path` with -1, -2..., created at once
  find_run(name, runs_dir)         -> Path of a run given as a folder or a name
  library_versions()               -> {library: version} for the run record

Every file is written atomically (cnnlib.atomic), so a run killed at any instant
leaves each file whole: the old version or the new one.
"""

import csv
import io
import json
import math
import os
import tempfile
from datetime import datetime
from pathlib import Path

from cnnlib import atomic, locks
from cnnlib.errors import DataError, RunError, shown

LATEST_FILE = "latest.txt"  # in the runs folder: the name of the newest finished run
_MAX_NAME_BYTES = 255       # the longest folder name Linux file systems allow
_MAX_JSON_BYTES = 64 * 2**20  # params.json, state.json...: kilobytes as the suite writes them
STATE_FILE = "state.json"   # in a model's folder: epochs done, and whether training finished
RUN_LOCK = ".run.lock"      # in a run folder: held by the process that trains in it


def check_outside(name, folder, data_dir):
    """Raise RunError when `folder` (--name) lies in `data_dir`, links followed.

    What the suite writes must never land among the user's images, where a later
    run would read it as data.
    """
    if not data_dir:
        return
    inside, data = Path(os.path.realpath(folder)), Path(os.path.realpath(data_dir))
    if inside == data or data in inside.parents:
        raise RunError(f"--{name}={folder} is inside the data folder {data_dir}: keep what "
                       f"the suite writes out of the data (the default is).")


def check_folders(runs_dir, data_dir, cache_dir, test_dir):
    """Raise a UserError for a runs, cache or test folder that cannot serve a run."""
    check_runs_dir(runs_dir, data_dir)
    if cache_dir and Path(cache_dir).is_file():
        raise DataError(f"--cache_dir={cache_dir} is a file, not a folder: give a folder, "
                        f"or --cache_dir= to turn the cache off.")
    if cache_dir:
        check_outside("cache_dir", cache_dir, data_dir)
    if test_dir and not Path(test_dir).is_dir():
        what = "is a file, not a folder" if Path(test_dir).exists() else "does not exist"
        raise DataError(f"--test_dir={test_dir} {what}: give a folder of test images, or "
                        f"--test_dir= for none.")


_HELD_RUNS = []  # the run folders this process holds (hold_run), for release_runs


def hold_run(run_dir):
    """Lock `run_dir` for this process until it ends (cnnlib.locks): a second process
    that would train in it stops with RunError naming this one."""
    path = locks.hold(Path(run_dir) / RUN_LOCK, f"The run folder {run_dir}")
    _HELD_RUNS.append(path)
    return path


def release_runs():
    """Give back every run folder this process holds: another process may resume them."""
    while _HELD_RUNS:
        locks.release(_HELD_RUNS.pop())


def check_runs_dir(runs_dir, data_dir=None):
    """Raise RunError unless `runs_dir` is (or can become) a writable folder.

    It must not lie inside `data_dir`: runs would then be read as data.
    """
    runs_dir = Path(runs_dir)
    if runs_dir.exists() and not runs_dir.is_dir():
        raise RunError(f"--runs_dir={runs_dir} is a file, not a folder: give a folder.")
    check_outside("runs_dir", runs_dir, data_dir)
    latest = runs_dir / LATEST_FILE  # written when a run ends: found now, not after training
    if latest.exists() and not latest.is_file():
        raise RunError(f"{latest} is not a file (a folder?): it is where the suite records "
                       f"the latest run, so move it out of the way.")
    existing = next((p for p in [runs_dir, *runs_dir.parents] if p.exists()), Path("."))
    if not existing.is_dir():
        raise RunError(f"--runs_dir={runs_dir} cannot be made: {existing} is a file.")
    missing = [p for p in (runs_dir, *runs_dir.parents) if not p.exists()]
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
        _made.extend(reversed(missing))  # removed again if the command stops with nothing
        with tempfile.TemporaryFile(dir=runs_dir):
            pass
    except OSError as error:
        raise RunError(f"Cannot write runs into {runs_dir} ({error.strerror or error}): "
                       f"give a writable folder with --runs_dir.") from None


_made = []  # folders and claimed files this process made, newest last


def remove_empty_made():
    """Remove what new_run_dir, new_output_dir and claim_path made in this process and
    nothing was written into (an empty folder, a claimed file of 0 bytes): a command that
    stopped on an error leaves nothing behind."""
    while _made:
        made = _made.pop()
        try:
            if made.is_dir():
                if [p.name for p in made.iterdir()] == [RUN_LOCK]:  # our own lock, only
                    release_runs()
                    (made / RUN_LOCK).unlink()
                made.rmdir()  # only an empty folder: never anything written into it
            elif made.stat().st_size == 0:
                made.unlink()
        except OSError:
            pass


def new_run_dir(runs_dir, tag):
    """Create and return a new folder `<runs_dir>/<YYYYmmdd-HHMMSS>-<tag>`.

    If that name is taken (two runs in one second), a counter is added: an
    earlier run is never reused or overwritten.
    """
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{datetime.now():%Y%m%d-%H%M%S}-{tag}"
    for counter in range(1000):
        run_dir = runs_dir / (stem if counter == 0 else f"{stem}-{counter}")
        try:
            run_dir.mkdir()
            _made.append(run_dir)
        except FileExistsError:
            continue
        hold_run(run_dir)
        return run_dir
    raise RunError(f"Could not create a new run folder in {runs_dir}: 1000 runs started "
                   f"in one second?")


def new_output_dir(parent, prefix):
    """Create and return a new folder `<parent>/<prefix>-<YYYYmmdd-HHMMSS>`.

    Like new_run_dir, a taken name gets a counter: nothing earlier is reused. A
    prefix made from a long model name is shortened so the folder's name fits.
    """
    parent = Path(parent)
    stem = atomic.fitting_name(prefix, f"-{datetime.now():%Y%m%d-%H%M%S}")
    for counter in range(1000):
        folder = parent / (stem if counter == 0 else f"{stem}-{counter}")
        missing = [p for p in (folder, *folder.parents) if not p.exists()]
        try:
            folder.mkdir(parents=True)
            _made.extend(reversed(missing))  # the outer ones first: removed last
            return folder
        except FileExistsError:
            continue
        except OSError as error:
            raise RunError(f"Cannot make the folder {folder} ({error.strerror or error}): "
                           f"keep the model in a writable folder.") from None
    raise RunError(f"Could not create a new folder {stem} in {parent}: 1000 in one second?")


write_json = atomic.write_json


def read_json(path, what="file"):
    """Return the JSON data stored at `path`; RunError if it is missing or damaged."""
    try:
        with open(path, "rb") as handle:  # never read whole: a hand-made file may be endless
            raw = handle.read(_MAX_JSON_BYTES + 1)
        if len(raw) > _MAX_JSON_BYTES:
            raise RunError(f"The {what} {path} is larger than {_MAX_JSON_BYTES // 2**20} MiB, "
                           f"far more than the suite writes: it was replaced by hand.")
        return json.loads(raw)
    except FileNotFoundError:
        raise RunError(f"The {what} {path} is missing.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        # RecursionError: nested thousands deep, as no file of ours is
        raise RunError(f"The {what} {path} is damaged or unreadable "
                       f"({type(error).__name__}).") from None


def write_history(path, rows):
    """Write per-epoch rows (dicts with the same keys, "epoch" first) as a CSV, atomically."""
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), extrasaction="ignore",
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    atomic.write_text(path, buffer.getvalue())


def read_history_rows(path):
    """Return the rows of a history CSV as a list of {column: float}; [] if absent.

    Raises RunError for a file that is not such a CSV.
    """
    path = Path(path)
    if not path.is_file():
        return []
    try:
        with path.open(newline="") as handle:
            # Epochs stay whole numbers, so a resumed run rewrites its rows as they were.
            return [{key: int(value) if key == "epoch" else float(value)
                     for key, value in row.items()} for row in csv.DictReader(handle)]
    except (ValueError, TypeError, UnicodeDecodeError, csv.Error):
        raise RunError(f"The history {path} is damaged: it is not the CSV this suite "
                       f"writes.") from None


def read_history(path):
    """Return {column: list of floats} from a history CSV written by write_history."""
    rows = read_history_rows(path)
    columns = rows[0].keys() if rows else []
    return {name: [row[name] for row in rows] for name in columns}


def read_state(folder):
    """Return the state.json of a model's folder, or None when training never began.

    Keys: epochs_done (int), finished (bool), best_val_loss (float or None),
    epochs (int, as requested). Raises RunError for a damaged file.
    """
    path = Path(folder) / STATE_FILE
    if not path.exists():
        return None
    return check_state(read_json(path, "run state"), path)


def _whole(value, low, high):
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def check_state(state, path):
    """Return `state` (read from the state.json `path`) when every value is sound.

    epochs a whole number from 1 to 100,000; epochs_done one from 0 to epochs;
    finished true or false; best_val_loss null or a finite number. Raises RunError,
    one sentence naming the file and the key.
    """
    if not isinstance(state, dict):
        raise RunError(f"The run state {path} is damaged: it is not a JSON object. Start a "
                       f"new run.")
    epochs = state.get("epochs")
    rules = {"epochs": (_whole(epochs, 1, 100_000), "a whole number from 1 to 100000"),
             "epochs_done": (_whole(state.get("epochs_done"), 0, epochs)
                             if _whole(epochs, 1, 100_000) else True,
                             f"a whole number from 0 to its epochs ({epochs})"),
             "finished": (isinstance(state.get("finished"), bool), "true or false"),
             "best_val_loss": (state.get("best_val_loss") is None or (
                 isinstance(state["best_val_loss"], (int, float))
                 and not isinstance(state["best_val_loss"], bool)
                 and math.isfinite(state["best_val_loss"])), "null or a finite number")}
    for key, (good, must) in rules.items():
        if key not in state and key != "best_val_loss":
            raise RunError(f"The run state {path} is damaged: it has no {key}. Start a new "
                           f"run.")
        if not good:
            raise RunError(f"{path}: {key} = {shown(state.get(key))} is not allowed: it must be "
                           f"{must}; the file was changed by hand, so start a new run.")
    return state


def write_state(folder, **state):
    """Write the state.json of a model's folder, atomically."""
    atomic.write_json(Path(folder) / STATE_FILE, state)


def mark_latest(runs_dir, run_dir):
    """Record `run_dir` as the latest run of `runs_dir` (for cnn_eval.py)."""
    atomic.write_text(Path(runs_dir) / LATEST_FILE, Path(run_dir).name + "\n")


def latest_run(runs_dir):
    """Return the Path of the latest recorded run in `runs_dir`, or None.

    RunError for a latest.txt that holds anything but one folder name (a path, several
    lines, bytes that are no text, a name longer than a file system allows).
    """
    marker = Path(runs_dir) / LATEST_FILE
    try:
        with open(marker, "rb") as handle:  # a name, not a file read whole: /dev/zero?
            raw = handle.read(_MAX_NAME_BYTES + 2)
    except OSError:
        return None
    name = raw.decode("utf-8", "replace").strip()
    if name and (name != Path(name).name or name in (".", "..") or "\ufffd" in name
                 or any(c in name for c in "\0\n\r") or len(name.encode()) > _MAX_NAME_BYTES):
        raise RunError(f"{marker} names {shown(name)}, which is not a folder name: it holds the "
                       f"name of a run folder in {runs_dir}; give --model=PATH, or delete it.")
    run_dir = Path(runs_dir) / name
    return run_dir if name and run_dir.is_dir() else None


def find_run(name, runs_dir):
    """Return the run folder `name` (a path, or a folder name in `runs_dir`).

    Raises RunError with a sentence naming both places tried.
    """
    for candidate in (Path(name), Path(runs_dir) / name):
        if (candidate / "params.json").is_file():
            return candidate
    raise RunError(f"Failed to find the run {name} (looked for params.json in "
                   f"{Path(name)} and {Path(runs_dir) / name}).")


def library_versions():
    """Return the versions of Python and the libraries a run depends on."""
    import platform

    import keras
    import matplotlib
    import numpy
    import PIL
    import tensorflow

    return {"python": platform.python_version(), "tensorflow": tensorflow.__version__,
            "keras": keras.__version__, "numpy": numpy.__version__,
            "matplotlib": matplotlib.__version__, "pillow": PIL.__version__,
            "machine": platform.machine(), "system": platform.system()}


def claim_path(path):
    """Create `path` empty, or the first free `<stem>-N<suffix>` beside it; return it.

    Creating is exclusive (O_EXCL), so no two processes, even started in the same
    second, are ever given the same file. The caller then writes it atomically.
    """
    path = Path(path)
    for counter in range(10000):
        candidate = path if counter == 0 else path.with_name(
            f"{path.stem}-{counter}{path.suffix}")
        try:
            os.close(os.open(candidate, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            _made.append(candidate)
            return candidate
        except FileExistsError:
            continue
    raise RunError(f"Could not find a free name for {path}: 10000 taken.")
