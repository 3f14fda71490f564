"""Resumable calibration: save the statistics every N batches, resume after a crash.

``calibrate(network, data, checkpoint="cal.ckpt.json", checkpoint_every=10)`` (or
``quantscope calibrate MODEL DATA --checkpoint cal.ckpt.json --checkpoint-every 10``)
writes, every ``checkpoint_every`` batches, the collector's statistics so far, the
position reached in the data and a fingerprint of the run to the checkpoint file
(atomically: a reader, or a run killed mid-write, sees the old file or the new one,
never half of one). A run started with an existing checkpoint of the same fingerprint
merges the saved statistics, skips the samples already counted and goes on; because
data sources iterate deterministically and the statistics merge exactly, the final
table equals an uninterrupted run's bit for bit. When the run completes, the
checkpoint is **removed** (the result is what you keep); an interrupted run loses at
most ``checkpoint_every`` batches of work.

The file (JSON, ``"format": "quantscope-calibration-checkpoint"``, ``"version": 1``)
holds:

* ``fingerprint``: ``model_sha256`` (of the prepared model), ``batch_size``,
  ``layout``, ``use_gpu``, ``mantissa_bits`` (the histogram resolution),
  ``histogram_stride`` and ``data``:
  for a ``.npy``/``.npz`` file its resolved path, size and modification time; for an
  image folder the folder, the file count, a sha256 of every file's path, size and
  modification time, and the datastore settings; for an array its shape, dtype and a
  sha256 of its values; for a stream its description and sample count (if known);
* ``position``: the data position to continue from (samples, or files of an image
  folder: one past the last one counted); ``batches``: batches counted;
* ``stream_sha256``: for a stream, a sha256 of every input batch read so far. A
  resumed stream is read again up to ``position`` (it cannot be skipped otherwise)
  and must give the same digest, or the run stops with an error;
* ``partial``: :meth:`StatsCollector.partial` (sample count and per-tensor min, max,
  count and sparse histogram).

A checkpoint of another model, data or batch size raises
:class:`~quantscope.errors.ConfigurationError` naming what differs; pass
``restart=True`` (``--restart``) to discard it and start over.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._io import write_atomic
from .._progress import progress_bar
from ..errors import ConfigurationError, option
from ..network import Network
from .collector import StatsCollector
from .data import Batch, DataSource, check_not_empty
from .options import CalibrationOptions
from .result import Calibration
from .shards import ReadSpec, SizedData, open_data
from .stats import MANTISSA_BITS

__all__ = ["DEFAULT_EVERY", "FORMAT", "calibrate_resumable", "describe_checkpoint", "read_checkpoint"]

_log = logging.getLogger("quantscope")
FORMAT = "quantscope-calibration-checkpoint"
VERSION = 1
#: Batches between checkpoints when ``checkpoint_every`` is not given.
DEFAULT_EVERY = 10


@dataclass
class ResumeState:
    """Where a run starts: ``position`` in the data, ``batches`` already counted and the
    stream digest so far (None for data of known size)."""

    position: int = 0
    batches: int = 0
    stream_sha256: str | None = None


def read_checkpoint(path: str | os.PathLike) -> dict | None:
    """The checkpoint at ``path`` as a dict (module docstring), or None when there is none.

    Raises:
        ConfigurationError: the file exists but is not a readable quantscope checkpoint.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        ok = isinstance(d, dict) and d.get("format") == FORMAT
    except (OSError, ValueError) as exc:
        d, ok, why = None, False, str(exc)
    else:
        why = "no quantscope checkpoint header"
    if not ok:
        raise ConfigurationError(
            f"{path} is not a readable quantscope calibration checkpoint ({why}); delete it, choose "
            f"another checkpoint path, or pass {_restart()} to overwrite it"
        )
    if d.get("version") != VERSION:
        raise ConfigurationError(
            f"{path} is a calibration checkpoint of format version {d.get('version')}; this quantscope "
            f"reads version {VERSION}. Pass {_restart()} to start over"
        )
    try:
        fields = (d["partial"]["num_samples"], d["batches"], d["position"])
        ok = all(isinstance(v, int) and not isinstance(v, bool) for v in fields)
        ok = ok and isinstance(d["partial"]["stats"], list)
    except (KeyError, TypeError):
        ok = False
    if not ok:
        raise ConfigurationError(
            f"{path} is a damaged calibration checkpoint (fields missing or of the wrong type); delete it or "
            f"pass {_restart()} to start over"
        )
    return d


