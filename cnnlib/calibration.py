"""Does "0.9" mean right 9 times in 10? Calibration error, temperature scaling, "uncertain".

Offers, in the order a run and an eval use them:
  Reliability                       a record: per-bin confidence, accuracy and count, ECE
  reliability(probabilities, labels, bins)   -> Reliability (the diagram's data)
  expected_calibration_error(probabilities, labels, bins) -> float in [0, 1]
  plot_reliability(result, path, title, after) -> a reliability diagram PNG, atomically
  fit_temperature(scores, labels, from_logits) -> T > 0 minimising the NLL
  apply_temperature(probabilities, temperature) -> float64 [N, classes], rescaled
  Calibration                        a record: T and the error before and after
  calibrate(probabilities, labels, bins)     -> Calibration fitted on a labelled set
  store_calibration(model_path, calibration) -> the .keras file, its info updated in place
  read_temperature(model_path)               -> T stored in a .keras file, or None
  Calibrated(model, temperature)             a model whose predict and predict_on_batch
                                             (and Calibrated.probabilities) apply T
  uncertain(probabilities, min_confidence)   -> bool [N]: rows whose top probability < P
  label_or_uncertain(probabilities, classes, min_confidence) -> class names or "uncertain"

The expected calibration error (ECE) is the top-label one of Guo et al. (2017):
confidences (the largest probability of each row) fall into equal-width bins, and
ECE is the images-weighted mean of |accuracy - mean confidence| over the bins.
Temperature scaling divides the logits by one number T fitted on the validation
split; it changes no prediction (argmax is unchanged), only how sure each is. From
probabilities, log p are the logits up to a per-row constant, which softmax ignores.
"""

import json
import math
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cnnlib import atomic, stored_info

BINS = 15                    # Guo et al.'s choice; more bins make a small set's ECE noisy
TEMPERATURE_RANGE = (0.05, 20.0)  # T outside this means a broken model, not calibration
UNCERTAIN = "uncertain"      # the class shown for a face below --min_confidence
# The info file inside a saved .keras file; must equal cnn_model.INFO_FILE (a test checks),
# repeated here because the package never imports the scripts.
INFO_FILE = "cnn_info.json"
INFO_KEY = "calibration"     # where the fitted temperature lives inside that info


@dataclass(frozen=True)
class Reliability:
    """A reliability diagram's data: equal-width confidence bins over [0, 1]."""
    edges: np.ndarray       # float64 [bins + 1]
    confidence: np.ndarray  # float64 [bins], mean top probability (NaN: empty bin)
    accuracy: np.ndarray    # float64 [bins], share right (NaN: empty bin)
    counts: np.ndarray      # int64 [bins]
    ece: float


@dataclass(frozen=True)
class Calibration:
    """A temperature fitted on a labelled set, and what it did to the error there."""
    temperature: float
    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float
    images: int
    bins: int = BINS
    method: str = "temperature scaling (NLL, bounded search on log T)"

    def as_dict(self):
        return asdict(self)


def _top(probabilities, labels):
    probabilities = np.asarray(probabilities, np.float64)
    labels = np.asarray(labels, np.int64)
    if probabilities.ndim != 2 or len(probabilities) != len(labels):
        raise ValueError("probabilities must be [N, classes] and labels [N]")
    return probabilities.max(axis=1), probabilities.argmax(axis=1) == labels


