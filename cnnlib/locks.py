"""Locks between processes that the operating system releases when the holder dies.

Offers:
  waiting(path, what)        context manager: holds the lock file `path`, first waiting
                             (one line printed: for which process) while another holds it
  hold(path, what)           takes the lock file `path` for the rest of the process, or
                             raises RunError naming the process that holds it
  release(path)              gives back a lock that hold() took
  holder(path)               -> {"pid", "command", "started"} of the process that holds
                                (or last held) `path`, or None

A lock is `fcntl.flock` on a small file: no stale lock survives a crash, a kill -9
or a power cut, since the lock belongs to the open file and dies with the process.
The holder writes its PID, command and start time into the file, so the others can
say who holds it. Lock files are hidden (their names start with "."), live beside
what they guard inside folders the suite writes, and are not removed while in use
(removing one while another process waits on it would let a third take a second
lock); the one exception is a run folder's own lock in a folder the failed command
made and is about to remove (runs.remove_empty_made), which nobody else knows yet.
Within one process a lock is re-entrant: taking a lock it already holds succeeds.
"""

import contextlib
import errno
import fcntl
import json
import os
import stat
import sys
import time
from pathlib import Path

from cnnlib.errors import RunError

_MAX_HOLDER_BYTES = 65536  # a holder's line is far shorter
_HELD = {}  # realpath of a lock file -> [open file descriptor, times taken]


def _key(path):
    return os.path.realpath(path)


def holder(path):
    """Return {"pid", "command", "started"} written in the lock file `path`, or None."""
    try:  # a lock file says who holds it in a line; one changed by hand is not read whole
        with open(path, "rb") as handle:
            info = json.loads(handle.read(_MAX_HOLDER_BYTES))
    except (OSError, ValueError, RecursionError):
        return None
    return info if isinstance(info, dict) and isinstance(info.get("pid"), int) else None


def _describe(path):
    info = holder(path)
    if info is None:
        return "another process"
    parts = info.get("command", [])  # written by a process of ours, unless edited by hand
    command = " ".join(str(part) for part in (parts if isinstance(parts, list) else [parts]))
    command = command if len(command) <= 100 else command[:97] + "..."
    started = str(info.get("started", "?"))[:40]
    return (f"PID {info['pid']} ({command}, started {started})"
            if command else f"PID {info['pid']} (started {started})")


def _open(path):
    """The lock file's descriptor. Never through a link: the holder writes into the file,
    and a link put in its place would have it overwrite whatever the link points to."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as error:
        if error.errno not in (errno.ELOOP, errno.EISDIR):
            raise
        what = "a link" if error.errno == errno.ELOOP else "a folder"
        raise RunError(f"The lock file {path} is {what}, not a file the suite made: delete "
                       f"it (a link's target is left alone) and try again.") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO or a device put in its place
        os.close(fd)
        raise RunError(f"The lock file {path} is not a regular file: delete it and try "
                       f"again.")
    return fd


def _write_holder(fd):
    """Write who holds the lock into its file (in place: the locked file is the lock)."""
    command = [Path(sys.executable).name, *sys.argv] if sys.argv and sys.argv[0] else \
        [Path(sys.executable).name]
    data = json.dumps({"pid": os.getpid(), "command": command,
                       "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data + b"\n", 0)


def _take(path, blocking, what):
    """Take the lock at `path`; False when not blocking and another process holds it."""
    key = _key(path)
    if key in _HELD:
        _HELD[key][1] += 1
        return True
    fd = _open(path)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not blocking:
                os.close(fd)
                return False
            print(f"Waiting for {_describe(path)}, which is {what}.", flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        _write_holder(fd)
    except BaseException:
        os.close(fd)
        raise
    _HELD[key] = [fd, 1]
    return True


def release(path):
    """Give back one taking of the lock file `path` by this process (no-op if not held)."""
    key = _key(path)
    if key not in _HELD:
        return
    _HELD[key][1] -= 1
    if _HELD[key][1] <= 0:
        fd = _HELD.pop(key)[0]
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@contextlib.contextmanager
def waiting(path, what):
    """Hold the lock file `path` for the block, first waiting for any other holder.

    `what` says what the holder does ("generating the stand-in in data/synthetic"),
    for the one line printed while waiting.
    """
    _take(path, True, what)
    try:
        yield Path(path)
    finally:
        release(path)


def hold(path, what):
    """Take the lock file `path` until release(path) or the process ends.

    Raises RunError naming the process that holds it (PID, command, start time);
    `what` names what it guards ("the run folder runs/NAME").
    """
    if not _take(path, False, what):
        raise RunError(f"{what} is in use by {_describe(path)}: wait for it to end (or "
                       f"stop it) and try again.")
    return Path(path)
