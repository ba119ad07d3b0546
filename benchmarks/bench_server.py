"""The served model's speed and memory, on loopback only: `python benchmarks/bench_server.py`.

Starts `python cnn_eval.py --serve` in a subprocess on a free 127.0.0.1 port (with
--model=PATH, or the report's network at its size, 96x96 grayscale, untrained: the
cost of a prediction does not depend on the weights), then:
  - requests per second and p50/p95 latency at 1, 4 and 16 concurrent clients,
    --requests each (one keep-alive connection per client), POST /predict of a
    640x320 photo with one face;
  - the server's resident memory (RSS, from /proc) at the start, after the
    warm-up, and after --soak requests (10,000 by default).
Every loop is bounded by its count; the server is stopped at the end. Prints numbers,
no verdicts. Options: --model=PATH --requests=200 --soak=10000 --clients=1,4,16
"""

import http.client
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss_mib(pid):
    """Resident memory of process `pid` in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def post(connection, body):
    """(status, seconds) of one POST /predict on a kept-alive connection."""
    start = time.perf_counter()
    connection.request("POST", "/predict", body, {"Content-Type": "image/jpeg"})
    response = connection.getresponse()
    response.read()
    return response.status, time.perf_counter() - start


def run_clients(port, body, clients, total):
    """`total` requests spread over `clients` threads. Returns (statuses, latencies, seconds)."""
    share = [total // clients + (i < total % clients) for i in range(clients)]

    def client(count):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        out = [post(connection, body) for _ in range(count)]
        connection.close()
        return out

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = [r for part in pool.map(client, share) for r in part]
    return [s for s, _ in results], np.array([t for _, t in results]), time.perf_counter() - start


def default_model(folder):
    import cnn_model
    import cnn_params

    model = cnn_model.build_model(cnn_params.LAYERS, len(cnn_params.CLASSES),
                                  cnn_params.IMAGE_SIZE, cnn_params.CHANNELS, seed=1)
    return cnn_model.save_model(model, Path(folder) / "report-net.keras",
                                {"classes": cnn_params.CLASSES, "aliases": cnn_params.ALIASES,
                                 "image_size": cnn_params.IMAGE_SIZE,
                                 "channels": cnn_params.CHANNELS})


def main(argv=None):
    from cnnlib import config
    from serving_model import face_photo

    params, _ = config.parse_args(sys.argv[1:] if argv is None else argv,
                                  {"model": "", "requests": 200, "soak": 10_000,
                                   "clients": [1, 4, 16]}, positional=False)
    with tempfile.TemporaryDirectory() as scratch:
        model = params["model"] or str(default_model(scratch))
        body = face_photo(Path(scratch) / "photo.jpg", 1).read_bytes()
        port = free_port()
        command = [sys.executable, "cnn_eval.py", f"--serve={port}", f"--model={model}"]
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        try:
            for _ in range(600):  # up to 60 s for TensorFlow and the model to load
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    time.sleep(0.1)
            else:
                raise SystemExit("The server did not start within 60 s.")
            print(f"bench_server: {datetime.now():%Y-%m-%d %H:%M}, {platform.node()}, "
                  f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
                  f"Python {platform.python_version()}")
            print(f"model {model}; body {len(body):,} bytes (640x320 JPEG, one face)")
            start_rss = rss_mib(process.pid)
            run_clients(port, body, 2, 20)  # warm-up
            warm_rss = rss_mib(process.pid)
            print(f"{'clients':>7} {'requests':>8} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} "
                  f"{'non-200':>7}")
            for clients in params["clients"]:
                statuses, latencies, seconds = run_clients(port, body, clients,
                                                           params["requests"])
                print(f"{clients:>7} {len(statuses):>8} {len(statuses) / seconds:>7.1f} "
                      f"{1000 * np.percentile(latencies, 50):>7.1f} "
                      f"{1000 * np.percentile(latencies, 95):>7.1f} "
                      f"{sum(s != 200 for s in statuses):>7}")
            statuses, _, seconds = run_clients(port, body, 4, params["soak"])
            print(f"RSS: {start_rss:.0f} MiB at start, {warm_rss:.0f} MiB after the warm-up, "
                  f"{rss_mib(process.pid):.0f} MiB after {len(statuses):,} more requests "
                  f"({seconds:.0f} s at 4 clients, {sum(s != 200 for s in statuses)} non-200)")
        finally:
            process.terminate()
            process.wait(30)


if __name__ == "__main__":
    main()
