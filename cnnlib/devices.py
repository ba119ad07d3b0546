"""The devices a run trains on: chosen before TensorFlow starts, and described.

Offers, in call order:
  configure(device, distribute, cpu_devices) -> names of the local devices to train on;
                                  must run before TensorFlow's first operation
  gpu_problem()                 -> why TensorFlow sees no GPU here, one sentence
  describe(names)               -> [{name, kind, model, memory_gib, ...}] for run_info.json
  summary(described)            -> the same in one printable line

DEVICE "auto" keeps TensorFlow's own choice (a GPU when it sees one, else the
CPU); "gpu" is an error saying why when no GPU is usable, rather than a silent
run on the CPU; "cpu" hides the GPUs. With DISTRIBUTE "mirrored" and no GPU, the
CPU can be split into CPU_DEVICES logical devices (tests use two); it makes
nothing faster on a CPU, which already uses all its cores for one device.
"""

import os
import subprocess
from pathlib import Path

from cnnlib.errors import ConfigError, RunError

DEVICES = ("auto", "cpu", "gpu")
STRATEGIES = ("none", "mirrored", "multiworker")


def configure(device="auto", distribute="none", cpu_devices=1):
    """Make TensorFlow show the devices asked for; return the local device names to use.

    For "multiworker" it returns None without starting TensorFlow: its strategy
    must be made first, and then names the devices itself.

    Raises RunError when a GPU is asked for but none is usable (gpu_problem says
    why), and ConfigError for CPU_DEVICES without DISTRIBUTE "mirrored" or for a
    device layout asked for after TensorFlow started (in-process, a second time).
    """
    import tensorflow as tf

    if device not in DEVICES or distribute not in STRATEGIES:
        raise ConfigError(f"--device={device} / --distribute={distribute}: use "
                          f"{', '.join(DEVICES)} / {', '.join(STRATEGIES)}.")
    if cpu_devices > 1 and distribute != "mirrored":
        raise ConfigError(f"--cpu_devices={cpu_devices} splits the CPU for "
                          f"--distribute=mirrored only; add it, or leave --cpu_devices at 1.")
    gpus = tf.config.list_physical_devices("GPU")
    if device == "gpu" and not gpus:
        raise RunError(gpu_problem())
    if device == "cpu" and gpus:
        try:
            tf.config.set_visible_devices([], "GPU")
        except RuntimeError:
            raise ConfigError("--device=cpu must be chosen before TensorFlow starts: run "
                              "it from the command line (python cnn_run.py).") from None
        gpus = []
    if distribute == "multiworker":
        return None
    if gpus:
        names = [d.name for d in tf.config.list_logical_devices("GPU")]
        return names if distribute != "none" else names[:1]
    if cpu_devices > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        wanted = [tf.config.LogicalDeviceConfiguration() for _ in range(cpu_devices)]
        if tf.config.get_logical_device_configuration(cpu) != wanted:
            try:
                tf.config.set_logical_device_configuration(cpu, wanted)
            except RuntimeError:  # TensorFlow has started: its devices are fixed
                raise ConfigError(f"--cpu_devices={cpu_devices} must be set before TensorFlow "
                                  f"starts: run it from the command line "
                                  f"(python cnn_run.py), once per process.") from None
    names = [d.name for d in tf.config.list_logical_devices("CPU")]
    return names if distribute == "mirrored" else names[:1]


def _installed_tensorflow():
    """The name and version of the TensorFlow distribution installed, e.g. tensorflow-cpu 2.21.0."""
    from importlib import metadata

    for name in ("tensorflow-cpu", "tensorflow-intel", "tensorflow", "tf-nightly"):
        try:
            return f"{name} {metadata.version(name)}"
        except metadata.PackageNotFoundError:
            continue
    return "TensorFlow"


def gpu_problem():
    """Return one sentence saying why TensorFlow sees no GPU here, and what to do."""
    import tensorflow as tf

    build = tf.sysconfig.get_build_info()
    if not build.get("is_cuda_build") and not build.get("is_rocm_build"):
        return (f"--device=gpu, but the TensorFlow installed here ({_installed_tensorflow()}) "
                f"is built for the CPU only: install the GPU build with `pip install -r "
                f"requirements-gpu.txt` in a fresh environment, or run with --device=cpu.")
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
    if hidden is not None and hidden.strip() in ("", "-1"):
        return (f"--device=gpu, but CUDA_VISIBLE_DEVICES={hidden!r} hides every GPU from "
                f"TensorFlow: unset it, or run with --device=cpu.")
    return ("--device=gpu, but TensorFlow (built for GPUs) finds none: this machine has no "
            "NVIDIA GPU, or no working driver (`nvidia-smi` should list the GPUs); run with "
            "--device=cpu.")


def _cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "unknown CPU"


def _memory_gib():
    try:
        return round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def _gpu_memory_gib():
    """Total memory of each GPU TensorFlow numbers (GiB), from nvidia-smi; {} if unknown."""
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=memory.total",
                               "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=10, check=True)
        totals = [round(float(line) / 1024, 1) for line in done.stdout.split()]
    except (OSError, ValueError, subprocess.SubprocessError):
        return {}
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    order = list(range(len(totals)))
    if visible:  # TensorFlow's GPU:k is the k-th GPU CUDA_VISIBLE_DEVICES lists
        try:
            order = [int(part) for part in visible.split(",")]
        except ValueError:
            return {}
    return {k: totals[i] for k, i in enumerate(order) if 0 <= i < len(totals)}


def describe(names):
    """Return one dict a device of `names`: name, kind, model, and memory_gib (or None).

    A CPU entry also has cores; GPU names and compute capability come from
    TensorFlow, GPU memory from nvidia-smi when it is there.
    """
    import tensorflow as tf

    described = []
    gpus = tf.config.list_physical_devices("GPU")
    gpu_memory = _gpu_memory_gib() if gpus else {}
    for name in names:
        kind, _, index = name.rpartition("/device:")[2].partition(":")
        if kind == "GPU" and int(index) < len(gpus):
            details = tf.config.experimental.get_device_details(gpus[int(index)])
            described.append({"name": name, "kind": "GPU",
                              "model": details.get("device_name", "GPU"),
                              "compute_capability": details.get("compute_capability"),
                              "memory_gib": gpu_memory.get(int(index))})
        else:
            described.append({"name": name, "kind": "CPU", "model": _cpu_model(),
                              "cores": os.cpu_count(), "memory_gib": _memory_gib()})
    return described


def summary(described):
    """One line naming the devices, e.g. `CPU AMD EPYC (2 cores, 23.4 GiB)`."""
    def one(device):
        memory = (f"{device['memory_gib']} GiB" if device.get("memory_gib") is not None
                  else "memory unknown")
        if device["kind"] == "CPU":
            return f"CPU {device['model']} ({device['cores']} cores, {memory})"
        return f"GPU {device['model']} ({memory})"

    kinds = [one(device) for device in described]
    if len(set(kinds)) == 1 and len(kinds) > 1:
        split = " split into logical devices" if described[0]["kind"] == "CPU" else ""
        return f"{len(kinds)} x {kinds[0]}{split}"
    return ", ".join(kinds)