def _restart() -> str:
    """The restart option in the words of the interface in use."""
    return option("restart=True", "--restart")


def describe_checkpoint(path: str | os.PathLike) -> str | None:
    """A one-line summary of the checkpoint at ``path`` (None when there is none)."""
    d = read_checkpoint(path)
    if d is None:
        return None
    return (
        f"{d['partial']['num_samples']} samples ({d['batches']} batches) already counted, "
        f"continuing from data position {d['position']}"
    )


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


def fingerprint(network: Network, data_description: dict, options: CalibrationOptions) -> dict:
    """What must match for a checkpoint to be resumed (module docstring)."""
    model = network.fingerprint  # sha256 of the prepared model, computed once per network
    return _jsonable(
        {
            "model_sha256": model,
            "batch_size": options.batch_size,
            "layout": str(options.layout),
            "use_gpu": options.use_gpu,
            "mantissa_bits": MANTISSA_BITS,
            "histogram_stride": options.histogram_stride
            if isinstance(options.histogram_stride, int)
            else str(options.histogram_stride),
            "data": data_description,
        }
    )


def _stream_description(source: DataSource) -> dict:
    return {
        "kind": "stream",
        "desc": str(getattr(source, "desc", type(source).__name__)),
        "num_samples": source.num_samples,
    }


class Resumer:
    """Loads, checks and writes the checkpoint of one run; does nothing without a path."""

    def __init__(self, path: str | os.PathLike | None, every: int, restart: bool):
        self.path = None if path is None else Path(path)
        self.every = every
        self.restart = restart
        self._fingerprint: dict | None = None
        self._since = 0
        self._batches = 0
        self._hash = None  # running sha256 of a stream's batches

    @classmethod
    def create(cls, path: str | os.PathLike | None, every: int | None, restart: bool = False) -> Resumer:
        if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
            raise ConfigurationError(
                f"{option('checkpoint_every', '--checkpoint-every')} must be a positive number of batches, "
                f"got {every!r}"
            )
        if path is None and (every is not None or restart):
            raise ConfigurationError(
                option(
                    "checkpoint_every and restart need a checkpoint path: pass checkpoint='cal.ckpt.json'",
                    "--checkpoint-every and --restart need a checkpoint file: add --checkpoint cal.ckpt.json",
                )
            )
        return cls(path, DEFAULT_EVERY if every is None else every, restart)

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def start(
        self,
        network: Network,
        collector: StatsCollector,
        options: CalibrationOptions,
        *,
        sized: SizedData | None,
        source: DataSource | None,
    ) -> ResumeState:
        """Fingerprint the run; with a matching checkpoint, merge its statistics into
        ``collector`` and return where to continue."""
        if not self.enabled:
            return ResumeState()
        described = sized.fingerprint() if sized is not None else _stream_description(source)
        self._fingerprint = fp = fingerprint(network, described, options)
        if sized is None:
            self._hash = hashlib.sha256()
        if self.restart:
            self.path.unlink(missing_ok=True)
            return ResumeState()
        saved = read_checkpoint(self.path)
        if saved is None:
            return ResumeState()
        if saved.get("fingerprint") != fp:
            theirs = saved.get("fingerprint") or {}
            differ = sorted(k for k in set(fp) | set(theirs) if fp.get(k) != theirs.get(k))
            what = ", ".join("model" if k == "model_sha256" else k for k in differ)
            raise ConfigurationError(
                f"checkpoint {self.path} was written by another calibration (it differs in: {what}; "
                f"it holds {saved['partial']['num_samples']} samples). Pass {_restart()} "
                "to discard it and start over, or choose another checkpoint path"
            )
        collector.merge_partial(saved["partial"])
        self._batches = int(saved["batches"])
        _log.warning("resuming from checkpoint %s: %s", self.path, describe_checkpoint(self.path))
        return ResumeState(int(saved["position"]), int(saved["batches"]), saved.get("stream_sha256"))

    # ---- streams -------------------------------------------------------------------
    def skip_stream(self, batches: Iterator[Batch], state: ResumeState) -> Iterator[Batch]:
        """``batches`` after the ``state.batches`` already counted, which are read again
        and must match the checkpoint's digest; hashes what it yields when enabled."""
        h = self._hash
        skipped = 0
        position = 0
        for b in batches:
            if h is not None:
                h.update(b.x.tobytes() if not b.x.flags.c_contiguous else b.x.data)
            if skipped < state.batches:
                skipped += 1
                position = int(b.index[-1]) + 1 if len(b) else position
                if skipped == state.batches:
                    self._check_stream(position, state)
                continue
            yield b
        if skipped < state.batches:
            raise ConfigurationError(
                f"checkpoint {self.path} counted {state.batches} batches ({state.position} samples) of the "
                f"stream, but it now yields only {skipped}: the data is not the one the checkpoint was written "
                f"for. Pass {_restart()} to start over"
            )

    def _check_stream(self, position: int, state: ResumeState) -> None:
        if position != state.position or (state.stream_sha256 and self._hash.hexdigest() != state.stream_sha256):
            raise ConfigurationError(
                f"checkpoint {self.path}: the stream's first {state.batches} batches differ from those the "
                "checkpoint counted (a stream must yield the same samples in the same order to be resumed). "
                f"Pass {_restart()} to start over"
            )

    def stream_digest(self) -> str | None:
        return None if self._hash is None else self._hash.hexdigest()

    # ---- saving --------------------------------------------------------------------
    def advance(self, collector: StatsCollector, *, position: int, batches: int, digest: str | None = None) -> None:
        """Count ``batches`` merged into ``collector``, which now covers the data up to
        ``position``; write the checkpoint when ``every`` batches have passed."""
        if not self.enabled:
            return
        self._since += batches
        self._batches += batches
        if self._since >= self.every:
            self._since = 0
            self.save(collector, position=position, digest=digest)

    def save(self, collector: StatsCollector, *, position: int, digest: str | None = None) -> None:
        state = {
            "format": FORMAT,
            "version": VERSION,
            "fingerprint": self._fingerprint,
            "position": int(position),
            "batches": self._batches,
            "stream_sha256": digest,
            "partial": collector.partial(),
        }
        write_atomic(self.path, json.dumps(state, separators=(",", ":")))

    def finish(self) -> None:
        """The run completed: remove the checkpoint."""
        if self.enabled:
            self.path.unlink(missing_ok=True)


