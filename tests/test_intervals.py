"""Intervals and paired comparisons (cnnlib.intervals) and their command (cnnlib.compare)."""

import subprocess
import sys
import time

import numpy as np
import pytest

from cnnlib import compare, intervals, metrics, records
from conftest import ROOT

# A known case: fixed class sizes, each image right with its class's rate, a wrong
# prediction uniform over the other classes.
SIZES = (60, 80, 100)
RATES = (0.6, 0.75, 0.9)


def _simulate(rng, sizes=SIZES, rates=RATES):
    """Return (true, predicted) int arrays of one simulated test set of the known case."""
    k = len(sizes)
    true = np.repeat(np.arange(k), sizes)
    right = rng.random(len(true)) < np.asarray(rates)[true]
    other = (true + rng.integers(1, k, len(true))) % k  # uniform over the other classes
    return true, np.where(right, true, other)


def _population_macro_f1(sizes=SIZES, rates=RATES):
    """Macro-F1 of the expected confusion matrix: the score the samples estimate."""
    k = len(sizes)
    expected = np.array([[n * (r if p == c else (1 - r) / (k - 1)) for p in range(k)]
                         for c, (n, r) in enumerate(zip(sizes, rates))])
    hits = np.diag(expected)
    return float(np.mean(2 * hits / (expected.sum(axis=1) + expected.sum(axis=0))))


def test_wilson_matches_report_and_names_its_method():
    interval = intervals.wilson(7, 8)
    assert (interval.low, interval.high) == pytest.approx(metrics.wilson_interval(7, 8), abs=1e-4)
    assert interval.method == "Wilson" and interval.level == 0.95
    assert intervals.wilson(0, 0).as_dict() == {"low": 0.0, "high": 1.0, "method": "Wilson",
                                                "level": 0.95}


def test_resampled_scores_agree_with_report():
    rng = np.random.default_rng(3)
    true, predicted = _simulate(rng)
    scores = intervals.resampled_scores(true, predicted, 3)
    summary = metrics.summary_scores(metrics.confusion_matrix(true, predicted, 3))
    for name in ("accuracy", "balanced_accuracy", "macro_f1"):
        assert scores[name][0] == pytest.approx(summary[name])


def test_stratified_resamples_keep_class_counts():
    true = np.array([0] * 5 + [2] * 7 + [1] * 3)
    indices = intervals.stratified_resamples(true, 50, seed=1)
    assert indices.shape == (50, 15)
    for row in indices:
        assert np.bincount(true[row], minlength=3).tolist() == [5, 3, 7]
    assert np.array_equal(indices, intervals.stratified_resamples(true, 50, seed=1))


def test_bootstrap_covers_the_truth_at_its_nominal_rate():
    """200 simulated test sets: the 95% intervals hold the true score about 95% of the time."""
    rng = np.random.default_rng(2026)
    truth_balanced, truth_f1 = float(np.mean(RATES)), _population_macro_f1()
    hits_balanced = hits_f1 = hits_recall = 0
    start = time.perf_counter()
    for seed in range(200):
        true, predicted = _simulate(rng)
        found = intervals.bootstrap_intervals(true, predicted, 3, resamples=400, seed=seed)
        balanced = found.balanced_accuracy
        hits_balanced += balanced.low <= truth_balanced <= balanced.high
        hits_f1 += found.macro_f1.low <= truth_f1 <= found.macro_f1.high
        hits_recall += found.recall[1].low <= RATES[1] <= found.recall[1].high
    seconds = time.perf_counter() - start
    assert 0.88 <= hits_balanced / 200 <= 0.99
    assert 0.88 <= hits_f1 / 200 <= 0.99
    assert 0.88 <= hits_recall / 200 <= 0.99
    assert seconds < 5  # about 0.5 s on a loaded 2-core machine
    assert "stratified bootstrap, 400 resamples" in found.macro_f1.method


