"""The calibration result: one row per tensor, MATLAB's columns first."""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .._io import write_atomic
from ..errors import CalibrationDataError, ConfigurationError, option
from .stats import TensorStats

__all__ = ["COLUMNS", "Calibration", "RangeEntry"]

#: MATLAB's columns, in its order; quantscope's own columns follow them.
COLUMNS = [
    "Optimized Layer Name",
    "Network Layer Name",
    "Learnables / Activations",
    "MinValue",
    "MaxValue",
]
EXTRA_COLUMNS = ["Tensor", "NumValues"]
KINDS = ("Weights", "Bias", "Activations")
_FORMAT = "quantscope.calibration"
#: What reading a damaged ranges file raises (UnicodeDecodeError, JSONDecodeError and
#: pandas' EmptyDataError are ValueErrors).
_UNREADABLE = (ValueError, KeyError, TypeError, IndexError, AttributeError, OverflowError, pd.errors.ParserError)


@dataclass(frozen=True)
class RangeEntry:
    """One calibrated tensor.

    Attributes:
        layer: optimized layer name.
        network_layer: the last member of the optimized layer (MATLAB's Network Layer Name).
        kind: ``"Weights"``, ``"Bias"`` or ``"Activations"``.
        tensor: name of the ONNX value (initializer or activation) in the prepared model.
        stats: its statistics.
    """

    layer: str
    network_layer: str
    kind: str
    tensor: str
    stats: TensorStats

    @property
    def row_name(self) -> str:
        """MATLAB's Optimized Layer Name cell: ``<layer>_Weights``, ``<layer>_Bias``, or ``<layer>``."""
        return self.layer if self.kind == "Activations" else f"{self.layer}_{self.kind}"


