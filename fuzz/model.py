"""The ONNX model loader on arbitrary bytes."""

from fuzz._common import run, write


def test_one(data: bytes) -> None:
    from quantscope.network import load_model

    load_model(write("model.onnx", data))


def seeds() -> list[bytes]:
    """A small valid model to mutate."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((2, 2), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm"), helper.make_node("Relu", ["y"], ["z"], name="r")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 2])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return [model.SerializeToString()]


if __name__ == "__main__":
    run(test_one)
