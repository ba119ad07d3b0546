"""Files written whole or not at all: a reader, or a run killed at any instant, sees
the old file or the new one, never a part.

Offers:
  writing(path)            context manager: yields a temporary path beside `path`;
                           on success it is flushed to disk and renamed onto `path`
  write_text(path, text)   a text file, atomically
  write_json(path, data)   indented JSON, atomically
  copy_file(source, path)  a copy of `source` at `path`, atomically
  fitting_name(stem, ending) -> `stem + ending`, the stem shortened (with a short hash
                           of it) so the name fits NAME_MAX with room for a "-N" counter

The temporary name starts with "." and keeps the suffix (Keras and matplotlib pick
the format from it), so it is never mistaken for a finished file; where the target's
name is near the file system's 255 bytes, a short hash of it stands in, so a name
that fits never fails for our longer one. An error on the temporary file is raised
naming the target: the user's path, never ours.
"""

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path

NAME_MAX = 255  # bytes in one name, on the usual file systems (ext4, xfs, btrfs, APFS)


def fitting_name(stem, ending):
    """Return `stem + ending` as a file name that fits NAME_MAX bytes, with room left
    for a `-NNNN` counter: a name derived from a user's long (but legal) file name,
    such as `<stem>-faces.jpg`, would otherwise be refused by the file system."""
    room = NAME_MAX - 5 - len(os.fsencode(ending))
    if len(os.fsencode(stem)) <= room:
        return stem + ending
    digest = hashlib.sha1(os.fsencode(stem)).hexdigest()[:8]
    kept = os.fsencode(stem)[:room - len(digest) - 1]
    return kept.decode("utf-8", "ignore") + "~" + digest + ending  # never half a character


def _sync(path):
    """Flush `path`'s bytes to the disk, so the rename cannot land before the data."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


@contextlib.contextmanager
def writing(path):
    """Yield a temporary Path beside `path`; rename it onto `path` when the block ends.

    If the block raises, the temporary file is removed and `path` is untouched.
    """
    path = Path(path)
    partial = path.with_name(f".{path.stem}.partial-{os.getpid()}{path.suffix}")
    if len(os.fsencode(partial.name)) > NAME_MAX:  # the user's name fits: ours must too
        digest = hashlib.sha1(os.fsencode(path.name)).hexdigest()[:12]
        partial = path.with_name(f".{digest}.partial-{os.getpid()}{path.suffix[:32]}")
    try:
        yield partial
        _sync(partial)
        os.replace(partial, path)
    except OSError as error:
        if error.filename in (str(partial), partial) or error.filename is None:
            error.filename = str(path)  # the user's name for it, not our temporary one
        if error.filename2 in (str(partial), partial):
            error.filename2 = None
        raise
    finally:
        with contextlib.suppress(OSError):  # never hide the error above with our own
            partial.unlink()


def write_text(path, text):
    """Write `text` to `path` atomically. Returns `path`."""
    with writing(path) as partial:
        partial.write_text(text)
    return path


def write_json(path, data):
    """Write `data` as indented JSON at `path`, atomically. Returns `path`."""
    return write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def copy_file(source, path):
    """Copy the file `source` to `path` atomically. Returns `path`."""
    with writing(path) as partial:
        shutil.copyfile(source, partial)
    return path
