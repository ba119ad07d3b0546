"""Ctrl-C and SIGTERM end any command within a few seconds, the same way.

Offers, in call order:
  install()                  (a script, first) SIGTERM raises Interrupted as Ctrl-C raises
                             KeyboardInterrupt; a watchdog ends a process that does not
  resume_hint(text)          what the closing sentence says about going on (None: nothing)
  removed_if_interrupted(path, shown) context manager: `path`, a file or folder this
                             command made, is removed if the block is interrupted
  handled()                  the Ctrl-C just caught was the expected way to stop (a webcam)
  worker_init(parent)        initializer of pool workers: they leave signals to the parent
                             and die with it
  exit_status(error)         -> 130 for Ctrl-C, 143 for SIGTERM (128 + the signal)
  report(error)              prints the closing sentence; returns exit_status(error)
  Interrupted                the exception SIGTERM raises: a KeyboardInterrupt with a signum

The rule, for every command: an interrupted command removes what it had begun to
write (an eval-<time>/ folder, a figure, a stand-in being generated), except a run
folder, whose finished epochs are kept (docs/runs.md) and which the closing sentence
says how to resume. It never becomes runs/latest.txt.

Python runs a signal handler only between bytecodes of the main thread, so a main
thread blocked inside TensorFlow (a worker waiting for its peers) would never see
Ctrl-C. install() therefore also routes every signal to a watchdog thread through
signal.set_wakeup_fd: when the process has not ended GRACE_SECONDS after the signal,
or at a second Ctrl-C, the watchdog removes the registered partial outputs, stops
child processes, prints the same sentence and calls os._exit with the same status.
"""

import contextlib
import ctypes
import multiprocessing
import os
import select
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

GRACE_SECONDS = 3.0  # after a signal, how long a command has to end by itself
_PR_SET_PDEATHSIG = 1  # Linux prctl: a signal sent to this process when its parent dies

_partial = {}  # Path being written that an interruption removes -> the name to say
_removed = []  # the names of those removed, for the closing sentence
_hint = [None]
_calm = threading.Event()  # set by handled(): the watchdog stands down


class Interrupted(KeyboardInterrupt):
    """SIGTERM (or another signal) received: handled everywhere a Ctrl-C is."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise(signum, frame):
    raise Interrupted(signum)


def install():
    """Make SIGTERM raise Interrupted and start the watchdog. Call from the main thread.

    Also makes an interruption that escapes main (while modules load) one sentence
    and its exit status instead of a traceback.
    """
    signal.signal(signal.SIGTERM, _raise)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # `nohup`, `&` in scripts
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    threading.Thread(target=_watch, args=(read_end,), daemon=True,
                     name="interrupt-watchdog").start()
    os.register_at_fork(after_in_child=_forget)
    hook = sys.excepthook

    def excepthook(kind, error, trace):
        if not issubclass(kind, KeyboardInterrupt):
            return hook(kind, error, trace)
        status = report(error)
        _exit(status)

    sys.excepthook = excepthook


def _forget():
    """In a forked child: its signals are its own, not the parent's watchdog's."""
    try:
        signal.set_wakeup_fd(-1)
    except ValueError:  # forked from another thread: no wakeup fd to clear there
        pass
    _partial.clear()


def _watch(read_end):
    """The watchdog: after a signal, GRACE_SECONDS for the process to end, then force it."""
    deadline, last = None, signal.SIGINT
    while True:
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select([read_end], [], [], wait)
        if ready:
            for signum in os.read(read_end, 64):
                if signum not in (signal.SIGINT, signal.SIGTERM):
                    continue
                if deadline is not None and not _calm.is_set():
                    _force(signum)  # a second signal: end now
                _calm.clear()
                last, deadline = signum, time.monotonic() + GRACE_SECONDS
        elif deadline is not None:
            if _calm.is_set():  # the signal was an expected stop: no deadline
                _calm.clear()
                deadline = None
                continue
            _force(last)


def _force(signum):
    """Remove the partial outputs, stop the children, say so and exit, from any thread."""
    for path, shown in list(_partial.items()):
        _remove(path, shown)
    for child in multiprocessing.active_children():
        child.terminate()
    try:
        os.write(2, ("\n" + _sentence(signum) + "\n").encode())
    except OSError:
        pass
    _exit(128 + signum)


def _exit(status):
    """os._exit, after flushing and a moment for quiet.py's stderr filter to pass lines on."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    time.sleep(0.2)
    os._exit(status)


def resume_hint(text):
    """Say `text` (how to go on) in the closing sentence of an interruption; None: nothing."""
    _hint[0] = text


@contextlib.contextmanager
def removed_if_interrupted(path, shown=None):
    """Yield `path` (a file or folder this command made); remove it if interrupted.

    Also removed when the watchdog ends the process. Other errors leave it to the
    caller. The closing sentence names it as `shown` (default `path`): the user's
    name for what was being made, not a temporary one. `path` None: nothing to do.
    """
    if path is None:
        yield None
        return
    path = Path(path)
    _partial[path] = str(shown or path)
    try:
        yield path
    except KeyboardInterrupt:
        _remove(path, _partial[path])
        raise
    finally:
        _partial.pop(path, None)


def _remove(path, shown):
    """Remove a file or folder of ours; `shown` is recorded for the closing sentence."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()
    if shown not in _removed:
        _removed.append(shown)


def handled():
    """The Ctrl-C just caught is the expected way to stop (a webcam): no forced exit."""
    _calm.set()


def worker_init(parent):
    """Initializer of a pool's worker processes (`parent`: the parent's pid).

    A worker ignores Ctrl-C (the terminal sends it to every process of the group:
    the parent alone decides), dies at SIGTERM at once, and dies when the parent
    dies, however it dies (Linux's parent-death signal).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)


def exit_status(error):
    """130 for Ctrl-C, 143 for SIGTERM: 128 + the signal, as shells report it."""
    return 128 + getattr(error, "signum", signal.SIGINT)


def _sentence(signum):
    """The closing sentence of an interruption by `signum`."""
    text = f"Interrupted ({'Ctrl-C' if signum == signal.SIGINT else signal.Signals(signum).name})"
    if _removed:
        text += f"; removed the unfinished {', '.join(_removed)}"
    if _hint[0]:
        text += f"; {_hint[0]}"
    return text + "."


def report(error):
    """Print the closing sentence of interruption `error` on stderr; return its exit status."""
    status = exit_status(error)
    print(f"\n{_sentence(status - 128)}", file=sys.stderr, flush=True)
    return status
