"""Where training runs: the devices, the strategy, and the workers of a cluster kept in step.

Offers, in the order a run calls them:
  start(distribute, device, cpu_devices) -> the DeviceSetup; call it before
                                   TensorFlow's first operation
  DeviceSetup                   the devices and strategy of a run (a dataclass)
  read_tf_config(text)          -> (cluster, task) of a TF_CONFIG, checked
  check_own_address(address)    raises ConfigError when this task's port cannot be used
  check_batches(setup, batch_size, counts) raises DataError for a set smaller than one
                                global batch
  leading(setup)                the whole run on every worker: a chief that stops
                                tells waiting workers, a worker waits for the chief's end
  from_chief(setup, value)      -> the chief's `value` (JSON-able) on every worker
  same_data(setup, fingerprint) raises DataError on every worker unless all prepared
                                the chief's data
  data_fingerprint(arrays)      -> a short hash of the prepared data's labels and pixels
  scope(setup)                  -> the strategy's scope (nothing for one device)
  global_batch(batch_size, setup) -> BATCH_SIZE x replicas: the batch of one step
  describe_setup(setup)         -> what run_info.json records of the devices
  broadcast(setup, message)     -> the chief's message on every worker (RunError on a
                                worker when it says the chief stopped)
  all_sum(setup, values, first_only) -> NumPy arrays summed over the replicas
  stop_workers(setup, error)    (chief) tells waiting workers why it stopped

"none" is one device and no strategy. "mirrored" is tf.distribute's MirroredStrategy
with Keras' own model.fit. "multiworker" is MultiWorkerMirroredStrategy with the
loop of cnnlib/multiworker.py. Under "multiworker" every worker runs the same
command and the same steps; the chief (task "chief", or worker 0) alone resolves
--resume (the run folder is its own) and writes, and sends what only it knows:
its parameters, its data's fingerprint, where each model starts, and when to stop.
The chief's messages travel as all-reduces in which only replica 0 contributes.
"""

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cnnlib import devices, interrupt
from cnnlib.errors import ConfigError, DataError, RunError, UserError


@dataclass
class DeviceSetup:
    """The devices and strategy of a run. The default is one device, no strategy."""
    kind: str = "none"             # DISTRIBUTE: "none", "mirrored" or "multiworker"
    strategy: Any = None           # the tf.distribute strategy, None for "none"
    chief: bool = True             # this process writes the run
    worker: int = 0                # this process's index among the workers
    workers: int = 1               # processes of the cluster
    replicas: int = 1              # devices in step
    devices: list = field(default_factory=list)  # devices.describe's dicts
    workers_wait: bool = False     # (chief) the workers wait for its next message
    agreed: bool = False           # every worker has checked its data against the chief's
    _all_sum: Any = field(default=None, repr=False)


def read_tf_config(text):
    """Return (cluster, task) of the TF_CONFIG JSON `text`; ConfigError if it is unusable.

    Checked here, before TensorFlow reads it (its own errors are tracebacks or hangs):
    the JSON, chief and worker lists of distinct host:port addresses with ports from 1
    to 65535, and a task that names one of them.
    """
    example = ('{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
               '"task": {"type": "worker", "index": 0}}')
    if not text:
        raise ConfigError(f"--distribute=multiworker needs the cluster in the environment "
                          f"variable TF_CONFIG on every machine, e.g. TF_CONFIG='{example}' "
                          f"(index 1 on the second machine; see the README).")
    try:
        config = json.loads(text)
        if not isinstance(config, dict):
            raise ValueError("it is not a JSON object")
        cluster, task = config["cluster"], config["task"]
        if not isinstance(cluster, dict) or not isinstance(task, dict):
            raise ValueError("cluster and task must be objects")
        if set(cluster) - {"chief", "worker"} or not cluster:
            raise ValueError("only chief and worker tasks")
        for kind, addresses in cluster.items():
            if not isinstance(addresses, list) or not addresses:
                raise ValueError(f"{kind} must be a list of host:port addresses")
            for address in addresses:
                _check_address(address)
        every = [a for addresses in cluster.values() for a in addresses]
        if len(set(every)) < len(every):
            raise ValueError("an address is given twice")
        kind, index = task["type"], task["index"]
        if kind not in cluster or isinstance(index, bool) or not isinstance(index, int) \
                or not 0 <= index < len(cluster[kind]):
            raise ValueError(f"task {kind} {index} is not in the cluster")
    except RecursionError:  # nested thousands deep
        raise ConfigError(f"TF_CONFIG is not a usable cluster (nested too deeply): write it "
                          f"as TF_CONFIG='{example}'.") from None
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"TF_CONFIG is not a usable cluster ({error}): write it as "
                          f"TF_CONFIG='{example}'.") from None
    return cluster, {"type": kind, "index": index}


