"""Bad inputs found by an adversarial pass: each is one sentence and exit 2, never a
traceback, a silent wrong result, or a file written among the user's images."""

import os
import shutil
import zipfile

import keras
import pytest

import cnn_data
import cnn_eval
import cnn_params
import cnn_run
from cnnlib import config, layouts, runs, standin
from conftest import make_class_folders, write_image


@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory):
    """A run stopped after epoch 1 of 2 (runs/<name>), and its data, to copy and damage."""
    root = tmp_path_factory.mktemp("bad")
    data = make_class_folders(root / "data", per_class=2)
    params = {**config.defaults(cnn_params), "data_dir": str(data), "runs_dir": str(root / "runs"),
              "cache_dir": str(root / "cache"), "image_size": 16, "epochs": 2, "verbose": 0,
              "test_dir": "", "dropout": False, "learning_rate": 0.01}

    def stop(epoch, logs=None):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cnn_run.run(params, extra_callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=stop)])
    return next(p for p in (root / "runs").iterdir() if p.is_dir()), params


def damaged_copy(run_dir, tmp_path, damage):
    copy = tmp_path / "runs" / run_dir.name
    shutil.copytree(run_dir, copy)
    damage(copy)
    return copy


def resume_error(copy, capsys, *extra):
    assert cnn_run.main([f"--resume={copy}", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    return err


@pytest.mark.parametrize("damage,message", [
    (lambda d: (d / "best.keras").unlink(), "best.keras is missing or damaged"),
    (lambda d: (d / "best.keras").write_bytes(b"PK"), "best.keras is missing or damaged"),
    (lambda d: (d / "checkpoint-1.keras").write_bytes((d / "checkpoint-1.keras").read_bytes()[:999]),
     "checkpoint-1.keras is missing or damaged"),
    (lambda d: (d / "params.json").write_text((d / "params.json").read_text().replace(
        '"epochs": 2', '"epochs": "x"')), "params.json: epochs = 'x' should be a whole number"),
])
def test_a_damaged_run_is_refused_with_the_file_named(interrupted_run, tmp_path, capsys,
                                                      damage, message):
    run_dir, _ = interrupted_run
    err = resume_error(damaged_copy(run_dir, tmp_path, damage), capsys)
    assert message in err and "--model" not in err


@pytest.mark.slow
def test_resume_refuses_other_parameters_and_marks_latest_where_the_run_lives(
        interrupted_run, tmp_path, capsys):
    run_dir, params = interrupted_run
    copy = damaged_copy(run_dir, tmp_path, lambda d: None)
    err = resume_error(copy, capsys, "--epochs=5")
    assert "--epochs would be ignored" in err
    elsewhere = tmp_path / "other_runs"
    assert cnn_run.main([f"--resume={copy}", f"--runs_dir={elsewhere}"]) == 0
    assert runs.latest_run(copy.parent) == copy
    assert not (elsewhere / "latest.txt").exists()
    assert runs.read_history(copy / "history.csv")["epoch"] == [1.0, 2.0]
    # The finished run, damaged later, is not reported as saved again.
    (copy / "model.keras").write_bytes(b"")
    assert "model.keras is missing or damaged" in resume_error(copy, capsys)


@pytest.mark.slow
def test_nothing_is_written_into_the_data_folder(tmp_path, capsys):
    data = make_class_folders(tmp_path / "data", per_class=1)
    os.symlink(data, tmp_path / "link")
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    for args, message in (
            ([f"--runs_dir={tmp_path / 'link' / 'runs'}"], "--runs_dir="),
            ([f"--cache_dir={data / 'train' / 'anger'}"], "--cache_dir="),
            ([f"--test_dir={tmp_path / 'nowhere'}"], "nowhere does not exist")):
        assert cnn_run.main([f"--data_dir={data}", *args]) == 2
        assert message in capsys.readouterr().err
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before


def test_data_that_cannot_train_says_why(tmp_path):
    one = make_class_folders(tmp_path / "one", per_class=2, classes=["happy"])
    with pytest.raises(layouts.DataError, match="found only the class happy"):
        layouts.find_dataset(one, ["auto"], {})
    table = tmp_path / "csv"
    write_image(table / "images" / "a.png", (20, 20), "L", "PNG")
    write_image(tmp_path / "outside.png", (20, 20), "L", "PNG")
    (table / "legend.csv").write_text("image,emotion\na.png,anger\n../../outside.png,happy\n"
                                      "b.png,happy\n")
    _, names, excluded, _, _ = layouts.read_labels_file(table / "legend.csv", "image",
                                                        "emotion", "images")
    assert names == ["anger"]
    assert any("outside" in reason for _, reason in excluded)
    (table / "legend.csv").write_text("image,emotion\na.png,anger\nb\x00ad.png,happy\n")
    paths, _, excluded, _, _ = layouts.read_labels_file(table / "legend.csv", "image",
                                                        "emotion", "images")
    assert [p.name for p in paths] == ["a.png"] and "not found" in excluded[0][1]
    (table / "legend.csv").write_text("image,emotion\n" + "x" * 200_000 + ",anger\n")
    with pytest.raises(layouts.DataError, match="not a CSV this suite can read"):
        layouts.read_labels_file(table / "legend.csv", "image", "emotion", "images")


def test_config_files_unpack_whole_and_refuse_names_without_values(tmp_path):
    path = tmp_path / "c.py"
    path.write_bytes(b"# caf\xc3\xa9\nEPOCHS = 7\nSEED = 3\n")
    values = config.read_config_file(path, config.defaults(cnn_params))
    assert values == {"epochs": 7, "seed": 3}
    path.write_bytes(b"# caf\xc3\xa9\nEPOCHS, SEED = 7, 3\n")
    assert config.read_config_file(path, config.defaults(cnn_params)) == values
    path.write_text("EPOCHS, SEED = 7, 3, 1\n")  # cannot all be applied: refused whole
    with pytest.raises(config.ConfigError, match="line 1: unpacking into 2 names"):
        config.read_config_file(path, config.defaults(cnn_params))
    path.write_text("EPOCHS = 7\nIMAGE_SIZE: int\n")
    with pytest.raises(config.ConfigError, match="line 2: an annotation without a value"):
        config.read_config_file(path, config.defaults(cnn_params))
    path.write_text("_A = 3\nSEED = ((_A ** 64) ** 64) ** 64\n")  # never computed
    with pytest.raises(config.ConfigError, match="line 2: the value of SEED .*4096 bits"):
        config.read_config_file(path, config.defaults(cnn_params))
    path.write_text("_A = [1]\n" + "".join("_A = _A + _A\n" for _ in range(40)))
    with pytest.raises(config.ConfigError, match="more than 100000 items"):
        config.read_config_file(path, config.defaults(cnn_params))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Duplicate name", "ignore:Skipped")
def test_eval_refuses_what_it_cannot_score(interrupted_run, tmp_path, capsys):
    run_dir, _ = interrupted_run
    unreadable = tmp_path / "bad"
    unreadable.mkdir()
    (unreadable / "anger.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (tmp_path / "empty.txt").write_text("\n\n")
    other = tmp_path / "dense.keras"
    keras.Sequential([keras.Input((10,)), keras.layers.Dense(8)]).save(other)
    renamed = tmp_path / "info.keras"
    shutil.copyfile(run_dir / "checkpoint-1.keras", renamed)
    with zipfile.ZipFile(renamed, "a") as archive:
        archive.writestr("cnn_info.json", '{"classes": 8}')  # a later entry wins
    model = f"--model={run_dir / 'checkpoint-1.keras'}"
    for args, message in (([str(unreadable), model], "None of the 1 image(s) given could be read"),
                          ([str(tmp_path / "empty.txt"), model], "names no image"),
                          ([f"--model={run_dir}"], "is a folder: give the .keras file"),
                          ([f"--model={other}"], "is not an image classifier of this suite"),
                          ([f"--model={renamed}"], ": classes = 8 should be a list")):
        assert cnn_eval.main([*args, "--figure=False"]) == 2, args
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (args, err)


def test_the_standin_generator_reports_disk_errors(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("mine")
    assert standin.main([f"--out_dir={blocker / 'sub'}"], config.defaults(cnn_params)) == 2
    assert "Cannot use" in capsys.readouterr().err
    assert blocker.read_text() == "mine"


def test_a_prepare_with_all_validation_unreadable_says_so(tmp_path):
    data = make_class_folders(tmp_path / "data", per_class=2)
    for path in (data / "validation").rglob("*.*"):
        path.write_bytes(b"")
    params = {**config.defaults(cnn_params), "data_dir": str(data), "cache_dir": "",
              "image_size": 16}
    with pytest.warns(UserWarning, match="is empty"):
        with pytest.raises(layouts.DataError, match="No validation image of .* could be read"):
            cnn_data.prepare_data(params)
