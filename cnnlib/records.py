"""The files of a run and of a scored test set: one module writes them all, from memory.

Offers, in the order a run calls them:
  write_data_records(run_dir, seed, data_dir, data, devices)
                                  -> run_info.json (seed, libraries, devices, data
                                     summary), split.csv, duplicates.csv, skipped.csv
                                     and unlabeled.txt
  write_calibration(folder, probabilities, labels, title)
                                  -> the temperature fitted on the validation split,
                                     stored in model.keras and best.keras;
                                     reliability.png (before and after)
  score_variant(folder, title, model, data, history, batch_size)
                                  -> {split: Scores} of one trained model (Table 3's
                                     columns), its calibration and records written
  write_variant(folder, title, classes, scores, history, ...)
                                  -> one model's records: confusion.csv/.png,
                                     per_class.csv, curves.png (Figure 1 or 2) and,
                                     last, metrics.json
  read_variant(folder)            -> ({split: Scores}, history rows) of a recorded model
  write_run(run_dir, results, histories, test_source)
                                  -> Table 3 (table3.md/.csv, printed) and, for two
                                     models, overlay.png
  format_table3(results)          -> Table 3 as Markdown text
  table3_rows(results)            -> Table 3's header and rows
  write_table3(folder, results)   -> table3.md and table3.csv
  write_confusion(folder, classes, labels, predicted, title)
                                  -> (matrix, per-class scores); confusion.csv/.png,
                                     per_class.csv
  record_test_set(folder, model, images, labels, paths, classes, ...)
                                  -> a labelled test set's predictions and scores
                                     (cnn_eval.py), written with the worst mistakes
  write_predictions(path, classes, paths, labels, probabilities)
                                  -> predictions.csv / validation_predictions.csv
  write_scores(path, classes, scores) -> per-class CSV
  write_csv(path, rows)           -> any table as a CSV file

Every file is written atomically (cnnlib.atomic), from values held in memory: nothing
here reads back a file the same run wrote. The numbers come from cnnlib/metrics.py.
"""

import csv
import io
import os
from pathlib import Path

import numpy as np

from cnnlib import atomic, calibration, checkpoints, files, metrics, near_duplicates, \
    plots, runs, subject_split

MISTAKES_SHOWN = 16  # the figure of the worst mistakes shows at most this many images


def write_data_records(run_dir, seed, data_dir, data, devices=None):
    """Write run_info.json, split.csv, duplicates.csv, and skipped.csv / unlabeled.txt
    when files were left out.

    split.csv (subject_split.write_split): every image read, its split ("train",
    "validation", "test", or "dropped" for a --dedupe copy) and subject (empty
    without --group_column). duplicates.csv (near_duplicates.write_groups): every
    near-duplicate group's files, with a header only when there are none.
    `data` is cnn_data.prepare_data's PreparedData; `devices` cluster.describe_setup's.
    """
    run_dir, classes = Path(run_dir), data.classes
    summary = near_duplicates.summarise(data.duplicates)
    runs.write_json(run_dir / "run_info.json", {
        "seed": seed, "libraries": runs.library_versions(), "devices": devices,
        "data": {"data_dir": data_dir, "layout": data.layout, "standin": data.standin,
                 "classes": classes, "train_before": data.counts_before.tolist(),
                 "train_after": data.counts_after.tolist(),
                 "validation": np.bincount(data.val_labels, minlength=len(classes)).tolist(),
                 "class_weights": data.weights, "skipped": len(data.skipped),
                 "unlabeled": len(data.unlabeled), "leaks": len(data.leaks),
                 "near_duplicates": {"groups": summary.groups, "files": summary.files,
                                     "across_sets": summary.across_sets,
                                     "conflicting": summary.conflicting,
                                     "dropped": len(data.dropped)},
                 "test": data.test_source}})
    if data.split_files:
        dropped = set(data.dropped)
        listed, names = [], []
        for split, paths in data.split_files.items():
            for path in paths:
                listed.append(path)
                names.append("dropped" if path in dropped and split != "test" else split)
        subject_split.write_split(
            run_dir / "split.csv", listed,
            {name: [i for i, n in enumerate(names) if n == name] for name in dict.fromkeys(names)},
            [data.subjects.get(path, "") for path in listed])
    near_duplicates.write_groups(run_dir / "duplicates.csv", data.duplicates,
                                 data.duplicate_items)
    if summary.groups:
        print(f"{summary.groups} near-duplicate group(s) ({summary.files} files, "
              f"{summary.conflicting} with conflicting labels) listed in "
              f"{run_dir / 'duplicates.csv'}.")
    if data.skipped:  # absolute paths: usable from anywhere
        files.write_skipped(run_dir / "skipped.csv",
                            [(os.path.abspath(p), reason) for p, reason in data.skipped])
        print(f"Skipped or excluded {len(data.skipped)} file(s), listed with the reason in "
              f"{run_dir / 'skipped.csv'}:")
        for path, reason in data.skipped[:10]:
            print(f"  {path!r}: {reason}" if "\n" in str(path) else f"  {path}: {reason}")
    if data.unlabeled:
        files.write_path_list(run_dir / "unlabeled.txt",
                              [os.path.abspath(p) for p in data.unlabeled])
        print(f"{len(data.unlabeled)} image(s) have no label and were not used (score them "
              f"with cnn_eval.py); listed in {run_dir / 'unlabeled.txt'}.")