def _check_address(address):
    """Raise ValueError unless `address` is "host:port" with a port from 1 to 65535."""
    host, _, port = address.rpartition(":") if isinstance(address, str) else ("", "", "")
    if not host or not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        raise ValueError(f"{address!r} is not host:port with a port from 1 to 65535")


def check_own_address(address):
    """Raise ConfigError when this task's `address` ("host:port" of TF_CONFIG) cannot be
    listened on here: its host does not resolve, or its port is in use."""
    import socket

    host, _, port = address.rpartition(":")
    try:
        family = socket.getaddrinfo(host.strip("[]"), int(port))[0][0]
    except (socket.gaierror, UnicodeError) as error:
        raise ConfigError(f"This task's address {address} in TF_CONFIG does not resolve "
                          f"({error.strerror or error}): give this machine's name or IP "
                          f"address.") from None
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As gRPC binds: a port whose old connections are still closing (TIME_WAIT) is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("", int(port)))
        except OSError as error:
            raise ConfigError(f"Port {port} of this task's address {address} in TF_CONFIG "
                              f"cannot be listened on ({error.strerror or error}): stop "
                              f"what uses it, or give this task another port.") from None


def check_batches(setup, batch_size, counts):
    """Raise DataError when a set of `counts` ({name: images}) cannot be split over the
    replicas of `setup`: smaller than one global batch (--batch_size x replicas) and
    not a multiple of the replicas. TensorFlow then fails in the middle of training
    (measured with MirroredStrategy: a first batch that splits unevenly fails, one that
    splits evenly, or a short last batch after full ones, trains)."""
    replicas = setup.replicas if setup is not None else 1
    if replicas < 2:
        return
    step = batch_size * replicas
    for name, count in counts.items():
        if count < step and count % replicas:
            # Every worker has the chief's data and replicas, so each raises this same
            # error now: the chief waits for no one to hear why it stopped.
            setup.workers_wait = False
            raise DataError(f"The {name} set has {count} image(s), fewer than one global "
                            f"batch of {step} (--batch_size={batch_size} x {replicas} "
                            f"replicas) and not a multiple of the {replicas} replicas, so "
                            f"they cannot share it: lower --cpu_devices, or add images.")


def start(distribute="none", device="auto", cpu_devices=1):
    """Make the devices and the strategy asked for; print and return the DeviceSetup.

    Must run before TensorFlow's first operation (a strategy and logical devices
    can only be made then). Raises UserError for a GPU asked for but not usable,
    or a bad TF_CONFIG.
    """
    import tensorflow as tf

    setup = DeviceSetup(kind=distribute)
    if distribute == "multiworker":
        cluster, task = read_tf_config(os.environ.get("TF_CONFIG"))
        check_own_address(cluster[task["type"]][task["index"]])
        order = [(t, i) for t in ("chief", "worker") for i in range(len(cluster.get(t, [])))]
        setup.worker, setup.workers = order.index((task["type"], task["index"])), len(order)
        setup.chief = setup.worker == 0
    names = devices.configure(device, distribute, cpu_devices)
    if distribute == "mirrored":
        setup.strategy = tf.distribute.MirroredStrategy(devices=names)
    elif distribute == "multiworker":
        print(f"Worker {setup.worker} of {setup.workers}: waiting for every worker of "
              f"TF_CONFIG to connect...", flush=True)
        setup.strategy = tf.distribute.MultiWorkerMirroredStrategy()
        interrupt.rearm()  # the strategy took SIGTERM for itself: ours again
        setup.workers_wait = True  # for the chief's first message
        names = list(setup.strategy.extended.worker_devices)
    if setup.strategy is not None:
        setup.replicas = setup.strategy.num_replicas_in_sync
    setup.devices = devices.describe(names)
    role = (f"worker {setup.worker} of {setup.workers}"
            f"{' (chief: writes the run)' if setup.chief else ''}, "
            if distribute == "multiworker" else "")
    print(f"Devices: {role}{devices.summary(setup.devices)}; {setup.replicas} "
          f"replica(s) in step ({distribute}).", flush=True)
    return setup


def _multi(setup):
    return setup is not None and setup.kind == "multiworker"


@contextlib.contextmanager
def leading(setup):
    """The whole run of one process.

    The chief: if it stops while workers wait for its message, they stop too; at the
    end it tells them it is done. A worker: a data problem is counted with the
    others (every worker then stops with one DataError); at the end it waits for
    the chief to finish writing the run.
    """
    if not _multi(setup):
        yield
        return
    try:
        yield
    except BaseException as error:
        if setup.chief and setup.workers_wait:
            stop_workers(setup, error)
        elif not setup.chief and not setup.agreed and isinstance(error, UserError):
            print(f"error: {error}", flush=True)
            same_data(setup, None)  # raises the DataError every worker raises
        raise
    if setup.chief:
        broadcast(setup, {"done": True})
    else:
        broadcast(setup)
        print(f"Worker {setup.worker}: the chief has finished and written the run.")


