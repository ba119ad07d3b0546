"""A trained model outside the suite: exported, verified, with its preprocessing contract.

Offers, in the order `python cnn_eval.py --export=FORMAT` calls them:
  OPTIONS                                 the flags this adds to cnn_eval.py, with defaults
  contract(model, model_path, trained, min_face) -> preprocessing.json's dict: input size,
                                             channels, pixel range, classes, face settings
  verification_images(model_path, trained, given, ...) -> (check, calibration) ImageSets:
                                             real images in the model's own preprocessing
                                             (cnnlib/export_images.py)
  export_model(model, model_path, trained, fmt, out_root, given, ...)
                                          -> (folder, report): files written, verified
    inference_model(model)                -> the model without its training-only layers
    convert(model, fmt, folder, calibration) -> {variant: path} of the exported files
    (cnnlib/exported.py scores each written file with its own runtime and compares)
  print_report(folder, report)            prints what was written and how it verified

Formats (FORMATS): "saved_model" (Keras' own model.export, TensorFlow Serving's format,
scored with TensorFlow), "onnx" (Keras' own model.export(format="onnx"), which drives
tf2onnx; scored with ONNX Runtime) and "tflite" (TensorFlow's TFLite converter from that
SavedModel: float32, and full-integer int8 calibrated on real images; scored with
LiteRT's interpreter, or TensorFlow's own where ai-edge-litert is not installed).

Every file is scored by its own runtime on real images decoded exactly as in training,
and compared with Keras; the numbers go into report.json and report.md beside it. The
images, in this order of preference: for checking, those given, else the run's
validation images (when the run's params.json says where its data is and it is still
there), else TEST_DIR; for calibration, the run's training images, else the checking
images. Each report says which. Outputs go into a new folder
<runs_dir>/exports/<model>-<format>-<time>/; nothing is overwritten.
"""

import os
import shutil
import tempfile
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np

from cnnlib import atomic, exported, interrupt, runs
from cnnlib.errors import ModelError
from cnnlib.export_images import verification_images

FORMATS = ("saved_model", "onnx", "tflite")
# The flags --export adds to cnn_eval.py (merged into its defaults).
OPTIONS = {
    "export": "",             # saved_model, onnx or tflite; "" = no export
    "check_images": 200,      # at most this many images are scored to verify an export
    "calibration_images": 200,  # at most this many real images calibrate int8 quantisation
}
FLOAT_MAX_DIFF = 1e-4    # a float export's largest probability difference from Keras
INT8_MIN_AGREEMENT = 0.8  # an int8 model's least top-1 agreement with Keras to be kept


def contract(model, model_path, trained, min_face=30):
    """Return what another program needs to use the exported file: preprocessing.json.

    `trained` is cnn_eval.trained_params' dict (classes, image_size, channels,
    crop_faces, face_margin).
    """
    size, channels = trained["image_size"], trained["channels"]
    crop = bool(trained.get("crop_faces"))
    return {
        "model": str(model_path),
        "input": {
            "name": model.inputs[0].name if model.inputs else "image",
            "shape": [None, size, size, channels], "layout": "NHWC", "dtype": "float32",
            "image_size": size, "channels": channels,
            "color": "grayscale: Y = 0.299 R + 0.587 G + 0.114 B" if channels == 1 else "RGB",
            "pixel_range": [0, 255],
            "scaling": "none: give pixel values 0..255 (uint8 values as float32); the model "
                       "divides by 255 itself (a Rescaling(1/255) layer inside it)",
            "resize": "the whole image (or face crop) squashed to image_size x image_size, "
                      "never cropped: bilinear with antialiasing, rounded back to 0..255 "
                      "integers",
        },
        "output": {"shape": [None, len(trained["classes"])],
                   "meaning": "softmax probabilities, one per class, in the order of classes"},
        "classes": list(trained["classes"]),
        "faces": {
            "trained_on_face_crops": crop,
            "detector": "OpenCV Haar cascade haarcascade_frontalface_default.xml "
                        "(minNeighbors 5, scaleFactor 1.1), alt2 where it finds none",
            "min_face_size": min_face,
            "margin": trained.get("face_margin", 0.1),
            "crop": "a square of side max(w, h) * (1 + 2 * margin) centred on the face box, "
                    "clipped at the image's edges, then resized as above",
            "alignment": "none: faces are not rotated or aligned by landmarks",
            "whole_image_when": "the largest face covers at least a quarter of the image, or "
                                "no face is found and the image is at most 400 px on its "
                                "longer side (it is already a crop)",
        },
    }