def test_bootstrap_is_fast_and_repeatable():
    rng = np.random.default_rng(0)
    true = rng.integers(0, 7, 3000)
    predicted = np.where(rng.random(3000) < 0.7, true, rng.integers(0, 7, 3000))
    start = time.perf_counter()
    first = intervals.bootstrap_intervals(true, predicted, 7, resamples=1000, seed=5)
    assert time.perf_counter() - start < 2.0  # 0.2 to 0.6 s measured on a loaded 2-core CPU
    assert first == intervals.bootstrap_intervals(true, predicted, 7, resamples=1000, seed=5)
    assert first.balanced_accuracy.low < 0.7 + 0.3 / 7 < first.balanced_accuracy.high


def test_absent_class_gets_no_recall_interval():
    found = intervals.bootstrap_intervals([0, 0, 1, 1], [0, 1, 1, 1], 3, resamples=100)
    assert np.isnan(found.recall[2].low) and not np.isnan(found.recall[0].low)


def test_mcnemar_counts_and_p_values():
    assert intervals.mcnemar([1, 1, 0], [1, 1, 0]) == intervals.McNemar(0, 0, 1.0, 1.0)
    result = intervals.mcnemar([0] * 12, [1] * 12)  # B right on 12 images A gets wrong
    assert (result.only_a, result.only_b) == (0, 12)
    assert result.p_exact == pytest.approx(2 * 0.5 ** 12)
    assert result.p_mid < result.p_exact
    assert intervals.mcnemar([1, 0], [0, 1]).p_mid == 1.0


def test_identical_models_give_p_one_and_a_zero_interval():
    rng = np.random.default_rng(1)
    true, predicted = _simulate(rng)
    for found in intervals.compare(true, predicted, predicted, 3, resamples=300):
        assert found.difference == 0 and found.p_value == 1.0
        assert found.interval.low == found.interval.high == 0
        assert found.verdict.startswith("No significant difference")


def test_a_clearly_better_model_gives_a_small_p():
    rng = np.random.default_rng(2)
    true, weak = _simulate(rng, rates=(0.5, 0.5, 0.5))
    strong = np.where(rng.random(len(true)) < 0.6, true, weak)  # fixes 60% of the images
    results = {c.metric: c for c in intervals.compare(true, weak, strong, 3, resamples=500)}
    for metric, found in results.items():
        assert found.difference > 0.1 and found.p_value < 0.01, metric
        assert found.interval.low > 0 and found.verdict.startswith("B is better")
    assert results["accuracy"].test == "McNemar mid-p"
    assert results["macro_f1"].test == "paired bootstrap"


def _write_predictions(path, paths, true, predicted, classes=("anger", "happy", "sad")):
    """Write a prediction CSV as cnn_eval.py writes it (path, true, predicted, ...)."""
    rows = [["path", "true", "predicted", "probability", "correct",
             *(f"p_{c}" for c in classes)]]
    for file, t, p in zip(paths, true, predicted):
        probabilities = [0.8 if c == p else 0.2 / (len(classes) - 1) for c in classes]
        rows.append([file, t, p, "0.8", int(t == p), *probabilities])
    records.write_csv(path, rows)
    return path


def _two_files(tmp_path, seed=4):
    rng = np.random.default_rng(seed)
    classes = ["anger", "happy", "sad"]
    true, weak = _simulate(rng, rates=(0.5, 0.5, 0.5))
    strong = np.where(rng.random(len(true)) < 0.6, true, weak)
    paths = [f"set/{classes[t]}/img, {i}.jpg" for i, t in enumerate(true)]  # a comma inside
    name = [classes[i] for i in true]
    a = _write_predictions(tmp_path / "a.csv", paths, name, [classes[i] for i in weak])
    # B's rows in another order, one extra image: matched by path, not by position.
    order = rng.permutation(len(paths))
    b = _write_predictions(tmp_path / "b.csv", [paths[i] for i in order] + ["extra.jpg"],
                           [name[i] for i in order] + ["sad"],
                           [classes[strong[i]] for i in order] + ["sad"])
    return a, b, (weak == true).mean(), (strong == true).mean()


