"""Calibration on a Dask cluster: shards of the data, one statistics partial per shard.

``calibrate(network, data, client=...)`` (or ``quantscope calibrate MODEL DATA --dask
ADDRESS|local:N``) splits the data into **shards** of whole batches, runs one
:class:`~quantscope.calibrate.collector.StatsCollector` per shard on the Dask
workers, and merges the returned partials on the client **in shard order**. Every
statistic merges exactly (integer histogram counts, min/max), the
shards hold the very batches a single process would run, and the merge follows the
single-process order, so the table and its JSON are identical, bit for bit, to
``calibrate(network, data)`` on one machine (docs/distributed.md).

What travels to the workers
---------------------------
* the prepared model, once per worker (scattered; each worker prepares it again and
  checks that it gets the same layers);
* for a ``.npy``/``.npz`` file or an image folder: the path and a sample range. Each
  worker reads its own shard (``.npy`` memory-mapped), so the files must be visible
  to the workers at the same path (a shared filesystem);
* for an in-memory array: each shard's slice, sent straight to a worker;
* for a stream (iterator, generator, DataLoader, other :class:`DataSource`): the
  client reads it once, in order, and sends shards of batches as they come, holding a
  bounded number of shards in flight.

dask and distributed are imported only inside functions: importing quantscope does
not import them.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .._progress import progress_bar
from ..errors import CalibrationDataError, ConfigurationError, QuantscopeError, option
from ..network import Network
from .collector import StatsCollector, session_options
from .data import Batch, DataSource, check_not_empty
from .options import CalibrationOptions
from .result import Calibration
from .shards import BatchesShard, ReadSpec, Shard, SizedData, cached, forget_run, open_data

__all__ = [
    "Shipper",
    "calibrate_on_dask",
    "dask_client",
    "error_info",
    "import_distributed",
    "pipeline",
    "raise_error_info",
    "sized_tasks",
    "stream_tasks",
    "worker_threads",
]

#: Upper bound on the input bytes of one shard of a stream (the client holds a few).
_STREAM_SHARD_BYTES = 64 << 20
#: Most batches in one shard of a stream.
_STREAM_SHARD_BATCHES = 16


# =========================================================================== dask access


def import_distributed():
    try:
        import distributed
    except ImportError as exc:
        raise ConfigurationError(
            "running on a Dask cluster needs dask.distributed, which is not installed: "
            "pip install 'quantscope[dask]' (or pip install 'dask[distributed]')"
        ) from exc
    return distributed


#: The most worker processes ``local:N`` starts, per CPU of this machine (a typo such
#: as local:1000 would otherwise start a thousand Python processes).
LOCAL_WORKERS_PER_CPU = 8


def parse_local(spec: str) -> int | None:
    """``"local"`` -> cpu count, ``"local:N"`` -> N, anything else -> None.

    Raises:
        ConfigurationError: N is not a positive integer, or more than
            :data:`LOCAL_WORKERS_PER_CPU` processes per CPU of this machine.
    """
    spec = spec.strip()
    cpus = max(1, os.cpu_count() or 1)
    if spec == "local":
        return cpus
    if not spec.startswith("local:"):
        return None
    text = spec[len("local:") :]
    flag = option("client=", "--dask")
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigurationError(
            f"{flag} {spec!r}: the number of local workers must be a positive integer, e.g. local:4"
        )
    if n > LOCAL_WORKERS_PER_CPU * cpus:
        raise ConfigurationError(
            f"{flag} {spec!r} would start {n} worker processes on this machine, which has {cpus} CPU(s); "
            f"give at most local:{LOCAL_WORKERS_PER_CPU * cpus} (local:{cpus}, one per CPU, is usually best), or "
            "connect to a scheduler (tcp://host:8786) whose workers run elsewhere"
        )
    return n


@contextlib.contextmanager
def dask_client(client: Any) -> Iterator[Any]:
    """A ``distributed.Client`` for ``client``, closed afterwards when opened here.

    Args:
        client: a ``distributed.Client`` (used as is, left open); ``"local:N"``
            (start a ``LocalCluster`` of N worker processes with one thread each, closed
            afterwards; ``"local"`` for one per CPU); or a scheduler address such as
            ``"tcp://host:8786"`` (connect, and disconnect afterwards; the cluster stays).

    Raises:
        ConfigurationError: dask is not installed, the spec is malformed or the
            scheduler cannot be reached.
    """
    if not isinstance(client, str):
        if not (callable(getattr(client, "submit", None)) and callable(getattr(client, "scatter", None))):
            raise ConfigurationError(
                f"client must be a dask.distributed Client, a scheduler address such as "
                f"'tcp://host:8786' or 'local:N'; got {type(client).__name__}"
            )
        yield client
        return
    spec = client.strip()
    distributed = import_distributed()
    n_local = parse_local(spec)
    if n_local is not None:
        import logging

        cluster = distributed.LocalCluster(
            n_workers=n_local,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",  # a free port: no clash with other clusters
            silence_logs=logging.ERROR,
        )
        try:
            with distributed.Client(cluster) as c:
                yield c
        finally:
            cluster.close()
        return
    if not spec:
        raise ConfigurationError("the Dask scheduler address is empty; pass e.g. tcp://host:8786 or local:4")
    try:
        c = _connect(distributed, spec, CONNECT_SECONDS)
    except Exception as exc:  # refused, timed out, or not a Dask scheduler (its bytes misread: a MemoryError)
        reason = f"{type(exc).__name__}: {exc}" if isinstance(exc, MemoryError) else str(exc)
        raise ConfigurationError(
            f"cannot connect to the Dask scheduler at {spec}: {reason[:300]}. Is a Dask scheduler listening "
            "there? Start one with "
            f"`dask scheduler` (and workers with `dask worker {spec}`), check the address and "
            "that this machine can reach it, or use --dask local:N for a cluster on this machine"
        ) from exc
    try:
        yield c
    finally:
        c.close()


#: Seconds to connect to a scheduler, handshake included.
CONNECT_SECONDS = 30.0


def _connect(distributed: Any, spec: str, seconds: float) -> Any:
    """``distributed.Client(spec)``, given up after ``seconds``: a service that accepts
    the connection and never answers in Dask's protocol (an HTTP server waiting for a
    request line) would otherwise hold the handshake forever, whatever the Client's own
    timeout. The attempt runs in a daemon thread, left behind when it does not return."""
    import threading

    box: dict[str, Any] = {}

    def attempt() -> None:
        try:
            box["client"] = distributed.Client(spec, timeout=f"{seconds:g}s")
        except BaseException as exc:  # handed to the caller
            box["error"] = exc

    thread = threading.Thread(target=attempt, name="quantscope-dask-connect", daemon=True)
    thread.start()
    thread.join(seconds + 5)
    if thread.is_alive():
        raise TimeoutError(f"no answer in Dask's protocol within {seconds + 5:g} s")
    if "error" in box:
        raise box["error"]
    return box["client"]


# =========================================================================== the worker side


def _session(net: Network, col: StatsCollector, use_gpu: bool) -> Any:
    """The worker's onnxruntime session: on the CPU, one thread. Dask's threads are the
    parallelism (one task per worker thread, ``dask worker --nthreads``); onnxruntime's
    own pool on top would oversubscribe the cores. Convolution, pooling and GEMM
    kernels of CNNs give the same floats for any thread count (tests compare bit for
    bit); see docs/distributed.md for the one known exception."""
    if use_gpu:
        return col.session
    import onnxruntime as ort

    options = session_options(threads=1, log_severity=3)
    proto = net.to_proto(col.output_names).SerializeToString()
    return ort.InferenceSession(proto, options, providers=["CPUExecutionProvider"])


def _worker_collector(digest: str, model_bytes: bytes, spec: _WorkerSpec) -> StatsCollector:
    """A fresh collector on this worker's cached prepared network and session."""
    opts = spec.options

    def make():
        import onnx

        from ..network import prepare

        net = prepare(onnx.load_from_string(model_bytes))
        col = StatsCollector(net, use_gpu=opts.use_gpu, histogram_stride=opts.histogram_stride)
        if tuple(layer.name for layer in col.measured) != spec.measured or tuple(col.output_names) != spec.outputs:
            raise ConfigurationError(
                "the network prepared again on a Dask worker has other layers than on the client; "
                "check that the workers run the same quantscope and onnx versions as the client"
            )
        return net, _session(net, col, opts.use_gpu)

    net, session = cached((spec.read.run, "model", digest), make)
    # onnxruntime sessions are thread-safe: one per worker, shared by its tasks
    return StatsCollector(net, use_gpu=opts.use_gpu, histogram_stride=opts.histogram_stride, session=session)


