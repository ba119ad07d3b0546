"""Figures, drawn with matplotlib's non-interactive backend and saved as PNG.

Every figure is written atomically (a temporary file, then a rename). Offers:
  plot_history(history, path, title)     -> the report's Figure 1/2: accuracy on the
                                            left, loss on the right, train and validation
  plot_overlay(histories, path)          -> validation curves of several variants
  plot_confusion(matrix, classes, path)  -> confusion matrix, counts and row percentages
  plot_predictions(images, results, classes, path) -> each image with its class bars
  plot_examples(images, labels, classes, path)     -> a grid of examples per class
  plot_mistakes(images, results, path)   -> the confidently wrong images, true and predicted
  plot_expressions(tracks, classes, path, smoothing) -> each video face's class
                                            probabilities over time
"""

import matplotlib

matplotlib.use("Agg")  # no screen needed; figures only go to files
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cnnlib import atomic  # noqa: E402


def _save(figure, path):
    """Save `figure` as a PNG at `path`, atomically, and free it."""
    with atomic.writing(path) as partial:
        figure.savefig(partial, dpi=100, format="png")
    plt.close(figure)


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
    _save(figure, path)
    return path


def plot_overlay(histories, path):
    """Save the validation accuracy and loss of several runs on one figure.

    `histories` is {label: history dict}. Returns `path`.
    """
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for label, history in histories.items():
        epochs = range(1, len(history["val_loss"]) + 1)
        left.plot(epochs, history["val_accuracy"], label=label)
        right.plot(epochs, history["val_loss"], label=label)
    for axis, name in ((left, "Validation accuracy"), (right, "Validation loss")):
        axis.set_xlabel("epoch")
        axis.set_title(name)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    _save(figure, path)
    return path


