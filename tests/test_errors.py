"""Errors keep their details across processes (Dask workers send them back pickled)."""

import pickle

import quantscope as qs


def test_errors_pickle_with_details():
    e = pickle.loads(pickle.dumps(qs.NonFiniteActivationError("NaN in conv1", "conv1")))
    assert isinstance(e, qs.NonFiniteActivationError) and e.layer == "conv1" and "NaN" in str(e)
    u = pickle.loads(pickle.dumps(qs.UnsupportedModelError("2 unsupported", [("n1", "LSTM"), ("n2", "If")])))
    assert u.nodes == [("n1", "LSTM"), ("n2", "If")]
    assert issubclass(qs.CalibrationDataError, qs.QuantscopeError)
