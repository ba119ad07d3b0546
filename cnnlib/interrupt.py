"""Ctrl-C and SIGTERM end any command within a few seconds, the same way.

Offers, in call order:
  install()                  (a script, first) SIGTERM raises Interrupted as Ctrl-C raises
                             KeyboardInterrupt; a watchdog ends a process that does not
  rearm()                    takes SIGTERM back after a library took it (TensorFlow's
                             MultiWorkerMirroredStrategy installs its own handler)
  resume_hint(text)          what the closing sentence says about going on (None: nothing)
  removed_if_interrupted(path, shown, on_error) context manager: `path`, a file or
                             folder this command made, is removed if the block is
                             interrupted (with `on_error`, if it raises at all)
  handled()                  the Ctrl-C just caught was the expected way to stop (a webcam)
  worker_init(parent)        initializer of pool workers: they leave signals to the parent
                             and die with it
  pending()                  -> the interruption received, for report(), or None: an
                             error raised after a signal (a library that made the Ctrl-C
                             its own error) is reported as the interruption
  exit_status(error)         -> 130 for Ctrl-C, 143 for SIGTERM (128 + the signal)
  report(error)              prints the closing sentence; returns exit_status(error)
  Interrupted                the exception SIGTERM raises: a KeyboardInterrupt with a signum

The rule, for every command: an interrupted command removes what it had begun to
write (an eval-<time>/ folder, a figure, a stand-in being generated), except a run
folder, whose finished epochs are kept (docs/runs.md) and which the closing sentence
says how to resume. It never becomes runs/latest.txt.

Python runs a signal handler only when the main thread runs Python code, and some
TensorFlow calls hold the interpreter for as long as they block (a worker waiting
for its peers), so no thread of the process can act then. install() therefore
starts a watchdog process, forked before TensorFlow loads. Python's C-level handler
tells it of each signal (signal.set_wakeup_fd), and the kernel restores the default
action once a signal is delivered (SA_RESETHAND). When the process has not ended
GRACE_SECONDS after the signal, the watchdog sends the same signal again, which now
ends it as the shell expects (status 130 or 143); a second Ctrl-C does the same at
once. The watchdog then removes the partial outputs it was told of, prints the
closing sentence and exits.
"""

import contextlib
import ctypes
import json
import os
import select
import shutil
import signal
import sys
import time
from pathlib import Path

GRACE_SECONDS = 3.0  # after a signal, how long a command has to end by itself
_PR_SET_PDEATHSIG = 1  # Linux prctl: a signal sent to this process when its parent dies
_SA_RESETHAND = 0x80000000  # Linux sigaction flag: the default action after one delivery
_SA_FLAGS_AT = 136  # offset of sa_flags in glibc's struct sigaction (x86_64, aarch64)

_partial = {}  # Path being written that an interruption removes -> the name to say
_removed = []  # the names of those removed, for the closing sentence
_hint = [None]
_watchdog = {}  # "control": the fd of the pipe to the watchdog, "pid"
_received = []  # the signals this process took since install() (or handled()), in order


