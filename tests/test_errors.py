"""Errors: clear messages for bad input, details kept across processes (Dask workers send
them back pickled), outputs written with the user's umask."""

import pickle

import pytest

import quantscope as qs


def test_errors_pickle_with_details():
    e = pickle.loads(pickle.dumps(qs.NonFiniteActivationError("NaN in conv1", "conv1")))
    assert isinstance(e, qs.NonFiniteActivationError) and e.layer == "conv1" and "NaN" in str(e)
    u = pickle.loads(pickle.dumps(qs.UnsupportedModelError("2 unsupported", [("n1", "LSTM"), ("n2", "If")])))
    assert u.nodes == [("n1", "LSTM"), ("n2", "If")]
    assert issubclass(qs.CalibrationDataError, qs.QuantscopeError)


def test_outputs_get_the_umask_and_keep_a_replaced_files_mode(tmp_path):
    import os
    import stat

    from quantscope._io import write_atomic

    old = os.umask(0o022)
    try:
        fresh = write_atomic(tmp_path / "fresh.json", "{}")
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o644
        os.umask(0o077)
        assert stat.S_IMODE(write_atomic(tmp_path / "private.json", "{}").stat().st_mode) == 0o600
        kept = tmp_path / "kept.json"
        kept.write_text("old")
        kept.chmod(0o664)
        write_atomic(kept, "new")
        assert stat.S_IMODE(kept.stat().st_mode) == 0o664 and kept.read_text() == "new"
    finally:
        os.umask(old)


def test_errors_are_not_wrapped_inside_paths(tmp_path, capsys):
    from quantscope.cli import main

    deep = tmp_path / ("a-very-long-folder-name-" * 6) / "model-with-a-long-name.onnx"
    assert main(["calibrate", str(deep), str(tmp_path / "x.npy")]) == 2
    err = capsys.readouterr().err
    assert str(deep) in err  # one piece, not broken over lines


@pytest.mark.parametrize("name, says", [("x.npz", "not a zip archive"), ("x.npy", "numpy's .npy header")])
def test_corrupt_data_files_get_quantscopes_own_message(tmp_path, capsys, name, says):
    from tinymodels import small_cnn

    from quantscope.cli import main

    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(small_cnn().SerializeToString())
    (tmp_path / name).write_text("this is text, not numpy data\n")
    assert main(["calibrate", str(onnx_path), str(tmp_path / name)]) == 2
    err = capsys.readouterr().err
    assert says in err and "allow_pickle" not in err and "Traceback" not in err
