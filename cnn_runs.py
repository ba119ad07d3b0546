"""Run folders: each training run writes its own, and nothing earlier is touched.

Offers:
  new_run_dir(runs_dir, tag)       -> Path of a new, empty folder runs/<time>-<tag>
  write_json(path, data)           -> writes JSON (parameters, metrics)
  read_json(path)                  -> dict
  history_logger(path)             -> Keras callback appending one CSV row an epoch
  read_history(path)               -> {column: [values]} from a history CSV
  mark_latest(runs_dir, run_dir)   -> records run_dir as the latest run
  latest_run(runs_dir)             -> Path of the latest run, or None
"""

import csv
import json
import time
from datetime import datetime
from pathlib import Path

import keras

LATEST_FILE = "latest.txt"  # in the runs folder: the name of the newest finished run


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
            return run_dir
        except FileExistsError:
            continue
    raise FileExistsError(f"Could not create a new run folder in {runs_dir}.")


def write_json(path, data):
    """Write `data` as indented JSON at `path`."""
    Path(path).write_text(json.dumps(data, indent=2, default=str) + "\n")


def read_json(path):
    """Return the JSON data stored at `path`."""
    return json.loads(Path(path).read_text())


def history_logger(path):
    """Return a callback that appends epoch, metrics and seconds to the CSV `path`.

    Each row is written when its epoch ends, so an interrupted run keeps its
    finished epochs. The columns are fixed by the first row.
    """
    path = Path(path)
    state = {}

    def begin(epoch, logs=None):
        state["start"] = time.perf_counter()

    def end(epoch, logs=None):
        row = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()},
               "seconds": round(time.perf_counter() - state["start"], 3)}
        new = not path.exists() or path.stat().st_size == 0
        with path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(row), extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)

    return keras.callbacks.LambdaCallback(on_epoch_begin=begin, on_epoch_end=end)


def read_history(path):
    """Return {column: list of floats} from a history CSV written by history_logger."""
    with Path(path).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns = rows[0].keys() if rows else []
    return {name: [float(row[name]) for row in rows] for name in columns}


def mark_latest(runs_dir, run_dir):
    """Record `run_dir` as the latest run of `runs_dir` (for cnn_eval.py)."""
    (Path(runs_dir) / LATEST_FILE).write_text(Path(run_dir).name + "\n")


def latest_run(runs_dir):
    """Return the Path of the latest recorded run in `runs_dir`, or None."""
    marker = Path(runs_dir) / LATEST_FILE
    if not marker.is_file():
        return None
    run_dir = Path(runs_dir) / marker.read_text().strip()
    return run_dir if run_dir.is_dir() else None
