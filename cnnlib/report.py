"""Numbers a person reads after training: confusion matrix, per-class scores, Table 3.

Offers:
  confusion_matrix(true, predicted, num_classes) -> int64 [classes, classes], rows = true
  per_class_scores(matrix)                       -> list of {precision, recall, f1, support}
  summary_scores(matrix)                         -> accuracy, balanced accuracy, macro-F1,
                                                    each with its 95% interval
  wilson_interval(successes, total)              -> (low, high), the 95% Wilson interval
  write_scores(path, classes, scores)            -> per-class CSV
  write_csv(path, rows)                          -> any table as a CSV file, atomically
  format_scores(classes, scores)                 -> printable table (str)
  format_summary(split, scores)                  -> one printable line of a split's scores
  table3_rows(results)                           -> rows of the report's Table 3
  write_table3(folder, results)                  -> table3.md and table3.csv
"""

import csv
import io
from pathlib import Path

import numpy as np

from cnnlib import atomic

SPLITS = ("train", "validation", "test")


def confusion_matrix(true, predicted, num_classes):
    """Return counts [true class, predicted class] as an int64 array."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(true, np.int64), np.asarray(predicted, np.int64)), 1)
    return matrix


def per_class_scores(matrix):
    """Precision, recall, F1 and support of each class from a confusion matrix.

    A class never predicted has precision 0 (not NaN), so a model that predicts one
    class for everything shows zeros for all the others.
    """
    scores = []
    for c in range(len(matrix)):
        hit = matrix[c, c]
        predicted, support = matrix[:, c].sum(), matrix[c, :].sum()
        precision = hit / predicted if predicted else 0.0
        recall = hit / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        scores.append({"precision": float(precision), "recall": float(recall),
                       "f1": float(f1), "support": int(support)})
    return scores


def wilson_interval(successes, total, z=1.96):
    """Return the 95% Wilson score interval (low, high) of a proportion.

    Unlike the normal approximation it stays inside [0, 1] and is honest for small
    sets: 7 right of 8 gives (0.53, 0.98), not 0.875 +- 0.23.
    """
    if total == 0:
        return (0.0, 1.0)
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z / (1 + z * z / total) * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    return (float(max(0.0, centre - half)), float(min(1.0, centre + half)))


def summary_scores(matrix):
    """Accuracy, balanced accuracy (mean per-class recall) and macro-F1 of a confusion matrix.

    Only classes present in the truth count towards the balanced accuracy and
    macro-F1. Each comes with a 95% interval: Wilson's for accuracy; for the other
    two the Wilson interval at their value over the same number of images, an
    approximation that is honest about how few images there are.
    Returns {"accuracy", "balanced_accuracy", "macro_f1", "images"} with
    {name}_interval = (low, high) beside each.
    """
    matrix = np.asarray(matrix)
    total = int(matrix.sum())
    scores = per_class_scores(matrix)
    present = [s for s in scores if s["support"] > 0]
    result = {"images": total,
              "accuracy": float(np.trace(matrix) / total) if total else 0.0,
              "balanced_accuracy": float(np.mean([s["recall"] for s in present])) if present else 0.0,
              "macro_f1": float(np.mean([s["f1"] for s in present])) if present else 0.0}
    for name in ("accuracy", "balanced_accuracy", "macro_f1"):
        result[f"{name}_interval"] = wilson_interval(result[name] * total, total)
    return result


def write_scores(path, classes, scores):
    """Write one CSV row per class: class, precision, recall, f1, support."""
    rows = [["class", "precision", "recall", "f1", "support"]]
    rows += [[name, f"{s['precision']:.4f}", f"{s['recall']:.4f}", f"{s['f1']:.4f}",
              s["support"]] for name, s in zip(classes, scores)]
    atomic.write_text(path, _csv_text(rows))


def write_csv(path, rows):
    """Write `rows` (lists of values) as a CSV file at `path`, atomically. Returns `path`."""
    return atomic.write_text(path, _csv_text(rows))


def _csv_text(rows):
    """Return `rows` as CSV text."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def format_scores(classes, scores):
    """Return the per-class scores as an aligned text table."""
    width = max(8, *(len(name) for name in classes))
    lines = [f"{'class':<{width}} {'precision':>9} {'recall':>7} {'f1':>7} {'support':>8}"]
    for name, s in zip(classes, scores):
        lines.append(f"{name:<{width}} {s['precision']:>9.3f} {s['recall']:>7.3f} "
                     f"{s['f1']:>7.3f} {s['support']:>8}")
    return "\n".join(lines)


# Fewer images than this make a point estimate say little: the printout says so.
FEW_IMAGES = 30


def format_summary(split, scores):
    """One line: accuracy with its 95% interval, balanced accuracy, macro-F1, loss."""
    low, high = scores["accuracy_interval"]
    line = (f"{split:<10} accuracy {scores['accuracy']:.3f} (95% {low:.2f}-{high:.2f})  "
            f"balanced {scores['balanced_accuracy']:.3f}  macro-F1 {scores['macro_f1']:.3f}  "
            f"loss {scores['loss']:.3f}")
    if scores["images"] < FEW_IMAGES:
        line += (f"  [only {scores['images']} images: the interval, about "
                 f"+-{(high - low) / 2:.2f}, says more than the point]")
    return line


def table3_rows(results):
    """Rows of Table 3 from {variant: {split: scores}} (scores as summary_scores + loss).

    Returns (header, rows): header ["", "<variant> <split>", ...] and one row each
    for ACC, its 95% interval, balanced accuracy, macro-F1 and LOSS, values rounded
    to 3 decimals as in the report.
    """
    columns = [(variant, split) for variant, metrics in results.items()
               for split in SPLITS if split in metrics]
    header = [""] + [f"{variant} {split}" for variant, split in columns]
    rows = []
    for label, key in (("ACC", "accuracy"), ("ACC 95% CI", "accuracy_interval"),
                       ("BAL ACC", "balanced_accuracy"), ("MACRO F1", "macro_f1"),
                       ("LOSS", "loss")):
        cells = []
        for variant, split in columns:
            value = results[variant][split].get(key)
            if value is None:
                cells.append("-")  # recorded before this measure existed
            elif isinstance(value, (list, tuple)):
                cells.append(f"{value[0]:.3f}-{value[1]:.3f}")
            else:
                cells.append(f"{value:.3f}")
        rows.append([label] + cells)
    return header, rows


def write_table3(folder, results):
    """Write Table 3 as table3.md (Markdown) and table3.csv in `folder`."""
    header, rows = table3_rows(results)
    folder = Path(folder)
    atomic.write_text(folder / "table3.csv", _csv_text([header, *rows]))
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    atomic.write_text(folder / "table3.md", "\n".join(lines) + "\n")
    return folder / "table3.md"