class Interrupted(KeyboardInterrupt):
    """SIGTERM (or another signal) received: handled everywhere a Ctrl-C is."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise(signum, frame):
    _received.append(signum)
    raise Interrupted(signum)


def _raise_ctrl_c(signum, frame):
    _received.append(signum)
    raise KeyboardInterrupt


def install():
    """Make SIGTERM raise Interrupted and start the watchdog. Call from the main thread,
    before TensorFlow loads (the watchdog is a fork of the process as it is then).

    Also makes an interruption that escapes main (while modules load) one sentence
    and its exit status instead of a traceback.
    """
    if _watchdog:
        return
    signals_read, signals_write = os.pipe()
    control_read, control_write = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the watchdog
        os.close(signals_write)
        os.close(control_write)
        try:
            _watch(parent, signals_read, control_read)
        finally:
            os._exit(0)
    os.close(signals_read)
    os.close(control_read)
    _watchdog.update(control=control_write, pid=pid)
    os.set_blocking(signals_write, False)
    signal.set_wakeup_fd(signals_write, warn_on_full_buffer=False)
    # Also when started with `&` or nohup (SIGINT ignored); noted, then as Python's own.
    signal.signal(signal.SIGINT, _raise_ctrl_c)
    _reset_on_delivery(signal.SIGINT)
    rearm()
    os.register_at_fork(after_in_child=_forget)
    hook = sys.excepthook

    def excepthook(kind, error, trace):
        if not issubclass(kind, KeyboardInterrupt) and not _received:
            return hook(kind, error, trace)
        _exit(report(error if issubclass(kind, KeyboardInterrupt) else pending()))

    sys.excepthook = excepthook
    unraisable = sys.unraisablehook

    def unraisablehook(info):  # a signal that landed in a finalizer: noted, not printed
        if not (info.exc_type and issubclass(info.exc_type, KeyboardInterrupt)):
            unraisable(info)

    sys.unraisablehook = unraisablehook


def rearm():
    """After install(): SIGTERM raises Interrupted again, whoever took it since.

    TensorFlow's multi-worker strategy installs a C++ SIGTERM handler that only
    notes the signal; a SIGTERM that arrives before this call (while the workers
    connect) is TensorFlow's, and the process ends only by Ctrl-C or SIGKILL.
    """
    if _watchdog:
        signal.signal(signal.SIGTERM, _raise)
        _reset_on_delivery(signal.SIGTERM)


def _reset_on_delivery(signum):
    """Have the kernel restore `signum`'s default action once it is delivered, so that the
    next one ends the process even while Python cannot run its handler (Linux only)."""
    if sys.platform != "linux":
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        action = ctypes.create_string_buffer(512)  # larger than any struct sigaction
        if libc.sigaction(int(signum), None, action) == 0:
            flags = ctypes.c_uint32.from_buffer(action, _SA_FLAGS_AT)
            flags.value |= _SA_RESETHAND
            libc.sigaction(int(signum), action, None)


def _forget():
    """In a forked child: its signals and outputs are not the watchdog's business."""
    with contextlib.suppress(ValueError):  # forked from another thread: nothing to clear
        signal.set_wakeup_fd(-1)
    if _watchdog:
        with contextlib.suppress(OSError):
            os.close(_watchdog["control"])
        _watchdog.clear()
    _partial.clear()


def _tell(**message):
    """Send the watchdog one line of news (an output begun or done, the resume hint)."""
    if _watchdog and os.getpid() != _watchdog["pid"]:
        with contextlib.suppress(OSError):
            os.write(_watchdog["control"], (json.dumps(message) + "\n").encode())


def _watch(parent, signals_read, control_read):
    """The watchdog process: after a signal, GRACE_SECONDS for `parent` to end, then end it.

    Outputs still open when the parent is gone are removed. Ends when the parent does.
    """
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)  # Ctrl-C reaches the whole process group
    with contextlib.suppress(OSError):
        os.close(0)
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # readers of stdout see its end
    deadline, last, forced, pending = None, None, False, b""
    while True:
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select([signals_read, control_read], [], [], wait)
        if signals_read in ready:
            for signum in os.read(signals_read, 64):
                if signum not in (signal.SIGINT, signal.SIGTERM):
                    continue
                if last == signal.SIGINT == signum and deadline is not None:
                    deadline = time.monotonic()  # a second Ctrl-C: end it now
                elif deadline is None:
                    deadline = time.monotonic() + GRACE_SECONDS
                last = signum
        if control_read in ready:
            chunk = os.read(control_read, 65536)
            if not chunk:  # the parent has ended
                break
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                _apply(json.loads(line))
        if deadline is not None and time.monotonic() >= deadline:
            if _calm_until[0] >= deadline - GRACE_SECONDS:  # an expected stop (a webcam)
                deadline = None
                continue
            with contextlib.suppress(OSError):
                os.kill(parent, last if not forced else signal.SIGKILL)
            forced, deadline = True, time.monotonic() + GRACE_SECONDS
    if _partial:
        for path, shown in list(_partial.items()):
            _remove(path, shown)
    if forced:
        with contextlib.suppress(OSError):
            os.write(2, f"\n{_sentence(last)}\n".encode())