def _layer_of(text):
    """The op and layer a converter's error message names, as a phrase (best effort)."""
    import re

    op = (re.search(r"'tf\.(\w+)' op", text) or re.search(r"op type:? ?(\w+)", text)
          or re.search(r"[Oo]p (?:type )?\[?'?(\w+)'? is not supported", text)
          or re.search(r"Unsupported ops?:? (\w+)", text))
    layer = re.search(r'loc\([^"]*"[^/"]*/([^/"@]+)/', text)
    if not op:
        return None
    return f"the op {op.group(1)}" + (f" (layer {layer.group(1)})" if layer else "")


def _converter_failed(what, model_path, error):
    """The one-sentence ModelError for a converter that gave up on the model."""
    text = f"{type(error).__name__}: {error}"
    where = _layer_of(text)
    first = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
    return ModelError(f"The {what} cannot convert {where or 'the model'} of {model_path} "
                      f"({first}): export another format, or replace that layer.")


def inference_model(model):
    """`model` without its training-only augmentation layers (named aug_*; each
    member's, for an ensemble), sharing its weights: what is exported. Keras' export
    traces the random layers' ops, which TFLite cannot convert and which would make
    the exported file disagree with Keras."""
    import keras

    from cnnlib import ensemble

    if ensemble.members(model):  # each member drops its own augmentation
        return ensemble.rebuilt(model, inference_model)
    if not any(layer.name.startswith("aug_") for layer in model.layers):
        return model
    x = inputs = keras.Input(model.input_shape[1:], name=model.layers[0].name)
    for layer in model.layers[1:]:  # the suite's models are one chain of layers
        if not layer.name.startswith("aug_"):
            x = layer(x)
    return keras.Model(inputs, x, name=model.name)


def _saved_model(model, folder):
    """Keras' own TF SavedModel export into `folder` (a new folder), atomically."""
    partial = folder.with_name(f".{folder.name}.partial-{os.getpid()}")
    try:
        model.export(str(partial), format="tf_saved_model", verbose=False)
        os.replace(partial, folder)
    finally:
        if partial.exists():
            shutil.rmtree(partial)
    return folder