def reliability(probabilities, labels, bins=BINS):
    """Return the Reliability of `probabilities` [N, classes] for int `labels` [N].

    A confidence c falls in bin ceil(c * bins) - 1 (bins are (lo, hi], the first
    includes 0), so 1.0 lands in the last bin.
    """
    confidence, correct = _top(probabilities, labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(which, confidence, bins) / counts
        accuracy = np.bincount(which, correct.astype(np.float64), bins) / counts
    gaps = np.where(counts > 0, np.abs(np.nan_to_num(accuracy - mean_confidence)), 0.0)
    ece = float((gaps * counts).sum() / max(len(confidence), 1))
    return Reliability(edges, mean_confidence, accuracy, counts, ece)


def expected_calibration_error(probabilities, labels, bins=BINS):
    """Return the top-label ECE of `probabilities` [N, classes] for int `labels` [N]."""
    return reliability(probabilities, labels, bins).ece


def plot_reliability(result, path, title="Reliability diagram", after=None):
    """Save the reliability diagram of `result` (and of `after`, a second Reliability
    such as the one after temperature scaling) as a PNG at `path`, atomically.

    Bars: accuracy per confidence bin; the diagonal is perfect calibration; below,
    how many images each bin holds. Returns `path`.
    """
    import matplotlib

    matplotlib.use("Agg")  # no screen needed; figures only go to files
    import matplotlib.pyplot as plt

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(5.5, 6.5), sharex=True,
                                         gridspec_kw={"height_ratios": [3, 1]})
    centres = (result.edges[:-1] + result.edges[1:]) / 2
    width = result.edges[1] - result.edges[0]
    shown = [("before" if after is not None else "model", result, "tab:blue")]
    if after is not None:
        shown.append(("after temperature", after, "tab:orange"))
    for k, (label, item, colour) in enumerate(shown):
        offset = (k - (len(shown) - 1) / 2) * width / len(shown)
        top.bar(centres + offset, np.nan_to_num(item.accuracy), width / len(shown),
                color=colour, alpha=0.7, label=f"{label}: ECE {item.ece:.3f}")
        bottom.bar(centres + offset, item.counts, width / len(shown), color=colour, alpha=0.7)
    top.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfectly calibrated")
    top.set_ylabel("accuracy")
    top.set_ylim(0, 1)
    top.set_title(title)
    top.legend(loc="upper left", fontsize=8)
    bottom.set_xlabel("confidence (top probability)")
    bottom.set_ylabel("images")
    bottom.set_xlim(0, 1)
    figure.tight_layout()
    with atomic.writing(path) as partial:
        figure.savefig(partial, dpi=100, format="png")
    plt.close(figure)
    return Path(path)


def _log_probabilities(scores, from_logits):
    scores = np.asarray(scores, np.float64)
    if from_logits:
        return scores
    return np.log(np.clip(scores, 1e-12, 1.0))  # a zero probability must not be -inf


def _nll(logits, labels, temperature):
    """Mean negative log-likelihood of int `labels` under softmax(logits / T)."""
    scaled = logits / temperature
    top = scaled.max(axis=1, keepdims=True)
    log_norm = top[:, 0] + np.log(np.exp(scaled - top).sum(axis=1))
    return float(np.mean(log_norm - scaled[np.arange(len(labels)), labels]))


def fit_temperature(scores, labels, from_logits=False):
    """Return the temperature T that minimises the NLL of int `labels` [N].

    `scores` are probabilities [N, classes] (default; their logs are the logits)
    or, with `from_logits`, logits. A bounded scalar search on log T within
    TEMPERATURE_RANGE: one parameter, a smooth convex-in-practice curve, so it
    needs no gradient and cannot wander to T <= 0. T > 1 softens an over-confident
    model, T < 1 sharpens an under-confident one. Empty input gives 1.0.
    """
    from scipy.optimize import minimize_scalar

    labels = np.asarray(labels, np.int64)
    if len(labels) == 0:
        return 1.0
    logits = _log_probabilities(scores, from_logits)
    low, high = (math.log(t) for t in TEMPERATURE_RANGE)
    found = minimize_scalar(lambda log_t: _nll(logits, labels, math.exp(log_t)),
                            bounds=(low, high), method="bounded", options={"xatol": 1e-4})
    return float(math.exp(found.x))


def apply_temperature(probabilities, temperature, from_logits=False):
    """Return softmax(log p / T) (or softmax(logits / T)): float64 [N, classes].

    T = 1 returns the probabilities unchanged (renormalised); the argmax never changes.
    """
    scaled = _log_probabilities(probabilities, from_logits) / float(temperature)
    scaled = np.exp(scaled - scaled.max(axis=1, keepdims=True))
    return scaled / scaled.sum(axis=1, keepdims=True)