_calm_until = [0.0]  # (watchdog) when handled() last said a Ctrl-C was expected


def _apply(message):
    """(Watchdog) take in one line of the parent's news."""
    if "add" in message:
        _partial[Path(message["add"])] = message["shown"]
    elif "drop" in message:
        _partial.pop(Path(message["drop"]), None)
    elif "hint" in message:
        _hint[0] = message["hint"]
    elif "calm" in message:
        _calm_until[0] = time.monotonic()


def _exit(status):
    """os._exit, after flushing and a moment for quiet.py's stderr filter to pass lines on."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    time.sleep(0.2)
    os._exit(status)


def resume_hint(text):
    """Say `text` (how to go on) in the closing sentence of an interruption; None: nothing."""
    _hint[0] = text
    _tell(hint=text)


@contextlib.contextmanager
def removed_if_interrupted(path, shown=None, on_error=False):
    """Yield `path` (a file or folder this command made); remove it if interrupted.

    Also removed when the watchdog ends the process. Other errors leave it to the
    caller, or with `on_error` remove it too (an output that stopped half written). The closing sentence names it as `shown` (default `path`): the user's
    name for what was being made, not a temporary one. `path` None: nothing to do.
    """
    if path is None:
        yield None
        return
    path = Path(path).absolute()
    _partial[path] = str(shown or path)
    _tell(add=str(path), shown=_partial[path])
    try:
        yield path
        if _received:  # a signal raised where Python drops exceptions (a __del__)
            raise pending()
    except BaseException as error:  # also an error that a signal turned into another
        if isinstance(error, KeyboardInterrupt) or _received:
            _remove(path, _partial[path])
        elif on_error:
            _discard(path)
        raise
    finally:
        _partial.pop(path, None)
        _tell(drop=str(path))


def _discard(path):
    """Remove a file or folder of ours, whatever is in it."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def _remove(path, shown):
    """Remove a file or folder of ours; `shown` is recorded for the closing sentence."""
    _discard(path)
    if shown not in _removed:
        _removed.append(shown)


def handled():
    """The Ctrl-C just caught is the expected way to stop (a webcam): no forced end, and
    the next Ctrl-C is handled as the first was."""
    _tell(calm=True)
    _received.clear()
    if _watchdog:  # the kernel reset Ctrl-C to its default when it was delivered
        signal.signal(signal.SIGINT, _raise_ctrl_c)
        _reset_on_delivery(signal.SIGINT)


def worker_init(parent):
    """Initializer of a pool's worker processes (`parent`: the parent's pid).

    A worker ignores Ctrl-C (the terminal sends it to every process of the group:
    the parent alone decides), dies at SIGTERM at once, and dies when the parent
    dies, however it dies (Linux's parent-death signal).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)


def pending():
    """Return the first interruption this process received (KeyboardInterrupt for Ctrl-C,
    Interrupted for SIGTERM), or None. A library may turn the KeyboardInterrupt raised
    inside it into an error of its own; the scripts report that error as the interruption.
    """
    if not _received:
        return None
    return KeyboardInterrupt() if _received[0] == signal.SIGINT else Interrupted(_received[0])


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
    """Print the closing sentence of interruption `error` on stderr; return its exit status.

    In a script (after install()) the process then exits at once: what an
    interruption must clean has been cleaned on the way here, and TensorFlow's
    own teardown can take seconds.
    """
    status = exit_status(error)
    print(f"\n{_sentence(status - 128)}", file=sys.stderr, flush=True)
    if _watchdog:
        _exit(status)
    return status
