"""The report's experiments: compare both variants, Table 3, resume, repeatability."""

import csv

import keras
import numpy as np
import pytest

import cnn_data
import cnn_model
import cnn_params
import cnn_run
from cnnlib.labels import class_lookup
from cnnlib import layouts, metrics, runs
from conftest import write_image


@pytest.fixture
def labelled_test_dir(tmp_path):
    folder = tmp_path / "test_images"
    for i, name in enumerate(cnn_params.CLASSES):
        write_image(folder / f"{name}.jpg", (48, 48), "RGB", "JPEG", seed=200 + i)
    return folder


@pytest.mark.slow
def test_compare_writes_table3_figures_and_confusion(tiny_params, labelled_test_dir):
    tiny_params.update(compare=True, epochs=2, test_dir=str(labelled_test_dir))
    run_dir = cnn_run.run(tiny_params)
    for name in ("table3.md", "table3.csv", "overlay.png", "params.json", "run_info.json"):
        assert (run_dir / name).is_file(), name
    for variant in ("no_dropout", "dropout"):
        for name in ("model.keras", "best.keras", "curves.png", "confusion.png",
                     "confusion.csv", "per_class.csv", "history.csv", "metrics.json"):
            assert (run_dir / variant / name).is_file(), f"{variant}/{name}"
        assert len(runs.read_history(run_dir / variant / "history.csv")["epoch"]) == 2

    with (run_dir / "table3.csv").open() as handle:
        header, *rows = list(csv.reader(handle))
    assert header[1:] == [f"{v} {s}" for v in ("no_dropout", "dropout")
                          for s in ("train", "validation", "test")]
    table = {row[0]: row for row in rows}
    assert list(table) == ["ACC", "ACC 95% CI (Wilson)", "BAL ACC",
                           "BAL ACC 95% CI (stratified bootstrap)", "MACRO F1",
                           "MACRO F1 95% CI (stratified bootstrap)", "LOSS"]
    acc, loss = table["ACC"], table["LOSS"]

    # Table 3 equals a fresh evaluate of the saved models on the same sets.
    params = runs.read_json(run_dir / "params.json")
    data = cnn_data.prepare_data(params)
    test = cnn_data.load_test_set(params["test_dir"], class_lookup(
        cnn_params.CLASSES, cnn_params.ALIASES), 32, 1)
    sets = {"train": (data.train_images, data.train_labels),
            "validation": (data.val_images, data.val_labels), "test": test}
    column = 1
    for variant in ("no_dropout", "dropout"):
        model = cnn_model.load_model(run_dir / variant / "model.keras")
        for split in ("train", "validation", "test"):
            fresh = model.evaluate(cnn_data.make_dataset(*sets[split], 8, 32), verbose=0,
                                   return_dict=True)  # Keras' own, batch by batch
            assert float(acc[column]) == pytest.approx(fresh["accuracy"], abs=6e-4)
            assert float(loss[column]) == pytest.approx(fresh["loss"], abs=6e-4)
            column += 1

    # The confusion matrix counts every validation image once.
    matrix = np.loadtxt(run_dir / "dropout" / "confusion.csv", delimiter=",", skiprows=1)
    assert matrix.shape == (8, 8) and matrix.sum() == len(data.val_labels)


def test_per_class_scores_make_a_one_class_model_obvious():
    true = np.array([0, 0, 1, 1, 2, 2])
    matrix = metrics.confusion_matrix(true, np.zeros(6, dtype=int), 3)
    assert matrix.tolist() == [[2, 0, 0], [2, 0, 0], [2, 0, 0]]
    scores = metrics.per_class_scores(matrix)
    assert scores[0]["recall"] == 1.0 and scores[0]["precision"] == pytest.approx(1 / 3)
    assert [s["f1"] for s in scores[1:]] == [0.0, 0.0]
    assert [s["support"] for s in scores] == [2, 2, 2]


def interrupt_after_first_epoch():
    def stop(epoch, logs=None):
        if epoch == 0:
            raise KeyboardInterrupt

    return keras.callbacks.LambdaCallback(on_epoch_end=stop)


def epochs_started(record):
    return keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: record.append(epoch))


