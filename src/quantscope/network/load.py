"""Load a network: an ONNX file, an ``onnx.ModelProto``, or a PyTorch ``nn.Module``.

Every path ends in a checked ``onnx.ModelProto`` (onnx checker passed, shapes
inferred, external data loaded from inside the model's own folder only). A file whose
weights exceed :data:`~quantscope.network.storage.LARGE_BYTES` is checked by path and
its external data is left in place, to be read from the model's folder
(:mod:`quantscope.network.storage`).
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from google.protobuf.message import DecodeError

from ..errors import ModelLoadError
from . import storage
from .storage import PROTOBUF_LIMIT

__all__ = ["load_model"]


def load_model(source: Any, example_input: Any = None) -> onnx.ModelProto:
    """Return a checked ONNX model for ``source``.

    Args:
        source: a path to an ``.onnx`` file, an ``onnx.ModelProto``, or a
            ``torch.nn.Module`` (then ``example_input`` is required).
        example_input: for a torch module, one example input tensor (or a tuple of
            them: forward's positional inputs, named ``input_0``, ``input_1``...; or a dict:
            its keyword inputs, named by the keys; floats become float32, integers stay
            integers), each of shape ``(N, C, H, W)`` or whatever the module takes. The
            first axis (the batch) is exported as dynamic, every other axis as fixed at
            the example's size (export the module yourself for other dynamic axes).

    Raises:
        ModelLoadError: the file is missing, is not ONNX, is truncated, fails
            the onnx checker, or refers to external data outside its folder.
    """
    if isinstance(source, onnx.ModelProto):
        model = onnx.ModelProto()
        model.CopyFrom(source)
        _check_external_data(model, base_dir=None, where="the given ModelProto")
        return _checked(model, "the given ModelProto")
    if isinstance(source, (str, os.PathLike)):
        return _load_file(Path(source))
    if _is_torch_module(source):
        return _from_torch(source, example_input)
    raise ModelLoadError(
        f"cannot load a network from a {type(source).__name__}: pass a path to an .onnx "
        "file, an onnx.ModelProto, or a torch.nn.Module with example_input"
    )


def _load_file(path: Path) -> onnx.ModelProto:
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file")
    if path.is_dir():
        raise ModelLoadError(f"{path}: is a folder, not an ONNX model file")
    if path.stat().st_size > PROTOBUF_LIMIT:
        raise ModelLoadError(
            f"{path}: the file is {path.stat().st_size / 2**30:.1f} GiB, more than one protobuf message (and so "
            "one ONNX file) can hold; save the model with its weights as external data "
            "(onnx.save_model(model, path, save_as_external_data=True))"
        )
    data = path.read_bytes()
    if not data:
        raise ModelLoadError(f"{path}: the file is empty, not an ONNX model")
    if data[:4] == b"PK\x03\x04" or data[:1] == b"\x80" or path.suffix.lower() in (".pt", ".pth", ".ckpt"):
        raise ModelLoadError(
            f"{path}: this is a PyTorch checkpoint (a {'zip' if data[:2] == b'PK' else 'pickle'} file), not an ONNX "
            "model. Export the network to ONNX first (torch.onnx.export), or, from Python, pass the "
            "torch.nn.Module itself with example_input= (quantscope never unpickles files)."
        )
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise ModelLoadError(
            f"{path}: not a readable ONNX model (protobuf decoding failed: {exc}). "
            "The file may be truncated or of another format; re-export it to ONNX."
        ) from None
    if not model.graph.node and not model.graph.input:
        raise ModelLoadError(f"{path}: decodes to an empty ONNX model (no graph); the file is not ONNX or is truncated")
    base_dir = path.resolve().parent
    if _total_bytes(model, path) > storage.LARGE_BYTES:
        # weights beyond one protobuf message: checked from the file, left where they are
        _check_external_data(model, base_dir=base_dir, where=str(path), load=False)
        return _checked_large(model, path)
    _check_external_data(model, base_dir=base_dir, where=str(path))
    return _checked(model, str(path))


def _total_bytes(model: onnx.ModelProto, path: Path) -> int:
    """Bytes of the model file and of the external data its tensors point to."""
    total = path.stat().st_size
    seen: set[Path] = set()
    for tensor in _external_tensors(model):
        info = {e.key: e.value for e in tensor.external_data}
        if "length" in info and info["length"].isdigit():
            total += int(info["length"])
            continue
        location = (path.resolve().parent / info.get("location", "")).resolve()
        if location.is_file() and location not in seen:
            seen.add(location)
            total += location.stat().st_size
    return total


def _checked_large(model: onnx.ModelProto, path: Path) -> onnx.ModelProto:
    """:func:`_checked` for a model whose weights stay in external files: the checker
    and shape inference read the file by path (they never hold it in one message)."""
    import tempfile

    try:
        onnx.checker.check_model(str(path))
    except (onnx.checker.ValidationError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        raise ModelLoadError(f"{path}: fails the ONNX checker: {first}") from None
    with tempfile.TemporaryDirectory(prefix="quantscope-shapes-") as tmp:
        inferred = Path(tmp) / "inferred.onnx"
        try:
            onnx.shape_inference.infer_shapes_path(str(path), str(inferred), check_type=True, strict_mode=True)
        except Exception as exc:  # InferenceError and friends
            first = str(exc).strip().splitlines()[0]
            raise ModelLoadError(f"{path}: ONNX shape inference fails: {first}") from None
        return onnx.load(str(inferred), load_external_data=False)


def _external_tensors(model: onnx.ModelProto):
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            yield tensor
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_location == onnx.TensorProto.EXTERNAL:
                yield attr.t


def _check_external_data(model: onnx.ModelProto, base_dir: Path | None, where: str, load: bool = True) -> None:
    """Refuse external data outside ``base_dir`` or missing; load it into ``model``
    unless ``load`` is False."""
    tensors = list(_external_tensors(model))
    if not tensors:
        return
    if base_dir is None:
        raise ModelLoadError(
            f"{where}: tensors {[t.name for t in tensors][:5]} keep their data in external "
            "files, which cannot be found from an in-memory model; pass the .onnx file path instead"
        )
    for tensor in tensors:
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        target = (base_dir / location).resolve()
        if os.path.isabs(location) or not target.is_relative_to(base_dir):
            raise ModelLoadError(
                f"{where}: tensor {tensor.name!r} points to external data at {location!r}, "
                f"outside the model's folder {base_dir}. quantscope reads external data only "
                "from the model's own folder; move the data file next to the model and "
                "re-save it with a relative location."
            )
        if not target.exists():
            raise ModelLoadError(
                f"{where}: tensor {tensor.name!r} needs external data file {location!r}, "
                f"which is missing from {base_dir}"
            )
    if not load:
        return
    try:
        onnx.external_data_helper.load_external_data_for_model(model, str(base_dir))
    except Exception as exc:  # onnx raises several types here
        raise ModelLoadError(f"{where}: cannot read external data: {exc}") from None


def _fill_output_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with the shapes of graph outputs declared without one (a tensor type
    with no ``shape`` field, which onnxruntime accepts and the checker refuses) filled
    in by shape inference; ``model`` itself when every output has one or inference
    cannot tell. The graph is unchanged."""
    if not any(o.type.HasField("tensor_type") and not o.type.tensor_type.HasField("shape") for o in model.graph.output):
        return model
    try:
        return onnx.shape_inference.infer_shapes(model)
    except Exception:  # the checker and the strict inference below give the reason
        return model


