"""Real photos for ImageNet networks, split by photo into calibration and evaluation sets.

Photos (nothing is downloaded):

- scikit-image's bundled photos (``skimage.data``: astronaut, chelsea, coffee, ...);
- the photos of Debian's ``opencv-doc`` examples data (fruits, butterfly, baboon,
  messi5, squirrel...; ``scripts/install_test_data.sh`` extracts that folder of the
  package into ``~/.cache/quantscope/opencv-doc``, or set ``QUANTSCOPE_OPENCV_DATA``
  to a folder holding them). Of each near-duplicate pair (stereo pairs, aloeL/aloeR,
  leuvenA/B...) one photo is used; drawings, logos, charts, text and calibration
  chessboards are left out.

:func:`photo_sets` assigns every third photo (in the order listed here) to calibration
and the others to evaluation, so the two sets share no photo, and makes from each set
samples of 224x224 RGB pixels 0..255 (NCHW float32): first each photo's centre crop
(short side resized to 256) and its mirror image, then crops at a random scale (short
side 232..320) and position with a random flip, from a generator seeded with the set's
seed. The same arguments give the same arrays, bit for bit.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np

#: scikit-image photos (``stereo_motorcycle`` gives its left view).
SKIMAGE = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "stereo_motorcycle",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "camera",
    "coins",
    "moon",
    "brick",
    "grass",
    "gravel",
    "clock",
)

#: opencv-doc's examples/data photos.
OPENCV = (
    "aero1.jpg",
    "aloeL.jpg",
    "apple.jpg",
    "baboon.jpg",
    "basketball1.png",
    "board.jpg",
    "box_in_scene.png",
    "building.jpg",
    "butterfly.jpg",
    "chicky_512.png",
    "ela_original.jpg",
    "fruits.jpg",
    "graf1.png",
    "home.jpg",
    "left.jpg",
    "leuvenA.jpg",
    "licenseplate_motion.jpg",
    "messi5.jpg",
    "orange.jpg",
    "rubberwhale1.png",
    "smarties.png",
    "squirrel_cls.jpg",
    "starry_night.jpg",
    "stuff.jpg",
)

_EXAMPLES = Path("usr/share/doc/opencv-doc/examples/data")


def opencv_folder() -> Path | None:
    """The folder of opencv-doc's example photos: ``$QUANTSCOPE_OPENCV_DATA``, Debian's
    installed package, or what ``scripts/install_test_data.sh`` extracted; None if none."""
    candidates = []
    if os.environ.get("QUANTSCOPE_OPENCV_DATA"):
        candidates.append(Path(os.environ["QUANTSCOPE_OPENCV_DATA"]))
    candidates += [
        Path("/") / _EXAMPLES,
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "quantscope" / "opencv-doc" / _EXAMPLES,
    ]
    return next((c for c in candidates if (c / OPENCV[0]).is_file()), None)


@lru_cache(maxsize=1)
def photos() -> tuple[tuple[str, np.ndarray], ...]:
    """Every photo as ``(name, HxWx3 uint8)``, in the order of :data:`SKIMAGE` then :data:`OPENCV`.

    Raises:
        RuntimeError: opencv-doc's photos are not found (the message says how to get them).
    """
    import skimage.data
    from PIL import Image

    out = []
    for name in SKIMAGE:
        img = getattr(skimage.data, name)()
        if isinstance(img, tuple):
            img = img[0]
        img = np.asarray(img)
        if img.ndim == 2:
            img = np.stack([img] * 3, axis=-1)
        out.append((name, np.ascontiguousarray(img[..., :3].astype(np.uint8))))
    folder = opencv_folder()
    if folder is None:
        raise RuntimeError(
            "opencv-doc's example photos are not here: run scripts/install_test_data.sh (it extracts "
            "usr/share/doc/opencv-doc/examples/data of `apt-get download opencv-doc` into "
            "~/.cache/quantscope/opencv-doc), or set QUANTSCOPE_OPENCV_DATA to a folder holding them"
        )
    for name in OPENCV:
        out.append((name, np.asarray(Image.open(folder / name).convert("RGB"))))
    return tuple(out)


def _crop(img: np.ndarray, rng: np.random.Generator | None, flip: bool = False, size: int = 224) -> np.ndarray:
    from PIL import Image

    pil = Image.fromarray(img)
    w, h = pil.size
    short = 256 if rng is None else int(rng.integers(232, 321))
    scale = short / min(w, h)
    pil = pil.resize((max(short, round(w * scale)), max(short, round(h * scale))), Image.BILINEAR)
    w, h = pil.size
    if rng is None:
        left, top = (w - size) // 2, (h - size) // 2
    else:
        left, top = int(rng.integers(0, w - size + 1)), int(rng.integers(0, h - size + 1))
        flip = bool(rng.integers(2))
    arr = np.asarray(pil.crop((left, top, left + size, top + size)), dtype=np.float32).transpose(2, 0, 1)
    return np.ascontiguousarray(arr[:, :, ::-1] if flip else arr)


def split() -> tuple[list[str], list[str]]:
    """``(calibration photos, evaluation photos)``: every third photo calibrates."""
    names = [name for name, _ in photos()]
    return [n for i, n in enumerate(names) if i % 3 == 0], [n for i, n in enumerate(names) if i % 3 != 0]


def samples(names: list[str], n: int, seed: int) -> np.ndarray:
    """``n`` samples ``(n, 3, 224, 224)`` float32 from the photos ``names`` (see the module docstring)."""
    table = dict(photos())
    group = [table[name] for name in names]
    out = [_crop(img, None) for img in group] + [_crop(img, None, flip=True) for img in group]
    rng = np.random.default_rng(seed)
    while len(out) < n:
        out.append(_crop(group[int(rng.integers(len(group)))], rng))
    return np.stack(out[:n])


def photo_sets(n_cal: int = 80, n_eval: int = 130, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Calibration and evaluation samples, from disjoint photos."""
    cal, ev = split()
    return samples(cal, n_cal, seed), samples(ev, n_eval, seed + 1)