def _columns(rows):
    """{column: [values]} of per-epoch history rows."""
    return {name: [row[name] for row in rows] for name in (rows[0] if rows else [])}


def write_calibration(folder, probabilities, labels, title="Validation"):
    """Fit a temperature on the validation `probabilities` [N, classes] and int `labels`.

    Stores it in `folder`'s model.keras and best.keras (calibration.store_calibration;
    no weight changes), draws reliability.png (before and after, atomically) and
    prints one line. Returns metrics.json's "calibration" record (T, ECE and NLL
    before and after), or None for an empty validation split.
    """
    folder, labels = Path(folder), np.asarray(labels, np.int64)
    if len(labels) == 0:
        return None
    fitted = calibration.calibrate(probabilities, labels)
    for name in ("model.keras", "best.keras"):
        # A resumed run fits the same T again: its files are left as they are.
        if ((folder / name).is_file()
                and calibration.read_temperature(folder / name) != fitted.temperature):
            calibration.store_calibration(folder / name, fitted)
    after = calibration.apply_temperature(probabilities, fitted.temperature)
    calibration.plot_reliability(calibration.reliability(probabilities, labels),
                                 folder / "reliability.png", f"{title}: validation reliability",
                                 after=calibration.reliability(after, labels))
    print(f"calibration: temperature T={fitted.temperature:.3f} fitted on the validation "
          f"split; ECE {fitted.ece_before:.3f} before, {fitted.ece_after:.3f} after; stored "
          f"in the model file; {folder / 'reliability.png'}")
    low, high = calibration.TEMPERATURE_RANGE
    if (np.asarray(probabilities).argmax(1) == labels).all():  # any T < 1 lowers the loss
        print(f"note: every one of the {len(labels)} validation images is right, so nothing "
              f"bounds T; more validation images give a temperature to trust.")
    elif not low * 1.01 < fitted.temperature < high * 0.99:
        print(f"note: T reached the end of its range {calibration.TEMPERATURE_RANGE}: on "
              f"these {len(labels)} validation images the model is too far from calibrated "
              f"for one temperature to fix; train longer or on more data before trusting "
              f"its probabilities.")
    return {"T": fitted.temperature, **fitted.as_dict(), "fitted_on": "validation"}


def score_variant(folder, title, model, data, history, batch_size=32):
    """Score one trained `model` on each split of `data` (a PreparedData) and write its
    records (write_calibration, then write_variant). Returns {split: metrics.Scores}."""
    sets = {"train": (data.train_images, data.train_labels),
            "validation": (data.val_images, data.val_labels), "test": data.test}
    scores, probabilities = {}, {}
    for split, (images, labels) in ((s, p) for s, p in sets.items() if p is not None):
        scores[split], probabilities[split] = metrics.score_split(
            model, images, labels, len(data.classes), batch_size)
    calibrated = write_calibration(folder, probabilities["validation"], data.val_labels, title)
    write_variant(folder, title, data.classes, scores, history, data.val_labels,
                  np.argmax(probabilities["validation"], axis=1), probabilities.get("test"),
                  calibrated, validation=(data.val_paths, probabilities["validation"]))
    return scores


