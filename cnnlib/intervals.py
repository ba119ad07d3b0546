"""Intervals that are right for each score, and paired comparisons of two models.

Offers, in the order a report uses them:
  Interval                          a record: low, high, method, level
  wilson(successes, total, level)   -> Interval of a plain proportion (accuracy)
  stratified_resamples(true, resamples, seed)
                                    -> int64 [resamples, N] row indices, each row a
                                       bootstrap sample drawn within every true class
  resampled_scores(true, predicted, num_classes, indices)
                                    -> {"accuracy", "balanced_accuracy", "macro_f1":
                                       float [B], "recall": float [B, classes]}
  bootstrap_intervals(true, predicted, num_classes, resamples, seed, level)
                                    -> BootstrapIntervals: balanced accuracy, macro-F1
                                       and per-class recall, each an Interval
  mcnemar(correct_a, correct_b)     -> McNemar: discordant counts, exact and mid-p p-values
  compare(true, predicted_a, predicted_b, num_classes, metrics, resamples, seed, level)
                                    -> [Comparison]: B minus A for each metric, its paired
                                       bootstrap interval, a p-value and a one-line verdict

Why not Wilson everywhere: Wilson's interval is for a proportion of independent
successes, which accuracy is and balanced accuracy and macro-F1 are not (they
weight classes, and F1 is a ratio of counts). Those get a percentile bootstrap
that resamples within each true class, so every resample keeps the test set's
class counts, as a test set of that design would. Everything is vectorised: a
resample is one row of an index matrix and all confusion matrices come from one
np.bincount, so 1,000 resamples of a few thousand predictions take tens of ms.
Pure NumPy and the standard library (no SciPy, no TensorFlow: the command starts fast).
"""

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist

import numpy as np

RESAMPLES = 1000  # bootstrap resamples: the interval's ends move by ~0.002 between seeds
LEVEL = 0.95      # the coverage every interval is asked for
METRICS = ("accuracy", "balanced_accuracy", "macro_f1")
LABELS = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy",
          "macro_f1": "macro-F1"}


@dataclass(frozen=True)
class Interval:
    """A confidence interval that says how it was made (printed and stored with it)."""
    low: float
    high: float
    method: str          # e.g. "Wilson" or "stratified bootstrap, 1000 resamples, seed 0"
    level: float = LEVEL

    def as_dict(self):
        """JSON-able {"low", "high", "method", "level"}."""
        return asdict(self)

    def __str__(self):
        return f"{self.level:.0%} interval {self.low:.3f} to {self.high:.3f} ({self.method})"


@dataclass(frozen=True)
class BootstrapIntervals:
    """Bootstrap intervals of the class-weighted scores of one set of predictions."""
    balanced_accuracy: Interval
    macro_f1: Interval
    recall: list  # one Interval a class, in class order


@dataclass(frozen=True)
class McNemar:
    """McNemar's test on the images where exactly one of two models is right."""
    only_a: int     # images A gets right and B wrong
    only_b: int     # images B gets right and A wrong
    p_exact: float  # two-sided exact binomial test on only_a vs only_b
    p_mid: float    # mid-p: less conservative, close to nominal size (Fagerland et al. 2013)


@dataclass(frozen=True)
class Comparison:
    """Model B against model A on the same images, for one metric."""
    metric: str
    a: float
    b: float
    difference: float    # b - a: positive when B scores higher
    interval: Interval   # of the difference, paired bootstrap
    p_value: float       # McNemar mid-p for accuracy, paired bootstrap otherwise
    test: str
    images: int
    verdict: str         # one line a person reads

    def as_dict(self):
        return {**asdict(self), "interval": self.interval.as_dict()}


def _z(level):
    return NormalDist().inv_cdf(0.5 + level / 2)


