"""Two models on the same images: is one better? Prediction files in, a verdict out.

Usage:  python -m cnnlib.compare A B [--resamples=1000] [--seed=0] [--level=0.95]

A and B are each a prediction CSV or a run folder (its predictions.csv, else its
validation_predictions.csv, else the newest eval-*/predictions.csv in it). Rows are
matched by file path; the difference is B minus A.

Offers:
  Predictions                        a record: paths, true and predicted labels, classes,
                                     probabilities (or None), the file read
  find_predictions(path)             -> Path of the prediction CSV that `path` names
  read_predictions(path)             -> Predictions (cnn_eval.py's predictions.csv, or any
                                        CSV with a file, a true and a predicted label or
                                        p_<class> probability columns)
  match(a, b)                        -> Matched: the rows both files have, as class indices
  compare_files(a, b, resamples, seed, level)
                                     -> FileComparison: the match and one
                                        intervals.Comparison a metric
  format_comparison(result)          -> printable lines
  main(argv)                         the command line; a user's mistake is one sentence
                                     on stderr and exit status 2

cnn_eval.py's predictions.csv has the columns path, true, predicted, probability,
correct, p_<class>...; the names accepted for each column are in COLUMNS.
"""

import csv
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlib import intervals
from cnnlib.errors import DataError, UserError

# Accepted names of each column, first match wins (cnn_eval.py's name first).
COLUMNS = {"path": ("path", "file", "image", "filename"),
           "true": ("true", "label", "true_label", "emotion"),
           "predicted": ("predicted", "prediction", "predicted_label")}
PROBABILITY_PREFIX = "p_"  # cnn_eval.py: one column a class, p_<class>
RUN_FILES = ("predictions.csv", "validation_predictions.csv")


@dataclass
class Predictions:
    """One prediction file, row by row."""
    source: Path
    paths: list            # str, as written in the file
    true: list             # str class names; "" when the file gives none
    predicted: list        # str class names
    classes: list          # class names in the file's p_<class> order, else sorted
    probabilities: object  # float64 [N, classes] or None


@dataclass
class Matched:
    """The rows two prediction files share, as class indices into `classes`."""
    paths: list
    classes: list
    true: np.ndarray         # int64 [N]
    predicted_a: np.ndarray  # int64 [N]
    predicted_b: np.ndarray  # int64 [N]
    only_a: int              # rows of A with no row of B (left out)
    only_b: int


@dataclass
class FileComparison:
    a: Path
    b: Path
    matched: Matched
    comparisons: list  # intervals.Comparison, one a metric


def find_predictions(path):
    """Return the prediction CSV named by `path`: the file, or the one in a run folder.

    In a folder: predictions.csv, else validation_predictions.csv, else the newest
    eval-*/predictions.csv (their names sort by time). Raises DataError if none.
    """
    path = Path(path)
    if path.is_file():
        return path
    if not path.exists():
        raise DataError(f"Failed to find {path}: give a prediction CSV or a run folder.")
    for name in RUN_FILES:
        if (path / name).is_file():
            return path / name
    evals = sorted(path.glob("eval-*/predictions.csv"), key=lambda p: p.parent.name)
    if evals:
        return evals[-1]
    raise DataError(f"{path} holds no predictions.csv (nor eval-*/predictions.csv): "
                    f"score a labelled set with `python cnn_eval.py SET --model=...` first.")


def _column(header, kind, source):
    for name in COLUMNS[kind]:
        if name in header:
            return name
    if kind == "predicted":
        return None
    raise DataError(f"{source} has no {kind} column (looked for "
                    f"{', '.join(COLUMNS[kind])}; found {', '.join(header) or 'none'}).")


def read_predictions(path):
    """Read a prediction CSV into Predictions.

    The predicted class is the `predicted` column, else the largest p_<class>.
    Raises DataError for a missing or unreadable file, a missing column, or no rows.
    """
    path = find_predictions(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"Cannot read {path} as a CSV file ({error}).") from None
    path_col, true_col = _column(header, "path", path), _column(header, "true", path)
    predicted_col = _column(header, "predicted", path)
    prob_cols = [h for h in header if h.startswith(PROBABILITY_PREFIX)]
    if predicted_col is None and not prob_cols:
        raise DataError(f"{path} has neither a predicted column nor p_<class> columns.")
    if not rows:
        raise DataError(f"{path} has no rows.")
    probabilities = None
    if prob_cols:
        try:
            probabilities = np.array([[float(r[c]) for c in prob_cols] for r in rows])
        except (TypeError, ValueError):
            raise DataError(f"{path} has a p_<class> value that is not a number.") from None
    classes = [c[len(PROBABILITY_PREFIX):] for c in prob_cols]
    if predicted_col:
        predicted = [r[predicted_col].strip() for r in rows]
    else:
        predicted = [classes[i] for i in np.argmax(probabilities, axis=1)]
    true = [(r[true_col] or "").strip() for r in rows]
    if not classes:
        classes = sorted((set(true) | set(predicted)) - {""})
    return Predictions(path, [r[path_col] for r in rows], true, predicted, classes, probabilities)