def write_variant(folder, title, classes, scores, history, val_labels, val_predicted,
                  test_probabilities=None, calibrated=None, validation=None):
    """Write one trained model's records into `folder` and print its scores.

    `scores` {split: Scores} (Table 3's columns for this model), `history` its
    per-epoch rows, `val_predicted` its validation predictions (int [N]).
    `validation`, when given, is (paths [N], probabilities [N, classes]) of the
    validation images: validation_predictions.csv gets one row each (the columns
    of predictions.csv), so `python -m cnnlib.compare` can pair two runs.
    `calibrated` is write_calibration's record, stored under "calibration".
    metrics.json is written last, so a model that has it is recorded.
    Returns metrics.json's content.
    """
    folder = Path(folder)
    if validation is not None and len(validation[0]) == len(validation[1]) == len(val_labels):
        write_predictions(folder / "validation_predictions.csv", classes, validation[0],
                          val_labels, validation[1])
    _, per_class = write_confusion(folder, classes, val_labels, val_predicted)
    print(metrics.format_scores(classes, per_class))
    plots.plot_history(_columns(history), folder / "curves.png", title)
    recorded = {split: s.to_dict() for split, s in scores.items()}
    if test_probabilities is not None:  # so anyone can check the saved model predicts the same
        recorded["test_probabilities"] = np.asarray(test_probabilities).tolist()
    recorded["epochs"] = len(history)
    recorded["per_class"] = dict(zip(classes, per_class))
    if calibrated is not None:
        recorded["calibration"] = calibrated
    runs.write_json(folder / "metrics.json", recorded)
    for split, split_scores in scores.items():
        print(metrics.format_split(split, split_scores))
    return recorded


def read_variant(folder):
    """({split: Scores}, history rows) of a model recorded before (a resumed run).

    Raises RunError when the files its state promises are not whole.
    """
    state = runs.read_state(folder)
    if state is not None:
        checkpoints.check_files(folder, state)
    recorded = runs.read_json(Path(folder) / "metrics.json", "metrics")
    return ({split: metrics.Scores.from_dict(recorded[split])
             for split in metrics.SPLITS if split in recorded},
            runs.read_history_rows(Path(folder) / "history.csv"))


def write_run(run_dir, results, histories, test_source):
    """Write and print Table 3 from {variant: {split: Scores}}; with two variants, the
    overlay of their validation curves from {variant: history rows}."""
    write_table3(run_dir, results)
    if len(results) > 1:
        plots.plot_overlay({name: _columns(rows) for name, rows in histories.items()},
                           Path(run_dir) / "overlay.png")
    print(f"\nTable 3 (accuracy and loss; test = {test_source}):\n" + format_table3(results))


def format_table3(results):
    """Table 3 of {variant: {split: Scores}} as Markdown text."""
    header, rows = table3_rows(results)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def table3_rows(results):
    """Rows of Table 3 from {variant: {split: metrics.Scores}}.

    Returns (header, rows): header ["", "<variant> <split>", ...] and one row each
    for ACC, its 95% Wilson interval, balanced accuracy and macro-F1 each with its
    95% stratified bootstrap interval, and LOSS, values rounded to 3 decimals as in
    the report (the interval rows name their method).
    """
    columns = [(variant, split) for variant, scores in results.items()
               for split in metrics.SPLITS if split in scores]
    header = [""] + [f"{variant} {split}" for variant, split in columns]
    rows = []
    for label, key in (("ACC", "accuracy"), ("ACC 95% CI (Wilson)", "accuracy_interval"),
                       ("BAL ACC", "balanced_accuracy"),
                       ("BAL ACC 95% CI (stratified bootstrap)", "balanced_accuracy_interval"),
                       ("MACRO F1", "macro_f1"),
                       ("MACRO F1 95% CI (stratified bootstrap)", "macro_f1_interval"),
                       ("LOSS", "loss")):
        cells = []
        for variant, split in columns:
            value = getattr(results[variant][split], key)
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
    atomic.write_text(folder / "table3.md", format_table3(results))
    return folder / "table3.md"


