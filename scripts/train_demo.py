#!/usr/bin/env python
"""Train the demo network that ``quantscope demo`` ships, and write its assets.

A small SqueezeNet-style CNN ("FireNet": fire modules, no batch normalization)
is trained on Fashion-MNIST on the CPU, seeded and deterministic. The script
writes, into ``--out`` (default ``src/quantscope/demo/assets``):

- ``firenet.onnx``: the trained network, opset 17, built node by node with
  ``onnx.helper`` so that node and value names read like MATLAB's SqueezeNet
  (``imageinput``, ``conv1``, ``fire2-squeeze1x1``, ..., ``prob``). It takes raw
  pixel values 0..255 of shape (N, 1, 28, 28) and normalizes them itself with a
  ``Sub``/``Div`` pair of constants (training-set mean and standard deviation).
- ``fashion_mnist_slice.npz``: a held-out slice of the Fashion-MNIST *test*
  split (``x`` uint8 N x 1 x 28 x 28, ``y`` int64, ``classes`` str, and
  ``test_index``, the rows of the test split it was taken from).
- ``README.md``: what the model and the data are, licence, how they were made,
  and the accuracies measured.

The data come from Debian's ``dataset-fashion-mnist`` package::

    apt-get install -y dataset-fashion-mnist   # /usr/share/datasets/fashion-mnist

Usage::

    python scripts/train_demo.py [--out DIR] [--epochs N] [--seed S]

Needs torch (``pip install -e .[torch]``), onnx, onnxruntime and numpy. Only
this script needs torch; the shipped assets do not.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import platform
import struct
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "src" / "quantscope" / "demo" / "assets"

CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

# Network layout: conv1 -> pool1 -> fire2, fire3 -> pool3 -> fire4, fire5 -> drop9
# -> conv10 -> pool10 -> prob. Fire modules: (squeeze, expand1x1, expand3x3).
CONV1_CHANNELS = 32
FIRES = {
    "fire2": (16, 32, 32),
    "fire3": (16, 32, 32),
    "fire4": (32, 64, 64),
    "fire5": (32, 64, 64),
}
POOL_AFTER = {"conv1": "pool1", "fire3": "pool3"}  # 3x3 stride-2 MaxPool, as in SqueezeNet
DROPOUT = 0.5
NUM_CLASSES = len(CLASSES)
OPSET = 17
IR_VERSION = 8  # the IR version that goes with opset 17; readable by older onnxruntime too


# --------------------------------------------------------------------------- data


def read_idx(path: Path) -> np.ndarray:
    """Read a (gzipped) IDX file, the format of (Fashion-)MNIST."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    return array.reshape(shape).copy()


