"""Tiny ONNX models built inline for the tests (onnx.helper, seeded weights)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def make_model(nodes, inputs, outputs, initializers, name="tiny") -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        name,
        inputs,
        outputs,
        [numpy_helper.from_array(np.asarray(v), k) for k, v in initializers.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def tensor(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def small_cnn(
    seed: int = 0,
    with_bn: bool = False,
    with_dropout: bool = False,
    with_norm: bool = True,
    exact: bool = False,
) -> onnx.ModelProto:
    """imageinput (N,3,8,8) -> [Sub, Div] -> conv1 (+bn1) -> relu_conv1 -> pool1 ->
    fire-like branch (squeeze 1x1 + relu, two expands + relus, concat) -> [drop] ->
    GlobalAveragePool -> Flatten -> fc (Gemm) -> relu_fc -> fc2 (MatMul + Add) -> prob (Softmax).

    ``exact=True``: weights are multiples of 1/4, std powers of two and no Softmax, so
    every float32 result is exact and any two correct implementations agree bit for bit.
    """
    rng = np.random.default_rng(seed)
    if exact:
        f = lambda *s: (rng.integers(-3, 4, s) * 0.25).astype(np.float32)  # noqa: E731
    else:
        f = lambda *s: rng.standard_normal(s).astype(np.float32) * 0.5  # noqa: E731
    std = [[[[64.0]], [[32.0]], [[64.0]]]] if exact else [[[[60.0]], [[55.0]], [[50.0]]]]
    init = {
        "mean": np.array([[[[120.0]], [[110.0]], [[100.0]]]], dtype=np.float32),
        "std": np.array(std, dtype=np.float32),
        "conv1_W": f(8, 3, 3, 3),
        "conv1_B": f(8),
        "sq_W": f(4, 8, 1, 1),
        "sq_B": f(4),
        "e1_W": f(6, 4, 1, 1),
        "e1_B": f(6),
        "e3_W": f(6, 4, 3, 3),
        "e3_B": f(6),
        "fc_W": f(5, 12),
        "fc_B": f(5),
        "fc2_W": f(5, 3),
        "fc2_B": f(3),
    }
    nodes = []
    x = "imageinput"
    if with_norm:
        nodes += [
            helper.make_node("Sub", [x, "mean"], ["x_sub"], name="norm_sub"),
            helper.make_node("Div", ["x_sub", "std"], ["x_norm"], name="norm_div"),
        ]
        x = "x_norm"
    nodes.append(helper.make_node("Conv", [x, "conv1_W", "conv1_B"], ["c1"], name="conv1", pads=[1, 1, 1, 1]))
    c = "c1"
    if with_bn:
        init.update(
            bn_scale=(rng.uniform(0.5, 2.0, 8)).astype(np.float32),
            bn_bias=f(8),
            bn_mean=f(8),
            bn_var=(rng.uniform(0.2, 3.0, 8)).astype(np.float32),
        )
        nodes.append(
            helper.make_node(
                "BatchNormalization",
                ["c1", "bn_scale", "bn_bias", "bn_mean", "bn_var"],
                ["bn1_out"],
                name="bn1",
                epsilon=1e-3,
            )
        )
        c = "bn1_out"
    nodes += [
        helper.make_node("Relu", [c], ["r1"], name="relu_conv1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "sq_W", "sq_B"], ["sq"], name="fire2-squeeze1x1"),
        helper.make_node("Relu", ["sq"], ["sqr"], name="fire2-relu_squeeze1x1"),
        helper.make_node("Conv", ["sqr", "e1_W", "e1_B"], ["e1"], name="fire2-expand1x1"),
        helper.make_node("Relu", ["e1"], ["e1r"], name="fire2-relu_expand1x1"),
        helper.make_node("Conv", ["sqr", "e3_W", "e3_B"], ["e3"], name="fire2-expand3x3", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["e3"], ["e3r"], name="fire2-relu_expand3x3"),
        helper.make_node("Concat", ["e1r", "e3r"], ["cat"], name="fire2-concat", axis=1),
    ]
    last = "cat"
    if with_dropout:
        nodes.append(helper.make_node("Dropout", [last], ["drop"], name="drop9"))
        last = "drop"
    nodes += [
        helper.make_node("GlobalAveragePool", [last], ["gap"], name="pool10"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc_W", "fc_B"], ["fc"], name="fc", transB=1),
        helper.make_node("Relu", ["fc"], ["fcr"], name="relu_fc"),
        helper.make_node("MatMul", ["fcr", "fc2_W"], ["mm"], name="fc2"),
        helper.make_node("Add", ["mm", "fc2_B"], ["logits"], name="fc2_add"),
    ]
    if not exact:
        nodes.append(helper.make_node("Softmax", ["logits"], ["prob"], name="prob", axis=1))
    return make_model(
        nodes,
        [tensor("imageinput", ["N", 3, 8, 8])],
        [tensor("logits" if exact else "prob", ["N", 3])],
        init,
        name="small_cnn",
    )


def images(n: int, seed: int = 1) -> np.ndarray:
    """``n`` random 'images' (n, 3, 8, 8) float32 with pixel values 0..255."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 3, 8, 8)).astype(np.float32)


