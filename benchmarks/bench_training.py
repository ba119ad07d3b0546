"""Training throughput of the suite against bare Keras and the machine's ceiling.

Usage:  python benchmarks/bench_training.py [--steps=N] [--explore] [--name=value ...]

Prints numbers, no verdict. Measured in one process, so the ratios hold on a
noisy machine:
  - images/s of the suite's own training path (its tf.data pipeline and its fit
    call, class weights and validation included) over one epoch of the
    stand-in's augmented training set, after one warm-up epoch;
  - images/s of a bare model.fit on in-memory float32 NumPy arrays of the same
    model and batch size, and the ratio of the two;
  - the model's FLOPs per training image (forward and backward, counted from
    the layer shapes) and the machine's measured float32 matmul FLOP/s, and the
    fraction of that ceiling the suite reaches;
  - peak resident memory of the default run: `cnn_run.py --epochs=1` in a child
    process (this benchmark's own process holds two models and a float32 copy).
--explore also times a short fit under each CPU option TensorFlow offers here
(XLA, op determinism, thread counts, oneDNN off, bfloat16 where the CPU has it),
each in a fresh process, and says which is fastest.
"""

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from cnnlib import config  # noqa: E402


def model_flops_per_image(model):
    """Forward FLOPs of one image through the Conv2D and Dense layers, times 3 for training.

    A multiply-add counts as 2 FLOPs; the backward pass costs about twice the
    forward one (gradients for inputs and for weights).
    """
    import keras

    forward = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, height, width, filters = layer.output.shape
            kernel_h, kernel_w = layer.kernel_size
            channels_in = layer.input.shape[-1]
            forward += 2 * height * width * filters * kernel_h * kernel_w * channels_in
        elif isinstance(layer, keras.layers.Dense):
            forward += 2 * layer.input.shape[-1] * layer.units
    return 3 * forward


def matmul_flops_per_second(n=2048, repeats=10):
    """Measured float32 matrix-multiply FLOP/s of this machine, through TensorFlow."""
    import tensorflow as tf

    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))
    tf.linalg.matmul(a, b).numpy()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        c = tf.linalg.matmul(a, b)
    c.numpy()
    return 2 * n ** 3 * repeats / (time.perf_counter() - start)


def epoch_seconds(model, x, y=None, **fit_args):
    """Fit two epochs; return the seconds of the second (the first traces and warms)."""
    import keras

    times = []
    timer = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: times.append(time.perf_counter()),
        on_epoch_end=lambda epoch, logs: times.append(time.perf_counter()))
    model.fit(x, y, epochs=2, verbose=0, callbacks=[timer], **fit_args)
    return times[3] - times[2]


