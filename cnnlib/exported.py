"""Scoring an exported model file with its own runtime, and comparing it with Keras.

Offers, in the order export.export_model uses them:
  interpreter(path)                 -> a TFLite interpreter (LiteRT's, else TensorFlow's)
  runner(path)                      -> a function: uint8-range float32 images -> probabilities
  timed(run, images)                -> (probabilities [N, classes], ms per image)
  score(path, images)               -> (probabilities, ms per image) of a SavedModel folder,
                                       an .onnx or a .tflite file
  compare(reference, probabilities, labels) -> top-1 agreement, probability differences,
                                       accuracies when labels are known
"""

import time
import warnings
from pathlib import Path

import numpy as np

LATENCY_IMAGES = 50      # images timed one at a time for the per-image latency


def interpreter(path):
    """LiteRT's interpreter (ai-edge-litert), else TensorFlow's deprecated one."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
        Interpreter = tf.lite.Interpreter
    return Interpreter(model_path=str(path))


def runner(path):
    """A function uint8-range float32 images [N, s, s, c] -> float32 probabilities [N, k]."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: x})[0]
    if path.suffix == ".tflite":
        tflite = interpreter(path)
        source, target = tflite.get_input_details()[0], tflite.get_output_details()[0]

        def run(x):
            tflite.resize_tensor_input(source["index"], list(x.shape))
            tflite.allocate_tensors()
            scale, zero = source["quantization"]
            if source["dtype"] != np.float32:
                info = np.iinfo(source["dtype"])
                x = np.clip(np.round(x / scale + zero), info.min, info.max)
            tflite.set_tensor(source["index"], x.astype(source["dtype"]))
            tflite.invoke()
            out = tflite.get_tensor(target["index"])
            scale, zero = target["quantization"]
            return ((out.astype(np.float32) - zero) * scale if target["dtype"] != np.float32
                    else out)
        return run
    import tensorflow as tf

    serving = tf.saved_model.load(str(path)).signatures["serving_default"]
    key = list(serving.structured_input_signature[1])[0]
    return lambda x: next(iter(serving(**{key: tf.constant(x)}).values())).numpy()


def timed(run, images):
    """(probabilities of all `images` in one call, median ms per image one at a time)."""
    x = images.astype(np.float32)
    probabilities = np.asarray(run(x), np.float32)
    times = []
    for image in x[:LATENCY_IMAGES]:
        start = time.perf_counter()
        run(image[None])
        times.append(time.perf_counter() - start)
    return probabilities, 1000.0 * float(np.median(times))


def score(path, images):
    """Score uint8 `images` [N, s, s, c] with the exported file's own runtime.

    Returns (probabilities float32 [N, classes], median milliseconds per image).
    """
    return timed(runner(path), images)


def compare(reference, probabilities, labels):
    """The exported model's scores against Keras' on the same images.

    Returns {"images", "max_probability_difference", "mean_probability_difference",
    "top1_agreement", and where labels are known (>= 0): "labelled",
    "keras_accuracy", "export_accuracy", "accuracy_change"}.
    """
    difference = np.abs(reference - probabilities)
    agree = np.argmax(reference, 1) == np.argmax(probabilities, 1)
    out = {"images": int(len(reference)),
           "max_probability_difference": float(difference.max()),
           "mean_probability_difference": float(difference.mean()),
           "top1_agreement": float(agree.mean())}
    known = labels >= 0
    if known.any():
        keras_acc = float((np.argmax(reference[known], 1) == labels[known]).mean())
        export_acc = float((np.argmax(probabilities[known], 1) == labels[known]).mean())
        out.update(labelled=int(known.sum()), keras_accuracy=keras_acc,
                   export_accuracy=export_acc, accuracy_change=export_acc - keras_acc)
    return out


