"""How well a model does: predictions, scores, confusion and intervals. Writes no file.

Offers, in the order a run calls them:
  predict(model, images, batch_size, tta) -> class probabilities [N, classes]; with
                            `tta` the mean over each image and its mirror
  score_split(model, images, labels, num_classes, batch_size)
                         -> (Scores, probabilities [N, classes]) of one split
  Scores                 one split's accuracy, loss, balanced accuracy, macro-F1, their
                         95% intervals and how each was made (a dataclass);
                         Scores.from_dict reads one back
  score_set(model, images, labels, num_classes, batch_size, tta)
                         -> {"accuracy", "loss", "probabilities" [N, classes]}
  cross_entropy(probabilities, labels, num_classes) -> Keras' loss, as a float
  confusion_matrix(true, predicted, num_classes) -> int64 [classes, classes], rows = true
  per_class_scores(matrix) -> list of {precision, recall, f1, support}
  summary_scores(matrix, true, predicted)
                           -> accuracy (95% Wilson interval), balanced accuracy,
                              macro-F1 and per-class recall (95% stratified bootstrap
                              intervals), with each interval's method (a dict)
  wilson_interval(successes, total) -> (low, high), the 95% Wilson interval
  format_scores(classes, scores)    -> the per-class scores as a printable table
  format_split(split, scores)       -> one printable line of a split's scores
  format_summary(summary)           -> the scores with their intervals, as printable lines

Training (validation, Table 3) and cnn_eval.py both use them, so a model is judged
the same way wherever it is judged. The loss is Keras' own categorical
cross-entropy, as in training. The files that record scores are cnnlib/records.py's.
"""

from dataclasses import asdict, dataclass, fields

import keras
import numpy as np

from cnnlib import ensemble, intervals

SPLITS = ("train", "validation", "test")  # Table 3's columns, in order
# Fewer images than this make a point estimate say little: the printout says so.
FEW_IMAGES = 30


@dataclass
class Scores:
    """One split's scores (Table 3's column): the interval fields are (low, high), 95%;
    `interval_methods` {name: method} says how each was made, `recall_intervals` one
    (low, high) a class (None for a class absent from the split)."""
    loss: float
    images: int
    accuracy: float
    balanced_accuracy: float | None = None
    macro_f1: float | None = None
    accuracy_interval: tuple[float, float] | None = None
    balanced_accuracy_interval: tuple[float, float] | None = None
    macro_f1_interval: tuple[float, float] | None = None
    interval_methods: dict | None = None
    recall_intervals: list | None = None

    @classmethod
    def from_dict(cls, values):
        """The Scores of a metrics.json entry; measures it predates are None."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def to_dict(self):
        return asdict(self)


def predict(model, images, batch_size=32, tta=False):
    """Class probabilities of `images` (uint8 [N, H, W, C]): float32 [N, classes].

    Test-time augmentation (`tta`) averages the prediction of each image and of its
    left-right mirror, the one change that never alters a face's expression. A
    model that does so inside (cnnlib.ensemble) is not asked twice: the answer
    would be the same.
    """
    if len(images) == 0:
        return np.zeros((0, model.output_shape[-1]), np.float32)
    probabilities = model.predict(images, batch_size=batch_size, verbose=0)
    if tta and not ensemble.mirrors(model):
        mirrored = model.predict(np.ascontiguousarray(images[:, :, ::-1]),
                                 batch_size=batch_size, verbose=0)
        probabilities = (probabilities + mirrored) / 2
    return probabilities


def score_split(model, images, labels, num_classes, batch_size=32):
    """Score one split: accuracy, loss, balanced accuracy and macro-F1 with 95% intervals.

    `images` uint8 [N, H, W, C], int `labels` [N]. Returns (Scores, float32
    probabilities [N, classes]).
    """
    scored = score_set(model, images, labels, num_classes, batch_size)
    predicted = np.argmax(scored["probabilities"], axis=1)
    matrix = confusion_matrix(labels, predicted, num_classes)
    return (Scores(loss=scored["loss"], **summary_scores(matrix, labels, predicted)),
            scored["probabilities"])


def score_set(model, images, labels, num_classes, batch_size=32, tta=False):
    """Predict `images` (uint8 [N, H, W, C]) and score them against int `labels` [N].

    Returns {"accuracy": float, "loss": float, "probabilities": float32 [N, classes]}.
    """
    probabilities = predict(model, images, batch_size, tta)
    labels = np.asarray(labels, np.int64)
    accuracy = float(np.mean(np.argmax(probabilities, axis=1) == labels)) if len(labels) else 0.0
    return {"accuracy": accuracy, "loss": cross_entropy(probabilities, labels, num_classes),
            "probabilities": probabilities}


def cross_entropy(probabilities, labels, num_classes):
    """Keras' categorical cross-entropy of `probabilities` [N, classes] for int `labels`."""
    one_hot = keras.utils.to_categorical(np.asarray(labels, np.int64), num_classes)
    return float(keras.losses.CategoricalCrossentropy()(one_hot, probabilities))


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