def test_compare_files_matches_rows_by_path(tmp_path):
    a, b, accuracy_a, accuracy_b = _two_files(tmp_path)
    run = tmp_path / "run" / "eval-20261129-120000"
    run.mkdir(parents=True)
    (run / "predictions.csv").write_bytes(b.read_bytes())  # a run folder finds it there
    result = compare.compare_files(a, tmp_path / "run", resamples=300)
    assert result.matched.only_b == 1 and result.matched.only_a == 0
    accuracy = result.comparisons[0]
    assert (accuracy.a, accuracy.b) == pytest.approx((accuracy_a, accuracy_b))
    assert "B is better" in compare.format_comparison(result)


def test_compare_refuses_conflicting_labels(tmp_path):
    a = _write_predictions(tmp_path / "a.csv", ["x.jpg"], ["anger"], ["anger"])
    b = _write_predictions(tmp_path / "b.csv", ["x.jpg"], ["sad"], ["anger"])
    with pytest.raises(compare.DataError, match="x.jpg"):
        compare.compare_files(a, b)


def _run_cli(*args):
    return subprocess.run([sys.executable, "-m", "cnnlib.compare", *map(str, args)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_cli_prints_the_difference_and_p_value(tmp_path):
    a, b, accuracy_a, accuracy_b = _two_files(tmp_path)
    done = _run_cli(a, b, "--resamples=300")
    assert done.returncode == 0, done.stderr
    assert f"{accuracy_b - accuracy_a:+.3f}" in done.stdout
    assert "McNemar mid-p" in done.stdout and "B is better" in done.stdout


def test_cli_missing_file_is_one_line_and_exit_2(tmp_path):
    a, _, _, _ = _two_files(tmp_path)
    done = _run_cli(a, tmp_path / "missing.csv")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "missing.csv" in done.stderr


def test_cli_usage_mistakes_exit_2(tmp_path, capsys):
    a, _, _, _ = _two_files(tmp_path)
    assert compare.main([str(a)]) == 2  # one file only
    assert compare.main([str(a), str(a), "--resamples=many"]) == 2
    assert compare.main([str(a), str(a), "--color=red"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 3


def test_summary_scores_use_bootstrap_for_class_weighted_scores_and_name_methods():
    rng = np.random.default_rng(4)
    true, predicted = _simulate(rng)
    summary = metrics.summary_scores(metrics.confusion_matrix(true, predicted, 3), true,
                                     predicted)
    found = intervals.bootstrap_intervals(true, predicted, 3)
    assert summary["balanced_accuracy_interval"] == (found.balanced_accuracy.low,
                                                     found.balanced_accuracy.high)
    assert summary["macro_f1_interval"] == (found.macro_f1.low, found.macro_f1.high)
    assert summary["recall_intervals"] == [(i.low, i.high) for i in found.recall]
    wilson = intervals.wilson(int(np.sum(true == predicted)), len(true))
    assert summary["accuracy_interval"] == (wilson.low, wilson.high)
    assert summary["interval_methods"] == {
        "accuracy": "95% Wilson",
        **{name: "95% stratified bootstrap, 1000 resamples, seed 0"
           for name in ("balanced_accuracy", "macro_f1", "recall")}}
    # From the matrix alone: the same pairs, so an interval of the same kind and width.
    alone = metrics.summary_scores(metrics.confusion_matrix(true, predicted, 3))
    assert alone["balanced_accuracy_interval"] == pytest.approx(
        summary["balanced_accuracy_interval"], abs=0.03)
    text = metrics.format_summary({**summary, "loss": 1.0})
    assert "(95% Wilson interval" in text and "(95% stratified bootstrap" in text
    assert "95% stratified bootstrap" in metrics.format_split(
        "validation", metrics.Scores(loss=1.0, **summary))