def load_fashion_mnist(data_dir: Path) -> dict[str, np.ndarray]:
    files = {
        "x_train": "train-images-idx3-ubyte.gz",
        "y_train": "train-labels-idx1-ubyte.gz",
        "x_test": "t10k-images-idx3-ubyte.gz",
        "y_test": "t10k-labels-idx1-ubyte.gz",
    }
    out = {}
    for key, name in files.items():
        path = data_dir / name
        if not path.exists():
            sys.exit(
                f"{path} not found: install Debian's dataset-fashion-mnist package "
                "(apt-get install -y dataset-fashion-mnist) or pass --data-dir"
            )
        array = read_idx(path)
        out[key] = array[:, None, :, :] if key.startswith("x") else array.astype(np.int64)
    return out


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stratified_slice(y: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Indices of ``per_class`` examples of each class, seeded, in ascending order."""
    rng = np.random.default_rng(seed)
    picked = [rng.choice(np.flatnonzero(y == c), size=per_class, replace=False) for c in range(NUM_CLASSES)]
    return np.sort(np.concatenate(picked))


# --------------------------------------------------------------------------- model


def build_torch_model(mean: float, std: float):
    import torch
    from torch import nn

    class Fire(nn.Module):
        def __init__(self, cin: int, squeeze: int, e1: int, e3: int) -> None:
            super().__init__()
            self.squeeze1x1 = nn.Conv2d(cin, squeeze, 1)
            self.expand1x1 = nn.Conv2d(squeeze, e1, 1)
            self.expand3x3 = nn.Conv2d(squeeze, e3, 3, padding=1)

        def forward(self, x):
            s = torch.relu(self.squeeze1x1(x))
            return torch.cat([torch.relu(self.expand1x1(s)), torch.relu(self.expand3x3(s))], 1)

    class FireNet(nn.Module):
        """SqueezeNet-style network; takes raw pixels 0..255 and normalizes them."""

        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
            self.register_buffer("std", torch.tensor(std, dtype=torch.float32))
            self.conv1 = nn.Conv2d(1, CONV1_CHANNELS, 3, padding=1)
            self.fires = nn.ModuleDict()
            cin = CONV1_CHANNELS
            for name, (s, e1, e3) in FIRES.items():
                self.fires[name] = Fire(cin, s, e1, e3)
                cin = e1 + e3
            self.drop9 = nn.Dropout(DROPOUT)
            self.conv10 = nn.Conv2d(cin, NUM_CLASSES, 1)
            # Initialization as in torchvision's SqueezeNet.
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    if m is self.conv10:
                        nn.init.normal_(m.weight, mean=0.0, std=0.01)
                    else:
                        nn.init.kaiming_uniform_(m.weight)
                    nn.init.zeros_(m.bias)

        def logits(self, x):
            x = (x - self.mean) / self.std
            x = torch.relu(self.conv1(x))
            x = nn.functional.max_pool2d(x, 3, 2)
            for name, fire in self.fires.items():
                x = fire(x)
                if name in POOL_AFTER:
                    x = nn.functional.max_pool2d(x, 3, 2)
            x = torch.relu(self.conv10(self.drop9(x)))
            return x.mean(dim=(2, 3))

        def forward(self, x):
            return torch.softmax(self.logits(x), dim=1)

    return FireNet()


def evaluate(model, x: np.ndarray, batch: int = 1000) -> np.ndarray:
    """Softmax outputs of ``model`` (in eval mode) for uint8 images ``x``."""
    import torch

    model.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            outs.append(model(torch.from_numpy(x[i : i + batch].astype(np.float32))).numpy())
    return np.concatenate(outs)


def train(model, x: np.ndarray, y: np.ndarray, epochs: int, seed: int, batch_size: int, lr: float):
    import torch

    gen = torch.Generator().manual_seed(seed)
    xt = torch.from_numpy(x.astype(np.float32))
    yt = torch.from_numpy(y)
    steps_per_epoch = (len(x) + batch_size - 1) // batch_size
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, epochs=epochs, steps_per_epoch=steps_per_epoch, pct_start=0.2
    )
    loss_fn = torch.nn.CrossEntropyLoss()
    epoch_times = []
    for epoch in range(epochs):
        model.train()
        t0 = time.perf_counter()
        perm = torch.randperm(len(x), generator=gen)
        flip = torch.rand(len(x), generator=gen) < 0.5  # random horizontal flips
        total, correct, loss_sum = 0, 0, 0.0
        for i in range(0, len(x), batch_size):
            idx = perm[i : i + batch_size]
            xb, yb = xt[idx], yt[idx]
            fb = flip[idx]
            xb = torch.where(fb[:, None, None, None], xb.flip(3), xb)
            logits = model.logits(xb)
            loss = loss_fn(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(idx)
            correct += (logits.argmax(1) == yb).sum().item()
            total += len(idx)
        epoch_times.append(time.perf_counter() - t0)
        print(
            f"epoch {epoch + 1}/{epochs}: loss {loss_sum / total:.4f} "
            f"train acc {correct / total:.4f} ({epoch_times[-1]:.1f} s)",
            flush=True,
        )
    return epoch_times


# --------------------------------------------------------------------------- ONNX


def build_onnx(model, mean: float, std: float, doc: str, metadata: dict[str, str]):
    """The ONNX graph of ``model``, node by node, with MATLAB SqueezeNet-like names."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    state = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    nodes: list = []
    inits: list = []

    def const(name: str, array: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name))
        return name

    def conv(name: str, x: str, key: str, kernel: int, pad: int) -> str:
        w = const(f"{name}_W", state[f"{key}.weight"])
        b = const(f"{name}_B", state[f"{key}.bias"])
        nodes.append(
            helper.make_node(
                "Conv",
                [x, w, b],
                [name],
                name=name,
                kernel_shape=[kernel, kernel],
                pads=[pad] * 4,
                strides=[1, 1],
                dilations=[1, 1],
                group=1,
            )
        )
        return name

    def relu(name: str, x: str) -> str:
        nodes.append(helper.make_node("Relu", [x], [name], name=name))
        return name

    def maxpool(name: str, x: str) -> str:
        nodes.append(
            helper.make_node(
                "MaxPool",
                [x],
                [name],
                name=name,
                kernel_shape=[3, 3],
                strides=[2, 2],
                pads=[0, 0, 0, 0],
                ceil_mode=0,
            )
        )
        return name

    x = "imageinput"
    mean_c = const("imageinput_Mean", np.full((1, 1, 1, 1), mean))
    std_c = const("imageinput_StandardDeviation", np.full((1, 1, 1, 1), std))
    nodes.append(helper.make_node("Sub", [x, mean_c], ["imageinput_Sub"], name="imageinput_Sub"))
    nodes.append(helper.make_node("Div", ["imageinput_Sub", std_c], ["imageinput_Div"], name="imageinput_Div"))
    x = relu("relu_conv1", conv("conv1", "imageinput_Div", "conv1", 3, 1))
    x = maxpool("pool1", x)
    for name in FIRES:
        key = f"fires.{name}"
        s = relu(f"{name}-relu_squeeze1x1", conv(f"{name}-squeeze1x1", x, f"{key}.squeeze1x1", 1, 0))
        e1 = relu(f"{name}-relu_expand1x1", conv(f"{name}-expand1x1", s, f"{key}.expand1x1", 1, 0))
        e3 = relu(f"{name}-relu_expand3x3", conv(f"{name}-expand3x3", s, f"{key}.expand3x3", 3, 1))
        x = f"{name}-concat"
        nodes.append(helper.make_node("Concat", [e1, e3], [x], name=x, axis=1))
        if name in POOL_AFTER:
            x = maxpool(POOL_AFTER[name], x)
    # Inference-mode Dropout: no ratio/training_mode inputs, so training_mode is false.
    nodes.append(helper.make_node("Dropout", [x], ["drop9"], name="drop9"))
    x = relu("relu_conv10", conv("conv10", "drop9", "conv10", 1, 0))
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pool10"], name="pool10"))
    nodes.append(helper.make_node("Flatten", ["pool10"], ["flatten10"], name="flatten10", axis=1))
    nodes.append(helper.make_node("Softmax", ["flatten10"], ["prob"], name="prob", axis=1))

    graph = helper.make_graph(
        nodes,
        "firenet",
        [helper.make_tensor_value_info("imageinput", TensorProto.FLOAT, ["N", 1, 28, 28])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N", NUM_CLASSES])],
        initializer=inits,
        doc_string=doc,
    )
    onnx_model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="quantscope scripts/train_demo.py",
        producer_version="0.1.0",
        doc_string=doc,
        ir_version=IR_VERSION,
    )
    helper.set_model_props(onnx_model, metadata)
    onnx_model = onnx.shape_inference.infer_shapes(onnx_model, check_type=True, strict_mode=True)
    onnx.checker.check_model(onnx_model, full_check=True)
    return onnx_model


