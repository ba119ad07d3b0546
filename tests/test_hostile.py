"""Hostile sizes, clusters and disks (issue 20, parts 4 to 6), each run as a subprocess.

- an image whose header claims more pixels than --max_pixels is refused from its header,
  in one sentence, with the child's memory small; a video whose frames are too large too;
- a malformed TF_CONFIG, a port in use and a set the replicas cannot share are one
  sentence each, before any training, with no run folder made;
- a name too long for the file system, a read-only folder and a full disk name the
  user's path (never our temporary file), and leave no empty output folder behind.

Each test starts one Python process that makes its several calls of the scripts' main(),
so TensorFlow loads once a test.
"""

import json
import os
import struct
import subprocess
import sys
import zlib

import pytest

from conftest import ROOT, make_class_folders, write_image

# Each case's exit status and stderr, as JSON on the child's last line of stdout.
RUNNER = """
import contextlib, io, json, resource, sys
def call(main, argv):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(argv)
    return [code, err.getvalue()]
"""


def run_child(body, env=None, timeout=300):
    """Run RUNNER + `body` (which sets `results`) in a child; return (results, peak MB)."""
    script = RUNNER + body + ("\nresults['peak_mb'] = resource.getrusage("
                              "resource.RUSAGE_SELF).ru_maxrss / 1024\n"
                              "print(json.dumps(results))\n")
    child_env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    child_env.update(TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT), **(env or {}))
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=child_env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def one_sentence(result, *words):
    """`result` ([code, stderr]) is exit 2 with one error line holding every word."""
    code, err = result
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    for word in words:
        assert str(word) in lines[0], (word, lines[0])
    return lines[0]


def png_claiming(path, width, height, rows=False):
    """A PNG whose header says `width` x `height` 1-bit pixels: with `rows`, the real
    (all-black, tiny once compressed) image; else no pixel data at all."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = b"\x00" * (1 + (width + 7) // 8)
    pixels = zlib.compress(row * height, 9) if rows else b""
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels)
                     + chunk(b"IEND", b""))
    return path


def small_video(path, size=(96, 80), frames=3):
    import cv2
    import numpy as np

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size)
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), 40 * i, np.uint8))
    writer.release()
    return path


@pytest.mark.slow
def test_images_and_frames_over_the_limit_are_refused_from_the_header(tmp_path):
    big = png_claiming(tmp_path / "big.png", 20000, 20000, rows=True)  # 48 KB on disk
    claims = png_claiming(tmp_path / "claims.png", 30000, 30000)         # a header only
    cut = tmp_path / "cut.png"
    cut.write_bytes(big.read_bytes()[:20])                               # a header cut short
    video = small_video(tmp_path / "clip.avi")
    runs = tmp_path / "runs"
    common = f"'--model=fer2013', '--runs_dir={runs}'"
    results = run_child(f"""
import cnn_eval
results = {{
    'big': call(cnn_eval.main, ['{big}', {common}]),
    'claims': call(cnn_eval.main, ['{claims}', {common}, '--faces=false']),
    'cut': call(cnn_eval.main, ['{cut}', {common}, '--faces=false']),
    'video': call(cnn_eval.main, ['{video}', {common}, '--max_pixels=5000',
                                  '--detector=haar']),
}}
""")
    one_sentence(results["big"], big, "20000x20000", "--max_pixels")
    one_sentence(results["claims"], claims, "30000x30000", "--max_pixels")
    one_sentence(results["cut"], "could be read")  # skipped as damaged, said why
    assert "cut.png is not a readable image" in results["cut"][1]
    one_sentence(results["video"], video, "96x80", "--max_pixels")
    # The 20000x20000 PNG once took this command to 22 GB: now nothing is decoded.
    assert results["peak_mb"] < 2000, results["peak_mb"]
    assert not list(runs.rglob("eval-*"))  # no empty output folder left behind


def test_the_server_and_every_decoder_share_one_limit_and_sentence(tmp_path):
    import io

    from PIL import Image

    from cnnlib import decode, server
    from cnnlib.errors import SizeError

    big = png_claiming(tmp_path / "big.png", 20000, 20000, rows=True)
    for decoder in (lambda: decode.decode_full(big, 1), lambda: decode.decode_image(big, 32, 1)):
        with pytest.raises(SizeError, match=r"20000x20000 pixels .*--max_pixels"):
            decoder()
    images, kept, skipped = decode.load_images([big], 32, 1)  # training: skipped, counted
    assert len(kept) == 0 and "20000x20000" in skipped[0][1]
    with pytest.raises(server.ApiError, match="20000x20000") as refused:
        server.read_image(big.read_bytes(), 1, server.Limits().max_pixels)
    assert refused.value.status == 413
    assert server.Limits().max_pixels == decode.MAX_PIXELS
    # Pillow's own bomb limit gives way to ours, both ways: checked, then decoded.
    assert decode.check_size(big, max_pixels=10**9) == (20000, 20000)
    small = write_image(tmp_path / "ok.png", (64, 48))
    assert decode.decode_full(small, 3).shape == (48, 64, 3)
    assert Image.MAX_IMAGE_PIXELS is not None  # left as Pillow had it
    assert decode.header_size(io.BytesIO(small.read_bytes())) == (64, 48)


@pytest.mark.slow
def test_a_bad_cluster_or_a_batch_larger_than_the_data_is_one_sentence(tmp_path):
    import socket

    data = make_class_folders(tmp_path / "data", per_class=1)  # 8 training images
    runs = tmp_path / "runs"
    common = (f"'--data_dir={data}', '--runs_dir={runs}', '--cache_dir=', '--test_dir=', "
              f"'--epochs=1', '--image_size=16', '--verbose=0'")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        results = run_child(f"""