def plot_confusion(matrix, classes, path, title="Validation confusion matrix"):
    """Save a confusion matrix: colour = row percentage, text = count and percentage.

    Rows are true classes, columns predicted ones, so a model that predicts one
    class for everything shows as a single bright column. Returns `path`.
    """
    matrix = np.asarray(matrix)
    totals = matrix.sum(axis=1, keepdims=True)
    percent = np.divide(100.0 * matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    size = 1.0 + 0.8 * len(classes)
    figure, axis = plt.subplots(figsize=(size + 1.5, size))
    shown = axis.imshow(percent, cmap="Blues", vmin=0, vmax=100)
    figure.colorbar(shown, ax=axis, label="% of the true class")
    for i in range(len(classes)):
        for j in range(len(classes)):
            colour = "white" if percent[i, j] > 60 else "black"
            axis.text(j, i, f"{matrix[i, j]}\n{percent[i, j]:.0f}%", ha="center",
                      va="center", fontsize=8, color=colour)
    axis.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    axis.set_yticks(range(len(classes)), classes)
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class")
    axis.set_title(title)
    figure.tight_layout()
    _save(figure, path)
    return path


def plot_predictions(images, results, classes, path):
    """Save each image beside a bar chart of its class probabilities.

    `images` are uint8 [N, H, W, C] as the model saw them; `results` the
    per-image dicts of cnnlib.scoring.score_images (true, predicted, probabilities).
    Returns `path`.
    """
    count = len(results)
    columns = min(4, max(1, count))
    rows = (count + columns - 1) // columns
    figure, axes = plt.subplots(rows, 2 * columns, figsize=(4.2 * columns, 2.2 * rows),
                                gridspec_kw={"width_ratios": [1, 1.4] * columns},
                                squeeze=False)
    for index in range(rows * columns):
        image_axis = axes[index // columns, 2 * (index % columns)]
        bar_axis = axes[index // columns, 2 * (index % columns) + 1]
        if index >= count:
            image_axis.axis("off")
            bar_axis.axis("off")
            continue
        result = results[index]
        pixels = images[index]
        image_axis.imshow(pixels[..., 0] if pixels.shape[-1] == 1 else pixels,
                          cmap="gray", vmin=0, vmax=255)
        image_axis.set_xticks([])
        image_axis.set_yticks([])
        right = result["true"] is None or result["true"] == result["predicted"]
        image_axis.set_title(f"true: {result['true'] or '?'}\npredicted: {result['predicted']}",
                             fontsize=8, color="black" if right else "red")
        colours = ["tab:green" if name == result["true"] else "tab:blue" for name in classes]
        bar_axis.barh(range(len(classes)), result["probabilities"], color=colours)
        bar_axis.set_yticks(range(len(classes)), classes, fontsize=7)
        bar_axis.invert_yaxis()
        bar_axis.set_xlim(0, 1)
        bar_axis.tick_params(axis="x", labelsize=7)
    figure.tight_layout()
    _save(figure, path)
    return path


def plot_examples(images, labels, classes, path, per_class=6, augmented=None):
    """Save a grid: a row per class of `per_class` preprocessed images.

    `augmented` is an optional {class index: uint8 image} shown in an extra last
    column, so a person sees what mirroring and noise did. Returns `path`.
    """
    columns = per_class + (1 if augmented else 0)
    figure, axes = plt.subplots(len(classes), columns, squeeze=False,
                                figsize=(1.3 * columns + 1.2, 1.3 * len(classes)))
    for c, name in enumerate(classes):
        members = images[np.asarray(labels) == c][:per_class]
        cells = list(members) + [None] * (per_class - len(members))
        if augmented:
            cells.append(augmented.get(c))
        for j, pixels in enumerate(cells):
            axis = axes[c, j]
            axis.set_xticks([])
            axis.set_yticks([])
            if pixels is not None:
                axis.imshow(pixels[..., 0] if pixels.shape[-1] == 1 else pixels,
                            cmap="gray", vmin=0, vmax=255)
            else:
                axis.axis("off")
        axes[c, 0].set_ylabel(name, rotation=0, ha="right", va="center")
    if augmented:
        axes[0, -1].set_title("augmented", fontsize=9)
    figure.tight_layout()
    _save(figure, path)
    return path


def plot_mistakes(images, results, path, title="The most confident mistakes"):
    """Save a grid of wrongly predicted images, most confident first.

    `images` are uint8 [N, H, W, C] as the model saw them, `results` one dict
    each with path, true, predicted and probability (of the predicted class).
    Returns `path`.
    """
    count = len(results)
    columns = min(4, max(1, count))
    rows = max(1, (count + columns - 1) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.9 * rows),
                                squeeze=False)
    for index, axis in enumerate(axes.flat):
        axis.set_xticks([])
        axis.set_yticks([])
        if index >= count:
            axis.axis("off")
            continue
        pixels, result = images[index], results[index]
        axis.imshow(pixels[..., 0] if pixels.shape[-1] == 1 else pixels, cmap="gray",
                    vmin=0, vmax=255)
        name = str(result["path"]).replace("\\", "/").split("/")[-1]
        axis.set_title(f"true: {result['true']}\npredicted: {result['predicted']} "
                       f"({result['probability']:.2f})\n{name[:28]}", fontsize=8, color="red")
    figure.suptitle(title)
    figure.tight_layout()
    _save(figure, path)
    return path


def _moving_average(times, values, window):
    """Mean of `values` over the `window` seconds centred on each time (times sorted)."""
    if window <= 0 or len(values) < 2:
        return values
    values = np.asarray(values, dtype=np.float64)
    sums = np.concatenate([np.zeros((1,) + values.shape[1:]), np.cumsum(values, axis=0)])
    low = np.searchsorted(times, times - window / 2, side="left")
    high = np.searchsorted(times, times + window / 2, side="right")
    return (sums[high] - sums[low]) / (high - low)[:, None]


def plot_expressions(tracks, classes, path, smoothing=0.5, most=6):
    """Save each tracked face's class probabilities over time, one panel a face.

    `tracks` is {face id: (times [T] in seconds, probabilities [T, classes])}.
    Probabilities are averaged over a `smoothing`-second window centred on each
    frame (0 = raw). The `most` longest tracks are shown. Returns `path`.
    """
    shown = sorted(tracks, key=lambda t: -len(tracks[t][0]))[:most]
    shown = sorted(shown)
    rows = max(1, len(shown))
    figure, axes = plt.subplots(rows, 1, figsize=(9, 2.3 * rows + 0.6), squeeze=False,
                                sharex=True)
    colours = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for axis, face in zip(axes[:, 0], shown):
        times, probabilities = (np.asarray(a, dtype=np.float64) for a in tracks[face])
        smooth = _moving_average(times, probabilities, smoothing)
        for c, name in enumerate(classes):
            axis.plot(times, smooth[:, c], label=name, color=colours(c % colours.N))
        axis.set_ylim(0, 1)
        axis.set_ylabel("probability")
        axis.set_title(f"face {face}: {len(times)} frames", fontsize=9)
        axis.grid(alpha=0.3)
    if not shown:
        axes[0, 0].text(0.5, 0.5, "no face found in any frame", ha="center", va="center")
        axes[0, 0].set_axis_off()
    else:
        axes[0, 0].legend(fontsize=7, ncol=min(len(classes), 8), loc="upper center",
                          bbox_to_anchor=(0.5, 1.45))
    axes[-1, 0].set_xlabel("time (s)" + (f"; probabilities averaged over {smoothing:g} s"
                                         if smoothing > 0 else ""))
    figure.tight_layout()
    _save(figure, path)
    return path
