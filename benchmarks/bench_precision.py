"""Mixed precision on this machine: seconds per epoch and final accuracy, against float32.

Usage:  python benchmarks/bench_precision.py [--epochs=8] [--seeds=1234,1235]
                                             [--precisions=none,bfloat16] [--name=value ...]

Each (precision, seed) is a real `cnn_run.py --epochs=N --mixed_precision=P
--seed=S` in a child process on the default data (the stand-in unless
--data_dir says otherwise), interleaved (float32 seed 1, bfloat16 seed 1,
float32 seed 2, ...) so a change in the machine's load hits both alike. From
each run's history.csv it prints the median seconds of the epochs after the
first (the first traces the model), and the last epoch's validation accuracy
and loss; then, per precision, the mean, and the speed ratio to float32. The
seeds' spread is the run-to-run spread that an accuracy difference is judged
against. --steps_only=N instead times N training steps per precision (no
accuracy), for a quick look at float16, which a CPU has no fast path for.
--alternate=R measures speed alone, robustly on a shared machine: one process
builds the model in each precision and trains them in turns, 100 steps of the
suite's own pipeline (stand-in data, class weights) each, R rounds; it prints
each precision's median images/s and their ratio.
Prints numbers, no verdict.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from cnnlib import config  # noqa: E402


def train(precision, seed, params, runs_dir):
    """One cnn_run.py in a child process; returns (epoch seconds, last row of history)."""
    args = [f"--epochs={params['epochs']}", f"--mixed_precision={precision}", f"--seed={seed}",
            "--verbose=0", f"--runs_dir={runs_dir}", f"--data_dir={params['data_dir']}",
            f"--cache_dir={params['cache_dir']}"]
    done = subprocess.run([sys.executable, "cnn_run.py", *args], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    if done.returncode:
        raise SystemExit(f"cnn_run.py {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    run_dir = Path(runs_dir) / (Path(runs_dir) / "latest.txt").read_text().strip()
    import csv

    with open(run_dir / "history.csv") as handle:
        rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]
    return [row["seconds"] for row in rows], rows[-1]


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


def alternate(params):
    """Train each precision's model in turns, 100 steps at a time; print median images/s."""
    import keras

    import cnn_data
    import cnn_model
    import cnn_params

    precisions = params["precisions"].split(",")
    data = cnn_data.prepare_data(params, standin_dir=cnn_params.DATA_DIR)
    classes, batch, steps = len(data["classes"]), params["batch_size"], 100
    dataset = cnn_data.make_dataset(data["train_images"], data["train_labels"], classes, batch,
                                    shuffle=True, seed=params["seed"]).repeat()
    models = {p: cnn_model.build_model(params["layers"], classes, params["image_size"],
                                       params["channels"], params["dropout"],
                                       params["learning_rate"], seed=params["seed"], precision=p)
              for p in precisions}
    rates = {p: [] for p in precisions}
    for round_ in range(params["alternate"] + 1):
        for precision, model in models.items():
            times = []
            timer = keras.callbacks.LambdaCallback(
                on_epoch_begin=lambda epoch, logs: times.append(time.perf_counter()),
                on_epoch_end=lambda epoch, logs: times.append(time.perf_counter()))
            model.fit(dataset, epochs=1, steps_per_epoch=steps, class_weight=data["weights"],
                      verbose=0, callbacks=[timer], shuffle=False)
            if round_:  # the first round traces and warms up
                rates[precision].append(steps * batch / (times[1] - times[0]))
    base = statistics.median(rates[precisions[0]])
    for precision in precisions:
        median = statistics.median(rates[precision])
        print(f"  {precision:<9} {median:8.1f} images/s (median of {len(rates[precision])} x "
              f"{steps} steps; range {min(rates[precision]):.0f}-{max(rates[precision]):.0f}): "
              f"{median / base:.2f} x {precisions[0]}")


def main():
    import cnn_params

    options = {**config.defaults(cnn_params), "epochs": 8, "seeds": "1234,1235",
               "precisions": "none,bfloat16", "steps_only": 0, "alternate": 0}
    params, _ = config.parse_args(sys.argv[1:], options)
    try:
        flags = Path("/proc/cpuinfo").read_text()
        bf16 = "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:
        bf16 = False
    print(f"machine: {os.cpu_count()} cores, bfloat16 instructions: {'yes' if bf16 else 'no'}")
    if params["steps_only"]:
        steps_only(params)
        return 0
    if params["alternate"]:
        alternate(params)
        return 0
    precisions = params["precisions"].split(",")
    seeds = [int(s) for s in params["seeds"].split(",")]
    results = {p: [] for p in precisions}
    with tempfile.TemporaryDirectory(prefix="bench-precision-") as runs_dir:
        for seed in seeds:
            for precision in precisions:
                started = time.perf_counter()
                seconds, last = train(precision, seed, params, runs_dir)
                per_epoch = statistics.median(seconds[1:] or seconds)
                results[precision].append({"seed": seed, "epoch_s": per_epoch, **last})
                print(f"  {precision:<9} seed {seed}: {per_epoch:6.1f} s/epoch (epochs 2-"
                      f"{len(seconds)}; first {seconds[0]:.1f} s), val accuracy "
                      f"{last['val_accuracy']:.3f}, val loss {last['val_loss']:.3f}, train "
                      f"accuracy {last['accuracy']:.3f} [{time.perf_counter() - started:.0f} s]",
                      flush=True)
    base = statistics.mean(r["epoch_s"] for r in results[precisions[0]])
    print(f"\nAfter {params['epochs']} epochs, mean over seeds {seeds} "
          f"(spread = max - min over the seeds):")
    for precision, rows in results.items():
        speed = statistics.mean(r["epoch_s"] for r in rows)
        accuracy = [r["val_accuracy"] for r in rows]
        print(f"  {precision:<9} {speed:6.1f} s/epoch ({base / speed:.2f} x "
              f"{precisions[0]}'s speed), val accuracy {np.mean(accuracy):.3f} "
              f"(spread {max(accuracy) - min(accuracy):.3f}), val loss "
              f"{np.mean([r['val_loss'] for r in rows]):.3f}")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
