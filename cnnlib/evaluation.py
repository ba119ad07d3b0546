"""A model's predictions on a labelled set, and the files that record them.

Offers:
  predict(model, images, batch_size, tta) -> class probabilities [N, classes]; with
                            `tta` the mean over each image and its mirror
  score_set(model, images, labels, num_classes, batch_size, tta)
                         -> {"accuracy", "loss", "probabilities" [N, classes]}
  cross_entropy(probabilities, labels, num_classes) -> Keras' loss, as a float
  record_confusion(folder, classes, labels, predicted, title)
                         -> (matrix, per-class scores); writes confusion.csv,
                            confusion.png and per_class.csv into `folder`
  record_test_set(folder, model, images, labels, paths, classes, ...)
                         -> a labelled test set's predictions and scores (accuracy,
                            balanced accuracy, macro-F1 with 95% intervals, per class,
                            confusion), written into `folder` with the worst mistakes
  format_summary(summary) -> the scores with their intervals, as printable lines

Both training (validation, Table 3) and cnn_eval.py use them, so a model is judged
the same way wherever it is judged. The loss is Keras' own categorical
cross-entropy, as in training.
"""

from pathlib import Path

import keras
import numpy as np

from cnnlib import atomic, plots, report


def predict(model, images, batch_size=32, tta=False):
    """Class probabilities of `images` (uint8 [N, H, W, C]): float32 [N, classes].

    Test-time augmentation (`tta`) averages the prediction of each image and of its
    left-right mirror, the one change that never alters a face's expression.
    """
    if len(images) == 0:
        return np.zeros((0, model.output_shape[-1]), np.float32)
    probabilities = model.predict(images, batch_size=batch_size, verbose=0)
    if tta:
        mirrored = model.predict(np.ascontiguousarray(images[:, :, ::-1]),
                                 batch_size=batch_size, verbose=0)
        probabilities = (probabilities + mirrored) / 2
    return probabilities


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


def record_confusion(folder, classes, labels, predicted, title="Validation confusion matrix"):
    """Write confusion.csv, confusion.png and per_class.csv of `predicted` vs `labels`.

    Returns (matrix int64 [classes, classes], per-class scores).
    """
    folder = Path(folder)
    matrix = report.confusion_matrix(labels, predicted, len(classes))
    scores = report.per_class_scores(matrix)
    report.write_scores(folder / "per_class.csv", classes, scores)
    atomic.write_text(folder / "confusion.csv", ",".join(classes) + "\n" + "".join(
        ",".join(str(n) for n in row) + "\n" for row in matrix))
    plots.plot_confusion(matrix, classes, folder / "confusion.png", title)
    return matrix, scores


MISTAKES_SHOWN = 16  # the figure of the worst mistakes shows at most this many images


def record_test_set(folder, model, images, labels, paths, classes, batch_size=32, source="",
                    skipped=(), tta=False):
    """Score a labelled test set and write everything about it into `folder`.

    `images` uint8 [N, H, W, C] and int `labels` [N] of the readable files
    `paths`. Writes predictions.csv (one row an image: path, true, predicted,
    probability, each class's probability), confusion.csv, confusion.png,
    per_class.csv, scores.json, mistakes.png (the confidently wrong images, when
    there are any) and skipped.txt (when files were skipped).
    Returns {"results": one dict an image (path, true, predicted, probability,
    correct), "summary": summary_scores plus loss, "matrix", "scores" (per class),
    "skipped": the number of files skipped}.
    """
    folder = Path(folder)
    labels = np.asarray(labels, np.int64)
    scored = score_set(model, images, labels, len(classes), batch_size, tta)
    probabilities = scored["probabilities"]
    predicted = np.argmax(probabilities, axis=1) if len(labels) else np.zeros(0, np.int64)
    results = [{"path": str(path), "true": classes[t], "predicted": classes[p],
                "probability": float(row[p]), "correct": bool(t == p)}
               for path, t, p, row in zip(paths, labels, predicted, probabilities)]
    report.write_csv(folder / "predictions.csv", [
        ["path", "true", "predicted", "probability", "correct", *(f"p_{c}" for c in classes)],
        *([r["path"], r["true"], r["predicted"], f"{r['probability']:.6f}", int(r["correct"]),
           *(f"{p:.6f}" for p in row)] for r, row in zip(results, probabilities))])
    matrix, scores = record_confusion(folder, classes, labels, predicted,
                                      "Test confusion matrix")
    summary = {**report.summary_scores(matrix), "loss": scored["loss"]}
    atomic.write_json(folder / "scores.json", {
        "source": source, **summary, "classes": classes,
        "per_class": dict(zip(classes, scores)), "confusion": matrix.tolist(),
        "skipped": len(skipped)})
    wrong = sorted((i for i, r in enumerate(results) if not r["correct"]),
                   key=lambda i: -results[i]["probability"])[:MISTAKES_SHOWN]
    if wrong:
        plots.plot_mistakes(images[wrong], [results[i] for i in wrong], folder / "mistakes.png")
    if skipped:
        atomic.write_text(folder / "skipped.txt",
                          "".join(f"{path}\t{reason}\n" for path, reason in skipped))
    return {"results": results, "summary": summary, "matrix": matrix, "scores": scores,
            "skipped": len(skipped)}


def format_summary(summary):
    """Return accuracy, balanced accuracy, macro-F1 (with 95% intervals) and loss as text."""
    lines = []
    for name, label in (("accuracy", "accuracy"), ("balanced_accuracy", "balanced accuracy"),
                        ("macro_f1", "macro-F1")):
        low, high = summary[f"{name}_interval"]
        lines.append(f"{label:<18} {summary[name]:.3f}  (95% interval {low:.3f} to {high:.3f})")
    lines.append(f"{'loss':<18} {summary['loss']:.3f}  over {summary['images']} image(s)")
    return "\n".join(lines)