def onnx_outputs(path: Path, x: np.ndarray, batch: int = 1000) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return np.concatenate(
        [sess.run(["prob"], {"imageinput": x[i : i + batch].astype(np.float32)})[0] for i in range(0, len(x), batch)]
    )


# --------------------------------------------------------------------------- main


README_TEMPLATE = """\
# Demo assets of `quantscope demo`

Made by `scripts/train_demo.py`; do not edit by hand, run it again instead:

```
apt-get install -y dataset-fashion-mnist      # the data, under {data_dir}
pip install -e ".[torch]"                     # torch=={torch_version} (CPU)
python scripts/train_demo.py --epochs {epochs} --seed {seed}
```

| file | what | size |
| --- | --- | --- |
| `firenet.onnx` | the trained network, ONNX opset {opset} (IR version {ir_version}) | {onnx_size:,} bytes |
| `fashion_mnist_slice.npz` | {n_slice:,} held-out Fashion-MNIST test images and labels | {npz_size:,} bytes |

## The model: FireNet

A small SqueezeNet-style convolutional network ({params:,} parameters): fire
modules (a 1x1 "squeeze" convolution feeding parallel 1x1 and 3x3 "expand"
convolutions whose outputs are concatenated), ReLU activations, max pooling, no
batch normalization, dropout before the final 1x1 classifier convolution and a
global average pool, as in SqueezeNet v1.1 (Iandola et al., 2016). Node names
follow MATLAB's `squeezenet`:

```
{layer_table}
```

Each fire module `fireK` is the nodes `fireK-squeeze1x1`, `fireK-relu_squeeze1x1`,
`fireK-expand1x1`, `fireK-relu_expand1x1`, `fireK-expand3x3`,
`fireK-relu_expand3x3` and `fireK-concat` (Concat on axis 1). Weights are the
initializers `<layer>_W` and `<layer>_B`.

The graph was written node by node with `onnx.helper` from the trained PyTorch
weights, passes `onnx.checker.check_model(full_check=True)`, and its outputs
match PyTorch's on the whole test split to within {max_diff:.1e} (max abs
difference of the softmax outputs; the script requires <= 1e-5).

## Training

- Data: the Fashion-MNIST training split, all 60,000 images; nothing from the
  test split is used for training or model selection.
- Seed {seed}, `torch.use_deterministic_algorithms(True)`, CPU, {threads} threads,
  torch {torch_version}, Python {python_version}.
- {epochs} epochs, batch size {batch_size}, AdamW (weight decay 1e-4), one-cycle
  learning-rate schedule with peak {lr}, cross-entropy loss, random horizontal flips.
- Training time: {train_s:.0f} s wall-clock on {cpu}; epochs took {min_epoch:.0f} s to
  {max_epoch:.0f} s (the spread is other load on the machine).

## Accuracy (float32, top-1)

| data | images | accuracy |
| --- | --- | --- |
| Fashion-MNIST test split (PyTorch) | 10,000 | {acc_test:.4f} |
| Fashion-MNIST test split (onnxruntime) | 10,000 | {acc_test_onnx:.4f} |
| `fashion_mnist_slice.npz` (onnxruntime) | {n_slice:,} | {acc_slice:.4f} |

## The data: `fashion_mnist_slice.npz`

{per_class} images of each of the {num_classes} classes, drawn (seed {seed}) from the
Fashion-MNIST **test** split (`t10k-*`), so none of them was seen in training.
Arrays:

- `x`: uint8, [{n_slice}, 1, 28, 28], raw pixel values 0..255 (white object on black)
- `y`: int64, [{n_slice}], class labels 0..9
- `classes`: str, [{num_classes}], class names: {class_names}
- `test_index`: int64, [{n_slice}], the row of each image in the test split

Load it with `numpy.load(path)` (no pickle needed).

## Source and licence

Fashion-MNIST, by Zalando Research (Han Xiao, Kashif Rasul, Roland Vollgraf,
"Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning
Algorithms", arXiv:1708.07747, 2017), <https://github.com/zalandoresearch/fashion-mnist>,
Copyright 2017 Zalando SE, released under the MIT licence (the "Expat" licence in
Debian's terms). The copy used is Debian's package `dataset-fashion-mnist`
({deb_version}); SHA-256 of its files:

{hashes}

The MIT licence of Fashion-MNIST:

> Permission is hereby granted, free of charge, to any person obtaining a copy of
> this software and associated documentation files (the "Software"), to deal in
> the Software without restriction, including without limitation the rights to
> use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies of
> the Software, and to permit persons to whom the Software is furnished to do so,
> subject to the following conditions:
>
> The above copyright notice and this permission notice shall be included in all
> copies or substantial portions of the Software.
>
> THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
> IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS
> FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR
> COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER
> IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN
> CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.

The trained weights in `firenet.onnx` are part of quantscope (Apache-2.0).
"""


