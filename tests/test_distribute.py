"""Devices, mixed precision and distribution: mirrored over two logical CPU devices,
two workers on loopback ports, bfloat16, and a GPU asked for where there is none.

The strategies need TensorFlow fresh (logical devices and collective ops are fixed
at its first operation), so they run in child processes; they train on tiny data
at 32x32 for two epochs.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

import cnn_data
import cnn_model
import cnn_params
import cnn_run
from cnnlib import cluster, devices, multiworker, runs
from cnnlib.prepared import PreparedData
from cnnlib.errors import ConfigError
from conftest import ROOT, write_image

TIMEOUT = 240     # seconds a child process may take before the test fails
PORT_TRIES = 3    # a free port can be taken between choosing and binding it


def learnable_folders(root, per_class=8, classes=None):
    """Class folders whose images a CNN can tell apart: each class its own grey level."""
    classes = classes or cnn_params.CLASSES
    for split, count in (("train", per_class), ("validation", per_class // 2)):
        for c, name in enumerate(classes):
            for i in range(count):
                rng = np.random.default_rng([c, i, split == "train"])
                level = 20 + 30 * c
                pixels = np.clip(level + rng.normal(0, 8, (40, 40)), 0, 255).astype(np.uint8)
                path = root / split / name / f"img{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                from PIL import Image

                Image.fromarray(pixels, "L").save(path)
    return root


def child_env():
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    return {**env, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}


def free_ports(count):
    """Ports free right now, found by binding to port 0."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def run_workers(args, cwds):
    """Run cnn_run.py as a two-worker cluster on loopback, one process a folder of `cwds`.

    Returns ([(exit status, output)], seconds). Retries with new ports when a port
    was taken meanwhile; a child that hangs fails the test after TIMEOUT.
    """
    for attempt in range(PORT_TRIES):
        ports = free_ports(len(cwds))
        cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
        started = time.perf_counter()
        children = []
        for index, cwd in enumerate(cwds):
            env = {**child_env(), "TF_CONFIG": json.dumps(
                {"cluster": cluster, "task": {"type": "worker", "index": index}})}
            children.append(subprocess.Popen(
                [sys.executable, str(ROOT / "cnn_run.py"), "--distribute=multiworker", *args],
                cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        results = []
        try:
            for child in children:
                output, _ = child.communicate(timeout=TIMEOUT)
                results.append((child.returncode, output))
        finally:
            for child in children:
                if child.poll() is None:
                    child.kill()
                    child.communicate()
        seconds = time.perf_counter() - started
        if not any("Address already in use" in out or "Failed to add port" in out
                   for _, out in results) or attempt == PORT_TRIES - 1:
            return results, seconds
    raise AssertionError("unreachable")


def fingerprints(output):
    return [line.split("weights after training ")[1].split()[0]
            for line in output.splitlines() if "weights after training" in line]


@pytest.mark.slow
def test_mirrored_over_two_cpu_devices_trains_like_one_device_and_resumes(tmp_path):
    data = learnable_folders(tmp_path / "data")
    common = [f"--data_dir={data}", f"--cache_dir={tmp_path / 'cache'}", "--image_size=32",
              f"--test_dir={ROOT / 'test_images'}", "--verbose=0", "--dropout=False",
              "--epochs=2"]
    params = cnn_run.config.parse_args([*common, f"--runs_dir={tmp_path / 'one'}"],
                                       cnn_run.config.defaults(cnn_params))[0]
    one = runs.read_history(cnn_run.run(params) / "history.csv")

    # In a child: the same global batch (2 x 16) over two logical CPU devices, then
    # a one-device run cut after its first epoch and resumed under the strategy.
    mirrored = [*common, "--distribute=mirrored", "--cpu_devices=2", "--batch_size=16"]
    script = (
        "import sys, keras, cnn_model, cnn_run, cnn_params\n"
        "from cnnlib import config\n"
        "fit = cnn_model.train_model\n"
        "def spy(model, *args, **kwargs):  # the replicas Keras' fit really trains on\n"
        "    print('fit on replicas:', model.distribute_strategy.num_replicas_in_sync)\n"
        "    return fit(model, *args, **kwargs)\n"
        "cnn_model.train_model = spy\n"
        "args = sys.argv[1:]\n"
        f"assert cnn_run.main(args + ['--runs_dir={tmp_path / 'two'}']) == 0\n"
        f"params = config.parse_args(args[:-3] + ['--runs_dir={tmp_path / 'cut'}', "
        "'--epochs=2', '--batch_size=32'], config.defaults(cnn_params))[0]\n"
        "def stop(epoch, logs=None):\n"
        "    raise KeyboardInterrupt\n"
        "try:\n"
        "    cnn_run.run(params, extra_callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=stop)])\n"
        "except KeyboardInterrupt:\n"
        "    pass\n"
        f"assert cnn_run.main(['--resume=' + str(next(__import__('pathlib').Path('{tmp_path / 'cut'}').glob('2*'))),"
        f" '--runs_dir={tmp_path / 'cut'}', '--distribute=mirrored', '--cpu_devices=2']) == 0\n")
    done = subprocess.run([sys.executable, "-c", script, *mirrored], cwd=ROOT, env=child_env(),
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "2 x CPU" in done.stdout and "2 replica(s) in step (mirrored)" in done.stdout
    # The new mirrored run, the cut one-device run, and its resume under the strategy.
    replicas = [line for line in done.stdout.splitlines() if line.startswith("fit on replicas")]
    assert replicas == ["fit on replicas: 2", "fit on replicas: 1", "fit on replicas: 2"]

    two_dir = next((tmp_path / "two").glob("2*"))
    two = runs.read_history(two_dir / "history.csv")
    info = runs.read_json(two_dir / "run_info.json")
    assert info["devices"]["replicas"] == 2 and len(info["devices"]["devices"]) == 2
    assert two["epoch"] == one["epoch"] == [1.0, 2.0]
    # Same model, data and global batch; Keras' strategy path draws its first
    # shuffle once more than the one-device path, so close, not equal.
    assert one["loss"][-1] < one["loss"][0] and two["loss"][-1] < two["loss"][0]
    assert np.allclose(two["loss"], one["loss"], atol=0.15), (one, two)
    assert np.allclose(two["val_loss"], one["val_loss"], atol=0.15), (one, two)

    cut = next((tmp_path / "cut").glob("2*"))
    history = runs.read_history(cut / "history.csv")
    assert history["epoch"] == [1.0, 2.0] and (cut / "metrics.json").is_file()
    assert runs.read_json(cut / "params.json")["distribute"] == "none"  # as it started
    assert runs.read_json(cut / "run_info.json")["devices"]["replicas"] == 2  # as it ended


@pytest.mark.slow
def test_two_workers_train_in_step_and_only_the_chief_writes(tmp_path):
    data = learnable_folders(tmp_path / "data", per_class=4)
    chief, worker = tmp_path / "chief", tmp_path / "worker"
    chief.mkdir(), worker.mkdir()
    # Relative folders: anything the worker wrote would land in its own folder.
    args = [f"--data_dir={data}", "--runs_dir=runs", "--cache_dir=cache", "--image_size=32",
            f"--test_dir={ROOT / 'test_images'}", "--verbose=2", "--epochs=2",
            "--batch_size=8"]
    results, seconds = run_workers(args, [chief, worker])
    print(f"two-worker run: {seconds:.1f} s wall")
    for status, output in results:
        assert status == 0, output[-4000:]
    (_, chief_out), (_, worker_out) = results
    assert "chief: writes the run" in chief_out
    assert fingerprints(chief_out) == fingerprints(worker_out) != []
    assert not (worker / "runs").exists() and "Saved " not in worker_out
    run_dir = next((chief / "runs").glob("2*"))
    history = runs.read_history(run_dir / "history.csv")
    assert history["epoch"] == [1.0, 2.0]
    info = runs.read_json(run_dir / "run_info.json")
    assert info["devices"]["distribute"] == "multiworker" and info["devices"]["replicas"] == 2
    model = cnn_model.load_model(run_dir / "model.keras")
    assert multiworker.fingerprint(model) == fingerprints(chief_out)[0]  # saved = trained
    assert (run_dir / "metrics.json").is_file() and (run_dir / "curves.png").is_file()


@pytest.mark.slow
def test_two_workers_resume_a_run_from_the_chiefs_checkpoint(tmp_path):
    data = learnable_folders(tmp_path / "data", per_class=4)
    chief, worker = tmp_path / "chief", tmp_path / "worker"
    worker.mkdir()
    params = cnn_run.config.parse_args(
        [f"--data_dir={data}", f"--runs_dir={chief / 'runs'}", f"--cache_dir={chief / 'cache'}",
         "--image_size=32", f"--test_dir={ROOT / 'test_images'}", "--verbose=0", "--epochs=2",
         "--batch_size=8"], cnn_run.config.defaults(cnn_params))[0]

    def stop(epoch, logs=None):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cnn_run.run(params, extra_callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=stop)])
    cut = next((chief / "runs").glob("2*"))
    first_row = (cut / "history.csv").read_text().splitlines()[1]

    # Only the chief has the run folder; the worker gets the checkpoint from it.
    results, _ = run_workers([f"--resume=runs/{cut.name}", "--runs_dir=runs"], [chief, worker])
    for status, output in results:
        assert status == 0, output[-4000:]
    (_, chief_out), (_, worker_out) = results
    assert "Resuming" in chief_out
    assert fingerprints(chief_out) == fingerprints(worker_out) != []
    lines = (cut / "history.csv").read_text().splitlines()
    assert len(lines) == 3 and lines[1] == first_row  # epoch 1 kept, epoch 2 trained once
    assert (cut / "metrics.json").is_file() and not (worker / "runs").exists()


@pytest.mark.slow
def test_bfloat16_trains_and_saves_a_float32_model(tiny_params):
    run_dir = cnn_run.run({**tiny_params, "mixed_precision": "bfloat16"})
    model = cnn_model.load_model(run_dir / "model.keras")
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 1), dtype=np.uint8)
    predictions = model.predict(images, verbose=0)
    assert predictions.dtype == np.float32 and np.allclose(predictions.sum(axis=1), 1, atol=1e-5)
    metrics = runs.read_json(run_dir / "metrics.json")
    # Table 3's test column scores the model as saved.
    assert np.allclose(metrics["test_probabilities"],
                       model.predict(cnn_data.load_test_set(
                           tiny_params["test_dir"], cnn_data.class_lookup(
                               cnn_params.CLASSES, cnn_params.ALIASES), 32, 1)[0], verbose=0),
                       atol=1e-5)
    assert runs.read_json(run_dir / "params.json")["mixed_precision"] == "bfloat16"
    assert runs.read_json(run_dir / "run_info.json")["devices"]["devices"][0]["kind"] == "CPU"


