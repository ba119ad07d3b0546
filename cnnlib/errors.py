"""Errors that mean a user's mistake, each raised with one sentence saying what to do.

Offers:
  UserError    the base: the scripts print its message and exit 2, with no traceback
  ConfigError  a parameter name or value, or a configuration file
  DataError    the data on disk: a folder, a file, a label
  SizeError    an image or video frame with more pixels than --max_pixels (a DataError)
  ModelError   a layer table, or a saved model that cannot be used
  RunError     a run folder: cannot be written, resumed or trusted
  SuiteWarning the category of the suite's own warnings (a skipped file, a leak): the
               scripts show them as one line, "warning: ..." (cnnlib/quiet.py)
  os_error_sentence(error) -> one sentence for an OSError the scripts meet on disk
  shown(value)             -> the value as Python writes it, shortened to fit a sentence

Anything else that escapes is a bug in the suite and keeps its traceback.
"""

import errno

_SHOWN_CHARS = 80  # a value quoted in a message: a whole megabyte-long list says no more


class UserError(Exception):
    """Something the user gave cannot be used; the message names it and what to do."""


class ConfigError(UserError, ValueError):
    """A parameter names nothing, or has a value of the wrong type or range."""


class DataError(UserError, ValueError):
    """The data on disk cannot be used as asked."""


class SizeError(DataError):
    """An image or a video's frames have more pixels than --max_pixels allows."""


class ModelError(UserError, ValueError):
    """The layer table cannot be built, or a saved model cannot be found or used."""


class RunError(UserError):
    """A run folder cannot be written, resumed or trusted."""


# What to do about an OSError, by its errno: the cure the sentence ends with.
_CURES = {
    errno.ENAMETOOLONG: "a name in that path is longer than the file system allows (255 "
                        "bytes a name): give a shorter name",
    errno.EROFS: "that file system is read-only: give a folder you may write to",
    errno.EACCES: "you may not use that path: give a folder you may write to, or change "
                  "its permissions",
    errno.EPERM: "you may not use that path: give a folder you may write to, or change "
                 "its permissions",
    errno.ENOSPC: "the disk is full: free some space, or write somewhere else",
    errno.EDQUOT: "your disk quota is used up: free some space, or write somewhere else",
    errno.ENOENT: "it does not exist (or vanished): check the path",
    errno.ENOTDIR: "a part of that path is a file, not a folder: check the path",
    errno.EISDIR: "it is a folder where a file belongs: give a file's path, or move the "
                  "folder out of the way",
}


def os_error_sentence(error):
    """One sentence for an OSError met on disk: the user's path, what went wrong, and
    the cure (a name too long, a read-only folder, a full disk, a vanished path...)."""
    where = error.filename or "a file"
    cure = _CURES.get(error.errno, "check that it exists, that you may write there, and "
                                   "that the disk has room")
    return f"Cannot use {where} ({error.strerror or error}): {cure}."


def shown(value):
    """Return repr(value), its middle cut to " ... " past _SHOWN_CHARS characters, so a
    message quoting a hand-edited value (a list a megabyte long) stays one sentence."""
    try:
        text = repr(value)
    except RecursionError:  # lists nested a thousand deep, from a file edited by hand
        return "(a value nested too deeply to show)"
    if len(text) <= _SHOWN_CHARS:
        return text
    half = _SHOWN_CHARS // 2
    return f"{text[:half]} ... {text[-half:]}"


class SuiteWarning(UserWarning):
    """Something the user should know that does not stop the work: a file skipped, a leak."""