def error_info(exc: QuantscopeError) -> dict:
    return {"type": type(exc).__name__, "message": str(exc), "attrs": dict(vars(exc))}


def raise_error_info(info: dict) -> None:
    from .. import errors

    cls = getattr(errors, info["type"], None)
    if not (isinstance(cls, type) and issubclass(cls, QuantscopeError)):
        cls = QuantscopeError
    exc = cls.__new__(cls)
    Exception.__init__(exc, info["message"])
    exc.__dict__.update(info["attrs"])
    raise exc


def _run_shard(digest: str, model_bytes: bytes, spec: _WorkerSpec, shard: Shard, bulk: Any) -> dict:
    """Task body on a worker: run one shard, return its statistics partial.

    quantscope's errors come back as data (some do not survive pickling) and are
    raised again on the client."""
    try:
        col = _worker_collector(digest, model_bytes, spec)
        last = -1
        for batch in shard.read(bulk, spec.read):
            col.update(batch)
            if len(batch):
                last = int(batch.index[-1])
    except QuantscopeError as exc:
        return {"error": error_info(exc)}
    return {"partial": col.partial(), "last": last}


# =========================================================================== the client side


class Shipper:
    """Sends bulk data straight to the workers (not through the scheduler) when it can."""

    def __init__(self, client):
        self.client = client
        self.direct = True

    def scatter(self, obj: Any, broadcast: bool = False):
        if self.direct:
            try:
                return self.client.scatter([obj], direct=True, broadcast=broadcast, hash=False)[0]
            except (OSError, TimeoutError):
                self.direct = False  # workers not reachable from here: through the scheduler
        return self.client.scatter([obj], direct=False, broadcast=broadcast, hash=False)[0]