def main():
    import cnn_params

    defaults = {**config.defaults(cnn_params), "steps": 0, "explore": False,
                "option": "", "run_memory": True}
    params, _ = config.parse_args(sys.argv[1:], defaults)
    if params["option"]:  # a child process of --explore
        print(json.dumps(time_option(params)))
        return 0

    import tensorflow as tf

    import cnn_data
    import cnn_model

    if params["deterministic"]:  # as cnn_run.py does
        tf.config.experimental.enable_op_determinism()
    print(f"machine: {os.cpu_count()} cores, TensorFlow {tf.__version__}")
    data = cnn_data.prepare_data(params, standin_dir=cnn_params.DATA_DIR)
    classes = data["classes"]
    x, labels = data["train_images"], data["train_labels"]
    if params["steps"]:
        keep = np.random.default_rng(0).permutation(len(x))[: params["steps"] * params["batch_size"]]
        x, labels = x[np.sort(keep)], labels[np.sort(keep)]
    images = len(x)
    batch = params["batch_size"]
    print(f"training images per epoch: {images} (batch {batch})")

    def build():
        return cnn_model.build_model(params["layers"], len(classes), params["image_size"],
                                     params["channels"], params["dropout"],
                                     params["learning_rate"], seed=params["seed"])

    # The suite's path: its pipeline, class weights and per-epoch validation.
    model = build()
    train = cnn_data.make_dataset(x, labels, len(classes), batch, shuffle=True,
                                  seed=params["seed"])
    validation = cnn_data.make_dataset(data["val_images"], data["val_labels"],
                                       len(classes), batch)
    suite = epoch_seconds(model, train, validation_data=validation,
                          class_weight=data["weights"], shuffle=False)
    # Validation is part of the suite's epoch; time it alone to report training apart.
    start = time.perf_counter()
    model.evaluate(validation, verbose=0)
    validation_seconds = time.perf_counter() - start
    suite_train = suite - validation_seconds

    # Bare Keras: float32 arrays in memory, no pipeline, no weights, no validation.
    bare_model = build()
    x_float = x.astype(np.float32)  # the model rescales /255 itself, as in the suite
    y = np.eye(len(classes), dtype=np.float32)[labels]
    bare = epoch_seconds(bare_model, x_float, y, batch_size=batch, shuffle=True)

    flops = model_flops_per_image(model)
    ceiling = matmul_flops_per_second()
    suite_rate, bare_rate = images / suite_train, images / bare
    print(f"suite training:   {suite_rate:8.1f} images/s  ({suite_train:.1f} s/epoch of "
          f"training + {validation_seconds:.1f} s validation)")
    print(f"bare model.fit:   {bare_rate:8.1f} images/s  ({bare:.1f} s/epoch)")
    print(f"suite / bare:     {suite_rate / bare_rate:8.3f}")
    print(f"model FLOPs per training image: {flops / 1e6:.1f} M (forward x 3)")
    print(f"float32 matmul:   {ceiling / 1e9:8.1f} GFLOP/s (2048x2048, TensorFlow)")
    print(f"suite reaches:    {suite_rate * flops / 1e9:8.1f} GFLOP/s = "
          f"{100 * suite_rate * flops / ceiling:.1f}% of the matmul ceiling")
    print(f"peak resident memory of this benchmark: "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
    if params["run_memory"]:
        print(f"peak resident memory of cnn_run.py --epochs=1: {run_memory(params):.2f} GiB")
    print(f"TensorFlow options in use: op determinism {'on' if params['deterministic'] else 'off'}, "
          f"XLA off, default threads, oneDNN as installed")
    if params["explore"]:
        explore(params)
    return 0


def run_memory(params):
    """Peak resident memory (GiB) of a one-epoch cnn_run.py in a child process."""
    import tempfile

    folders = {name: os.path.abspath(params[name]) if params[name] else ""
               for name in ("data_dir", "cache_dir")}  # the child runs in the project folder
    # The child reports its own peak: a forked child's RUSAGE_CHILDREN figure would
    # include this process's memory, copied before exec.
    child = ("import resource, runpy, sys\n"
             "sys.argv = sys.argv[1:]\n"
             "try:\n    runpy.run_path('cnn_run.py', run_name='__main__')\n"
             "except SystemExit:\n    pass\n"
             "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
    with tempfile.TemporaryDirectory() as runs:
        done = subprocess.run([sys.executable, "-c", child, "cnn_run.py", "--epochs=1",
                               "--verbose=0", f"--runs_dir={runs}",
                               *(f"--{k}={v}" for k, v in folders.items())],
                              cwd=ROOT, check=True, capture_output=True, text=True)
    return int(done.stdout.strip().splitlines()[-1]) / 2**20


# ---------------------------------------------------------------- --explore

OPTIONS = {
    "default": {},
    "xla": {"jit": True},
    "determinism": {"deterministic": True},
    "threads=1x2": {"inter": 1, "intra": 2},
    "threads=2x1": {"inter": 2, "intra": 1},
    "onednn_off": {"env": {"TF_ENABLE_ONEDNN_OPTS": "0"}},
    "bfloat16": {"bf16": True},
}


def cpu_has_bf16():
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def time_option(params):
    """Child process: time 60 training steps (after 10 warm-up) under one option.

    Returns {"images_per_s", "loss"}: the loss after the steps shows whether an
    option changes what is learned, not only how fast.
    """
    option = OPTIONS[params["option"]]
    import tensorflow as tf

    if option.get("inter"):
        tf.config.threading.set_inter_op_parallelism_threads(option["inter"])
        tf.config.threading.set_intra_op_parallelism_threads(option["intra"])
    if option.get("deterministic"):
        tf.config.experimental.enable_op_determinism()
    import keras

    import cnn_model

    rng = np.random.default_rng(0)
    batch, steps, warm = params["batch_size"], 60, 10
    x = rng.integers(0, 256, ((steps + warm) * batch, params["image_size"],
                              params["image_size"], params["channels"]), dtype=np.uint8)
    y = np.eye(8, dtype=np.float32)[rng.integers(0, 8, len(x))]
    model = cnn_model.build_model(params["layers"], 8, params["image_size"], params["channels"],
                                  params["dropout"], params["learning_rate"], seed=1,
                                  precision="bfloat16" if option.get("bf16") else "none")
    if option.get("jit"):
        model.compile(optimizer=keras.optimizers.Adam(params["learning_rate"]),
                      loss="categorical_crossentropy", metrics=["accuracy"], jit_compile=True)
    model.fit(x[: warm * batch], y[: warm * batch], batch_size=batch, epochs=1, verbose=0)
    start = time.perf_counter()
    history = model.fit(x[warm * batch:], y[warm * batch:], batch_size=batch, epochs=1,
                        verbose=0, shuffle=False)
    seconds = time.perf_counter() - start
    return {"images_per_s": steps * batch / seconds, "loss": history.history["loss"][-1]}


def explore(params):
    print("\nCPU options (60 steps each, fresh process; loss after the steps, same data):")
    results = {}
    for name, option in OPTIONS.items():
        if option.get("bf16") and not cpu_has_bf16():
            print(f"  {name:<13} skipped: this CPU has no bfloat16 instructions")
            continue
        env = {**os.environ, **option.get("env", {})}
        done = subprocess.run([sys.executable, __file__, f"--option={name}"], env=env,
                              capture_output=True, text=True, cwd=ROOT)
        if done.returncode:
            print(f"  {name:<13} failed: {done.stderr.strip().splitlines()[-1:]}")
            continue
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"  {name:<13} {results[name]['images_per_s']:8.1f} images/s   "
              f"loss {results[name]['loss']:.4f}")
    if results:
        # An option must be clearly faster (noise here is a few percent) and learn
        # the same, else the default stays.
        default = results["default"]
        better = [n for n, r in results.items()
                  if r["images_per_s"] > 1.05 * default["images_per_s"]
                  and abs(r["loss"] - default["loss"]) < 0.01]
        best = max(better, key=lambda n: results[n]["images_per_s"]) if better else "default"
        gain = results[best]["images_per_s"] / default["images_per_s"]
        print(f"chosen: {best} ({gain:.2f} x default)")


if __name__ == "__main__":
    sys.exit(main())