def _tflite_bytes(saved_dir, calibration=None):
    """The TFLite converter on a SavedModel: float32, or full-integer with uint8 in and out.

    uint8 input: raw pixels, unchanged when the calibration images span 0..255
    (scale 1, zero point 0); the output is a quantised softmax (see
    preprocessing.json for its scale and zero point).
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_dir))
    if calibration is not None:
        def representative():
            for image in calibration.images:
                yield [image[None].astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    return converter.convert()


def convert(model, fmt, folder, calibration=None, model_path=""):
    """Write `model` in `fmt` into `folder`. Returns {variant: Path}.

    "saved_model" -> {"float": folder/saved_model/}; "onnx" -> {"float": model.onnx};
    "tflite" -> {"float": model.tflite, "int8": model_int8.tflite} (int8 calibrated
    on `calibration`, an ImageSet). Raises ModelError naming the op a converter
    cannot convert.
    """
    folder = Path(folder)
    if fmt == "saved_model":
        try:
            return {"float": _saved_model(model, folder / "saved_model")}
        except Exception as error:
            raise _converter_failed("SavedModel export", model_path, error) from None
    if fmt == "onnx":
        path = folder / "model.onnx"
        try:
            with atomic.writing(path) as partial, warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # Keras' own np.object check
                model.export(str(partial), format="onnx", verbose=False)
        except ImportError as error:
            raise ModelError(f"ONNX export needs {error.name or 'tf2onnx'}, which is not "
                             f"installed: run `pip install -r requirements.txt`.") from None
        except Exception as error:
            raise _converter_failed("ONNX converter (tf2onnx)", model_path, error) from None
        return {"float": path}
    with tempfile.TemporaryDirectory() as scratch:
        saved = _saved_model(model, Path(scratch) / "saved_model")
        written = {}
        for variant, name, data in (("float", "model.tflite", None),
                                    ("int8", "model_int8.tflite", calibration)):
            try:
                content = _tflite_bytes(saved, data)
            except Exception as error:
                raise _converter_failed(f"TFLite converter ({variant})", model_path,
                                        error) from None
            with atomic.writing(folder / name) as partial:
                partial.write_bytes(content)
            written[variant] = folder / name
    return written


def _size(path):
    path = Path(path)
    return (sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir()
            else path.stat().st_size)


def _passed(variant, metrics):
    if variant == "int8":
        return metrics["top1_agreement"] >= INT8_MIN_AGREEMENT
    return metrics["max_probability_difference"] <= FLOAT_MAX_DIFF


def _markdown(report):
    """report.md: the numbers of report.json in a short table."""
    lines = [f"# Export of {report['model']} as {report['format']}", "",
             f"Checked on {report['checked_on']}; int8 calibrated on "
             f"{report['calibrated_on'] or '(no int8 file)'}.", "",
             "| file | size | verified | max prob diff | top-1 agreement | accuracy "
             "(Keras -> export) | ms/image (export; Keras " f"{report['keras_ms_per_image']:.2f}) |",
             "|---|---|---|---|---|---|---|"]
    for name, entry in report["files"].items():
        m = entry["metrics"]
        acc = (f"{m['keras_accuracy']:.3f} -> {m['export_accuracy']:.3f}" if "labelled" in m
               else "labels unknown")
        lines.append(f"| {name} | {entry['bytes'] / 1024:.1f} KiB | "
                     f"{'yes' if entry['verified'] else 'NO'} | "
                     f"{m['max_probability_difference']:.2e} | {m['top1_agreement']:.3f} | "
                     f"{acc} | {entry['ms_per_image']:.2f} |")
    lines += ["", f"Tolerances: float files within {FLOAT_MAX_DIFF:g} of Keras' probabilities; "
              f"the int8 file agrees on the top class for at least {INT8_MIN_AGREEMENT:.0%} "
              f"of the images.", "", "preprocessing.json says how to feed the files."]
    return "\n".join(lines) + "\n"


def export_model(model, model_path, trained, fmt, runs_dir="runs", given=(),
                 test_dir="test_images", check_count=200, calibration_count=200,
                 min_face=30):
    """Export `model` (loaded from `model_path`) as `fmt`, verify it, write the reports.

    Returns (folder, report dict as in report.json). Raises ModelError for an
    unknown format or a layer a converter cannot convert, DataError when there is
    no image to verify with.
    """
    if fmt not in FORMATS:
        raise ModelError(f"--export={fmt!r} is not a format: use one of {', '.join(FORMATS)}.")
    model_path = Path(model_path)
    check, calibration = verification_images(model_path, trained, given, test_dir,
                                             check_count, calibration_count, min_face)
    name = (f"{model_path.parent.name}-{model_path.stem}" if model_path.stem in ("model", "best")
            else model_path.stem)
    model = inference_model(model)
    # Keras first: it also builds the model's call, which Keras' ONNX export needs.
    keras_run = lambda x: model.predict_on_batch(x)  # noqa: E731
    reference, keras_ms = exported.timed(keras_run, check.images)
    folder = runs.new_output_dir(Path(runs_dir) / "exports", f"{name}-{fmt}")
    with interrupt.removed_if_interrupted(folder):  # Ctrl-C: no half export left
        try:
            files = convert(model, fmt, folder, calibration if fmt == "tflite" else None,
                            model_path)
        except BaseException:  # a refusal, a full disk: our own new folder, nothing finished
            shutil.rmtree(folder, ignore_errors=True)
            raise
        report = {"model": str(model_path), "format": fmt,
                  "written": f"{datetime.now():%Y-%m-%d %H:%M:%S}",
                  "checked_on": check.source,
                  "calibrated_on": calibration.source if "int8" in files else None,
                  "keras_ms_per_image": keras_ms, "tolerances": {
                      "float_max_probability_difference": FLOAT_MAX_DIFF,
                      "int8_min_top1_agreement": INT8_MIN_AGREEMENT},
                  "files": {}}
        recipe = contract(model, model_path, trained, min_face)
        recipe["files"] = {}
        for variant, path in files.items():
            probabilities, ms = exported.score(path, check.images)
            metrics = exported.compare(reference, probabilities, check.labels)
            report["files"][path.name] = {"variant": variant, "bytes": _size(path),
                                          "ms_per_image": ms, "metrics": metrics,
                                          "verified": _passed(variant, metrics)}
            recipe["files"][path.name] = _file_contract(path, variant)
        report["verified"] = all(entry["verified"] for entry in report["files"].values())
        atomic.write_json(folder / "preprocessing.json", recipe)
        atomic.write_json(folder / "report.json", report)
        atomic.write_text(folder / "report.md", _markdown(report))
    return folder, report


def _file_contract(path, variant):
    """How to call one exported file: its input and output names, types, quantisation."""
    if path.suffix == ".tflite":
        interpreter = exported.interpreter(path)
        source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        entry = {"input": source["name"], "input_dtype": np.dtype(source["dtype"]).name,
                 "output": target["name"], "output_dtype": np.dtype(target["dtype"]).name}
        if variant == "int8":
            entry["input_quantization"] = dict(zip(("scale", "zero_point"),
                                                   map(float, source["quantization"])))
            entry["output_quantization"] = dict(zip(("scale", "zero_point"),
                                                    map(float, target["quantization"])))
            entry["how"] = ("give uint8 q = clip(round(x / scale + zero_point), 0, 255) for "
                            "pixels x in 0..255 (calibrated on images spanning 0..255, the "
                            "scale is 1 and q the pixels themselves); probability = "
                            "(output - zero_point) * scale")
        return entry
    if path.suffix == ".onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return {"input": session.get_inputs()[0].name, "input_dtype": "float32",
                "output": session.get_outputs()[0].name, "output_dtype": "float32"}
    return {"signature": "serving_default", "input": "image", "input_dtype": "float32",
            "output": "output_0", "output_dtype": "float32"}


def print_report(folder, report):
    """One line a file: size, verified, the numbers; then where it all is."""
    print(f"Exported {report['model']} as {report['format']} into {folder}")
    print(f"Checked on {report['checked_on']}"
          + (f"; int8 calibrated on {report['calibrated_on']}" if report["calibrated_on"]
             else "") + f"; Keras {report['keras_ms_per_image']:.2f} ms/image.")
    for name, entry in report["files"].items():
        m = entry["metrics"]
        acc = (f", accuracy {m['keras_accuracy']:.3f} -> {m['export_accuracy']:.3f} "
               f"({m['accuracy_change']:+.3f})" if "labelled" in m else "")
        print(f"  {name}: {entry['bytes'] / 1024:.1f} KiB, "
              f"{'verified' if entry['verified'] else 'NOT VERIFIED'}: max prob diff "
              f"{m['max_probability_difference']:.2e}, top-1 agreement "
              f"{m['top1_agreement']:.3f}{acc}, {entry['ms_per_image']:.2f} ms/image")
    print(f"preprocessing.json, report.json and report.md: {folder}")