def write_confusion(folder, classes, labels, predicted, title="Validation confusion matrix"):
    """Write confusion.csv, confusion.png and per_class.csv of `predicted` vs `labels`.

    Returns (matrix int64 [classes, classes], per-class scores).
    """
    folder = Path(folder)
    matrix = metrics.confusion_matrix(labels, predicted, len(classes))
    scores = metrics.per_class_scores(matrix)
    write_scores(folder / "per_class.csv", classes, scores)
    atomic.write_text(folder / "confusion.csv", ",".join(classes) + "\n" + "".join(
        ",".join(str(n) for n in row) + "\n" for row in matrix))
    plots.plot_confusion(matrix, classes, folder / "confusion.png", title)
    return matrix, scores


def record_test_set(folder, model, images, labels, paths, classes, batch_size=32, source="",
                    skipped=(), tta=False, min_confidence=0.0):
    """Score a labelled test set and write everything about it into `folder`.

    `images` uint8 [N, H, W, C] and int `labels` [N] of the readable files
    `paths`. Writes predictions.csv (one row an image: path, true, predicted,
    probability, each class's probability), confusion.csv, confusion.png,
    per_class.csv, scores.json (with the expected calibration error, "ece", of the
    probabilities as given: calibrated when `model` is calibration.Calibrated),
    reliability.png, mistakes.png (the confidently wrong images, when there are
    any) and skipped.csv (when files were skipped).
    An image whose top probability is below `min_confidence` is predicted
    "uncertain" in predictions.csv and the results (the scores still count its
    most probable class, so they do not depend on P).
    Returns {"results": one dict an image (path, true, predicted, probability,
    correct), "summary": summary_scores plus loss, "matrix", "scores" (per class),
    "skipped": the number of files skipped}.
    """
    folder = Path(folder)
    labels = np.asarray(labels, np.int64)
    scored = metrics.score_set(model, images, labels, len(classes), batch_size, tta)
    probabilities = scored["probabilities"]
    predicted = np.argmax(probabilities, axis=1) if len(labels) else np.zeros(0, np.int64)
    shown = calibration.label_or_uncertain(probabilities, classes, min_confidence)
    results = [{"path": str(path), "true": classes[t], "predicted": name,
                "probability": float(row[p]), "correct": bool(t == p)}
               for path, t, p, row, name in zip(paths, labels, predicted, probabilities, shown)]
    write_predictions(folder / "predictions.csv", classes, paths, labels, probabilities, shown)
    matrix, scores = write_confusion(folder, classes, labels, predicted,
                                      "Test confusion matrix")
    summary = {**metrics.summary_scores(matrix, labels, predicted), "loss": scored["loss"],
               "temperature": getattr(model, "temperature", None)}
    if len(labels):
        shown = calibration.reliability(probabilities, labels)
        summary["ece"] = shown.ece
        calibration.plot_reliability(shown, folder / "reliability.png", "Test set reliability"
                                     + (" (calibrated)" if summary["temperature"] else ""))
    atomic.write_json(folder / "scores.json", {
        "source": source, **summary, "classes": classes,
        "per_class": dict(zip(classes, scores)), "confusion": matrix.tolist(),
        "skipped": len(skipped)})
    wrong = sorted((i for i, r in enumerate(results) if not r["correct"]),
                   key=lambda i: -results[i]["probability"])[:MISTAKES_SHOWN]
    if wrong:
        plots.plot_mistakes(images[wrong], [results[i] for i in wrong], folder / "mistakes.png")
    if skipped:
        files.write_skipped(folder / "skipped.csv", skipped)
    return {"results": results, "summary": summary, "matrix": matrix, "scores": scores,
            "skipped": len(skipped)}


def write_predictions(path, classes, paths, labels, probabilities, shown=None):
    """Write one CSV row an image: path, true, predicted, probability, correct, p_<class>.

    `labels` int [N], `probabilities` [N, classes] in the order of `paths`; `shown`,
    when given, is the predicted column's text of each row ("uncertain" below
    --min_confidence), else the most probable class.
    """
    probabilities = np.asarray(probabilities)
    predicted = (np.argmax(probabilities, axis=1) if len(probabilities)
                 else np.zeros(0, np.int64))
    return write_csv(path, [
        ["path", "true", "predicted", "probability", "correct", *(f"p_{c}" for c in classes)],
        *([str(p), classes[t], shown[i] if shown is not None else classes[k],
           f"{row[k]:.6f}", int(t == k), *(f"{v:.6f}" for v in row)]
          for i, (p, t, k, row) in enumerate(zip(paths, labels, predicted, probabilities)))])


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
