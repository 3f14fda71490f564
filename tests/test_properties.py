"""Property tests (hypothesis): the readers give back exactly what was written, for any
shape, dtype and batch size; saved ranges round-trip; the MatMul kernel of two int8
activations equals onnx.reference on random shapes and values."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import quantscope as qs

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

shapes = hnp.array_shapes(min_dims=2, max_dims=4, min_side=1, max_side=5)
arrays = st.one_of(
    hnp.arrays(np.float32, shapes, elements=st.floats(-1000, 1000, width=32)),
    hnp.arrays(np.float64, shapes, elements=st.floats(-1000, 1000)),
    hnp.arrays(np.int64, shapes, elements=st.integers(-1000, 1000)),
    hnp.arrays(np.uint8, shapes),
)


def _read_all(path, batch_size: int) -> np.ndarray:
    return np.concatenate([b.x for b in qs.as_source(path).batches(batch_size)])


@SETTINGS
@given(x=arrays, batch_size=st.integers(1, 7), stored=st.sampled_from(["npy", "npz"]))
def test_data_files_read_back_exactly(tmp_path_factory, x, batch_size, stored):
    path = tmp_path_factory.mktemp("data") / f"d.{stored}"
    if stored == "npy":
        np.save(path, x)
    else:
        np.savez(path, x=x)
    got = _read_all(path, batch_size)
    np.testing.assert_array_equal(got, x.astype(np.float32))


@SETTINGS
@given(
    pixels=hnp.arrays(np.uint8, st.tuples(st.integers(1, 5), st.integers(1, 6), st.integers(1, 6), st.just(3))),
    batch_size=st.integers(1, 4),
)
def test_image_folders_read_back_exactly(tmp_path_factory, pixels, batch_size):
    from PIL import Image

    folder = tmp_path_factory.mktemp("images")
    for i, image in enumerate(pixels):
        Image.fromarray(image).save(folder / f"{i:02d}.png")
    got = np.concatenate([b.x for b in qs.ImageDatastore(folder, labels=None).batches(batch_size)])
    np.testing.assert_array_equal(got, pixels.transpose(0, 3, 1, 2).astype(np.float32))


@SETTINGS
@given(
    values=hnp.arrays(
        np.float32, st.integers(1, 200), elements=st.floats(width=32, allow_nan=False, allow_infinity=False)
    )
)
def test_saved_ranges_round_trip(tmp_path_factory, values):
    from quantscope.calibrate import RangeEntry

    cal = qs.Calibration([RangeEntry("x", "x", "Activations", "x", qs.TensorStats.of(values))], num_samples=3)
    path = tmp_path_factory.mktemp("ranges") / "r.json"
    cal.save(path)
    assert qs.Calibration.load(path) == cal
    buffer = io.StringIO(cal.to_csv())
    assert "x" in buffer.getvalue()


@pytest.mark.parametrize("kernels", ["reference", "fast"])
@SETTINGS
@given(
    shape=st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 6), st.integers(1, 6)),
    n=st.integers(1, 6),
    seed=st.integers(0, 2**31 - 1),
    zero_points=st.tuples(st.integers(-5, 5), st.integers(-5, 5)),
)
def test_matmul_of_two_int8_operands_matches_onnx_reference(kernels, shape, n, seed, zero_points):
    """The accumulator of (13): MatMul on the integers less their zero points, as
    onnx.reference computes MatMul on the same values in float64 (exact here)."""
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator

    from quantscope.simulate import fast, reference

    b_, h, m, k = shape
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, (b_, h, m, k)).astype(np.int8)
    b = rng.integers(-128, 128, (b_, h, k, n)).astype(np.int8)
    za, zb = zero_points
    kernel = (reference if kernels == "reference" else fast).KERNELS["MatMul"]
    got = kernel(a, b, a_zero_point=za, b_zero_point=zb)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["y"])],
        "mm",
        [
            helper.make_tensor_value_info("a", TensorProto.DOUBLE, None),
            helper.make_tensor_value_info("b", TensorProto.DOUBLE, None),
        ],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    expected = ReferenceEvaluator(model).run(None, {"a": a.astype(np.float64) - za, "b": b.astype(np.float64) - zb})[0]
    np.testing.assert_array_equal(got, expected.astype(np.int64))