def _binomial_half(k, n):
    """(P(X <= k), P(X = k)) for X ~ Binomial(n, 1/2), summed in log space (n may be large)."""
    i = np.arange(k + 1)
    log_pmf = (math.lgamma(n + 1) - np.array([math.lgamma(j + 1) + math.lgamma(n - j + 1)
                                               for j in i]) - n * math.log(2))
    pmf = np.exp(log_pmf)
    return float(min(1.0, pmf.sum())), float(pmf[-1])


def wilson(successes, total, level=LEVEL):
    """Return the Wilson score Interval of `successes` out of `total`.

    Valid for a plain proportion such as accuracy; it stays inside [0, 1] and is
    honest for small sets (7 of 8 gives 0.53 to 0.98). `total` 0 gives [0, 1].
    """
    if total == 0:
        return Interval(0.0, 1.0, "Wilson", level)
    z = _z(level)
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z / (1 + z * z / total) * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    return Interval(float(max(0.0, centre - half)), float(min(1.0, centre + half)),
                    "Wilson", level)


def stratified_resamples(true, resamples=RESAMPLES, seed=0):
    """Return int64 [resamples, N] bootstrap row indices, drawn within each true class.

    Every row holds, for each class, as many draws (with replacement) from that
    class's rows as the class has, so class counts are those of the set.
    """
    true = np.asarray(true, np.int64)
    rng = np.random.default_rng(seed)
    columns = []
    for c in np.unique(true):
        members = np.flatnonzero(true == c)
        columns.append(members[rng.integers(0, len(members), (resamples, len(members)))])
    if not columns:
        return np.zeros((resamples, 0), np.int64)
    return np.concatenate(columns, axis=1)


def _confusions(true, predicted, num_classes, indices):
    """Confusion matrices [B, classes, classes] (rows true) of each resample, one bincount."""
    resamples = len(indices)
    cells = (true[indices] * num_classes + predicted[indices]
             + (np.arange(resamples) * num_classes * num_classes)[:, None])
    return np.bincount(cells.ravel(), minlength=resamples * num_classes * num_classes
                       ).reshape(resamples, num_classes, num_classes)


def resampled_scores(true, predicted, num_classes, indices=None):
    """Scores of the predictions over each row of `indices` (int [B, N]; None: all rows once).

    Only classes present in the truth count towards balanced accuracy and
    macro-F1 (as report.summary_scores). Returns {"accuracy", "balanced_accuracy",
    "macro_f1": float [B], "recall": float [B, classes] (NaN for an absent class)}.
    """
    true = np.asarray(true, np.int64)
    predicted = np.asarray(predicted, np.int64)
    if indices is None:
        indices = np.arange(len(true))[None, :]
    matrix = _confusions(true, predicted, num_classes, indices).astype(np.float64)
    hits = np.diagonal(matrix, axis1=1, axis2=2)
    support, called = matrix.sum(axis=2), matrix.sum(axis=1)
    present = support > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(present, hits / support, np.nan)
        f1 = np.where(hits > 0, 2 * hits / (support + called), 0.0)  # = 2PR/(P+R)
    count = np.maximum(present.sum(axis=1), 1)
    total = np.maximum(support.sum(axis=1), 1)
    return {"accuracy": hits.sum(axis=1) / total,
            "balanced_accuracy": np.where(present, np.nan_to_num(recall), 0).sum(axis=1) / count,
            "macro_f1": np.where(present, f1, 0).sum(axis=1) / count,
            "recall": recall}


def _method(resamples, seed):
    return f"stratified bootstrap, {resamples} resamples, seed {seed}"


def _percentile(values, level):
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_intervals(true, predicted, num_classes, resamples=RESAMPLES, seed=0,
                        level=LEVEL):
    """Percentile intervals of balanced accuracy, macro-F1 and each class's recall.

    `true`, `predicted`: int class indices [N]. Resamples are drawn within each
    true class (stratified_resamples), seeded, so the same call gives the same
    interval. A class absent from `true` gets a recall interval of NaN to NaN.
    Returns BootstrapIntervals.
    """
    indices = stratified_resamples(true, resamples, seed)
    scores = resampled_scores(true, predicted, num_classes, indices)
    method = _method(resamples, seed)

    def interval(values):
        if np.all(np.isnan(values)):
            return Interval(float("nan"), float("nan"), method, level)
        return Interval(*_percentile(values, level), method, level)

    return BootstrapIntervals(interval(scores["balanced_accuracy"]), interval(scores["macro_f1"]),
                              [interval(scores["recall"][:, c]) for c in range(num_classes)])


