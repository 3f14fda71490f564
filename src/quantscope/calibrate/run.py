"""The front door of calibration: :func:`calibrate` picks the runner (one process,
resumable with a checkpoint, or a Dask cluster) for the options given."""

from __future__ import annotations

from typing import Any

from .._progress import progress_bar
from ..errors import CalibrationDataError, ConfigurationError
from ..network import prepare
from .checkpoint import calibrate_resumable
from .collector import StatsCollector
from .result import Calibration
from .source import as_source

__all__ = ["calibrate"]


def calibrate(
    network: Any,
    data: Any,
    *,
    batch_size: int = 32,
    use_gpu: bool = False,
    progress: bool | None = None,
    layout: str = "NCHW",
    example_input: Any = None,
    histogram_stride: int | str = "auto",
    client: Any = None,
    shards: int | None = None,
    checkpoint: Any = None,
    checkpoint_every: int | None = None,
    restart: bool = False,
) -> Calibration:
    """Run the float network over ``data`` and collect every tensor's range.

    Args:
        network: a :class:`~quantscope.network.Network`, an ``.onnx`` path, an
            ``onnx.ModelProto`` or a ``torch.nn.Module`` (with ``example_input``).
        data: anything :func:`~quantscope.calibrate.data.as_source` accepts: an
            array ``(N, C, H, W)`` (or NHWC with ``layout="NHWC"``), ``(x, y)``,
            an iterable of batches or ``(inputs, labels)`` pairs, a DataLoader,
            a ``.npy``/``.npz`` path, an image folder or ``ImageDatastore``.
        batch_size: samples per onnxruntime run. The table does not depend on it.
        use_gpu: run the float network on a GPU (MATLAB's ``UseGPU``).
        progress: show a progress bar (None: only when stderr is a terminal).
        layout: ``"NCHW"`` or ``"NHWC"`` for array data.
        histogram_stride: ``"auto"`` histograms a fixed systematic sample of each
            sample's large image tensors (every s-th value, s a prime from 5 to 61
            chosen so that about 4,096 or more values per sample are counted) and every
            value of the others, to keep calibration close to inference speed; ``1``
            histograms every value. Min, max and counts always cover every value.
        client: run on a Dask cluster: a ``distributed.Client``, a scheduler address
            (``"tcp://host:8786"``) or ``"local:N"`` (N local worker processes). The
            table is identical, bit for bit (docs/distributed.md; needs
            ``pip install quantscope[dask]``).
        shards: with ``client``, the number of shards (default: 4 per worker thread).
        checkpoint: a file to save the statistics to every ``checkpoint_every``
            batches (default 10) and to resume from when it exists; removed when
            the run completes. ``restart=True`` discards an existing one.

    Returns:
        A :class:`Calibration`; ``.table`` is MATLAB's table.

    Raises:
        CalibrationDataError: empty data, wrong shapes, undecodable images.
        NonFiniteActivationError: a NaN or Inf in some layer's output (the layer is named).
    """
    if batch_size < 1:
        raise CalibrationDataError(f"batch_size must be at least 1, got {batch_size}")
    network = prepare(network, example_input)
    resumable = checkpoint is not None or checkpoint_every is not None or restart or shards is not None
    if len(network.input_names) > 1 and (client is not None or resumable):
        raise ConfigurationError(
            f"this network has {len(network.input_names)} inputs ({', '.join(network.input_names)}); "
            "checkpoints and Dask runs take networks with one input for now. Calibrate it in one process "
            "(without a client, checkpoint or shards)."
        )
    if client is not None:
        from .distributed import calibrate_on_dask  # Dask is an optional extra

        return calibrate_on_dask(
            network,
            data,
            client,
            batch_size=batch_size,
            shards=shards,
            layout=layout,
            progress=progress,
            use_gpu=use_gpu,
            histogram_stride=histogram_stride,
            checkpoint=checkpoint,
            checkpoint_every=checkpoint_every,
            restart=restart,
        )
    if resumable:
        return calibrate_resumable(
            network,
            data,
            checkpoint=checkpoint,
            checkpoint_every=checkpoint_every,
            restart=restart,
            shards=shards,
            batch_size=batch_size,
            use_gpu=use_gpu,
            progress=progress,
            layout=layout,
            histogram_stride=histogram_stride,
        )
    source = as_source(
        data, layout=layout, input_shape=network.input_shape, dtype=network.input_dtype, inputs=network.input_spec
    )
    collector = StatsCollector(network, use_gpu=use_gpu, histogram_stride=histogram_stride)
    with progress_bar("Calibrating", source.num_samples, enabled=progress) as bar:
        for batch in source.batches(batch_size):
            collector.update(batch)
            bar.advance(len(batch.x))
    return collector.result()
