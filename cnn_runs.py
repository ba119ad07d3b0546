"""Run folders: each training run writes its own, and nothing earlier is touched.

Offers:
  new_run_dir(runs_dir, tag)       -> Path of a new, empty folder runs/<time>-<tag>
  write_json(path, data)           -> writes JSON (parameters, metrics)
  read_json(path)                  -> dict
  history_logger(path)             -> Keras callback appending one CSV row an epoch
  read_history(path)               -> {column: [values]} from a history CSV
  mark_latest(runs_dir, run_dir)   -> records run_dir as the latest run
  latest_run(runs_dir)             -> Path of the latest run, or None
  unique_path(path)                -> `path`, or `path` with -1, -2... if it exists
  find_run(name, runs_dir)         -> Path of a run given as a folder or a name
  library_versions()               -> {library: version} for the run record
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
    finished epochs; a resumed run that repeats an epoch replaces its row, so the
    file holds every epoch once.
    """
    path = Path(path)
    state = {}

    def begin(epoch, logs=None):
        state["start"] = time.perf_counter()

    def end(epoch, logs=None):
        row = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()},
               "seconds": round(time.perf_counter() - state["start"], 3)}
        earlier = []
        if path.exists() and path.stat().st_size:
            with path.open(newline="") as handle:
                earlier = [r for r in csv.DictReader(handle) if int(r["epoch"]) < row["epoch"]]
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(row), extrasaction="ignore")
            writer.writeheader()
            writer.writerows(earlier + [row])

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


def find_run(name, runs_dir):
    """Return the run folder `name` (a path, or a folder name in `runs_dir`).

    Raises FileNotFoundError with a sentence naming both places tried.
    """
    for candidate in (Path(name), Path(runs_dir) / name):
        if (candidate / "params.json").is_file():
            return candidate
    raise FileNotFoundError(f"Failed to find the run {name} (looked for params.json in "
                            f"{Path(name)} and {Path(runs_dir) / name}).")


def library_versions():
    """Return the versions of Python and the libraries a run depends on."""
    import platform

    import matplotlib
    import numpy
    import PIL
    import tensorflow

    return {"python": platform.python_version(), "tensorflow": tensorflow.__version__,
            "keras": keras.__version__, "numpy": numpy.__version__,
            "matplotlib": matplotlib.__version__, "pillow": PIL.__version__,
            "machine": platform.machine(), "system": platform.system()}


def unique_path(path):
    """Return `path` if it is free, else the first free `<stem>-N<suffix>` beside it."""
    path = Path(path)
    counter = 0
    candidate = path
    while candidate.exists():
        counter += 1
        candidate = path.with_name(f"{path.stem}-{counter}{path.suffix}")
    return candidate
