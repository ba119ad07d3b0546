"""Export: each format round-trips through its own runtime within the stated tolerances."""

import json

import numpy as np
import pytest

import cnn_eval
import cnn_model
from cnnlib import export
from cnnlib.errors import ModelError
from serving_model import ROOT, TEST_IMAGES, tiny_model

SHARED_IMAGES = ROOT.parent / "shared" / "datasets" / "facial_expressions" / "images"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(model path, model, trained params) of the tiny model."""
    path = tiny_model(tmp_path_factory.mktemp("model"))
    model = cnn_model.load_model(path)
    defaults = {"classes": [], "aliases": {}, "crop_faces": False, "face_margin": 0.1}
    return path, model, cnn_eval.trained_params(path, model, defaults)


def real_faces():
    """Real face crops: the shared set's first 60 photos where it is here, and test_images."""
    found = sorted(SHARED_IMAGES.glob("*.jpg"))[:60] if SHARED_IMAGES.is_dir() else []
    return [*found, *sorted(TEST_IMAGES.glob("*.jpg"))]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["saved_model", "onnx", "tflite"])
def test_export_round_trips(saved, tmp_path, fmt):
    path, model, trained = saved
    folder, report = export.export_model(model, path, trained, fmt, tmp_path / "runs",
                                         real_faces())
    assert folder.parent == tmp_path / "runs" / "exports" and folder.name.startswith(f"tiny-{fmt}-")
    assert report["verified"], report
    on_disk = json.loads((folder / "report.json").read_text())
    assert on_disk["files"].keys() == report["files"].keys()
    assert (folder / "report.md").read_text().startswith("# Export")
    recipe = json.loads((folder / "preprocessing.json").read_text())
    assert recipe["input"]["image_size"] == 32 and recipe["input"]["channels"] == 1
    assert recipe["input"]["pixel_range"] == [0, 255]
    assert recipe["classes"] == trained["classes"]
    assert recipe["faces"]["margin"] == 0.1
    for name, entry in report["files"].items():
        metrics = entry["metrics"]
        assert metrics["images"] == len(real_faces())
        assert entry["bytes"] > 0 and entry["ms_per_image"] > 0
        assert "labelled" in metrics  # test_images' names give their classes
        if entry["variant"] == "float":
            assert metrics["max_probability_difference"] < 1e-4, name
            assert metrics["top1_agreement"] == 1.0, name
        else:  # int8: calibrated on the same real faces, never on noise
            assert metrics["top1_agreement"] >= 0.8, metrics
            assert abs(metrics["accuracy_change"]) <= 0.2, metrics
            assert recipe["files"][name]["input_dtype"] == "uint8"
    if fmt == "tflite":
        assert set(report["files"]) == {"model.tflite", "model_int8.tflite"}
        assert report["calibrated_on"] == report["checked_on"]  # no run: the faces given
        assert "image(s) given (" in report["calibrated_on"]


def test_exported_onnx_scores_like_keras_without_the_suite(saved, tmp_path):
    """A program that knows only preprocessing.json gets Keras' probabilities from ONNX."""
    onnxruntime = pytest.importorskip("onnxruntime")
    from PIL import Image

    path, model, trained = saved
    folder, _ = export.export_model(model, path, trained, "onnx", tmp_path, [TEST_IMAGES])
    recipe = json.loads((folder / "preprocessing.json").read_text())
    size = recipe["input"]["image_size"]
    with Image.open(TEST_IMAGES / "happy.jpg") as image:
        pixels = np.asarray(image.convert("L").resize((size, size), Image.BILINEAR), np.float32)
    x = pixels[None, :, :, None]
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"))
    got = session.run(None, {recipe["files"]["model.onnx"]["input"]: x})[0]
    assert np.abs(got - model.predict_on_batch(x)).max() < 1e-4


def test_cli_exports_and_refuses_a_bad_format(saved, tmp_path, capsys):
    path = saved[0]
    assert cnn_eval.main(["--export=saved_model", f"--model={path}",
                          f"--runs_dir={tmp_path}", str(TEST_IMAGES)]) == 0
    assert "verified" in capsys.readouterr().out
    assert len(list((tmp_path / "exports").iterdir())) == 1
    assert cnn_eval.main(["--export=pb", f"--model={path}", f"--runs_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --export='pb' is not a format") and err.count("\n") == 1
    assert cnn_eval.main(["--export=onnx", "--serve=8766", f"--model={path}",
                          f"--runs_dir={tmp_path}"]) == 2
    assert capsys.readouterr().err == ("error: --export and --serve are two jobs: run one, "
                                       "then the other.\n")
    for count in ("--check_images=0", "--calibration_images=-1"):
        assert cnn_eval.main(["--export=tflite", count, f"--model={path}",
                              f"--runs_dir={tmp_path}"]) == 2
        assert f"{count} is not allowed" in capsys.readouterr().err
    assert len(list((tmp_path / "exports").iterdir())) == 1  # nothing more written


def test_a_converter_failure_names_the_op_in_one_sentence():
    error = RuntimeError('loc(fused["StatefulPartitionedCall@__inference", '
                         '"cnn/weird_layer/MatrixExponential@x"]): error: \'tf.MatrixExponential\''
                         ' op is neither a custom op nor a flex op\nmore lines')
    message = str(export._converter_failed("TFLite converter (float)", "m.keras", error))
    assert isinstance(export._converter_failed("x", "m", error), ModelError)
    assert "the op MatrixExponential" in message and "\n" not in message


@pytest.mark.slow
def test_a_model_with_augmentation_layers_exports_without_them(tmp_path):
    """Training-only random layers are left out of the export, which then scores as
    Keras does (with them the TFLite converter fails and the others disagree)."""
    model = cnn_model.build_model(
        [{"type": "conv", "units": 4, "kernel": 3, "pool": 2, "dropout": 0.0},
         {"type": "dense", "units": 3}], 3, 32, 1, seed=2,
        augmentation={"flip": True, "rotation": 0.05, "zoom": 0.1, "brightness": 0.1})
    path = cnn_model.save_model(model, tmp_path / "augmented.keras",
                                {"classes": ["a", "b", "c"], "aliases": {},
                                 "image_size": 32, "channels": 1})
    model = cnn_model.load_model(path)
    assert not any(l.name.startswith("aug_") for l in export.inference_model(model).layers)
    trained = cnn_eval.trained_params(path, model, {"classes": [], "aliases": {},
                                                    "crop_faces": False, "face_margin": 0.1})
    folder, report = export.export_model(model, path, trained, "tflite", tmp_path / "runs",
                                         real_faces())
    assert report["verified"], report
    assert report["files"]["model.tflite"]["metrics"]["max_probability_difference"] < 1e-4
