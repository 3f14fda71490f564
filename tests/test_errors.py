"""Errors: clear messages for bad input, details kept across processes (Dask workers send
them back pickled), outputs written with the user's umask."""

import pickle

import numpy as np
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


def test_an_output_through_a_symbolic_link_writes_the_links_target(tmp_path):
    from quantscope._io import write_atomic

    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "ranges.json"
    target.write_text("old")
    link = tmp_path / "ranges.json"
    link.symlink_to(target)
    assert write_atomic(link, "new") == target
    assert link.is_symlink() and target.read_text() == "new" and link.read_text() == "new"
    dangling = tmp_path / "later.json"
    dangling.symlink_to(tmp_path / "real" / "later.json")  # a link to a file not written yet
    write_atomic(dangling, "first")
    assert dangling.is_symlink() and (tmp_path / "real" / "later.json").read_text() == "first"


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


@pytest.mark.parametrize(
    "name, data",
    [
        ("r.json", b"\xff"),  # not UTF-8 (found by fuzz/ranges.py)
        ("r.json", b"[1, 2]"),  # JSON, not a mapping
        ("r.json", b'{"format": "quantscope.calibration", "entries": [{}], "num_samples": 1}'),
        ("r.csv", b"\xff\xfe"),
        ("r.csv", b""),
        ("r.csv", b"Optimized Layer Name\nx\n"),
    ],
)
def test_damaged_ranges_files_are_messages(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(qs.CalibrationDataError, match=name):
        qs.Calibration.load(path)


@pytest.mark.parametrize(
    "data",
    [
        b"\xff",
        b'{"format": "quantscope.calibration-checkpoint"}',
        b'{"format": "quantscope.calibration-checkpoint", "version": 1, "partial": [], "batches": 1, "position": 0}',
    ],
)
def test_damaged_checkpoints_are_messages(tmp_path, data):
    from quantscope.calibrate.checkpoint import FORMAT, describe_checkpoint

    path = tmp_path / "run.ckpt"
    path.write_bytes(data.replace(b"quantscope.calibration-checkpoint", FORMAT.encode()))
    with pytest.raises(qs.ConfigurationError, match="checkpoint"):
        describe_checkpoint(path)


def test_a_zip_of_an_unsupported_version_is_a_message(tmp_path):
    """Found by fuzz/npz.py: a damaged zip header made zipfile raise NotImplementedError."""
    import base64

    data = base64.b64decode(
        "UEsDBC0AAAAAAAAAAAAAAABQSwECLQORAAAAAAByYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzggKDIsIDMpLCB9IAEAAAAAAAAAAQAA"
        "AAAAAAABAAAAAAAAAAEAAAAAAAAAAQAAAAAAAAAAAACAAekAAABtYXNrLm5weVBLBQYAAAAA6QACAGsAAADTAQAA"
    )
    (tmp_path / "d.npz").write_bytes(data)
    with pytest.raises(qs.CalibrationDataError, match="d.npz cannot be read as .npz"):
        list(qs.as_source(tmp_path / "d.npz").batches(2))


@pytest.mark.parametrize(
    "name, encoded, error",
    [
        # found by fuzz/model.py: a string that is not UTF-8 made onnx's checker raise UnicodeDecodeError
        (
            "m.onnx",
            "CAg6dAoVCgF4CgF3EgF5GgJtbSIGTWF0TXVsCg8KAfkSAXoaAXIiBFJlbHUSAWcqGwgCCAIQAUIBd0oQAACAP///////////AACAP1oU"
            "CgF4Eg8KDQgBEgkKAxIBTgoCCAJiFAoBehIPCg0IARIJCgMSAU4KAggCQgQKABAR",
            qs.ModelLoadError,
        ),
        # found by fuzz/npy.py: a .npy header that ends inside a literal made numpy raise tokenize.TokenError
        (
            "d.npy",
            "k05VTVBZAQB2AHsnZGVzY3InOiAnPGY0JywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDMsIDIsIDMpLCAgICAgICAg"
            "ICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            qs.CalibrationDataError,
        ),
    ],
)
def test_inputs_the_fuzzers_found_are_messages(tmp_path, name, encoded, error):
    import base64

    path = tmp_path / name
    path.write_bytes(base64.b64decode(encoded))
    with pytest.raises(error, match=name):
        if name.endswith(".onnx"):
            qs.load_model(path)
        else:
            list(qs.as_source(path, input_shape=(None, 2, 3)).batches(4))


def test_an_encrypted_npz_member_is_a_message(tmp_path):
    """Found by fuzz/npz.py: a member flagged as encrypted made zipfile raise RuntimeError."""
    import base64

    data = base64.b64decode(
        "UEsDBC0AAAAAAAAAIQDAoczq//////////8FABQAeC5ucHkBABAAsAAAAAAAAACwAAAAAAAAAJNOVU1QWQEAdgB7J2Rlc2NyJzog"
        "JzxmNCcsICdmb3J0cmFuX29yZGVyJzogRmFsc2UsICdzaGFwZSc6ICgzLCA0KSwgfSAgICAgICAgICAgICAgICAgICAgICAgICAg"
        "ICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAKAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        "AAAAAAAAUEsDBC0AAAAAAAAAIQD3QBLq//////////8FABQAeS5ucHkBABAAmAAAAAAAAACYAAAAAAAAAJNOVU1QWQEAdgB7J2Rl"
        "c2NyJzogJzxpOCcsICdmb3J0cmFuX29yZGVyJzogRmFsc2UsICdzaGFwZSc6ICgzLCksIH0gICAgICAgICAgICAgICAgICAgICAg"
        "ICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAKAAAAAAAAAAABAAAAAAAAAAIAAAA6AAAAUEsBAi0AAC0DAAAA"
        "AAAhAMChzOqwAAAAsAAAAAUAAAAAAAAAAAAAAIABAAAAAHgubnB5UEsBAi0DLQAAAAAAAAAhAPdAEuqYAAAAmAAAAAUAAAAAAAAA"
        "AAAAAIAB5wAAAHkubnB5UEsFBgAAAAACAAIAZgAAALYBAAAAAA=="
    )
    (tmp_path / "e.npz").write_bytes(data)
    with pytest.raises(qs.CalibrationDataError, match="e.npz cannot be read"):
        list(qs.as_source(tmp_path / "e.npz").batches(2))


def test_a_ranges_file_with_an_impossible_count_is_a_message(tmp_path):
    """Found by fuzz/ranges.py: a count beyond int64 was accepted, then overflowed in the table."""
    import json

    from quantscope.calibrate import RangeEntry

    cal = qs.Calibration([RangeEntry("x", "x", "Activations", "x", qs.TensorStats.of(np.ones(3, np.float32)))], 1)
    d = json.loads(cal.to_json())
    d["entries"][0]["count"] = 10**40
    (tmp_path / "r.json").write_text(json.dumps(d))
    with pytest.raises(qs.CalibrationDataError, match="out of range"):
        qs.Calibration.load(tmp_path / "r.json")
