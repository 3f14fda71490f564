"""Saved calibrations (ranges) on arbitrary bytes, as JSON and as CSV."""

from fuzz._common import run, write


def test_one(data: bytes) -> None:
    from quantscope import Calibration

    for name in ("ranges.json", "ranges.csv"):
        cal = Calibration.load(write(name, data))
        _ = cal.table


def seeds() -> list[bytes]:
    """A valid saved calibration (JSON) and its table (CSV) to mutate."""
    import numpy as np

    from quantscope import Calibration, TensorStats
    from quantscope.calibrate import RangeEntry

    stats = TensorStats.of(np.linspace(-1, 2, 50, dtype=np.float32))
    cal = Calibration([RangeEntry("x", "x", "Activations", "x", stats)], num_samples=5)
    return [cal.to_json().encode(), cal.to_csv().encode()]


if __name__ == "__main__":
    run(test_one)