def mcnemar(correct_a, correct_b):
    """McNemar's test of two models' correctness (bool [N] each) on the same images.

    Only the discordant images count: under "equally good" each is A's or B's with
    probability 1/2. Returns McNemar with the exact two-sided binomial p-value and
    the mid-p value; no discordant image gives p = 1.
    """
    correct_a, correct_b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    only_a = int(np.sum(correct_a & ~correct_b))
    only_b = int(np.sum(correct_b & ~correct_a))
    n, k = only_a + only_b, min(only_a, only_b)
    if n == 0:
        return McNemar(only_a, only_b, 1.0, 1.0)
    cdf, pmf = _binomial_half(k, n)
    exact = min(1.0, 2 * cdf)
    # A tie (2k == n) is as far from a difference as data can be: p = 1 exactly.
    mid = 1.0 if 2 * k == n else min(1.0, 2 * (cdf - pmf / 2))
    return McNemar(only_a, only_b, float(exact), float(mid))


def _verdict(metric, difference, interval, p_value, test, alpha):
    """One line: which model is better on `metric`, or that the data cannot tell."""
    where = (f"{LABELS.get(metric, metric)} {difference:+.3f} (B - A; "
             f"{interval.level:.0%} interval {interval.low:+.3f} to {interval.high:+.3f}, "
             f"p = {p_value:.3g}, {test})")
    if p_value < alpha and difference != 0:
        return f"{'B' if difference > 0 else 'A'} is better: {where}"
    return f"No significant difference: {where}"


def compare(true, predicted_a, predicted_b, num_classes, metrics=METRICS,
            resamples=RESAMPLES, seed=0, level=LEVEL):
    """Compare model B with model A on the same images (int class indices [N] each).

    Both models are scored on the same stratified resamples (a paired bootstrap),
    so the interval of B - A reflects only how the two differ image by image.
    The p-value is McNemar's mid-p for accuracy (exact on the discordant images)
    and, for the other metrics, the paired bootstrap's two-sided p (twice the
    smaller share of resampled differences on either side of 0, +1 smoothed).
    Returns one Comparison a metric, in the order of `metrics`.
    """
    true = np.asarray(true, np.int64)
    predicted_a = np.asarray(predicted_a, np.int64)
    predicted_b = np.asarray(predicted_b, np.int64)
    if not len(true) == len(predicted_a) == len(predicted_b):
        raise ValueError("true, predicted_a and predicted_b must have the same length")
    indices = stratified_resamples(true, resamples, seed)
    point_a = resampled_scores(true, predicted_a, num_classes)
    point_b = resampled_scores(true, predicted_b, num_classes)
    boot_a = resampled_scores(true, predicted_a, num_classes, indices)
    boot_b = resampled_scores(true, predicted_b, num_classes, indices)
    method = "paired " + _method(resamples, seed)
    results = []
    for metric in metrics:
        a, b = float(point_a[metric][0]), float(point_b[metric][0])
        differences = boot_b[metric] - boot_a[metric]
        interval = Interval(*_percentile(differences, level), method, level)
        if metric == "accuracy":
            p_value, test = mcnemar(predicted_a == true, predicted_b == true).p_mid, "McNemar mid-p"
        else:
            below = (np.sum(differences <= 0) + 1) / (resamples + 1)
            above = (np.sum(differences >= 0) + 1) / (resamples + 1)
            p_value, test = float(min(1.0, 2 * min(below, above))), "paired bootstrap"
        results.append(Comparison(metric, a, b, b - a, interval, p_value, test, len(true),
                                  _verdict(metric, b - a, interval, p_value, test, 1 - level)))
    return results
