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
