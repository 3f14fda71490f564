"""Calibration checkpoints on arbitrary bytes: reading and describing them."""

from fuzz._common import run, write


def test_one(data: bytes) -> None:
    from quantscope.calibrate.checkpoint import describe_checkpoint

    describe_checkpoint(write("run.ckpt", data))


def seeds() -> list[bytes]:
    """A checkpoint-shaped JSON document to mutate."""
    import json

    from quantscope.calibrate.checkpoint import FORMAT, VERSION

    doc = {
        "format": FORMAT,
        "version": VERSION,
        "partial": {"num_samples": 4, "stats": []},
        "batches": 2,
        "position": 4,
    }
    return [json.dumps(doc).encode()]


if __name__ == "__main__":
    run(test_one)