import os
import cnn_run
cluster = '{{"cluster": {{"worker": [%s]}}, "task": {{"type": "worker", "index": %s}}}}'
results = {{}}
for name, workers, index in [('no_port', '"127.0.0.1"', 0),
                             ('index', '"127.0.0.1:1", "127.0.0.1:2"', 2),
                             ('in_use', '"127.0.0.1:{port}", "127.0.0.1:1"', 0)]:
    os.environ['TF_CONFIG'] = cluster % (workers, index)
    results[name] = call(cnn_run.main, [{common}, '--distribute=multiworker'])
del os.environ['TF_CONFIG']
results['batch'] = call(cnn_run.main, [{common}, '--distribute=mirrored', '--cpu_devices=3',
                                       '--batch_size=4'])
""")
    one_sentence(results["no_port"], "TF_CONFIG", "'127.0.0.1' is not host:port")
    one_sentence(results["index"], "TF_CONFIG", "task worker 2 is not in the cluster")
    one_sentence(results["in_use"], f"Port {port}", "in use")
    one_sentence(results["batch"], "training set has 8 image(s)", "global batch of 12",
                 "--batch_size=4 x 3 replicas", "not a multiple of the 3 replicas")
    assert not runs.exists() or not any(runs.iterdir())  # no run folder: nothing trained


@pytest.mark.slow
def test_os_errors_name_the_users_path_and_leave_no_empty_folder(tmp_path):
    long_name = "n" * 300
    runs = tmp_path / "runs"
    test_set = tmp_path / "test_set"
    for name in ("happy", "sad"):
        write_image(test_set / name / "a.png", (48, 48), "L")
    common = f"'{test_set}', '--model=fer2013', '--faces=false', '--cache_dir='"
    results = run_child(f"""
import errno, os
from pathlib import Path
import cnn_eval, cnn_run
from cnnlib import atomic
results = {{'long': call(cnn_run.main, ['--runs_dir={tmp_path / long_name}', '--epochs=1'])}}
# A full disk at the first write of an output, and a read-only folder: simulated, as the
# tests may run as root, where no permission stops a write.
def full(path):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
atomic._sync = full
results['full'] = call(cnn_eval.main, [{common}, '--runs_dir={runs}'])
real_mkdir = Path.mkdir
def read_only(self, *args, **kwargs):
    if str(self).startswith('{tmp_path / "ro"}'):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
    return real_mkdir(self, *args, **kwargs)
Path.mkdir = read_only
results['read_only'] = call(cnn_run.main, ['--runs_dir={tmp_path / "ro"}', '--epochs=1'])
""")
    one_sentence(results["long"], long_name, "File name too long", "give a shorter name")
    line = one_sentence(results["full"], runs / "fer2013", "the disk is full")
    assert ".partial" not in line
    one_sentence(results["read_only"], tmp_path / "ro", "--runs_dir")
    assert not [p for p in tmp_path.rglob("*") if p.is_dir() and not any(p.iterdir())]


def test_every_decoder_refuses_a_file_too_large_before_reading_it(tmp_path):
    from cnnlib import decode
    from cnnlib.errors import DataError

    path = write_image(tmp_path / "padded.png", (40, 40), "L")
    with path.open("r+b") as handle:
        handle.truncate(decode.MAX_IMAGE_BYTES + 1)  # sparse: a small image, then zeros
    for read in (lambda: decode.decode_full(path, 1), lambda: decode.decode_image(path, 32, 1)):
        with pytest.raises(DataError, match="larger than 256 MiB"):
            read()
