"""The front door of calibration: :func:`calibrate` runs the float network over the data
with :class:`~quantscope.calibrate.options.CalibrationOptions` and a runner: one
process (:class:`Local`), resumable with a checkpoint (:class:`Resumable`), or a Dask
cluster (:class:`OnDask`). The keywords of :func:`calibrate` are a shorthand that
builds these objects."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from .._progress import progress_bar
from ..errors import ConfigurationError, option
from ..network import Network, prepare
from .checkpoint import Resumer, calibrate_resumable
from .collector import StatsCollector
from .options import CalibrationOptions, HistogramStride
from .result import Calibration
from .source import as_source, read_ahead

__all__ = ["Local", "OnDask", "Resumable", "Runner", "calibrate"]


class Runner:
    """Where and how a calibration runs; every runner gives the same table, bit for bit."""

    def run(self, network: Network, data: Any, options: CalibrationOptions) -> Calibration:
        """Calibrate the prepared ``network`` on ``data``."""
        raise NotImplementedError

    @property
    def one_input_only(self) -> bool:
        """Whether this runner takes networks with one input only (True for now but Local)."""
        return True


@dataclass(frozen=True)
class Local(Runner):
    """One process, start to end (the default)."""

    def run(self, network: Network, data: Any, options: CalibrationOptions) -> Calibration:
        source = as_source(
            data,
            layout=options.layout,
            input_shape=network.input_shape,
            dtype=network.input_dtype,
            inputs=network.input_spec,
        )
        collector = StatsCollector(network, use_gpu=options.use_gpu, histogram_stride=options.histogram_stride)
        with progress_bar("Calibrating", source.num_samples, enabled=options.progress) as bar:
            for batch in read_ahead(source, options.batch_size):
                collector.update(batch)
                bar.advance(len(batch.x))
        return collector.result()

    @property
    def one_input_only(self) -> bool:
        return False


@dataclass(frozen=True)
class Resumable(Runner):
    """One process that saves its statistics to ``checkpoint`` every ``every`` batches
    (default 10) and resumes from it (:mod:`quantscope.calibrate.checkpoint`);
    ``restart`` discards an existing checkpoint. ``checkpoint`` None runs without one."""

    checkpoint: str | os.PathLike | None
    every: int | None = None
    restart: bool = False

    def __post_init__(self) -> None:
        Resumer.create(self.checkpoint, self.every, self.restart)  # checks the options

    def run(self, network: Network, data: Any, options: CalibrationOptions) -> Calibration:
        return calibrate_resumable(network, data, options, Resumer.create(self.checkpoint, self.every, self.restart))


@dataclass(frozen=True)
class OnDask(Runner):
    """The workers of a Dask cluster (docs/distributed.md; ``pip install quantscope[dask]``).

    ``client``: a ``distributed.Client``, a scheduler address (``"tcp://host:8786"``) or
    ``"local:N"`` (N local worker processes). ``shards``: pieces the data is cut into
    (default: 4 per worker thread). ``checkpoint``, ``every``, ``restart``: as
    :class:`Resumable`; a checkpoint works across single-process and Dask runs."""

    client: Any
    shards: int | None = None
    checkpoint: str | os.PathLike | None = None
    every: int | None = None
    restart: bool = False

    def __post_init__(self) -> None:
        s = self.shards
        if s is not None and (isinstance(s, bool) or not isinstance(s, int) or s < 1):
            raise ConfigurationError(f"shards must be a positive integer, got {s!r}")
        Resumer.create(self.checkpoint, self.every, self.restart)

    def run(self, network: Network, data: Any, options: CalibrationOptions) -> Calibration:
        from .distributed import calibrate_on_dask  # Dask is an optional extra

        resumer = Resumer.create(self.checkpoint, self.every, self.restart)
        return calibrate_on_dask(network, data, self.client, options, resumer, shards=self.shards)


_DEFAULT_OPTIONS = CalibrationOptions()


def _runner_for(client: Any, shards: Any, checkpoint: Any, checkpoint_every: Any, restart: bool) -> Runner:
    """The runner the keywords of :func:`calibrate` name."""
    if client is not None:
        return OnDask(client, shards, checkpoint, checkpoint_every, restart)
    if shards is not None:
        raise ConfigurationError("shards splits the data between Dask workers: pass client=... (--dask) too")
    if checkpoint is not None or checkpoint_every is not None or restart:
        return Resumable(checkpoint, checkpoint_every, restart)
    return Local()


def calibrate(
    network: Any,
    data: Any,
    *,
    batch_size: int = 32,
    use_gpu: bool = False,
    progress: bool | None = None,
    layout: str = "NCHW",
    example_input: Any = None,
    histogram_stride: int | str = HistogramStride.AUTO,
    client: Any = None,
    shards: int | None = None,
    checkpoint: Any = None,
    checkpoint_every: int | None = None,
    restart: bool = False,
    options: CalibrationOptions | None = None,
    runner: Runner | None = None,
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
        options: all of ``batch_size``, ``use_gpu``, ``progress``, ``layout`` and
            ``histogram_stride`` as one :class:`CalibrationOptions` (then leave those
            keywords out).
        runner: :class:`Local`, :class:`Resumable` or :class:`OnDask` (then leave out
            ``client``, ``shards`` and the checkpoint keywords).

    Returns:
        A :class:`Calibration`; ``.table`` is MATLAB's table.

    Raises:
        CalibrationDataError: empty data, wrong shapes, undecodable images.
        NonFiniteActivationError: a NaN or Inf in some layer's output (the layer is named).
    """
    keyword_options = CalibrationOptions(
        batch_size=batch_size,
        use_gpu=use_gpu,
        layout=layout,
        histogram_stride=histogram_stride,
        progress=progress,
    )
    if options is None:
        options = keyword_options
    elif keyword_options != _DEFAULT_OPTIONS:
        raise ConfigurationError(
            "pass the calibration options either as options=CalibrationOptions(...) or as keywords"
        )
    keyword_runner = _runner_for(client, shards, checkpoint, checkpoint_every, restart)
    if runner is None:
        runner = keyword_runner
    elif keyword_runner != Local():
        raise ConfigurationError(
            "pass where the calibration runs either as runner=... or as keywords (client, shards, checkpoint...)"
        )
    network = prepare(network, example_input)
    if len(network.input_names) > 1 and runner.one_input_only:
        raise ConfigurationError(
            f"this network has {len(network.input_names)} inputs ({', '.join(network.input_names)}); "
            "checkpoints and Dask runs take networks with one input for now. Calibrate it in one process "
            f"({option('without a client, checkpoint or shards', 'without --dask and --checkpoint')})."
        )
    return runner.run(network, data, options)