def _key(path):
    return os.path.normpath(path)


def match(a, b):
    """Return Matched: the rows of Predictions `a` and `b` with the same file path.

    Raises DataError when no path is shared, when a shared file has a different
    true label in the two files, or when a file is listed twice in one of them.
    """
    for p in (a, b):
        keys = [_key(x) for x in p.paths]
        if len(set(keys)) != len(keys):
            twice = next(k for k in keys if keys.count(k) > 1)
            raise DataError(f"{p.source} lists {twice} more than once; give one row a file.")
    rows_b = {_key(path): i for i, path in enumerate(b.paths)}
    pairs = [(i, rows_b[_key(path)]) for i, path in enumerate(a.paths) if _key(path) in rows_b]
    if not pairs:
        raise DataError(f"{a.source} and {b.source} share no file path: compare predictions "
                        f"made on the same images.")
    classes = list(a.classes)
    classes += sorted({x for i, j in pairs for x in (a.true[i], a.predicted[i], b.predicted[j])}
                      - set(classes) - {""})
    index = {name: k for k, name in enumerate(classes)}
    for i, j in pairs:
        if a.true[i] != b.true[j]:
            raise DataError(f"{a.paths[i]} is {a.true[i]!r} in {a.source} but {b.true[j]!r} "
                            f"in {b.source}: both files must use the same labels.")
        if not a.true[i]:
            raise DataError(f"{a.paths[i]} has no true label in {a.source}: only labelled "
                            f"images can be compared.")
    return Matched([a.paths[i] for i, _ in pairs], classes,
                   np.array([index[a.true[i]] for i, _ in pairs], np.int64),
                   np.array([index[a.predicted[i]] for i, _ in pairs], np.int64),
                   np.array([index[b.predicted[j]] for _, j in pairs], np.int64),
                   len(a.paths) - len(pairs), len(b.paths) - len(pairs))


def compare_files(a, b, resamples=intervals.RESAMPLES, seed=0, level=intervals.LEVEL):
    """Compare the predictions in `a` and `b` (files or run folders) on their shared images.

    Returns FileComparison, its comparisons B minus A for accuracy (McNemar mid-p),
    balanced accuracy and macro-F1 (paired bootstrap), each with its interval.
    """
    first, second = read_predictions(a), read_predictions(b)
    matched = match(first, second)
    comparisons = intervals.compare(matched.true, matched.predicted_a, matched.predicted_b,
                                    len(matched.classes), resamples=resamples, seed=seed,
                                    level=level)
    return FileComparison(first.source, second.source, matched, comparisons)


def format_comparison(result):
    """Return the comparison as printable lines: the files, the scores, the verdicts."""
    m = result.matched
    lines = [f"A: {result.a}", f"B: {result.b}",
             f"{len(m.paths)} images in both, {len(m.classes)} classes"
             + (f" ({m.only_a} only in A and {m.only_b} only in B, left out)"
                if m.only_a or m.only_b else "")]
    lines.append(f"{'metric':<18} {'A':>6} {'B':>6} {'B - A':>7}  interval            p")
    for c in result.comparisons:
        lines.append(f"{intervals.LABELS.get(c.metric, c.metric):<18} {c.a:>6.3f} {c.b:>6.3f} "
                     f"{c.difference:>+7.3f}  {c.interval.low:+.3f} to {c.interval.high:+.3f}"
                     f"  {c.p_value:.3g} ({c.test})")
    lines.append(f"intervals: {result.comparisons[0].interval.level:.0%}, "
                 f"{result.comparisons[0].interval.method}")
    lines += [c.verdict for c in result.comparisons]
    return "\n".join(lines)


USAGE = "python -m cnnlib.compare A B [--resamples=1000] [--seed=0] [--level=0.95]"


def _parse(argv):
    """Return (a, b, options); UserError with one sentence for anything else."""
    options = {"resamples": intervals.RESAMPLES, "seed": 0, "level": intervals.LEVEL}
    given = []
    for arg in argv:
        if arg.startswith("--"):
            name, _, value = arg[2:].partition("=")
            if name not in options:
                raise UserError(f"Unknown option --{name}; usage: {USAGE}")
            try:
                options[name] = type(options[name])(value)
            except ValueError:
                raise UserError(f"--{name}={value} is not a {type(options[name]).__name__}.") \
                    from None
        else:
            given.append(arg)
    if len(given) != 2:
        raise UserError(f"Give exactly two prediction files or run folders; usage: {USAGE}")
    if options["resamples"] < 100 or not 0.5 <= options["level"] < 1:
        raise UserError("Use --resamples=100 or more and a --level between 0.5 and 1.")
    return given[0], given[1], options


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        a, b, options = _parse(argv)
        print(format_comparison(compare_files(a, b, **options)))
    except UserError as error:
        print(error, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