def from_chief(setup, value):
    """The chief's `value` (JSON-able) on every worker; `value` itself without a cluster."""
    if not _multi(setup):
        return value
    value = broadcast(setup, {"value": value} if setup.chief else None)["value"]
    setup.workers_wait = True  # next, the data's fingerprint
    return value


def data_fingerprint(train_images, train_labels, val_images, val_labels):
    """A short hash of the prepared data: its labels and 64 images of each split."""
    digest = hashlib.sha256()
    for labels in (train_labels, val_labels):
        digest.update(np.asarray(labels, np.int64).tobytes())
    for images in (train_images, val_images):
        digest.update(repr(images.shape).encode())
        step = max(1, len(images) // 64)  # 64 whole images, spread over the set
        digest.update(np.ascontiguousarray(images[::step]).tobytes())
    return digest.hexdigest()[:16]


def same_data(setup, fingerprint):
    """Raise DataError on every worker unless each prepared the chief's data.

    `fingerprint` is data_fingerprint's of this worker's data, None when it
    failed to prepare it.
    """
    if not _multi(setup):
        return
    chief = broadcast(setup, {"data": fingerprint} if setup.chief else None)["data"]
    problem = fingerprint != chief
    if problem and fingerprint is not None:
        print(f"Worker {setup.worker}: this machine's data differs from the chief's.")
    local = len(setup.strategy.extended.worker_devices)
    different = round(float(all_sum(setup, [np.array(float(problem) / local)])[0]))
    setup.agreed, setup.workers_wait = True, True  # next, where training starts
    if different:
        raise DataError(f"{different} of the {setup.workers} workers could not prepare "
                        f"the chief's data, or found other data (see each worker's output): "
                        f"give every machine the same data at the same path.")


def scope(setup):
    """The strategy's scope, where variables are made on every replica; else nothing."""
    strategy = setup.strategy if setup is not None else None
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def global_batch(batch_size, setup=None):
    """The images of one step: BATCH_SIZE on each replica."""
    return batch_size * (setup.replicas if setup is not None else 1)


def describe_setup(setup):
    """What run_info.json records of the devices and the strategy."""
    return {"distribute": setup.kind, "replicas": setup.replicas,
            "workers": setup.workers, "devices": setup.devices}


def all_sum(setup, values, first_only=False):
    """Sum the NumPy arrays `values` over the replicas; with `first_only`, only replica
    0's (the chief's) count, so every worker gets the chief's values.

    All of them travel as one float64 vector (exact for float32, and for integers
    below 2**53) through one traced function: one collective a call.
    """
    import tensorflow as tf

    strategy = setup.strategy
    if setup._all_sum is None:
        def replica(vector, first):
            context = tf.distribute.get_replica_context()
            keep = tf.logical_or(tf.equal(context.replica_id_in_sync_group, 0),
                                 tf.logical_not(first))
            return context.all_reduce(tf.distribute.ReduceOp.SUM,
                                      tf.where(keep, vector, tf.zeros_like(vector)))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float64),
                                      tf.TensorSpec([], tf.bool)])
        def total(vector, first):
            return strategy.run(replica, args=(vector, first))

        setup._all_sum = total
    arrays = [np.asarray(v) for v in values]
    flat = np.concatenate([a.astype(np.float64).reshape(-1) for a in arrays])
    summed = strategy.experimental_local_results(
        setup._all_sum(tf.constant(flat), tf.constant(first_only)))[0].numpy()
    out, at = [], 0
    for array in arrays:
        out.append(summed[at:at + array.size].reshape(array.shape).astype(array.dtype))
        at += array.size
    return out


def broadcast(setup, message=None):
    """The chief's `message` (JSON-able dict), on every worker; the others pass None.

    On a worker, a message saying the chief stopped raises RunError.
    """
    payload = json.dumps(message).encode() if setup.chief else b""
    length = int(all_sum(setup, [np.array(len(payload), np.int64)], True)[0])
    data = (np.frombuffer(payload, np.uint8) if setup.chief else np.zeros(length, np.uint8))
    setup.workers_wait = False
    received = json.loads(bytes(all_sum(setup, [data], True)[0]))
    if not setup.chief and received.get("stop") and received["stop"] != "early stopping":
        raise RunError(f"The chief stopped: {received['stop']}")
    return received


def stop_workers(setup, error):
    """(Chief) tell waiting workers that it stopped, and why."""
    text = str(error) if isinstance(error, UserError) else (
        "it was interrupted" if isinstance(error, KeyboardInterrupt)
        else f"{type(error).__name__}: {error}")
    broadcast(setup, {"stop": text})
