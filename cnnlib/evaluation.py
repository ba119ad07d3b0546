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