def tiny_encoder(seed: int = 0, vocab: int = 50, width: int = 16, heads: int = 2, max_len: int = 32) -> onnx.ModelProto:
    """A one-layer transformer encoder as exporters write it: inputs ``input_ids`` and
    ``attention_mask`` (int64, ``(N, S)``, any S up to ``max_len``), word and position
    embeddings (Gather), LayerNormalization, Q/K/V projections (MatMul + Add), heads
    split by a Reshape whose shape is computed at run time (Shape, Slice, Concat),
    attention scores and context as MatMuls of two activations, the mask arithmetic
    (Unsqueeze, Cast, Sub, Mul, Add) and Softmax in float, an Erf GELU feed-forward
    block, residual Adds, and a mean over the sequence: output ``(N, width)``."""
    rng = np.random.default_rng(seed)
    hd = width // heads

    def w(*s, scale=0.3):
        return (rng.standard_normal(s) * scale).astype(np.float32)

    init = {
        "word": w(vocab, width, scale=1.0),
        "pos": w(max_len, width, scale=0.5),
        "ln1_g": 1 + w(width, scale=0.1),
        "ln1_b": w(width, scale=0.1),
        "ln2_g": 1 + w(width, scale=0.1),
        "ln2_b": w(width, scale=0.1),
        "wq": w(width, width),
        "bq": w(width, scale=0.1),
        "wk": w(width, width),
        "bk": w(width, scale=0.1),
        "wv": w(width, width),
        "bv": w(width, scale=0.1),
        "wo": w(width, width),
        "bo": w(width, scale=0.1),
        "w1": w(width, 2 * width),
        "b1": w(2 * width, scale=0.1),
        "w2": w(2 * width, width),
        "b2": w(width, scale=0.1),
        "zero": np.array(0, np.int64),
        "one": np.array(1, np.int64),
        "i0": np.array([0], np.int64),
        "i2": np.array([2], np.int64),
        "heads_shape": np.array([heads, hd], np.int64),
        "width_shape": np.array([width], np.int64),
        "scale": np.array(1.0 / np.sqrt(hd), np.float32),
        "onef": np.array(1.0, np.float32),
        "big": np.array(-10000.0, np.float32),
        "sqrt2": np.array(np.sqrt(2.0), np.float32),
        "half": np.array(0.5, np.float32),
        "axes12": np.array([1, 2], np.int64),
    }
    n = helper.make_node
    nodes = [
        n("Gather", ["word", "input_ids"], ["tok"], name="embeddings.word"),
        n("Shape", ["input_ids"], ["ids_shape"], name="ids_shape"),
        n("Gather", ["ids_shape", "one"], ["seq_len"], name="seq_len", axis=0),
        n("Range", ["zero", "seq_len", "one"], ["positions"], name="positions"),
        n("Gather", ["pos", "positions"], ["pos_emb"], name="embeddings.position"),
        n("Add", ["tok", "pos_emb"], ["emb"], name="embeddings.add"),
        n("LayerNormalization", ["emb", "ln1_g", "ln1_b"], ["h"], name="embeddings.norm", axis=-1),
        n("MatMul", ["h", "wq"], ["q0"], name="attn.q"),
        n("Add", ["q0", "bq"], ["q"], name="attn.q.bias"),
        n("MatMul", ["h", "wk"], ["k0"], name="attn.k"),
        n("Add", ["k0", "bk"], ["k"], name="attn.k.bias"),
        n("MatMul", ["h", "wv"], ["v0"], name="attn.v"),
        n("Add", ["v0", "bv"], ["v"], name="attn.v.bias"),
        n("Shape", ["q"], ["q_shape"], name="q_shape"),
        n("Slice", ["q_shape", "i0", "i2"], ["ns"], name="batch_and_seq"),
        n("Concat", ["ns", "heads_shape"], ["split_shape"], name="split_shape", axis=0),
        n("Concat", ["ns", "width_shape"], ["merge_shape"], name="merge_shape", axis=0),
        n("Reshape", ["q", "split_shape"], ["q4"], name="attn.q.split"),
        n("Reshape", ["k", "split_shape"], ["k4"], name="attn.k.split"),
        n("Reshape", ["v", "split_shape"], ["v4"], name="attn.v.split"),
        n("Transpose", ["q4"], ["qh"], name="attn.q.heads", perm=[0, 2, 1, 3]),
        n("Transpose", ["k4"], ["kt"], name="attn.k.heads", perm=[0, 2, 3, 1]),
        n("Transpose", ["v4"], ["vh"], name="attn.v.heads", perm=[0, 2, 1, 3]),
        n("MatMul", ["qh", "kt"], ["scores0"], name="attn.scores"),
        n("Mul", ["scores0", "scale"], ["scores1"], name="attn.scale"),
        n("Unsqueeze", ["attention_mask", "axes12"], ["mask4"], name="mask.unsqueeze"),
        n("Cast", ["mask4"], ["maskf"], name="mask.cast", to=TensorProto.FLOAT),
        n("Sub", ["onef", "maskf"], ["inv"], name="mask.invert"),
        n("Mul", ["inv", "big"], ["mask_add"], name="mask.scale"),
        n("Add", ["scores1", "mask_add"], ["scores"], name="attn.mask"),
        n("Softmax", ["scores"], ["probs"], name="attn.softmax", axis=-1),
        n("MatMul", ["probs", "vh"], ["ctx4"], name="attn.context"),
        n("Transpose", ["ctx4"], ["ctx_t"], name="attn.context.heads", perm=[0, 2, 1, 3]),
        n("Reshape", ["ctx_t", "merge_shape"], ["ctx"], name="attn.context.merge"),
        n("MatMul", ["ctx", "wo"], ["o0"], name="attn.out"),
        n("Add", ["o0", "bo"], ["o"], name="attn.out.bias"),
        n("Add", ["o", "h"], ["r1"], name="attn.residual"),
        n("LayerNormalization", ["r1", "ln2_g", "ln2_b"], ["h2"], name="attn.norm", axis=-1),
        n("MatMul", ["h2", "w1"], ["f0"], name="ffn.in"),
        n("Add", ["f0", "b1"], ["f1"], name="ffn.in.bias"),
        n("Div", ["f1", "sqrt2"], ["g0"], name="gelu.div"),
        n("Erf", ["g0"], ["g1"], name="gelu.erf"),
        n("Add", ["g1", "onef"], ["g2"], name="gelu.add"),
        n("Mul", ["f1", "g2"], ["g3"], name="gelu.mul"),
        n("Mul", ["g3", "half"], ["g4"], name="gelu.half"),
        n("MatMul", ["g4", "w2"], ["f2"], name="ffn.out"),
        n("Add", ["f2", "b2"], ["f3"], name="ffn.out.bias"),
        n("Add", ["f3", "h2"], ["r2"], name="ffn.residual"),
        n("ReduceMean", ["r2"], ["pooled"], name="pool", axes=[1], keepdims=0),
    ]
    inputs = [
        tensor("input_ids", ["N", "S"], TensorProto.INT64),
        tensor("attention_mask", ["N", "S"], TensorProto.INT64),
    ]
    return make_model(nodes, inputs, [tensor("pooled", ["N", width])], init, name="tiny_encoder")


def encoder_data(n: int, seq: int = 12, vocab: int = 50, seed: int = 0) -> dict[str, np.ndarray]:
    """Token ids and attention masks for :func:`tiny_encoder`: each sample keeps a
    random number of tokens (at least 3) and pads the rest (id 0, mask 0)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, vocab, (n, seq)).astype(np.int64)
    keep = rng.integers(3, seq + 1, n)
    mask = (np.arange(seq)[None, :] < keep[:, None]).astype(np.int64)
    return {"input_ids": ids * mask, "attention_mask": mask}
