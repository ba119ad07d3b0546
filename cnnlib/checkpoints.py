"""The end-of-epoch writes of a training run, safe against a kill at any instant.

Offers:
  EpochCheckpoint(folder, epochs, save, rows, best_val_loss)
                                 -> Keras callback writing, at each epoch's end:
                                    checkpoint-<k>.keras, history.csv, best.keras,
                                    model.keras, then state.json, in that order
  resume_point(folder)           -> (epochs done, checkpoint Path or None, history rows,
                                    best validation loss) to continue a run from
  check_files(folder, state)     raises RunError unless the files a state promises are whole
  finish(folder, epochs_done, best_val_loss)
                                 -> state.json says training finished; checkpoints go
  DivergedError                  raised when the loss is no longer a finite number

state.json is the commit point. It is written last, after every other file of the
epoch is whole on disk, and names the epoch whose checkpoint holds the weights and
optimizer state. A run killed before it is written resumes from the epoch before:
at most the epoch in progress is lost, and no file is ever seen half written
(each is written under a temporary name and renamed, cnnlib.atomic).
"""

import math
import time
import zipfile
from pathlib import Path

import keras

from cnnlib import atomic, runs
from cnnlib.errors import RunError


class DivergedError(RunError):
    """The training loss became NaN or infinite: the run cannot go on."""


def _checkpoint(folder, epoch):
    return Path(folder) / f"checkpoint-{epoch}.keras"


def _remove_checkpoints(folder, keep=None):
    """Remove the run's own checkpoint files, except checkpoint-<keep>.keras."""
    for path in Path(folder).glob("checkpoint-*.keras"):
        if path != (_checkpoint(folder, keep) if keep is not None else None):
            path.unlink(missing_ok=True)


class EpochCheckpoint(keras.callbacks.Callback):
    """Write a finished epoch's files in an order that a kill can never confuse.

    `save(model, path)` writes a model file atomically; `rows` are the history
    rows of the epochs already done (a resumed run's), and `best_val_loss` the
    lowest validation loss among them (None for a new run).
    """

    def __init__(self, folder, epochs, save, rows=(), best_val_loss=None):
        super().__init__()
        self.folder, self.epochs, self.save = Path(folder), epochs, save
        self.rows = list(rows)
        self.best_val_loss = best_val_loss
        self.started = None

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        values = {key: float(value) for key, value in (logs or {}).items()}
        bad = [key for key in ("loss", "val_loss") if not math.isfinite(values.get(key, 0.0))]
        if bad:
            # Nothing of this epoch is written: the run keeps its last good epoch.
            raise DivergedError(
                f"Training diverged in epoch {done}: {bad[0]} became {values[bad[0]]}. "
                f"Lower --learning_rate (it is the usual cause) and start a new run.")
        row = {"epoch": done, **values,
               "seconds": round(time.perf_counter() - self.started, 3)}
        self.rows = [r for r in self.rows if r["epoch"] < done] + [row]
        checkpoint = _checkpoint(self.folder, done)
        self.save(self.model, checkpoint)
        runs.write_history(self.folder / "history.csv", self.rows)
        val_loss = values.get("val_loss")
        if val_loss is not None and (self.best_val_loss is None or val_loss < self.best_val_loss):
            self.best_val_loss = val_loss
            atomic.copy_file(checkpoint, self.folder / "best.keras")
        atomic.copy_file(checkpoint, self.folder / "model.keras")
        runs.write_state(self.folder, epochs_done=done, epochs=self.epochs, finished=False,
                         best_val_loss=self.best_val_loss)
        _remove_checkpoints(self.folder, keep=done)


def resume_point(folder):
    """Return (epochs_done, checkpoint, rows, best_val_loss) to continue training from.

    A folder whose training never finished an epoch gives (0, None, [], None).
    Raises RunError when the state names a checkpoint or history rows that are
    not there (the run folder was changed by hand).
    """
    folder = Path(folder)
    for partial in folder.glob(".*.partial-*"):  # a write cut short by a kill: never used
        partial.unlink(missing_ok=True)
    state = runs.read_state(folder)
    if state is None or state["epochs_done"] == 0:
        return 0, None, [], None
    rows = check_files(folder, state)
    return state["epochs_done"], _checkpoint(folder, state["epochs_done"]), rows, \
        state.get("best_val_loss")


def check_files(folder, state):
    """Raise RunError unless the files that `state` promises are in `folder`, whole.

    An unfinished run needs its checkpoint; any run, history rows 1..epochs_done
    and a best.keras once an epoch has been validated; a finished one, model.keras.
    Returns the history rows of the epochs done.
    """
    folder, done = Path(folder), state["epochs_done"]
    needed = ["best.keras"] if state.get("best_val_loss") is not None else []
    needed.append("model.keras" if state.get("finished") else _checkpoint(folder, done).name)
    for name in needed:
        if not zipfile.is_zipfile(folder / name):  # missing, emptied or cut short
            raise RunError(f"{folder} cannot be trusted: its state says {done} epoch(s) are "
                           f"done but {name} is missing or damaged. Start a new run.")
    rows = [r for r in runs.read_history_rows(folder / "history.csv") if r["epoch"] <= done]
    if [r["epoch"] for r in rows] != list(range(1, done + 1)):
        raise RunError(f"{folder} cannot be trusted: history.csv does not hold epochs 1 to "
                       f"{done}, as its state says. Start a new run.")
    return rows


def finish(folder, epochs_done, epochs, best_val_loss):
    """Mark training finished in state.json, then remove the checkpoints it no longer needs."""
    runs.write_state(folder, epochs_done=epochs_done, epochs=epochs, finished=True,
                     best_val_loss=best_val_loss)
    _remove_checkpoints(folder)
