"""Image files on disk: listing them, finding byte-identical copies, and lists of paths.

Offers:
  list_images(sources)                -> image files of the given files, folders, .txt lists
  identical_files(paths_a, paths_b)   -> pairs of byte-identical files across two lists
  write_path_list(path, paths)        -> a .txt list of paths, one a line, that any legal
                                         file name survives (cnn_eval.py reads it back)
  read_path_list(path)                -> the paths of such a list, or of a hand-written one
  write_skipped(path, skipped)        -> skipped.csv: one row a file left out, and why
  read_skipped(path)                  -> [(path, reason)] of a skipped.csv

A file name may hold any character but "/" and NUL, a line break included, so the
lists the suite writes escape it: a list starts with PATH_LIST_HEADER, and in it
"\n" stands for a line break and "\\" for a backslash. A list without that first
line is read as written by hand: one path a line. Nothing here reads more of a file
than it must, or moves, renames, rewrites or deletes one.
"""

import csv
import hashlib
import io
from pathlib import Path

from cnnlib import atomic
from cnnlib.errors import DataError

# Files that are never images and are passed over without a word.
_NOT_IMAGES = {".txt", ".csv", ".json", ".md", ".db", ".ini", ".xml", ".py"}

# The first line of a list of paths the suite writes: what follows is escaped.
PATH_LIST_HEADER = "# paths, one a line; \\n is a line break and \\\\ a backslash"


def _is_candidate(path):
    """True for files that may be images: not hidden, not a known non-image type."""
    name = path.name
    return (path.is_file() and not name.startswith(".") and name != "Thumbs.db"
            and path.suffix.lower() not in _NOT_IMAGES)


def _digest(path):
    """SHA-256 of a file's bytes, read in chunks; None if it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def identical_files(paths_a, paths_b):
    """Return [(a, b)]: files of `paths_a` byte-identical to one of `paths_b`.

    Only files whose sizes match are read, so a clean data set costs a stat per file.
    """
    def sizes(paths):
        found = {}
        for path in paths:
            try:
                found.setdefault(Path(path).stat().st_size, []).append(path)
            except OSError:
                pass
        return found

    sizes_a, sizes_b = sizes(paths_a), sizes(paths_b)
    pairs = []
    for size in sorted(set(sizes_a) & set(sizes_b)):
        by_digest = {}
        for path in sizes_b[size]:
            by_digest.setdefault(_digest(path), path)
        for path in sizes_a[size]:
            twin = by_digest.get(_digest(path))
            if twin is not None:
                pairs.append((path, twin))
    return pairs


def list_images(sources, nested=True):
    """Expand files, folders (not recursive) and .txt lists of paths into image files.

    A .txt source holds one image file or folder a line (read_path_list: a run's
    unlabeled.txt, or a list by hand), relative to the list's own folder; a list
    inside a list is not followed.
    Returns a list of Paths in the order given, each folder sorted.
    Raises DataError for a path that does not exist or cannot be read, or a
    folder with no files.
    """
    paths = []
    for source in sources:
        source = Path(source)
        try:
            if source.is_dir():
                found = sorted(p for p in source.iterdir() if _is_candidate(p))
                if not found:
                    raise DataError(f"No images found in the folder {source}: give a folder "
                                    f"that holds image files, or the files themselves.")
                paths.extend(found)
            elif source.is_file() and source.suffix.lower() == ".txt" and nested:
                lines = read_path_list(source)
                if not lines:
                    raise DataError(f"The list {source} names no image: put one image path "
                                    f"a line in it.")
                paths.extend(list_images([source.parent / line for line in lines if line],
                                         nested=False))
            elif source.is_file():
                paths.append(source)
            else:
                raise DataError(f"Failed to find {source}: give an image file, a folder of "
                                f"images or a .txt list of image paths.")
        except UnicodeDecodeError:
            raise DataError(f"{source} is not a text list of image paths: give images, "
                            f"folders, or a UTF-8 .txt list.") from None
        except OSError as error:
            raise DataError(f"{source} cannot be read ({error.strerror or error}): check "
                            f"its permissions.") from None
    return paths


def _escape(text):
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


def _unescape(text):
    out, at = [], 0
    while at < len(text):
        if text[at] == "\\" and at + 1 < len(text):
            out.append({"n": "\n", "r": "\r"}.get(text[at + 1], text[at + 1]))
            at += 2
        else:
            out.append(text[at])
            at += 1
    return "".join(out)


def write_path_list(path, paths):
    """Write `paths` as a list of paths cnn_eval.py reads back exactly. Returns `path`."""
    return atomic.write_text(path, PATH_LIST_HEADER + "\n" + "".join(
        _escape(str(p)) + "\n" for p in paths))


def read_path_list(path):
    """Return the paths (str) of a .txt list: the suite's own (escaped) or one by hand.

    A hand-written list holds one path a line; blank lines are passed over.
    """
    lines = Path(path).read_text().split("\n")
    if lines and lines[0].rstrip("\r") == PATH_LIST_HEADER:
        return [_unescape(line) for line in lines[1:] if line]
    return [line.strip() for line in lines if line.strip()]


def write_skipped(path, skipped):
    """Write skipped.csv: a header, then one row (path, reason) a file. Returns `path`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "reason"])
    writer.writerows([str(p), reason] for p, reason in skipped)
    return atomic.write_text(path, buffer.getvalue())


def read_skipped(path):
    """Return [(path, reason)] of a skipped.csv written by write_skipped."""
    with open(path, newline="") as handle:
        return [(row["path"], row["reason"]) for row in csv.DictReader(handle)]