def calibrate_resumable(network: Network, data: Any, options: CalibrationOptions, resumer: Resumer) -> Calibration:
    """Single-process calibration that checkpoints every ``resumer.every`` batches and
    resumes from ``resumer``'s checkpoint when it exists (module docstring).

    The result equals an uninterrupted one-process run's, interrupted or not. The
    checkpoint is removed when the run completes.

    Raises:
        ConfigurationError: the checkpoint belongs to another model/data/batch size
            (pass ``restart=True``), is unreadable, or the stream changed.
    """
    source, sized = open_data(data, layout=options.layout, input_shape=network.input_shape, dtype=network.input_dtype)
    if sized is None:
        check_not_empty(source)
    collector = StatsCollector(network, use_gpu=options.use_gpu, histogram_stride=options.histogram_stride)
    state = resumer.start(network, collector, options, sized=sized, source=source)
    total = sized.num_samples if sized is not None else source.num_samples
    spec = ReadSpec(
        run="local",
        layout=options.layout,
        input_shape=network.input_shape,
        batch_size=options.batch_size,
        dtype=network.input_dtype,
    )
    with progress_bar("Calibrating", total, enabled=options.progress) as bar:
        bar.advance(state.position if total is not None else 0)
        if sized is not None:
            batches = sized.batches(spec, state.position)
        else:
            batches = resumer.skip_stream(source.batches(options.batch_size), state)
        for batch in batches:
            collector.update(batch)
            bar.advance(len(batch))
            if len(batch):
                resumer.advance(collector, position=int(batch.index[-1]) + 1, batches=1, digest=resumer.stream_digest())
    result = collector.result()
    resumer.finish()
    return result
