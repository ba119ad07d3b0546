"""Mixed precision on this machine: seconds per epoch and final accuracy, against float32.

Usage:  python benchmarks/bench_precision.py [--epochs=10] [--seeds=1234,1235,1236]
                                             [--precisions=none,bfloat16] [--name=value ...]

For each seed, one child process builds the report's model once per precision,
from the same seed (the same initial weights), with its own copy of the same
shuffled pipeline (the same batches), and trains them in turns, one epoch each,
as cnn_run.py does (the suite's pipeline, class weights, validation every epoch,
op determinism on). The pairs differ in precision only, and share the machine's
load, which on a shared machine moves single timings by a factor of two. It
prints, per seed, each precision's median seconds per epoch (after the first,
which traces) and last validation accuracy and loss; then the means and the
speed ratio. The seeds' spread is the run-to-run spread an accuracy difference is
judged against. --steps_only=N instead times N training steps of random data per
precision (no accuracy), a quick look at float16, which a CPU has no fast path for.
Prints numbers, no verdict.
"""

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from cnnlib import config  # noqa: E402


def paired(params, seed):
    """Child process: train one model per precision in turns; return their epochs."""
    import keras
    import tensorflow as tf

    import cnn_data
    import cnn_model
    import cnn_params

    if params["deterministic"]:
        tf.config.experimental.enable_op_determinism()
    params = {**params, "seed": seed}
    data = cnn_data.prepare_data(params, standin_dir=cnn_params.DATA_DIR)
    classes, batch = len(data["classes"]), params["batch_size"]
    precisions = params["precisions"].split(",")

    def pipelines():
        return (cnn_data.make_dataset(data["train_images"], data["train_labels"], classes,
                                      batch, shuffle=True, seed=seed),
                cnn_data.make_dataset(data["val_images"], data["val_labels"], classes, batch))

    runs = {}
    for precision in precisions:
        train, validation = pipelines()  # each its own, from the same seed: the same batches
        model = cnn_model.build_model(params["layers"], classes, params["image_size"],
                                      params["channels"], params["dropout"],
                                      params["learning_rate"], seed=seed, precision=precision)
        runs[precision] = {"model": model, "train": train, "validation": validation,
                           "seconds": [], "history": {}}
    for epoch in range(params["epochs"]):
        for precision, run in runs.items():
            started = time.perf_counter()
            history = run["model"].fit(run["train"], validation_data=run["validation"],
                                       initial_epoch=epoch, epochs=epoch + 1,
                                       class_weight=data["weights"], verbose=0,
                                       shuffle=False).history
            run["seconds"].append(time.perf_counter() - started)
            for key, values in history.items():
                run["history"].setdefault(key, []).extend(values)
    return {p: {"seconds": r["seconds"], **{k: v[-1] for k, v in r["history"].items()}}
            for p, r in runs.items()}


def steps_only(params):
    """Images/s of N training steps (after 10 warm-up) under each precision, in one child each."""
    code = ("import sys, time, numpy as np, cnn_model, cnn_params\n"
            "precision, steps = sys.argv[1], int(sys.argv[2])\n"
            "rng = np.random.default_rng(0)\n"
            "x = rng.integers(0, 256, ((steps + 10) * 32, 96, 96, 1), dtype=np.uint8)\n"
            "y = np.eye(8, dtype=np.float32)[rng.integers(0, 8, len(x))]\n"
            "m = cnn_model.build_model(cnn_params.LAYERS, 8, 96, 1, True, 1e-3, seed=1, "
            "precision=precision)\n"
            "m.fit(x[:320], y[:320], batch_size=32, epochs=1, verbose=0)\n"
            "t = time.perf_counter()\n"
            "m.fit(x[320:], y[320:], batch_size=32, epochs=1, verbose=0, shuffle=False)\n"
            "print(steps * 32 / (time.perf_counter() - t))\n")
    for precision in params["precisions"].split(","):
        done = subprocess.run([sys.executable, "-c", code, precision, str(params["steps_only"])],
                              cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        rate = float(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else float("nan")
        print(f"  {precision:<9} {rate:8.1f} images/s over {params['steps_only']} steps")


def main():
    import cnn_params

    options = {**config.defaults(cnn_params), "epochs": 10, "seeds": "1234,1235,1236",
               "precisions": "none,bfloat16", "steps_only": 0, "child_seed": -1}
    params, _ = config.parse_args(sys.argv[1:], options)
    if params["child_seed"] >= 0:
        print(json.dumps(paired(params, params["child_seed"])))
        return 0
    try:
        flags = Path("/proc/cpuinfo").read_text()
        bf16 = "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:
        bf16 = False
    print(f"machine: {os.cpu_count()} cores, bfloat16 instructions: {'yes' if bf16 else 'no'}")
    if params["steps_only"]:
        steps_only(params)
        return 0
    precisions = params["precisions"].split(",")
    results = {p: [] for p in precisions}
    for seed in (int(s) for s in params["seeds"].split(",")):
        started = time.perf_counter()
        done = subprocess.run([sys.executable, __file__, f"--child_seed={seed}", *sys.argv[1:]],
                              cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        if done.returncode:
            raise SystemExit(f"seed {seed} failed:\n{done.stderr[-3000:]}")
        pair = json.loads(done.stdout.strip().splitlines()[-1])
        for precision in precisions:
            row = pair[precision]
            row["epoch_s"] = statistics.median(row["seconds"][1:] or row["seconds"])
            results[precision].append({"seed": seed, **row})
            print(f"  seed {seed} {precision:<9} {row['epoch_s']:6.1f} s/epoch (median of epochs "
                  f"2-{len(row['seconds'])}; first {row['seconds'][0]:.1f} s), val accuracy "
                  f"{row['val_accuracy']:.3f}, val loss {row['val_loss']:.3f}, train accuracy "
                  f"{row['accuracy']:.3f}", flush=True)
        print(f"  [{time.perf_counter() - started:.0f} s]", flush=True)
    base = statistics.mean(r["epoch_s"] for r in results[precisions[0]])
    print(f"\nAfter {params['epochs']} epochs (dropout {params['dropout']}), mean over the seeds "
          f"(spread = max - min):")
    for precision, rows in results.items():
        speed = statistics.mean(r["epoch_s"] for r in rows)
        accuracy = [r["val_accuracy"] for r in rows]
        print(f"  {precision:<9} {speed:6.1f} s/epoch ({base / speed:.2f} x {precisions[0]}'s "
              f"speed), val accuracy {np.mean(accuracy):.3f} (spread "
              f"{max(accuracy) - min(accuracy):.3f}), val loss "
              f"{np.mean([r['val_loss'] for r in rows]):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
