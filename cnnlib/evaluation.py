"""A model's predictions on a labelled set, and the files that record them.

Offers:
  score_set(model, images, labels, num_classes, batch_size)
                         -> {"accuracy", "loss", "probabilities" [N, classes]}
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


def score_set(model, images, labels, num_classes, batch_size=32):
    """Predict `images` (uint8 [N, H, W, C]) and score them against int `labels` [N].

    Returns {"accuracy": float, "loss": float, "probabilities": float32 [N, classes]}.
    """
    probabilities = model.predict(images, batch_size=batch_size, verbose=0)
    labels = np.asarray(labels, np.int64)
    one_hot = keras.utils.to_categorical(labels, num_classes)
    loss = keras.losses.CategoricalCrossentropy()(one_hot, probabilities)
    accuracy = float(np.mean(np.argmax(probabilities, axis=1) == labels)) if len(labels) else 0.0
    return {"accuracy": accuracy, "loss": float(loss), "probabilities": probabilities}


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