def worker_threads(client, distributed) -> int:
    threads = sum(client.nthreads().values())
    if threads:
        return threads
    try:
        client.wait_for_workers(1, timeout=60)
    except TimeoutError as exc:
        raise ConfigurationError(
            f"no Dask worker is connected to the scheduler {client.scheduler.address}; start workers "
            f"with `dask worker {client.scheduler.address}`"
        ) from exc
    return max(1, sum(client.nthreads().values()))


def sized_tasks(shards: SizedData, start: int, batch_size: int, n_shards: int):
    """``(start, stop)`` sample ranges of whole batches covering ``start..num_samples-1``."""
    n = shards.num_samples
    n_batches = math.ceil((n - start) / batch_size)
    if n_batches <= 0:
        return []
    k = max(1, min(n_shards, n_batches))
    ranges = []
    for i in range(k):
        b0, b1 = i * n_batches // k, (i + 1) * n_batches // k
        ranges.append((start + b0 * batch_size, min(n, start + b1 * batch_size)))
    return ranges


def calibrate_on_dask(
    network: Network,
    data: Any,
    client: Any,
    options: CalibrationOptions,
    resumer: Any = None,
    *,
    shards: int | None = None,
) -> Calibration:
    """Calibrate ``network`` on ``data`` with the Dask workers of ``client``
    (the :class:`~quantscope.calibrate.run.OnDask` runner).

    The result equals a one-process run's with the same ``options``, table and JSON
    bit for bit (module docstring, docs/distributed.md).

    Args:
        network: a prepared :class:`~quantscope.network.Network`.
        data: anything :func:`~quantscope.calibrate.source.as_source` accepts. ``.npy``,
            ``.npz`` paths and image folders are read by the workers themselves (they
            must see the same path); arrays are sliced and sent; streams are read here.
        client: a ``distributed.Client``, a scheduler address (``"tcp://host:8786"``) or
            ``"local:N"`` (a ``LocalCluster`` of N one-thread worker processes, closed
            afterwards). See :func:`dask_client`.
        options: as for every runner; shards hold whole batches of ``options.batch_size``.
        resumer: a :class:`~quantscope.calibrate.checkpoint.Resumer` that saves the merged
            statistics every ``every`` merged batches and resumes from them (None: no
            checkpoint); a checkpoint works across single-process and Dask runs.
        shards: number of shards for data of known size (default: 4 per worker thread,
            at most one per batch). Streams are cut into shards of at most 16 batches
            and 64 MB of inputs.

    Raises:
        ConfigurationError: dask is not installed, no worker, bad options.
        CalibrationDataError, NonFiniteActivationError: as :func:`~quantscope.calibrate`,
            raised here when a worker meets them.
    """
    distributed = import_distributed()
    if network.large:
        raise ConfigurationError(
            "this network's weights exceed what one protobuf message holds (2 GiB), and Dask runs send the "
            "model to the workers in one; calibrate it in one process (without client=/--dask)"
        )
    from .checkpoint import Resumer

    resumer = resumer if resumer is not None else Resumer.create(None, None)
    with dask_client(client) as c:
        return _calibrate(distributed, network, data, c, options, resumer, shards)


@dataclass(frozen=True)
class _WorkerSpec:
    """What every task of a run needs besides its shard."""

    read: ReadSpec
    options: CalibrationOptions
    measured: tuple[str, ...]  # the client's measured layers and outputs, checked on the worker
    outputs: tuple[str, ...]


