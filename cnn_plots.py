"""Figures, drawn with matplotlib's non-interactive backend and saved as PNG.

Offers:
  plot_history(history, path, title) -> the report's Figure 1/2: accuracy on the
                                        left, loss on the right, train and validation
"""

import matplotlib

matplotlib.use("Agg")  # no screen needed; figures only go to files
import matplotlib.pyplot as plt  # noqa: E402


def plot_history(history, path, title=""):
    """Save accuracy (left) and loss (right) per epoch, training and validation.

    `history` is {"accuracy": [...], "val_accuracy": [...], "loss": [...],
    "val_loss": [...]} (Keras History.history or read_history). Returns `path`.
    """
    epochs = range(1, len(history["loss"]) + 1)
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for axis, metric, label in ((left, "accuracy", "Accuracy"), (right, "loss", "Loss")):
        axis.plot(epochs, history[metric], label="training")
        if f"val_{metric}" in history:
            axis.plot(epochs, history[f"val_{metric}"], label="validation")
        axis.set_xlabel("epoch")
        axis.set_ylabel(label)
        axis.set_title(label)
        axis.grid(alpha=0.3)
        axis.legend()
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
