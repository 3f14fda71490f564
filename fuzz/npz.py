"""The .npz reader (one input, and several inputs keyed by name) on arbitrary bytes."""

import numpy as np

from fuzz._common import run, write


def test_one(data: bytes) -> None:
    from quantscope import as_source

    path = write("data.npz", data)
    for _ in as_source(path, input_shape=(None, 4)).batches(4):
        pass
    spec = {"ids": ((None, 3), np.dtype(np.int64)), "mask": ((None, 3), np.dtype(np.int64))}
    for _ in as_source(path, inputs=spec).batches(4):
        pass


def seeds() -> list[bytes]:
    """Valid .npz files (one input; two named inputs with labels) to mutate."""
    import io

    out = []
    for arrays in (
        {"x": np.zeros((3, 4), np.float32), "y": np.arange(3)},
        {"ids": np.ones((2, 3), np.int64), "mask": np.ones((2, 3), np.int64)},
    ):
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        out.append(buf.getvalue())
    return out


if __name__ == "__main__":
    run(test_one)
