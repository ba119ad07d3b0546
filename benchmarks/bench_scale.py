"""Data preparation at scale: time and peak memory, cold and warm, and a projection.

Usage:  python benchmarks/bench_scale.py --data_dirs=DIR1,DIR2,... [--project=400000]
        (make the stand-ins first: python -m cnnlib.standin --out_dir=/tmp/x4 --scale=4)

For each folder, in fresh child processes (so each peak is its own):
  - cold: cnn_data.prepare_data with an empty image cache (decode, resize, balance,
    write the cache; the files themselves may be in the operating system's cache);
  - warm: the same again, as a second run sees it (the cache mapped from disk);
  - then one pass of the training input pipeline over the whole balanced set
    (what an epoch reads), and the peak resident memory after it.
It prints one row per folder and phase, the growth per image, and a projection
to --project image files (a straight line through the measurements: time and
memory grow linearly when seconds and MiB per image stay flat). Prints numbers,
no verdict.
"""

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from cnnlib import config  # noqa: E402


def measure(data_dir, cache_dir):
    """Child process: prepare the data once, then read one epoch; return the numbers."""
    import cnn_data
    import cnn_params

    params = {**config.defaults(cnn_params), "data_dir": data_dir, "cache_dir": cache_dir}
    start = time.perf_counter()
    data = cnn_data.prepare_data(params)
    prepared = time.perf_counter() - start
    peak_prepared = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    dataset = cnn_data.make_dataset(data["train_images"], data["train_labels"],
                                    len(data["classes"]), params["batch_size"], shuffle=True,
                                    seed=params["seed"])
    start = time.perf_counter()
    for _ in dataset:
        pass
    epoch_read = time.perf_counter() - start
    files = int(data["counts_before"].sum()) + len(data["val_labels"])
    return {"files": files, "train": len(data["train_labels"]),
            "validation": len(data["val_labels"]), "seconds": prepared,
            "peak_mib": peak_prepared, "read_seconds": epoch_read,
            "peak_after_read_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10,
            "data_mib": (data["train_images"].nbytes + data["val_images"].nbytes) / 2**20}


def child(data_dir, cache_dir):
    done = subprocess.run([sys.executable, __file__, f"--child={data_dir}",
                           f"--cache={cache_dir}"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    if done.returncode:
        raise SystemExit(f"measuring {data_dir} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    options = {"data_dirs": "", "project": 400_000, "child": "", "cache": ""}
    params, _ = config.parse_args(sys.argv[1:], options)
    if params["child"]:
        print(json.dumps(measure(params["child"], params["cache"])))
        return 0
    folders = [d for d in params["data_dirs"].split(",") if d]
    if not folders:
        print("Give --data_dirs=DIR1,DIR2,... (stand-ins of several scales).")
        return 2
    rows = []
    print(f"{'data':<28} {'files':>7} {'train':>7} {'phase':<5} {'prep s':>7} "
          f"{'peak MiB':>9} {'epoch read s':>12} {'peak after MiB':>14} {'data MiB':>9}")
    for folder in folders:
        cache = tempfile.mkdtemp(prefix="bench-scale-cache-")
        try:
            for phase in ("cold", "warm"):
                row = {"data": folder, "phase": phase, **child(folder, cache)}
                rows.append(row)
                print(f"{folder[-28:]:<28} {row['files']:>7} {row['train']:>7} {phase:<5} "
                      f"{row['seconds']:>7.1f} {row['peak_mib']:>9.0f} "
                      f"{row['read_seconds']:>12.1f} {row['peak_after_read_mib']:>14.0f} "
                      f"{row['data_mib']:>9.0f}", flush=True)
        finally:
            shutil.rmtree(cache, ignore_errors=True)
    print(f"\nPer image file, and a straight line to {params['project']:,} files "
          f"(least squares over the folders):")
    for phase in ("cold", "warm"):
        picked = [r for r in rows if r["phase"] == phase]
        files = np.array([r["files"] for r in picked], float)
        for key, unit in (("seconds", "s"), ("peak_mib", "MiB"), ("peak_after_read_mib", "MiB")):
            values = np.array([r[key] for r in picked], float)
            per = ", ".join(f"{v / f * 1000:.2f}" for v, f in zip(values, files))
            slope, offset = np.polyfit(files, values, 1) if len(files) > 1 else (values[0] / files[0], 0)
            projected = slope * params["project"] + offset
            shown = f"{projected / 1024:.1f} GiB" if unit == "MiB" else f"{projected:.0f} s"
            print(f"  {phase} {key:<20} per 1000 files: {per} {unit}; at {params['project']:,}: "
                  f"{shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
