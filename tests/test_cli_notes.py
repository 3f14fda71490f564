"""The command line's notes and help texts."""

from __future__ import annotations

from quantscope.cli import _grouped_notes, build_parser


def test_notes_that_differ_only_in_the_node_are_told_once():
    notes = [f"BatchNormalization 'bn{i}' not folded: its input is not a Conv" for i in range(9)]
    notes.insert(3, "Dropout 'drop' not dropped: its mask output is used")
    got = _grouped_notes(notes)
    assert got == [
        "BatchNormalization not folded: its input is not a Conv (9 nodes: 'bn0', 'bn1', 'bn2', 'bn3', 'bn4', "
        "'bn5' and 3 more)",
        "Dropout 'drop' not dropped: its mask output is used",
    ]
    assert _grouped_notes(["a note without a name"]) == ["a note without a name"]
    # LeViT: each BatchNorm after its own Flatten, a second quoted name
    levit = [f"BatchNormalization 'bn{i}' not folded: its input comes from Flatten 'flat{i}'" for i in range(3)]
    assert _grouped_notes(levit) == [
        "BatchNormalization not folded: its input comes from Flatten (3 nodes: 'bn0', 'bn1', 'bn2')"
    ]
    assert _grouped_notes(levit[:1]) == levit[:1]


def test_the_help_says_which_target_is_the_default(capsys):
    import pytest

    for command in ("quantize", "validate"):
        with pytest.raises(SystemExit):
            build_parser().parse_args([command, "--help"])
        out = " ".join(capsys.readouterr().out.split())
        assert "fpga (the default" in out, command


def test_fpga_max_drop_says_which_layers_have_no_int8_kernel(tmp_path, capsys):
    """The fpga search said 'every layer runs in int8 on the processor' for a network
    with float layers (a BERT's LayerNorm, Softmax, Erf)."""
    import numpy as np
    import onnx
    from tinymodels import images, small_cnn

    from quantscope.cli import main

    onnx.save(small_cnn(seed=3), tmp_path / "m.onnx")
    np.save(tmp_path / "x.npy", images(24, seed=4))
    argv = ["validate", str(tmp_path / "m.onnx"), "--calibration", str(tmp_path / "x.npy")]
    argv += ["--validation", str(tmp_path / "x.npy"), "--target", "fpga", "--max-drop", "0.5"]
    assert main(argv) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "layer(s) have no int8 kernel and run in float in the emulation (prob)" in out
    assert "every layer runs in int8" not in out


def test_fpga_refusals_of_shapes_say_what_to_do():
    """A height/width Slice and a 5-D tensor were refused without a way out."""
    import numpy as np
    import pytest
    from onnx import helper
    from tinymodels import make_model, tensor

    import quantscope as qs
    from quantscope import fpga

    w = np.ones((4, 3, 3, 3), np.float32) * 0.1
    n = helper.make_node
    cut = [
        n("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        n("Slice", ["c", "start", "end", "axes"], ["y"], name="crop"),
    ]
    init = {"w": w, "start": np.array([1], np.int64), "end": np.array([8], np.int64), "axes": np.array([3], np.int64)}
    model = make_model(cut, [tensor("x", ["N", 3, 8, 8])], [tensor("y", ["N", 4, 8, 7])], init)
    with pytest.raises(qs.UnsupportedModelError, match="along the channels only") as raised:
        fpga.compile_network(qs.prepare(model), "zcu102_int8")
    assert "Cut or join along the channels instead" in str(raised.value) and "target='cpu'" in str(raised.value)
    w3 = np.ones((4, 3, 1, 3, 3), np.float32) * 0.1
    c3d = make_model(
        [n("Conv", ["x", "w"], ["y"], name="conv3d", pads=[0, 1, 1, 0, 1, 1])],
        [tensor("x", ["N", 3, 2, 8, 8])],
        [tensor("y", ["N", 4, 2, 8, 8])],
        {"w": w3},
    )
    with pytest.raises(qs.UnsupportedModelError) as raised:
        fpga.compile_network(qs.prepare(c3d), "zcu102_int8")
    assert "target='cpu'" in str(raised.value), str(raised.value)