@pytest.mark.slow
def test_a_mixed_model_converts_both_ways_with_its_optimizer_state():
    model = cnn_model.build_model(cnn_params.LAYERS, 8, 32, 1, True, 1e-3, seed=3,
                                  precision="bfloat16")
    assert model.layers[-1].dtype_policy.name == "float32"  # the output, always
    images = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 1), dtype=np.uint8)
    model.fit(images, np.eye(8)[np.arange(16) % 8], epochs=1, verbose=0)
    plain = cnn_model.with_precision(model, "none")
    assert cnn_model.model_precision(plain) == "none" and cnn_model.model_precision(model) == "bfloat16"
    again = cnn_model.with_precision(plain, "bfloat16")
    for a, b in zip(model.get_weights(), again.get_weights()):
        assert np.array_equal(a, b)
    for a, b in zip(model.optimizer.variables, again.optimizer.variables):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    assert int(again.optimizer.iterations.numpy()) == 1


def test_a_gpu_asked_for_where_there_is_none_says_why(tiny_params, capsys, monkeypatch):
    import tensorflow as tf

    assert cnn_run.main([f"--data_dir={tiny_params['data_dir']}", "--device=gpu",
                         f"--runs_dir={tiny_params['runs_dir']}"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "--device=cpu" in error
    if not tf.config.list_physical_devices("GPU"):
        assert "built for the CPU only" in error or "finds none" in error
    monkeypatch.setattr(tf.sysconfig, "get_build_info", lambda: {"is_cuda_build": True})
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert "CUDA_VISIBLE_DEVICES" in devices.gpu_problem()
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert "nvidia-smi" in devices.gpu_problem()


def test_device_and_cluster_mistakes_are_one_clear_error(monkeypatch, capsys, tiny_params):
    with pytest.raises(ConfigError, match="TF_CONFIG"):
        cluster.read_tf_config("")
    with pytest.raises(ConfigError, match="not a usable cluster"):
        cluster.read_tf_config('{"cluster": {"worker": ["a:1"]}, "task": {"index": 3}}')
    for text in ("[" * 100_000, "[]", '{"cluster": {"worker": ["a:\u0661"]}, "task": {}}'):
        with pytest.raises(ConfigError, match="not a usable cluster"):  # deep, a list, ١
            cluster.read_tf_config(text)
    found, task = cluster.read_tf_config(
        '{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}')
    assert task == {"type": "worker", "index": 1} and len(found["worker"]) == 2
    with pytest.raises(ConfigError, match="--distribute=mirrored only"):
        devices.configure("auto", "none", 2)
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert cnn_run.main([f"--data_dir={tiny_params['data_dir']}", "--distribute=multiworker",
                         f"--runs_dir={tiny_params['runs_dir']}"]) == 2
    assert "TF_CONFIG" in capsys.readouterr().err


def test_devices_are_summed_up_in_one_line():
    cpu = {"name": "/device:CPU:0", "kind": "CPU", "model": "AMD EPYC", "cores": 2,
           "memory_gib": 23.5}
    gpu = {"name": "/device:GPU:0", "kind": "GPU", "model": "NVIDIA A100-SXM4-40GB",
           "memory_gib": 40.0}
    assert devices.summary([cpu]) == "CPU AMD EPYC (2 cores, 23.5 GiB)"
    assert devices.summary([gpu, {**gpu, "name": "/device:GPU:1"}]) == (
        "2 x GPU NVIDIA A100-SXM4-40GB (40.0 GiB)")
    assert "memory unknown" in devices.summary([{**gpu, "memory_gib": None}])


def test_the_gpu_requirements_are_the_cpu_ones_with_the_gpu_build():
    def lines(name):
        return [line.strip() for line in (ROOT / name).read_text().splitlines()
                if line.strip() and not line.startswith("#")]

    cpu, gpu = lines("requirements.txt"), lines("requirements-gpu.txt")
    assert [line for line in cpu if not line.startswith("tensorflow")] == \
        [line for line in gpu if not line.startswith("tensorflow")]
    assert any(line.startswith("tensorflow[and-cuda]") for line in gpu)
    assert not any(line.startswith("tensorflow-cpu") for line in gpu)


@pytest.mark.slow
def test_the_multiworker_loop_matches_model_fit_on_the_same_batches():
    # The loop under a one-device strategy against Keras' fit on the same order.
    import tensorflow as tf

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 32, 32, 1), dtype=np.uint8)  # 32 + a partial batch
    labels = rng.integers(0, 8, 40)
    weights = {c: 1.0 + c / 10 for c in range(8)}
    counts = np.bincount(labels, minlength=8)
    data = PreparedData(classes=cnn_params.CLASSES, aliases={}, train_images=images,
                        train_labels=labels, val_images=images[:12], val_labels=labels[:12],
                        counts_before=counts, counts_after=counts, weights=weights)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    setup = cluster.DeviceSetup(kind="multiworker", strategy=strategy)
    with strategy.scope():
        ours = cnn_model.build_model(cnn_params.LAYERS, 8, 32, 1, False, 1e-3, seed=1)
    rows = multiworker.fit(setup, ours, data, epochs=1, batch_size=32, seed=5, verbose=0)

    keras_model = cnn_model.build_model(cnn_params.LAYERS, 8, 32, 1, False, 1e-3, seed=1)
    order = np.random.default_rng([5, 0]).permutation(40)  # the loop's first epoch
    one_hot = np.eye(8, dtype=np.float32)
    history = keras_model.fit(
        tf.data.Dataset.from_tensor_slices((images[order], one_hot[labels[order]])).batch(32),
        validation_data=(images[:12], one_hot[labels[:12]]), class_weight=weights,
        epochs=1, verbose=0, shuffle=False).history
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert rows[0][key] == pytest.approx(history[key][0], abs=1e-5), key
    for a, b in zip(ours.get_weights(), keras_model.get_weights()):
        assert np.allclose(a, b, atol=1e-6)
