"""Image folders: arbitrary bytes as a .png and a .jpg beside a valid image."""

import numpy as np

from fuzz._common import SCRATCH, run, write


def test_one(data: bytes) -> None:
    from PIL import Image

    from quantscope import ImageDatastore

    folder = SCRATCH / "images"
    if not (folder / "a" / "ok.png").exists():
        (folder / "a").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((6, 6, 3), np.uint8)).save(folder / "a" / "ok.png")
    write("images/b/fuzz.png", data)
    write("images/b/fuzz.jpg", data)
    for skip in (False, True):
        for _ in ImageDatastore(folder, size=(6, 6), skip_bad=skip).batches(2):
            pass


def seeds() -> list[bytes]:
    """A valid PNG and JPEG to mutate."""
    import io

    from PIL import Image

    out = []
    for fmt in ("PNG", "JPEG"):
        buf = io.BytesIO()
        Image.fromarray(np.full((6, 6, 3), 90, np.uint8)).save(buf, format=fmt)
        out.append(buf.getvalue())
    return out


if __name__ == "__main__":
    run(test_one)