@pytest.mark.slow
def test_an_interrupted_run_resumes_with_each_epoch_once(tiny_params, tmp_path):
    tiny_params.update(epochs=3)
    whole = cnn_run.run(tiny_params)
    whole_history = runs.read_history(whole / "history.csv")

    with pytest.raises(KeyboardInterrupt):
        cnn_run.run(tiny_params, extra_callbacks=[interrupt_after_first_epoch()])
    cut = sorted(p for p in (tmp_path / "runs").iterdir() if p.is_dir() and p != whole)[0]
    assert runs.read_history(cut / "history.csv")["epoch"] == [1.0]
    assert (cut / "model.keras").is_file()  # the finished epoch was kept
    assert not (cut / "metrics.json").exists()

    first_row = runs.read_history(cut / "history.csv")
    started = []
    resumed = cnn_run.run({**tiny_params, "resume": cut.name},
                          extra_callbacks=[epochs_started(started)])
    assert resumed == cut
    assert started == [1, 2]  # it went on from the finished epoch, not from scratch
    history = runs.read_history(cut / "history.csv")
    assert history["epoch"] == [1.0, 2.0, 3.0]
    assert history["seconds"][0] == first_row["seconds"][0]  # epoch 1's row is the original
    for key in ("accuracy", "loss", "val_accuracy", "val_loss"):
        assert history[key][0] == pytest.approx(whole_history[key][0], abs=1e-6)
    assert (cut / "metrics.json").is_file()


def test_resume_of_an_unknown_run_is_a_clear_error(tmp_path, capsys):
    assert cnn_run.main([f"--resume=nothing", f"--runs_dir={tmp_path}"]) == 2
    assert "Failed to find the run nothing" in capsys.readouterr().err


@pytest.mark.slow
def test_a_run_stopped_after_training_keeps_its_model_on_resume(tiny_params, tmp_path):
    def stop_at_train_end(logs=None):
        raise KeyboardInterrupt  # after Keras has finished (and removed its backup)

    with pytest.raises(KeyboardInterrupt):
        cnn_run.run({**tiny_params, "epochs": 2}, extra_callbacks=[
            keras.callbacks.LambdaCallback(on_train_end=stop_at_train_end)])
    cut = next(p for p in (tmp_path / "runs").iterdir() if p.is_dir())
    model_bytes = (cut / "model.keras").read_bytes()
    history = (cut / "history.csv").read_text()
    started = []
    cnn_run.run({**tiny_params, "resume": str(cut)}, extra_callbacks=[epochs_started(started)])
    assert started == []  # nothing trained again
    assert (cut / "history.csv").read_text() == history
    # The same weights: the resumed run only adds its calibration (a temperature) inside.
    (tmp_path / "before.keras").write_bytes(model_bytes)
    before = cnn_model.load_model(tmp_path / "before.keras").get_weights()
    after = cnn_model.load_model(cut / "model.keras").get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    assert (cut / "metrics.json").is_file()


def test_summary_scores_and_wilson_intervals():
    # 10 images of two classes: recalls 5/6 and 2/4.
    scores = metrics.summary_scores(np.array([[5, 1], [2, 2]]))
    assert scores["accuracy"] == pytest.approx(0.7)
    assert scores["balanced_accuracy"] == pytest.approx((5 / 6 + 2 / 4) / 2)
    f1_first = 2 * (5 / 7) * (5 / 6) / (5 / 7 + 5 / 6)
    f1_second = 2 * (2 / 3) * (2 / 4) / (2 / 3 + 2 / 4)
    assert scores["macro_f1"] == pytest.approx((f1_first + f1_second) / 2)
    # Wilson at 7 of 8 (the report's test images): about +-0.22, never past 1.
    low, high = metrics.wilson_interval(7, 8)
    assert low == pytest.approx(0.529, abs=1e-3) and high == pytest.approx(0.978, abs=1e-3)
    assert metrics.wilson_interval(8, 8)[1] == 1.0 and metrics.wilson_interval(0, 8)[0] == 0.0
    # A class absent from the truth does not drag the balanced accuracy down.
    absent = metrics.summary_scores(np.array([[3, 0, 1], [0, 0, 0], [0, 0, 4]]))
    assert absent["balanced_accuracy"] == pytest.approx((3 / 4 + 1) / 2)