def _pairs(matrix):
    """(true, predicted) int64 [N] with the counts of `matrix`, in row-major order."""
    flat = np.asarray(matrix, np.int64).ravel()
    cells = np.repeat(np.arange(len(flat)), flat)
    return cells // len(matrix), cells % len(matrix)


def _bounds(interval):
    return None if np.isnan(interval.low) else (interval.low, interval.high)


def summary_scores(matrix, true=None, predicted=None):
    """Accuracy, balanced accuracy (mean per-class recall) and macro-F1 of a confusion matrix.

    Only classes present in the truth count towards the balanced accuracy and
    macro-F1. Each comes with a 95% interval: Wilson's for accuracy (a plain
    proportion); a stratified, seeded bootstrap (intervals.bootstrap_intervals,
    1,000 resamples) for balanced accuracy, macro-F1 and each class's recall, from
    int `true` and `predicted` [N] (the matrix's own pairs when not given: the
    bootstrap depends only on them). Returns {"accuracy", "balanced_accuracy",
    "macro_f1", "images"} with {name}_interval = (low, high) beside each,
    "recall_intervals" (one (low, high) or None a class) and "interval_methods"
    {name: "95% Wilson" or "95% stratified bootstrap, ..."}.
    """
    matrix = np.asarray(matrix)
    total = int(matrix.sum())
    scores = per_class_scores(matrix)
    present = [s for s in scores if s["support"] > 0]
    result = {"images": total,
              "accuracy": float(np.trace(matrix) / total) if total else 0.0,
              "balanced_accuracy": float(np.mean([s["recall"] for s in present])) if present else 0.0,
              "macro_f1": float(np.mean([s["f1"] for s in present])) if present else 0.0}
    accuracy = intervals.wilson(int(np.trace(matrix)), total)
    result["accuracy_interval"] = (accuracy.low, accuracy.high)
    if true is None or predicted is None:
        true, predicted = _pairs(matrix)
    found = intervals.bootstrap_intervals(true, predicted, len(matrix))
    for name in ("balanced_accuracy", "macro_f1"):
        result[f"{name}_interval"] = _bounds(getattr(found, name)) or (0.0, 1.0)
    result["recall_intervals"] = [_bounds(i) for i in found.recall]
    method = f"{found.macro_f1.level:.0%} {found.macro_f1.method}"
    result["interval_methods"] = {"accuracy": f"{accuracy.level:.0%} {accuracy.method}",
                                  "balanced_accuracy": method, "macro_f1": method,
                                  "recall": method}
    return result


def _method(scores, name, default="95%"):
    """How the interval of `name` was made ("95% Wilson", ...); `default` for old records."""
    return (scores.get("interval_methods") or {}).get(name, default)


def format_scores(classes, scores):
    """Return the per-class scores as an aligned text table."""
    width = max(8, *(len(name) for name in classes))
    lines = [f"{'class':<{width}} {'precision':>9} {'recall':>7} {'f1':>7} {'support':>8}"]
    for name, s in zip(classes, scores):
        lines.append(f"{name:<{width}} {s['precision']:>9.3f} {s['recall']:>7.3f} "
                     f"{s['f1']:>7.3f} {s['support']:>8}")
    return "\n".join(lines)


def format_split(split, scores):
    """One line: accuracy and balanced accuracy with their named 95% intervals, macro-F1, loss."""
    if isinstance(scores, Scores):
        scores = scores.to_dict()
    low, high = scores["accuracy_interval"]
    balanced = scores.get("balanced_accuracy_interval")
    balanced = (f" ({_method(scores, 'balanced_accuracy')} {balanced[0]:.2f}-{balanced[1]:.2f})"
                if balanced and scores.get("interval_methods") else "")
    line = (f"{split:<10} accuracy {scores['accuracy']:.3f} ({_method(scores, 'accuracy')} "
            f"{low:.2f}-{high:.2f})  balanced {scores['balanced_accuracy']:.3f}{balanced}  "
            f"macro-F1 {scores['macro_f1']:.3f}  loss {scores['loss']:.3f}")
    if scores["images"] < FEW_IMAGES:
        line += (f"  [only {scores['images']} images: the interval, about "
                 f"+-{(high - low) / 2:.2f}, says more than the point]")
    return line


def format_summary(summary):
    """Return accuracy, balanced accuracy, macro-F1 (with named 95% intervals) and loss."""
    lines = []
    for name, label in (("accuracy", "accuracy"), ("balanced_accuracy", "balanced accuracy"),
                        ("macro_f1", "macro-F1")):
        low, high = summary[f"{name}_interval"]
        lines.append(f"{label:<18} {summary[name]:.3f}  ({_method(summary, name)} interval "
                     f"{low:.3f} to {high:.3f})")
    lines.append(f"{'loss':<18} {summary['loss']:.3f}  over {summary['images']} image(s)")
    if summary.get("ece") is not None:
        lines.append(f"{'calibration error':<18} {summary['ece']:.3f}  (expected calibration "
                     f"error, 15 bins; reliability.png)")
    return "\n".join(lines)
