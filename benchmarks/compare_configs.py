"""Train configurations side by side on one data set and print what they score.

Usage:  python benchmarks/compare_configs.py CONFIG.py [CONFIG.py ...] [--seeds=1,2]
            [--name=value ...]      (e.g. --data_dir=../shared/datasets/facial_expressions
                                     --classes=auto)

Each configuration trains once per seed, with `python cnn_run.py CONFIG --seed=S
...` in a child process (so each run is what a user gets), into benchmarks/out/runs.
Prints, per run and then per configuration (mean and spread over the seeds): the
validation accuracy, balanced accuracy and macro-F1 of the final model, the epochs
trained, the median seconds per epoch and the whole run's wall time. The seed also
draws the validation split, so the spread includes the split's luck. Then, per seed,
the first two configurations are compared on the same validation images (each run's
validation_predictions.csv, paired by file: cnnlib.compare.compare_files): the
difference in accuracy (McNemar mid-p), balanced accuracy and macro-F1 (paired
bootstrap), each with its interval and p-value.
"""

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "out"


def train(config, seed, overrides, runs_dir):
    """Run cnn_run.py once; return its scores, epochs, seconds per epoch and wall time."""
    start = time.perf_counter()
    log = OUT / f"{Path(config).stem}-seed{seed}.log"
    with open(log, "w") as handle:
        # Every seed, its own split and weights: a config's TRAINING_SEED is overridden.
        done = subprocess.run([sys.executable, "cnn_run.py", config, f"--seed={seed}",
                               "--training_seed=-1",
                               f"--runs_dir={runs_dir}", "--verbose=2", *overrides],
                              cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{config} seed {seed} failed: see {log}")
    run_dir = runs_dir / (runs_dir / "latest.txt").read_text().strip()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    seconds = [float(line.split(",")[-1]) for line in
               (run_dir / "history.csv").read_text().splitlines()[1:]]
    validation = metrics["validation"]
    return {"accuracy": validation["accuracy"],
            "balanced_accuracy": validation["balanced_accuracy"],
            "macro_f1": validation["macro_f1"], "epochs": metrics["epochs"],
            "seconds_per_epoch": statistics.median(seconds), "minutes": wall / 60,
            "run": str(run_dir), "seed": seed}


def main():
    configs = [a for a in sys.argv[1:] if a.endswith(".py")]
    seeds = [1, 2]
    overrides = []
    for arg in sys.argv[1:]:
        if arg.startswith("--seeds="):
            seeds = [int(s) for s in arg.split("=", 1)[1].split(",")]
        elif arg.startswith("--"):
            overrides.append(arg)
    if not configs:
        raise SystemExit("Give one or more configuration files, e.g. configs/report.py.")
    OUT.mkdir(parents=True, exist_ok=True)
    runs_dir = OUT / "runs"
    keys = ("accuracy", "balanced_accuracy", "macro_f1")
    results = {}
    for config in configs:
        for seed in seeds:
            result = train(config, seed, overrides, runs_dir)
            results.setdefault(config, []).append(result)
            print(f"{config} seed {seed}: " + "  ".join(f"{k} {result[k]:.3f}" for k in keys)
                  + f"  epochs {result['epochs']}  {result['seconds_per_epoch']:.1f} s/epoch"
                  f"  {result['minutes']:.1f} min  ({result['run']})", flush=True)
    print("\n| configuration | val accuracy | balanced accuracy | macro-F1 | epochs | "
          "s/epoch | run (min) |\n|---|---|---|---|---|---|---|")
    for config, rows in results.items():
        cells = []
        for key in keys:
            values = [r[key] for r in rows]
            spread = (max(values) - min(values)) / 2
            cells.append(f"{statistics.mean(values):.3f} +- {spread:.3f}")
        print(f"| {config} | " + " | ".join(cells) + f" | {rows[0]['epochs']} | "
              f"{statistics.mean(r['seconds_per_epoch'] for r in rows):.1f} | "
              f"{statistics.mean(r['minutes'] for r in rows):.1f} |")
    if len(configs) >= 2:
        print_comparisons(configs[0], configs[1], results)
    return 0


def print_comparisons(first, second, results):
    """Per seed, B = `second` against A = `first` on the same validation images."""
    from cnnlib import compare
    from cnnlib.errors import UserError

    for a, b in zip(results[first], results[second]):
        print(f"\n{second} (B) against {first} (A), seed {a['seed']}, validation images:")
        try:
            print(compare.format_comparison(compare.compare_files(a["run"], b["run"])))
        except UserError as error:
            print(f"  not compared: {error}")


if __name__ == "__main__":
    sys.exit(main())
