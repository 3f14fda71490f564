"""A folder of image files as a data source, after MATLAB's ``imageDatastore``.

``ImageDatastore(folder)`` finds the image files under ``folder`` (recursively, sorted
by their path relative to ``folder``, so the order is the same on every machine),
labels each by the name of its class folder, and yields NCHW ``float32`` batches.

Pixel values
------------
Each image is decoded with Pillow, converted to ``channels`` (1: grayscale ``"L"``,
ITU-R 601-2 luma; 3: ``"RGB"``, alpha dropped), resized to ``size`` with Pillow's
bilinear filter (antialiased when shrinking), then::

    x = (pixel * scale - mean) / std        # per channel; pixel in 0..255 for 8-bit images

With the defaults (``scale=1``, ``mean=0``, ``std=1``) ``x`` holds the **raw pixel
values 0..255** as ``float32``: right for a network that normalizes inside itself
(an input normalization layer, as MATLAB's ``imageInputLayer``). For a network trained
on normalized inputs, pass for example the torchvision ImageNet constants::

    ImageDatastore(folder, scale=1 / 255, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))

16-bit and floating-point grayscale images keep their values (0..65535 for 16-bit).
EXIF orientation is not applied (as torchvision's and MATLAB's readers). Multi-frame
files (GIF, TIFF) give their first frame.

Labels
------
With ``labels="foldernames"`` the label of a file is the name of the subfolder of
``folder`` it lies in (its first path component: ``folder/cat/2019/a.png`` is a
``cat``). Classes are sorted by name; ``Batch.y`` holds the class index (``int64``)
into ``classes``. If every image lies directly in ``folder`` (no class subfolders,
a plain folder of calibration photos), the datastore is unlabelled. Images both
directly in ``folder`` and in subfolders is ambiguous and raises
:class:`~quantscope.errors.CalibrationDataError`. Hidden files and folders (names
starting with ``.``, such as macOS ``._x.png`` files) are ignored.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from quantscope.calibrate.data import Batch, check_batch_size, check_finite, empty_error
from quantscope.errors import CalibrationDataError, ConfigurationError, option

__all__ = ["ImageDatastore", "DEFAULT_EXTENSIONS"]

_log = logging.getLogger("quantscope")

DEFAULT_EXTENSIONS: tuple[str, ...] = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".ppm",
    ".pgm",
    ".webp",
)

_GRAY_MODES = {"1", "L", "LA", "La", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"}
_HIGH_DEPTH_MODES = {"I", "F", "I;16", "I;16L", "I;16B", "I;16N"}


def _channel_vector(value: Any, name: str, default: float) -> np.ndarray:
    if value is None:
        return np.array([default], dtype=np.float32)
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.size == 0 or not np.isfinite(arr).all():
        raise ConfigurationError(f"{name} must be a finite number or one number per channel, got {value!r}")
    return arr.astype(np.float32)


def _decode(path: Path, size: tuple[int, int] | None, channels: int | None) -> np.ndarray:
    """Decode one image to a float32 (C, H, W) array of its pixel values on one scale,
    0..255: 8-bit images as they are, 16-bit ones (PIL modes ``I;16*``, and ``I`` from a
    PNG) times 255/65535. Other deep images (32-bit integer or floating-point TIFFs) have
    no agreed full scale and are refused by name."""
    with Image.open(path) as im:
        im.load()
        mode = im.mode
        c = channels if channels is not None else (1 if mode in _GRAY_MODES else 3)
        sixteen = mode.startswith("I;16") or (mode == "I" and im.format == "PNG")
        if mode in _HIGH_DEPTH_MODES and not sixteen:
            raise CalibrationDataError(
                f"{path}: a {'floating-point' if mode == 'F' else '32-bit integer'} image (PIL mode {mode}), "
                "whose pixel values have no agreed full scale; quantscope reads 8- and 16-bit images (scaled to "
                "0..255). Convert it to an 8- or 16-bit PNG or TIFF"
            )
        if sixteen:
            im = im.convert("F")
        elif c == 1:
            im = im.convert("L") if mode != "L" else im
        else:
            im = im.convert("RGB") if mode != "RGB" else im
        if size is not None:
            h, w = size
            if im.size != (w, h):
                im = im.resize((w, h), Image.Resampling.BILINEAR)
        arr = np.asarray(im, dtype=np.float32)
        if sixteen:
            arr = arr * np.float32(255.0 / 65535.0)
    if arr.ndim == 2:
        arr = arr[None]
        if c == 3:
            arr = np.repeat(arr, 3, axis=0)
    else:
        arr = arr.transpose(2, 0, 1)
    return np.ascontiguousarray(arr)


#: The largest height or width an image is resized to (16384: 3 GiB per float32 RGB image).
MAX_SIDE = 16384


class ImageDatastore:
    """Image files under a folder, read as NCHW ``float32`` batches (a ``DataSource``).

    Args:
        folder: the root folder. Files are found recursively and sorted by relative path.
        labels: ``"foldernames"`` (the default: the first subfolder under ``folder``
            names the class) or ``None`` (unlabelled).
        extensions: file name endings to read (case-insensitive).
        size: ``(height, width)`` in pixels to resize every image to (bilinear), or
            ``None`` to keep each image's size (all images must then share one size).
        channels: 1 (grayscale) or 3 (RGB), or ``None`` to keep each image's own
            (grayscale images 1, others 3; all images must then agree).
        scale, mean, std: preprocessing ``x = (pixel * scale - mean) / std``, mean and
            std as scalars or one value per channel. Defaults give raw pixels 0..255
            (16-bit images are scaled to that range: pixel * 255 / 65535; 32-bit and
            floating-point images are refused).
        skip_bad: skip files that do not decode instead of raising; they are listed,
            after an iteration, in ``skipped`` as ``(path, reason)``.
        class_names: the network's classes in output order (ImageNet's 1,000 names...):
            a subfolder's label is its name's position in this list. Without it, the
            sorted subfolder names are classes 0, 1, 2...

    Attributes:
        files: the image paths, in reading order (``Batch.index`` indexes this list).
        labels: the label name of each file (``numpy`` array of ``str``), or ``None``.
        classes: the sorted class names (``[]`` when unlabelled).
        skipped: ``(path, reason)`` of the files skipped during the last iteration.

    Raises:
        CalibrationDataError: the folder is missing, holds no matching file, or mixes
            images directly in it with images in class subfolders.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        labels: str | None = "foldernames",
        extensions: Sequence[str] = DEFAULT_EXTENSIONS,
        size: tuple[int, int] | None = None,
        channels: int | None = None,
        scale: float = 1.0,
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
        skip_bad: bool = False,
        class_names: Sequence[str] | None = None,
    ):
        folder = Path(folder)
        if labels not in ("foldernames", None):
            raise ConfigurationError(f"labels must be 'foldernames' or None, got {labels!r}")
        exts = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
        if not exts:
            raise ConfigurationError("extensions is empty; pass file endings such as ('.png', '.jpg')")
        if not folder.exists():
            raise CalibrationDataError(f"image folder {folder} does not exist; pass an existing folder")
        if not folder.is_dir():
            raise CalibrationDataError(
                f"{folder} is not a folder; pass the folder that holds the images (or their class subfolders)"
            )
        rels: list[tuple[str, ...]] = []
        seen = {os.path.realpath(folder)}
        # symbolic links to folders are followed (a class folder linked from elsewhere),
        # each real folder once (a link back up would loop)
        for root, dirs, names in os.walk(folder, followlinks=True):
            kept = []
            for d in dirs:
                real = os.path.realpath(os.path.join(root, d))
                if not d.startswith(".") and real not in seen:
                    seen.add(real)
                    kept.append(d)
            dirs[:] = kept
            rel_root = Path(root).relative_to(folder).parts
            for name in names:
                if name.startswith(".") or not name.lower().endswith(exts):
                    continue
                rels.append((*rel_root, name))
        rels.sort()
        if not rels:
            raise CalibrationDataError(
                f"image folder {folder} contains no samples: no files ending in "
                f"{', '.join(exts)} were found in it or its subfolders; check the folder "
                f"or pass {option('extensions=(...)', '--extensions .EXT ...')}"
            )
        files = [folder.joinpath(*r) for r in rels]
        label_names: np.ndarray | None = None
        if labels == "foldernames":
            at_root = [r for r in rels if len(r) == 1]
            if len(at_root) == len(rels):
                label_names = None  # a plain folder of images: unlabelled
            elif at_root:
                listed = ", ".join(r[0] for r in at_root[:5]) + (", ..." if len(at_root) > 5 else "")
                raise CalibrationDataError(
                    f"image folder {folder}: {len(at_root)} images lie directly in it ({listed}) "
                    "while others lie in class subfolders, so they have no label; move them into "
                    f"a class subfolder, remove them, or pass {option('labels=None', '--no-labels')}"
                )
            else:
                label_names = np.array([r[0] for r in rels], dtype=str)
        if class_names is not None and label_names is not None:
            # position in the list = output index, duplicates included (ImageNet's list names
            # "crane" and "maillot" twice): dropping one would shift every later class
            known = [str(c) for c in class_names]
            unknown = sorted(set(label_names.tolist()) - set(known))
            if unknown:
                raise CalibrationDataError(
                    f"image folder {folder}: class subfolder(s) {', '.join(unknown[:8])}"
                    f"{' ...' if len(unknown) > 8 else ''} are not in the class list "
                    f"({len(known)} names, e.g. {', '.join(known[:3])}); name the subfolders as the list does"
                )
            places: dict[str, list[int]] = {}
            for i, c in enumerate(known):
                places.setdefault(c, []).append(i)
            ambiguous = sorted(n for n in set(label_names.tolist()) if len(places[n]) > 1)
            if ambiguous:
                raise CalibrationDataError(
                    f"image folder {folder}: class subfolder(s) "
                    + ", ".join(
                        f"{n!r} (list entries {', '.join(str(i + 1) for i in places[n])})" for n in ambiguous[:5]
                    )
                    + " name more than one entry of the class list, so their output index is ambiguous; make "
                    "those names unique in the list (e.g. 'crane (bird)', 'crane (machine)') and name the "
                    "subfolders as the list does"
                )
            classes = known
        else:
            classes = sorted(set(label_names.tolist())) if label_names is not None else []
        self._init(
            folder=folder,
            files=files,
            label_names=label_names,
            classes=classes,
            extensions=exts,
            size=size,
            channels=channels,
            scale=scale,
            mean=mean,
            std=std,
            skip_bad=skip_bad,
        )
        #: ``classes`` is the user's class list (``class_names``), in the network's output order
        self.class_list_given = class_names is not None and label_names is not None

    def _init(
        self,
        *,
        folder: Path,
        files: list[Path],
        label_names: np.ndarray | None,
        classes: list[str],
        extensions: tuple[str, ...],
        size: tuple[int, int] | None,
        channels: int | None,
        scale: float,
        mean: Any,
        std: Any,
        skip_bad: bool,
    ) -> None:
        if size is not None:
            try:
                h, w = (int(s) for s in size)
            except (TypeError, ValueError):
                raise ConfigurationError(
                    f"{option('size', '--size')} must be (height, width) in pixels, got {size!r}"
                ) from None
            if h < 1 or w < 1:
                raise ConfigurationError(f"{option('size', '--size')} must be positive (height, width), got {size!r}")
            if max(h, w) > MAX_SIDE:
                raise ConfigurationError(
                    f"{option('size', '--size')} {h} {w}: at most {MAX_SIDE} pixels a side (one such image is "
                    f"{h * w * 12 / 2**30:.1f} GiB as float32 RGB); give the network's input size"
                )
            size = (h, w)
        if channels is not None and channels not in (1, 3):
            raise ConfigurationError(
                f"{option('channels', '--channels')} must be 1 (grayscale) or 3 (RGB), got {channels!r}"
            )
        if not (isinstance(scale, (int, float, np.integer, np.floating)) and math.isfinite(scale)):
            raise ConfigurationError(f"{option('scale', '--pixel-scale')} must be a finite number, got {scale!r}")
        mean_v = _channel_vector(mean, "mean", 0.0)
        std_v = _channel_vector(std, "std", 1.0)
        if not (std_v > 0).all():
            raise ConfigurationError(f"{option('std', '--std')} must be positive (a standard deviation), got {std!r}")
        for name, v in (("mean", mean_v), ("std", std_v)):
            if v.size not in (1,) and channels is not None and v.size != channels:
                raise ConfigurationError(
                    f"{option(name, '--' + name)} has {v.size} values but the images have {channels} "
                    f"channel(s); pass one {option(name, '--' + name)} value or one per channel"
                )
            if v.size not in (1, 3) and channels is None:
                raise ConfigurationError(
                    f"{option(name, '--' + name)} has {v.size} values; pass one value or one per channel (3 for RGB)"
                )
        self.folder = folder
        self.files = files
        self.labels = label_names
        self.classes = classes
        self.extensions = extensions
        self.size = size
        self.channels = channels
        self.scale = float(scale)
        self.mean = mean
        self.std = std
        self.skip_bad = bool(skip_bad)
        self.skipped: list[tuple[Path, str]] = []
        self._mean = mean_v
        self._std = std_v
        class_index: dict[str, int] = {}
        for i, c in enumerate(classes):
            class_index.setdefault(c, i)
        self._y = (
            None if label_names is None else np.array([class_index[n] for n in label_names.tolist()], dtype=np.int64)
        )
        self.desc = f"image folder {folder}"

    def _copy(
        self, *, files: list[Path] | None = None, label_names: np.ndarray | None = None, **config: Any
    ) -> ImageDatastore:
        new = object.__new__(ImageDatastore)
        kw = dict(
            extensions=self.extensions,
            size=self.size,
            channels=self.channels,
            scale=self.scale,
            mean=self.mean,
            std=self.std,
            skip_bad=self.skip_bad,
        )
        kw.update(config)
        new._init(
            folder=self.folder,
            files=list(self.files) if files is None else files,
            label_names=self.labels if files is None else label_names,
            classes=list(self.classes),
            **kw,
        )
        new.class_list_given = self.class_list_given
        return new

    # ------------------------------------------------------------------ DataSource

    @property
    def num_samples(self) -> int:
        """The number of files (with ``skip_bad``, fewer samples may come out)."""
        return len(self.files)

    @property
    def has_labels(self) -> bool:
        return self._y is not None

    def __len__(self) -> int:
        return len(self.files)

    def batches(self, batch_size: int) -> Iterator[Batch]:
        """Yield NCHW float32 batches of ``batch_size`` images (the last may be smaller).

        ``Batch.index`` holds positions in :attr:`files`; ``Batch.y`` the class indices.
        """
        bs = check_batch_size(batch_size)
        return self._iterate(bs)

    def _iterate(self, bs: int) -> Iterator[Batch]:
        self.skipped = []
        xs: list[np.ndarray] = []
        idx: list[int] = []
        ref: tuple[Path, tuple[int, ...]] | None = None
        produced = 0
        for i, path in enumerate(self.files):
            try:
                img = _decode(path, self.size, self.channels)
            except Exception as e:  # any decoder failure: Pillow raises many types
                reason = f"{type(e).__name__}: {e}"
                if self.skip_bad:
                    self.skipped.append((path, reason))
                    _log.warning("skipped %s: %s", path, reason)
                    continue
                raise CalibrationDataError(
                    f"cannot decode image file {path}: {reason}; remove or replace the file, "
                    f"or pass {option('skip_bad=True', '--skip-bad')} to skip unreadable images "
                    f"({option('listed in .skipped', 'each is named')})"
                ) from e
            if ref is None:
                ref = (path, img.shape)
            elif img.shape != ref[1]:
                raise CalibrationDataError(self._shape_message(path, img.shape, ref))
            xs.append(img)
            idx.append(i)
            if len(xs) == bs:
                yield self._make_batch(xs, idx)
                produced += len(xs)
                xs, idx = [], []
        if xs:
            yield self._make_batch(xs, idx)
            produced += len(xs)
        if produced == 0:
            extra = (
                f" (all {len(self.skipped)} files failed to decode, e.g. {self.skipped[0][0]}: {self.skipped[0][1]})"
                if self.skipped
                else ""
            )
            raise empty_error(self.desc + extra)

    def _shape_message(self, path: Path, shape: tuple[int, ...], ref: tuple[Path, tuple[int, ...]]) -> str:
        def fmt(s: tuple[int, ...]) -> str:
            return f"{s[0]} channel(s), {s[1]}x{s[2]} pixels"

        hints = []
        if shape[1:] != ref[1][1:]:
            hints.append(option(f"size=({ref[1][1]}, {ref[1][2]})", f"--size {ref[1][1]} {ref[1][2]}"))
        if shape[0] != ref[1][0]:
            hints.append(option(f"channels={max(shape[0], ref[1][0])}", f"--channels {max(shape[0], ref[1][0])}"))
        return (
            f"{self.desc}: image {path} has {fmt(shape)} but the first image {ref[0]} has "
            f"{fmt(ref[1])}; images of a batch must share one shape: pass {' and '.join(hints)}"
            + option(" to ImageDatastore, or configure it from the network with .with_input_shape(input_shape)", "")
        )

    def _make_batch(self, xs: list[np.ndarray], idx: list[int]) -> Batch:
        x = np.stack(xs)
        c = x.shape[1]
        for name, v in (("mean", self._mean), ("std", self._std)):
            if v.size not in (1, c):
                raise ConfigurationError(
                    f"{option(name, '--' + name)} has {v.size} values but the images have {c} channel(s); pass one "
                    f"{option(name, '--' + name)} value or one per channel"
                )
        if self.scale != 1.0:
            x *= np.float32(self.scale)
        if self._mean.size > 1 or self._mean[0] != 0:
            x -= self._mean.reshape(-1, 1, 1) if self._mean.size > 1 else self._mean[0]
        if self._std.size > 1 or self._std[0] != 1:
            x /= self._std.reshape(-1, 1, 1) if self._std.size > 1 else self._std[0]
        index = np.asarray(idx, dtype=np.int64)
        check_finite(x, index, self.desc)
        y = None if self._y is None else self._y[index]
        return Batch(x=x, y=y, index=index)

    # ------------------------------------------------------------------ MATLAB-like API

    def read_image(self, i: int) -> np.ndarray:
        """The preprocessed image ``files[i]``, float32 ``(C, H, W)``."""
        path = self.files[i]
        try:
            img = _decode(path, self.size, self.channels)
        except Exception as e:
            raise CalibrationDataError(
                f"cannot decode image file {path}: {type(e).__name__}: {e}; remove or replace the file"
            ) from e
        return self._make_batch([img], [i]).x[0]

    def with_input_shape(self, input_shape: Sequence[Any], *, fill_only: bool = False) -> ImageDatastore:
        """A copy sized for a network input of shape ``(None, C, H, W)`` (NCHW).

        ``C`` (1 or 3) sets ``channels`` and ``(H, W)`` sets ``size``; a symbolic
        dimension (``None``, a name, or a non-positive int) leaves that setting as it is.
        With ``fill_only=True`` only settings that are ``None`` are filled in.
        """
        shape = tuple(input_shape)
        if len(shape) != 4:
            raise CalibrationDataError(
                f"{self.desc}: an image datastore feeds networks with NCHW image input "
                f"(None, C, H, W); this network's input shape is {shape}, so pass the data "
                "as arrays instead"
            )

        def known(d: Any) -> int | None:
            if d is None or isinstance(d, str) or int(d) <= 0:
                return None
            return int(d)

        c, h, w = (known(d) for d in shape[1:])
        if c is not None and c not in (1, 3):
            hint = ""
            if known(shape[3]) in (1, 3):
                hint = " (the input looks NHWC, channels last: an ImageDatastore yields NCHW only)"
            raise CalibrationDataError(
                f"{self.desc}: the network input {shape} has {c} channels, but images give 1 "
                f"(grayscale) or 3 (RGB){hint}; pass the data as arrays instead"
            )
        if fill_only and self.size is not None and h is not None and w is not None and tuple(self.size) != (h, w):
            raise CalibrationDataError(
                f"{self.desc}: {option('size=', '--size')} {self.size[0]} {self.size[1]} resizes the images to "
                f"{self.size[0]}x{self.size[1]} pixels, and the network takes {h}x{w}; give "
                f"{option(f'size=({h}, {w})', f'--size {h} {w}')} or leave it out (the network's size is used)"
            )
        config: dict[str, Any] = {}
        if c is not None and not (fill_only and self.channels is not None):
            config["channels"] = c
        if h is not None and w is not None and not (fill_only and self.size is not None):
            config["size"] = (h, w)
        return self._copy(**config)

    def count_each_label(self) -> dict[str | None, int]:
        """``{label: number of files}`` in class order (``{None: n}`` when unlabelled)."""
        if self.labels is None:
            return {None: len(self.files)}
        counts = {c: 0 for c in self.classes}
        for name in self.labels.tolist():
            counts[name] += 1
        return counts

    def split_each_label(self, fraction: float, seed: int | None = None) -> tuple[ImageDatastore, ImageDatastore]:
        """Split into two datastores, ``fraction`` of each label's files in the first.

        Like MATLAB's ``splitEachLabel(imds, p)`` (``seed=None``: each label's first
        files in file order) and ``splitEachLabel(imds, p, 'randomized')`` (a seed:
        files drawn with ``numpy.random.default_rng(seed)``). Each label contributes
        ``round(fraction * count)`` files to the first part, rounding halves up as
        MATLAB does; the rest go to the second. Both parts keep file order, the same
        classes (so class indices agree) and the same settings; they are disjoint and
        the same for the same seed. An unlabelled datastore splits as one group.
        """
        if (
            isinstance(fraction, bool)
            or not isinstance(fraction, (int, float, np.floating, np.integer))
            or not (0.0 <= float(fraction) <= 1.0)
        ):
            raise ConfigurationError(f"fraction must be a number between 0 and 1, got {fraction!r}")
        rng = np.random.default_rng(seed) if seed is not None else None
        groups: dict[Any, list[int]] = {}
        names = self.labels.tolist() if self.labels is not None else [None] * len(self.files)
        for i, name in enumerate(names):
            groups.setdefault(name, []).append(i)
        first: list[int] = []
        for key in self.classes if self.labels is not None else [None]:
            members = np.asarray(groups.get(key, []), dtype=np.int64)
            k = int(math.floor(float(fraction) * len(members) + 0.5))
            chosen = rng.permutation(members)[:k] if rng is not None else members[:k]
            first.extend(int(i) for i in chosen)
        first_set = set(first)
        a = sorted(first_set)
        b = [i for i in range(len(self.files)) if i not in first_set]
        return self._subset(a), self._subset(b)

    def subset(self, indices: Sequence[int]) -> ImageDatastore:
        """A datastore of ``files[i]`` for ``i`` in ``indices`` (MATLAB's ``subset``)."""
        idx = [int(i) for i in indices]
        for i in idx:
            if not -len(self.files) <= i < len(self.files):
                raise ConfigurationError(f"index {i} is out of range for {len(self.files)} files")
        return self._subset(idx)

    def _subset(self, idx: list[int]) -> ImageDatastore:
        files = [self.files[i] for i in idx]
        names = None if self.labels is None else self.labels[np.asarray(idx, dtype=np.int64)]
        return self._copy(files=files, label_names=names)

    def __repr__(self) -> str:
        parts = [f"{str(self.folder)!r}", f"{len(self.files)} files"]
        if self.classes:
            parts.append(f"{len(self.classes)} classes")
        if self.size is not None:
            parts.append(f"size={self.size}")
        if self.channels is not None:
            parts.append(f"channels={self.channels}")
        return f"ImageDatastore({', '.join(parts)})"