def _calibrate(distributed, network, data, client, options: CalibrationOptions, resumer, shards: int | None):
    source, sized = open_data(
        data, layout=options.layout, input_shape=network.input_shape, lazy_npz=True, dtype=network.input_dtype
    )
    if sized is None:
        check_not_empty(source)
    elif sized.num_samples == 0:
        raise CalibrationDataError("the calibration data contains no samples; give at least one input")

    collector = StatsCollector(network, use_gpu=options.use_gpu, histogram_stride=options.histogram_stride)
    state = resumer.start(network, collector, options, sized=sized, source=source)

    model_bytes = network.to_proto().SerializeToString()
    digest = hashlib.sha256(model_bytes).hexdigest()
    run = f"{digest[:16]}-{os.getpid()}-{time.time_ns()}"
    spec = _WorkerSpec(
        read=ReadSpec(
            run=run,
            layout=options.layout,
            input_shape=network.input_shape,
            batch_size=options.batch_size,
            dtype=network.input_dtype,
        ),
        options=options,
        measured=tuple(layer.name for layer in collector.measured),
        outputs=tuple(collector.output_names),
    )
    threads = worker_threads(client, distributed)
    shipper = Shipper(client)
    model_future = shipper.scatter(model_bytes, broadcast=True)
    max_in_flight = max(2, 2 * threads)
    batch_size = options.batch_size

    def submit(shard: Shard, bulk):
        if bulk is not None:
            bulk = shipper.scatter(bulk)
        return client.submit(_run_shard, digest, model_future, spec, shard, bulk, pure=False)

    total = sized.num_samples if sized is not None else source.num_samples
    try:
        with progress_bar("Calibrating", total, enabled=options.progress) as bar:
            bar.advance(state.position if total is not None else 0)
            if sized is not None:
                ranges = sized_tasks(sized, state.position, batch_size, shards or 4 * threads)
                tasks = (
                    (i, *sized.shard(a, b), {"stop": b, "batches": math.ceil((b - a) / batch_size)})
                    for i, (a, b) in enumerate(ranges)
                )
            else:
                tasks = stream_tasks(source, batch_size, resumer, state)

            def merged(info: dict, result: dict) -> None:
                collector.merge_partial(result["partial"])
                bar.advance(int(result["partial"]["num_samples"]))
                position = (
                    info["stop"] if "stop" in info else (result["last"] + 1 if result["last"] >= 0 else state.position)
                )
                resumer.advance(collector, position=position, batches=info["batches"], digest=info.get("digest"))

            pipeline(distributed, tasks, submit, merged, max_in_flight)
    finally:
        with contextlib.suppress(Exception):
            client.run(forget_run, run)
    result = collector.result()
    resumer.finish()
    return result


def stream_tasks(source: DataSource, batch_size: int, resumer=None, state=None):
    """Shards of a stream, read here in order: ``(index, shard, bulk, info)``; with a
    ``resumer``, the batches its ``state`` already counted are skipped."""
    batches = source.batches(batch_size) if resumer is None else resumer.skip_stream(source.batches(batch_size), state)
    digest = (lambda: None) if resumer is None else resumer.stream_digest
    shard: list[Batch] = []
    nbytes = 0
    i = 0
    per_shard = None
    for b in batches:
        shard.append(b)
        nbytes += b.x.nbytes
        if per_shard is None:
            per_shard = max(1, min(_STREAM_SHARD_BATCHES, _STREAM_SHARD_BYTES // max(1, b.x.nbytes)))
        if len(shard) >= per_shard or nbytes >= _STREAM_SHARD_BYTES:
            yield i, BatchesShard(), shard, {"batches": len(shard), "digest": digest()}
            i += 1
            shard, nbytes = [], 0
    if shard:
        yield i, BatchesShard(), shard, {"batches": len(shard), "digest": digest()}


def pipeline(distributed, tasks, submit, merged, max_in_flight: int) -> None:
    """Submit ``tasks`` keeping at most ``max_in_flight`` shards running or queued, and
    merge their results in task order (results that finish early wait, a few at most:
    partials are small)."""
    pending: dict[Any, tuple[int, dict]] = {}
    ready: dict[int, tuple[dict, dict]] = {}
    next_merge = 0
    tasks = iter(tasks)
    exhausted = False
    try:
        while True:
            while not exhausted and len(pending) < max_in_flight and len(ready) < 4 * max_in_flight:
                item = next(tasks, None)
                if item is None:
                    exhausted = True
                    break
                index, desc, bulk, info = item
                pending[submit(desc, bulk)] = (index, info)
            if not pending:
                if ready:  # cannot happen: results are merged as soon as their turn comes
                    raise RuntimeError("shard results out of order")
                break
            done, _ = distributed.wait(list(pending), return_when="FIRST_COMPLETED")
            for fut in done:
                index, info = pending.pop(fut)
                result = fut.result()
                fut.release()
                if "error" in result:
                    raise_error_info(result["error"])
                ready[index] = (info, result)
            while next_merge in ready:
                info, result = ready.pop(next_merge)
                merged(info, result)
                next_merge += 1
    finally:
        for fut in pending:
            with contextlib.suppress(Exception):
                fut.cancel()