def _checked(model: onnx.ModelProto, where: str) -> onnx.ModelProto:
    model = _fill_output_shapes(model)
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError, RuntimeError) as exc:  # UnicodeDecodeError is a ValueError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        raise ModelLoadError(f"{where}: fails the ONNX checker: {first}") from None
    try:
        model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as exc:  # InferenceError and friends
        first = str(exc).strip().splitlines()[0]
        raise ModelLoadError(f"{where}: ONNX shape inference fails: {first}") from None
    return model


def _is_torch_module(obj: Any) -> bool:
    # Do not import torch to find out: check the class hierarchy by name.
    return any(c.__module__.startswith("torch.nn") and c.__name__ == "Module" for c in type(obj).__mro__)


def _from_torch(module: Any, example_input: Any) -> onnx.ModelProto:
    if example_input is None:
        raise ModelLoadError(
            "a torch.nn.Module needs example_input (a tensor of the input's shape, e.g. "
            "torch.zeros(1, 3, 224, 224); a tuple or a dict of them for several inputs) to be exported to ONNX"
        )
    import torch  # optional extra: imported only here

    def tensor(value: Any, name: str):
        if isinstance(value, torch.Tensor):
            return value
        try:
            array = np.asarray(value)
            if array.dtype.kind == "f":
                return torch.as_tensor(array, dtype=torch.float32)
            if array.dtype.kind in "biu":  # token ids, masks: the module's embeddings want integers
                return torch.as_tensor(array)
        except (TypeError, ValueError):
            pass
        raise ModelLoadError(
            f"example_input {name}: expected a tensor or an array of numbers, got {type(value).__name__}; give one "
            "tensor, or a tuple (forward's positional inputs) or a dict (its keyword inputs) of tensors"
        )

    if isinstance(example_input, dict):
        names = [str(k) for k in example_input]
        args: tuple = ()
        kwargs = {str(k): tensor(v, repr(k)) for k, v in example_input.items()}
    elif isinstance(example_input, (tuple, list)):
        names = ["input"] if len(example_input) == 1 else [f"input_{i}" for i in range(len(example_input))]
        args = tuple(tensor(v, f"[{i}]") for i, v in enumerate(example_input))
        kwargs = {}
    else:
        names, args, kwargs = ["input"], (tensor(example_input, "(the one input)"),), {}
    if not names:
        raise ModelLoadError("example_input is empty; give the module's example inputs")
    buffer = io.BytesIO()
    was_training = module.training
    module.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                args,
                buffer,
                kwargs=kwargs or None,
                dynamo=False,
                input_names=names,
                output_names=["output"],
                dynamic_axes={**{name: {0: "N"} for name in names}, "output": {0: "N"}},
                opset_version=17,
                do_constant_folding=True,
            )
    except Exception as exc:
        raise ModelLoadError(f"exporting the torch module to ONNX failed: {exc}") from None
    finally:
        module.train(was_training)
    model = onnx.load_from_string(buffer.getvalue())
    return _checked(model, f"the ONNX export of {type(module).__name__}")