def calibrate(probabilities, labels, bins=BINS):
    """Fit T on (`probabilities` [N, classes], int `labels` [N]) and measure it there.

    Returns Calibration with T and the ECE and NLL before and after. Fitted and
    measured on the same set: report the error on another set to judge it fairly.
    """
    labels = np.asarray(labels, np.int64)
    temperature = fit_temperature(probabilities, labels)
    after = apply_temperature(probabilities, temperature)
    logits = _log_probabilities(probabilities, False)
    return Calibration(temperature, expected_calibration_error(probabilities, labels, bins),
                       expected_calibration_error(after, labels, bins),
                       _nll(logits, labels, 1.0), _nll(logits, labels, temperature),
                       len(labels), bins)


def _read_info(archive):
    if INFO_FILE not in archive.namelist():
        return {}
    info = json.loads(archive.read(INFO_FILE))
    return info if isinstance(info, dict) else {}


def store_calibration(model_path, calibration):
    """Store `calibration` (Calibration or {"temperature": T, ...}) in the .keras file.

    It goes into the file's info (cnn_model.save_model's cnn_info.json, read back
    by cnn_model.model_info) under "calibration"; every other entry of the archive
    is copied unchanged, and the file is replaced atomically. Returns the Path.
    Raises ValueError for a file that is not a zip archive (not a .keras file).
    """
    record = calibration.as_dict() if isinstance(calibration, Calibration) else dict(calibration)
    if not (isinstance(record.get("temperature"), (int, float)) and record["temperature"] > 0):
        raise ValueError("a calibration needs a positive temperature")
    model_path = Path(model_path)
    try:
        with zipfile.ZipFile(model_path) as source, atomic.writing(model_path) as partial:
            info = {**_read_info(source), INFO_KEY: record}
            with zipfile.ZipFile(partial, "w") as target:
                for item in source.infolist():
                    if item.filename != INFO_FILE:  # a zip cannot replace an entry in place
                        target.writestr(item, source.read(item.filename))
                target.writestr(INFO_FILE, json.dumps(info))
    except zipfile.BadZipFile:
        raise ValueError(f"{model_path} is not a .keras file (not a zip archive).") from None
    return model_path


def read_temperature(model_path):
    """Return the temperature stored in the .keras file `model_path`, or None if none is.

    ModelError (cnnlib.stored_info) for one that is not a finite number in (0, 100]."""
    record = (stored_info.read_info(model_path) or {}).get(INFO_KEY)
    return float(record["temperature"]) if record else None


class Calibrated:
    """A Keras model whose predictions are rescaled by a temperature, at one place.

    predict(...) and predict_on_batch(...) return apply_temperature of the model's
    own (as float32, like Keras); every other attribute is the model's. `temperature`
    None or 1 leaves the probabilities as they are.
    """

    def __init__(self, model, temperature):
        self.model, self.temperature = model, temperature

    def __getattr__(self, name):
        return getattr(self.__dict__["model"], name)

    def probabilities(self, raw):
        """`raw` probabilities [N, classes] rescaled by T, float32."""
        raw = np.asarray(raw)
        if self.temperature in (None, 1) or len(raw) == 0:
            return raw
        return apply_temperature(raw, self.temperature).astype(np.float32)

    def predict(self, *args, **kwargs):
        return self.probabilities(self.model.predict(*args, **kwargs))

    def predict_on_batch(self, *args, **kwargs):
        return self.probabilities(self.model.predict_on_batch(*args, **kwargs))


def uncertain(probabilities, min_confidence):
    """Return bool [N]: the rows of `probabilities` [N, classes] whose top is below P.

    P = 0 (the default of --min_confidence) marks nothing.
    """
    probabilities = np.asarray(probabilities, np.float64)
    if len(probabilities) == 0:
        return np.zeros(0, bool)
    return probabilities.max(axis=1) < float(min_confidence)


def label_or_uncertain(probabilities, classes, min_confidence):
    """Return one str a row: its class name, or UNCERTAIN when its top probability < P."""
    probabilities = np.asarray(probabilities, np.float64)
    below = uncertain(probabilities, min_confidence)
    return [UNCERTAIN if low else classes[k]
            for k, low in zip(probabilities.argmax(axis=1) if len(probabilities) else [], below)]
