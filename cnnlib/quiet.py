"""A quiet start: only the suite's own lines and Keras' progress bar reach the screen.

Offers:
  start()   filter TensorFlow's known harmless C++ notices out of this process's stderr,
            and show the suite's own warnings as one line each ("warning: ...")

The log level itself is set when the package is imported (cnnlib/__init__.py),
before TensorFlow loads. Some notices ignore it: absl prints "WARNING: All log
messages before absl::InitializeLog()", oneDNN's notice and tf.data's
"NodeDef mentions attribute use_unbounded_threadpool" (an E-line that is not an
error). start() drops exactly those lines at the file-descriptor level, where the
C++ runtime writes, and passes every other byte through. CNN_TF_LOGS=1 in the
environment turns the filter off and TensorFlow's log level down to 0: everything.
"""

import atexit
import os
import re
import sys
import threading
import warnings

from cnnlib.errors import SuiteWarning

# The notices known to be harmless; anything else from TensorFlow still shows.
HARMLESS = re.compile(
    rb"^(WARNING: All log messages before absl::InitializeLog\(\)"
    rb"|[IWE]\d{4} [\d:.]+\s+\d+ \w+\.cc:\d+\]"
    rb" (oneDNN custom operations are on|This TensorFlow binary is optimized"
    rb"|To enable the following instructions"
    rb"|NodeDef mentions attribute use_unbounded_threadpool))")

_started = False
_python_format = warnings.formatwarning


def _one_line(message, category, filename, lineno, line=None):
    """The suite's warnings (SuiteWarning) are sentences for the user: no source file,
    line or code. Every other warning keeps Python's own format."""
    if issubclass(category, SuiteWarning):
        return f"warning: {message}\n"
    return _python_format(message, category, filename, lineno, line)


def _forward(read_end, target):
    """Copy lines from `read_end` to the fd `target`, leaving out the harmless ones."""
    with os.fdopen(read_end, "rb", buffering=0) as source:
        pending = b""
        while True:
            chunk = source.read(65536)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            kept = b"".join(line + b"\n" for line in lines if not HARMLESS.match(line))
            if kept:
                os.write(target, kept)
            if pending and not HARMLESS.match(pending[:80]) and len(pending) > 4096:
                os.write(target, pending)  # a long line with no end yet: pass it on
                pending = b""
        if pending and not HARMLESS.match(pending):
            os.write(target, pending)


def start():
    """Route fd 2 through a filter thread; a no-op with CNN_TF_LOGS=1.

    Call it first thing in a script, before TensorFlow is imported. Idempotent.
    """
    global _started
    warnings.formatwarning = _one_line
    if _started or os.environ.get("CNN_TF_LOGS") == "1":
        return
    _started = True
    original = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    thread = threading.Thread(target=_forward, args=(read_end, original), daemon=True)
    thread.start()

    def stop():
        # Put the real stderr back, which closes the pipe; the thread drains it and ends.
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(original, 2)
        thread.join(timeout=2)

    atexit.register(stop)
