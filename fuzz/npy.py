"""The .npy reader: arbitrary bytes as a data file, read as calibration batches."""

from fuzz._common import run, write


def test_one(data: bytes) -> None:
    from quantscope import as_source

    for _ in as_source(write("data.npy", data), input_shape=(None, 2, 3)).batches(4):
        pass


def seeds() -> list[bytes]:
    """Valid .npy files to mutate."""
    import io

    import numpy as np

    out = []
    for arr in (np.zeros((3, 2, 3), np.float32), np.arange(12, dtype=np.int64).reshape(2, 2, 3)):
        buf = io.BytesIO()
        np.save(buf, arr)
        out.append(buf.getvalue())
    return out


if __name__ == "__main__":
    run(test_one)