def deb_version(package: str) -> str:
    status = Path("/var/lib/dpkg/status")
    if not status.exists():
        return "version unknown"
    for block in status.read_text(errors="replace").split("\n\n"):
        if f"Package: {package}\n" in block + "\n":
            for line in block.splitlines():
                if line.startswith("Version: "):
                    return "version " + line.split(": ", 1)[1]
    return "version unknown"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument(
        "--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="Fashion-MNIST IDX files (default: %(default)s)"
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    parser.add_argument("--per-class", type=int, default=200, help="test images per class in the shipped slice")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args(argv)

    import onnx
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)

    data = load_fashion_mnist(args.data_dir)
    x_train, y_train, x_test, y_test = data["x_train"], data["y_train"], data["x_test"], data["y_test"]
    print(f"train {x_train.shape}, test {x_test.shape}", flush=True)
    mean = float(x_train.astype(np.float64).mean())
    std = float(x_train.astype(np.float64).std())
    mean, std = float(np.float32(mean)), float(np.float32(std))

    model = build_torch_model(mean, std)
    params = sum(p.numel() for p in model.parameters())
    print(f"FireNet: {params:,} parameters; input mean {mean:.4f}, std {std:.4f}", flush=True)

    t0 = time.perf_counter()
    epoch_times = train(model, x_train, y_train, args.epochs, args.seed, args.batch_size, args.lr)
    train_s = time.perf_counter() - t0

    probs_torch = evaluate(model, x_test)
    acc_test = float((probs_torch.argmax(1) == y_test).mean())
    print(f"test accuracy (torch): {acc_test:.4f}; training took {train_s:.1f} s", flush=True)

    index = stratified_slice(y_test, args.per_class, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    onnx_path = args.out / "firenet.onnx"
    npz_path = args.out / "fashion_mnist_slice.npz"
    doc = (
        "FireNet: a small SqueezeNet-style CNN (fire modules, no batch normalization) trained "
        "on Fashion-MNIST by quantscope's scripts/train_demo.py. Input: raw pixel values "
        "0..255, [N,1,28,28]; output: class probabilities, [N,10]."
    )
    metadata = {
        "classes": json.dumps(list(CLASSES)),
        "dataset": "Fashion-MNIST (Zalando Research, MIT licence)",
        "input_range": "0..255",
        "normalization_mean": repr(mean),
        "normalization_std": repr(std),
        "seed": str(args.seed),
        "epochs": str(args.epochs),
        "test_accuracy": f"{acc_test:.4f}",
    }
    onnx_model = build_onnx(model, mean, std, doc, metadata)
    onnx.save(onnx_model, onnx_path)

    probs_onnx = onnx_outputs(onnx_path, x_test)
    max_diff = float(np.abs(probs_onnx - probs_torch).max())
    acc_test_onnx = float((probs_onnx.argmax(1) == y_test).mean())
    print(f"onnxruntime vs torch on the test split: max abs diff {max_diff:.2e}; accuracy {acc_test_onnx:.4f}")
    if max_diff > 1e-5:
        print("ERROR: the ONNX model does not match the PyTorch model", file=sys.stderr)
        return 1

    x_slice, y_slice = x_test[index], y_test[index]
    np.savez_compressed(
        npz_path,
        x=x_slice.astype(np.uint8),
        y=y_slice.astype(np.int64),
        classes=np.array(CLASSES),
        test_index=index.astype(np.int64),
    )
    acc_slice = float((onnx_outputs(onnx_path, x_slice).argmax(1) == y_slice).mean())
    print(f"slice accuracy (onnxruntime): {acc_slice:.4f} on {len(index)} images")

    rows = [
        ("imageinput", "float32, raw pixel values 0..255", "[N, 1, 28, 28]"),
        ("imageinput_Sub", f"x - {mean:.6f} (training-set mean, imageinput_Mean)", ""),
        ("imageinput_Div", f"/ {std:.6f} (training-set std, imageinput_StandardDeviation)", ""),
        ("conv1, relu_conv1", f"3x3 conv, {CONV1_CHANNELS} channels, pad 1", f"[N, {CONV1_CHANNELS}, 28, 28]"),
        ("pool1", "3x3 max pool, stride 2", f"[N, {CONV1_CHANNELS}, 13, 13]"),
    ]
    size = 13
    for name, (s, e1, e3) in FIRES.items():
        rows.append((name, f"fire: squeeze {s}, expand {e1} + {e3}", f"[N, {e1 + e3}, {size}, {size}]"))
        if name in POOL_AFTER:
            size = (size - 3) // 2 + 1
            rows.append((POOL_AFTER[name], "3x3 max pool, stride 2", f"[N, {e1 + e3}, {size}, {size}]"))
    rows += [
        ("drop9", f"Dropout (ratio {DROPOUT} in training; identity here)", ""),
        ("conv10, relu_conv10", f"1x1 conv to {NUM_CLASSES} classes", f"[N, {NUM_CLASSES}, {size}, {size}]"),
        ("pool10", "GlobalAveragePool", f"[N, {NUM_CLASSES}, 1, 1]"),
        ("flatten10", "Flatten", f"[N, {NUM_CLASSES}]"),
        ("prob", "Softmax over axis 1", f"[N, {NUM_CLASSES}]"),
    ]
    width = max(len(r[1]) for r in rows if r[2])
    layer_table = "\n".join(f"{a:<21} {b:<{width}}  -> {c}" if c else f"{a:<21} {b}" for a, b, c in rows)
    hashes = "\n".join(f"- `{p.name}`: `{sha256(p)}`" for p in sorted(args.data_dir.glob("*-ubyte.gz")))
    readme = README_TEMPLATE.format(
        data_dir=args.data_dir,
        torch_version=torch.__version__.split("+")[0],
        epochs=args.epochs,
        seed=args.seed,
        opset=OPSET,
        ir_version=IR_VERSION,
        onnx_size=onnx_path.stat().st_size,
        npz_size=npz_path.stat().st_size,
        n_slice=len(index),
        params=params,
        layer_table=layer_table,
        num_classes=NUM_CLASSES,
        max_diff=max_diff,
        threads=args.threads,
        python_version=platform.python_version(),
        batch_size=args.batch_size,
        lr=args.lr,
        train_s=train_s,
        min_epoch=min(epoch_times),
        max_epoch=max(epoch_times),
        cpu=cpu_name(),
        acc_test=acc_test,
        acc_test_onnx=acc_test_onnx,
        acc_slice=acc_slice,
        per_class=args.per_class,
        class_names=", ".join(CLASSES),
        deb_version=deb_version("dataset-fashion-mnist"),
        hashes=hashes,
    )
    (args.out / "README.md").write_text(readme)
    print(f"wrote {onnx_path} ({onnx_path.stat().st_size:,} bytes)")
    print(f"wrote {npz_path} ({npz_path.stat().st_size:,} bytes)")
    print(f"wrote {args.out / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
