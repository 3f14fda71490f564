"""Validation on a Dask cluster: the data in shards of whole batches, both networks and
the per-layer sums run on the workers, the batches' parts added on the client in data
order.

Each worker receives the quantization plan once (broadcast) and builds, per worker
thread, one :class:`~quantscope.validate.validate.BatchValidator` (the float network
in onnxruntime with one thread, the int8 emulation); a task runs the batches of one
shard and returns one part per batch: the per-layer sums of that batch, the two
networks' scores and the labels. The client adds the parts batch by batch in data
order, exactly as a single process adds its own, so metrics and layer tables are the
same bit for bit whatever the number of workers or shards. Metric functions run on
the client over the gathered scores, so any metric (custom ones included) needs no
merging rule.

Data travels as for calibration (docs/distributed.md): ``.npy``/``.npz`` files and
image folders are read by the workers themselves (same path on every machine),
arrays are sliced and sent, streams are read here and sent in shards.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from .._progress import progress_bar
from ..calibrate.data import check_not_empty
from ..calibrate.distributed import (
    Shipper,
    dask_client,
    error_info,
    import_distributed,
    pipeline,
    sized_tasks,
    stream_tasks,
    worker_threads,
)
from ..calibrate.shards import ReadSpec, Shard, cached, forget_run, open_data
from ..errors import CalibrationDataError, ConfigurationError, QuantscopeError
from ..quantize.plan import QuantPlan
from .measure import BatchValidator

__all__ = ["validate_on_dask"]


def validate_on_dask(
    plan: QuantPlan,
    data: Any,
    client: Any,
    add: Callable[[Any], None],
    *,
    batch_size: int,
    layout: str,
    kernels: Any,
    shards: int | None = None,
    progress: bool | None = None,
) -> list[str] | None:
    """Run ``plan``'s validation batches on the workers of ``client``, calling ``add``
    with each batch's part in data order; returns the class names of a labelled image
    folder (else None).

    Raises:
        ConfigurationError: dask is not installed, no worker, bad options.
        CalibrationDataError, NonFiniteActivationError: as in one process, raised here
            when a worker meets them.
    """
    if shards is not None and (isinstance(shards, bool) or not isinstance(shards, int) or shards < 1):
        raise ConfigurationError(f"shards must be a positive integer, got {shards!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise CalibrationDataError(f"batch_size must be a positive integer, got {batch_size!r}")
    distributed = import_distributed()
    network = plan.network
    if network.large:
        raise ConfigurationError(
            "this network's weights exceed what one protobuf message holds (2 GiB), and Dask runs send the "
            "model to the workers in one; validate it in one process (without client=/--dask)"
        )
    source, sized = open_data(
        data, layout=layout, input_shape=network.input_shape, lazy_npz=True, dtype=network.input_dtype
    )
    if sized is None:
        check_not_empty(source)
    elif sized.num_samples == 0:
        raise CalibrationDataError("the validation data contains no samples")
    run = f"validate-{network.fingerprint[:16]}-{os.getpid()}-{time.time_ns()}"
    spec = ReadSpec(
        run=run, layout=layout, input_shape=network.input_shape, batch_size=batch_size, dtype=network.input_dtype
    )
    with dask_client(client) as c:
        threads = worker_threads(c, distributed)
        shipper = Shipper(c)
        plan_future = shipper.scatter(plan, broadcast=True)

        def submit(shard: Shard, bulk: Any):
            if bulk is not None:
                bulk = shipper.scatter(bulk)
            return c.submit(_validate_shard, plan_future, str(kernels), spec, shard, bulk, pure=False)

        total = sized.num_samples if sized is not None else source.num_samples
        try:
            with progress_bar("Validating", total, enabled=progress) as bar:
                if sized is not None:
                    ranges = sized_tasks(sized, 0, batch_size, shards or 4 * threads)
                    tasks = ((i, *sized.shard(a, b), {}) for i, (a, b) in enumerate(ranges))
                else:
                    tasks = stream_tasks(source, batch_size)

                def merged(info: dict, result: dict) -> None:
                    for part in result["parts"]:
                        add(part)
                        bar.advance(part.count)

                pipeline(distributed, tasks, submit, merged, max(2, 2 * threads))
        finally:
            with contextlib.suppress(Exception):
                c.run(forget_run, run)
    return sized.classes if sized is not None else getattr(source, "classes", None)


def _validate_shard(plan: QuantPlan, kernels: str, spec: ReadSpec, shard: Shard, bulk: Any) -> dict:
    """Task body on a worker: one part per batch of ``shard``. quantscope's errors come
    back as data and are raised again on the client."""
    try:
        # one validator per worker thread: the emulation keeps per-run state
        key = (spec.run, "validator", threading.get_ident())
        validator = cached(key, lambda: BatchValidator(plan, kernels, threads=1))
        parts = [validator(batch) for batch in shard.read(bulk, spec)]
    except QuantscopeError as exc:
        return {"error": error_info(exc)}
    return {"parts": parts}
