"""Calibration options as one frozen object and runners as objects: the keywords of
``calibrate`` are a shorthand for them and give the same table."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from tinymodels import images, small_cnn

import quantscope as qs
from quantscope.calibrate import CalibrationOptions, HistogramStride, Layout, Local, Resumable
from quantscope.errors import CalibrationDataError, ConfigurationError

MODEL = small_cnn()
X = images(40, seed=3)


def test_options_are_frozen_and_convert_strings():
    opts = CalibrationOptions(batch_size=8, layout="NHWC", histogram_stride="auto")
    assert opts.layout is Layout.NHWC and opts.histogram_stride is HistogramStride.AUTO
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.batch_size = 4  # type: ignore[misc]
    assert CalibrationOptions(histogram_stride=np.int64(3)).histogram_stride == 3


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"batch_size": 0}, CalibrationDataError, "batch_size must be a positive integer"),
        ({"batch_size": 2.5}, CalibrationDataError, "batch_size must be a positive integer"),
        ({"layout": "NWHC"}, ConfigurationError, "layout must be 'NCHW' or 'NHWC'"),
        ({"histogram_stride": "every"}, CalibrationDataError, "'auto' or an integer >= 1"),
        ({"histogram_stride": 0}, CalibrationDataError, "'auto' or an integer >= 1"),
    ],
)
def test_bad_options_are_refused_when_made(kwargs, error, words):
    with pytest.raises(error, match=words):
        CalibrationOptions(**kwargs)


def test_objects_and_keywords_give_the_same_table(tmp_path):
    by_keywords = qs.calibrate(MODEL, X, batch_size=7, histogram_stride=1, progress=False)
    opts = CalibrationOptions(batch_size=7, histogram_stride=1, progress=False)
    assert qs.calibrate(MODEL, X, options=opts) == by_keywords
    assert qs.calibrate(MODEL, X, options=opts, runner=Local()) == by_keywords
    resumed = qs.calibrate(MODEL, X, options=opts, runner=Resumable(tmp_path / "c.json", every=2))
    assert resumed == by_keywords and resumed.to_json() == by_keywords.to_json()
    assert not (tmp_path / "c.json").exists()  # removed when the run completes


def test_options_and_their_keywords_together_are_refused(tmp_path):
    with pytest.raises(ConfigurationError, match="either as options="):
        qs.calibrate(MODEL, X, batch_size=4, options=CalibrationOptions())
    with pytest.raises(ConfigurationError, match="either as runner="):
        qs.calibrate(MODEL, X, checkpoint=tmp_path / "c.json", runner=Local())


def test_runner_options_are_checked_when_made(tmp_path):
    with pytest.raises(ConfigurationError, match="positive number of batches"):
        Resumable(tmp_path / "c.json", every=0)
    with pytest.raises(ConfigurationError, match="need a checkpoint path"):
        Resumable(None, restart=True)
    with pytest.raises(ConfigurationError, match="pass client="):
        qs.calibrate(MODEL, X, shards=2)