class Calibration:
    """Ranges of every weight, bias and activation tensor of a prepared network.

    Attributes:
        entries: one :class:`RangeEntry` per tensor, in topological order; per
            optimized layer: Weights, Bias, Activations.
        num_samples: number of samples the network ran on.
        network: the prepared :class:`~quantscope.network.Network` (None when loaded from a file).
    """

    def __init__(
        self,
        entries: list[RangeEntry],
        num_samples: int,
        network=None,
        model_name: str = "",
        model_sha256: str = "",
    ):
        self.entries = list(entries)
        self.num_samples = int(num_samples)
        self.network = network
        self.model_name = model_name
        #: the fingerprint of the model the ranges were measured on (``Network.fingerprint``)
        self.model_sha256 = model_sha256 or (network.fingerprint if network is not None else "")
        self._by_key = {(e.layer, e.kind): e for e in self.entries}

    # ---- access --------------------------------------------------------------------
    @property
    def table(self) -> pd.DataFrame:
        """One row per tensor: MATLAB's columns (``Optimized Layer Name``, ``Network Layer
        Name``, ``Learnables / Activations``, ``MinValue``, ``MaxValue``), then ``Tensor``
        (ONNX value name) and ``NumValues`` (values seen)."""
        rows = [
            (e.row_name, e.network_layer, e.kind, e.stats.min, e.stats.max, e.tensor, e.stats.count)
            for e in self.entries
        ]
        df = pd.DataFrame(rows, columns=COLUMNS + EXTRA_COLUMNS)
        df["MinValue"] = df["MinValue"].astype(np.float64)
        df["MaxValue"] = df["MaxValue"].astype(np.float64)
        df["NumValues"] = df["NumValues"].astype(np.int64)
        return df

    def stats(self, layer: str, kind: str = "Activations") -> TensorStats:
        """Statistics of ``layer``'s ``kind`` tensor (``"Weights"``, ``"Bias"``, ``"Activations"``)."""
        try:
            return self._by_key[(layer, kind)].stats
        except KeyError:
            raise KeyError(f"no {kind} entry for layer {layer!r}") from None

    def __len__(self) -> int:
        return len(self.entries)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Calibration):
            return NotImplemented
        return (
            self.num_samples == other.num_samples
            and [(e.layer, e.network_layer, e.kind, e.tensor) for e in self.entries]
            == [(e.layer, e.network_layer, e.kind, e.tensor) for e in other.entries]
            and all(a.stats == b.stats for a, b in zip(self.entries, other.entries))
        )

    def __repr__(self) -> str:
        return f"Calibration({len(self.entries)} tensors, {self.num_samples} samples)"

    # ---- files ---------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": _FORMAT,
            "version": 1,
            "model": self.model_name,
            "model_sha256": self.model_sha256,
            "num_samples": self.num_samples,
            "entries": [
                {
                    "layer": e.layer,
                    "network_layer": e.network_layer,
                    "kind": e.kind,
                    "tensor": e.tensor,
                    **e.stats.to_dict(),
                }
                for e in self.entries
            ],
        }

    def to_json(self) -> str:
        """JSON text with every statistic, histograms included; floats round-trip exactly."""
        return json.dumps(self.to_dict(), indent=1, allow_nan=False)

    def to_csv(self) -> str:
        """CSV text of :attr:`table` (floats written with full precision, ``%.17g``)."""
        buf = io.StringIO()
        self.table.to_csv(buf, index=False, float_format="%.17g")
        return buf.getvalue()

    def save(self, path: str | Path) -> Path:
        """Write to ``path`` atomically: ``.json`` (everything) or ``.csv`` (the table)."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".json":
            return write_atomic(path, self.to_json())
        if suffix == ".csv":
            return write_atomic(path, self.to_csv())
        raise CalibrationDataError(f"{path}: unknown format {suffix!r}; use a .json or .csv file name")

    def report(self, path: str | Path, **options) -> Path:
        """Write the HTML report of these ranges (heat map, ranges table, coverage and
        layers under the ``target=`` scheme, ``"fpga"`` by default) to ``path`` and its
        data as JSON beside it; options as :func:`quantscope.report.write_report`.
        Returns the page's path."""
        import quantscope  # the facade names the report stage, which sits above this one

        return quantscope.report(self, path, **options)

    @classmethod
    def load(cls, path: str | Path, network=None) -> Calibration:
        """Read a calibration saved with :meth:`save` (``.json`` or ``.csv``). From CSV,
        the histograms are absent (``stats.hist is None``).

        ``network``: the network it was made for (a :class:`~quantscope.Network`, or a
        model path / ``ModelProto`` to prepare; a torch module: prepare it first,
        ``prepare(module, example_input=...)``), so that ``quantize`` and ``validate``
        can use the loaded ranges; its layers are checked against the file's.
        """
        cal = cls._load(Path(path))
        if network is not None:
            from ..network import prepare
            from ..network.load import _is_torch_module

            if _is_torch_module(network):
                raise ConfigurationError(
                    "Calibration.load(path, network=...) takes a prepared network for a torch module: "
                    "Calibration.load(path, network=quantscope.prepare(module, example_input=torch.zeros(...)))"
                )
            cal.attach(prepare(network))
        return cal

    def attach(self, network) -> Calibration:
        """Use ``network`` (prepared) with these ranges; raises when its layers are not the
        ones the ranges were measured on. Returns self."""
        names = {layer.name for layer in network.layers}
        missing = [e.layer for e in self.entries if e.kind == "Activations" and e.layer not in names]
        differ = "" if missing else self._learnables_differ(network)
        same_file = bool(self.model_name and network.source_name) and (
            os.path.basename(str(self.model_name)) == os.path.basename(str(network.source_name))
        )
        if self.model_sha256 and network.fingerprint != self.model_sha256 and same_file:
            raise ConfigurationError(
                f"these ranges were measured on {self.model_name} as it was prepared then (sha256 "
                f"{self.model_sha256[:12]}...), and {network.source_name} prepares to another network now (sha256 "
                f"{network.fingerprint[:12]}...){differ or '; '}the model file changed, or it was prepared with "
                f"other options ({option('equalize=', '--equalize')}) or by another quantscope version; calibrate "
                "again with the options you validate with"
            )
        if self.model_sha256 and network.fingerprint != self.model_sha256:
            raise ConfigurationError(
                f"these ranges were measured on another model ({self.model_name or 'unnamed'}, sha256 "
                f"{self.model_sha256[:12]}...), not on {network.source_name or 'this model'} (sha256 "
                f"{network.fingerprint[:12]}...){differ or '; '}calibrate this model, or use the model the ranges "
                "were made for"
            )
        if missing:
            raise ConfigurationError(
                f"these ranges do not belong to that network: it has no layer {', '.join(repr(m) for m in missing[:5])}"
                f"{' ...' if len(missing) > 5 else ''}; prepare the model the ranges were calibrated on"
            )
        if differ:  # a file without the fingerprint (.csv): the weights tell
            raise ConfigurationError(
                f"these ranges were measured on other weights than {network.source_name or 'this model'}'s{differ}"
                "calibrate this model, or use the model the ranges were made for"
            )
        self.network = network
        return self

    def _learnables_differ(self, network) -> str:
        """'' when every Weights/Bias range is that of ``network``'s constant; else a
        clause saying where they differ and the likely cause (equalization)."""
        layers = {layer.name: layer for layer in network.layers}
        for e in self.entries:
            if e.kind not in ("Weights", "Bias"):
                continue
            layer = layers.get(e.layer)
            name = None if layer is None else (layer.weight if e.kind == "Weights" else layer.bias)
            if name is None:
                return f" (layer {e.layer!r} has no {e.kind.lower()} here); "
            w = np.asarray(network.constant(name), dtype=np.float32)
            if not w.size or (float(w.min()), float(w.max())) == (float(e.stats.min), float(e.stats.max)):
                continue
            flag = option("equalize=True", "--equalize")
            if network.equalized:
                prepared, fix = "with", option("prepare with equalize=False", "drop --equalize")
            else:
                prepared, fix = "without", option("prepare with equalize=True", "add --equalize")
            measured = "without" if network.equalized else "with"
            return (
                f" (layer {e.layer!r}: its {e.kind.lower()} span [{float(w.min()):.6g}, {float(w.max()):.6g}] here, "
                f"the ranges say [{float(e.stats.min):.6g}, {float(e.stats.max):.6g}]). The network is prepared "
                f"{prepared} {flag} here: if the ranges were measured {measured} it, {fix}; otherwise "
            )
        return ""

    @classmethod
    def _load(cls, path: Path) -> Calibration:
        if not path.exists():
            raise CalibrationDataError(f"{path}: no such file")
        suffix = path.suffix.lower()
        if suffix not in (".json", ".csv"):
            raise CalibrationDataError(f"{path}: unknown format {suffix!r}; use a .json or .csv file")
        try:
            return cls._read(path, suffix)
        except CalibrationDataError:
            raise
        except (
            ValueError,
            KeyError,
            TypeError,
            IndexError,
            AttributeError,
            OverflowError,
            pd.errors.ParserError,
        ) as exc:
            # UnicodeDecodeError, JSONDecodeError, EmptyDataError are ValueErrors
            raise CalibrationDataError(
                f"{path}: not a readable quantscope ranges file ({type(exc).__name__}: {exc}); write it with "
                "quantscope calibrate --out (or Calibration.save)"
            ) from None

    @classmethod
    def _read(cls, path: Path, suffix: str) -> Calibration:
        if suffix == ".json":
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")), where=str(path))
        df = pd.read_csv(path)
        missing = [c for c in COLUMNS + EXTRA_COLUMNS if c not in df.columns]
        if missing:
            raise CalibrationDataError(f"{path}: missing columns {missing}; not a quantscope ranges CSV")
        entries = []
        for row in df.itertuples(index=False):
            name, network_layer, kind, lo, hi, tensor, count = row[:7]
            name, network_layer, kind, tensor = str(name), str(network_layer), str(kind), str(tensor)
            layer = name if kind == "Activations" else name[: -len(kind) - 1]
            count = int(count)
            if not 0 <= count < 2**63:
                raise ValueError(f"count {count} is out of range")
            stats = TensorStats(min=float(lo), max=float(hi), count=count, hist=None)
            entries.append(RangeEntry(layer, network_layer, kind, tensor, stats))
        return cls(entries, num_samples=0)

    @classmethod
    def from_dict(cls, d: dict, where: str = "the data") -> Calibration:
        if not isinstance(d, dict) or d.get("format") != _FORMAT:
            d = d if isinstance(d, dict) else {}
            raise CalibrationDataError(f"{where}: not a quantscope calibration file (format {d.get('format')!r})")
        entries = [
            RangeEntry(e["layer"], e["network_layer"], e["kind"], e["tensor"], TensorStats.from_dict(e))
            for e in d["entries"]
        ]
        return cls(
            entries, num_samples=d["num_samples"], model_name=d.get("model", ""), model_sha256=d.get("model_sha256", "")
        )
