"""Fuzzing harnesses (atheris) for quantscope's readers of user files.

Each harness feeds arbitrary bytes, as a file, to one reader and accepts exactly two
outcomes: a result, or a :class:`quantscope.QuantscopeError` (a message for the user).
Any other exception is a crash that libFuzzer reports, with the input that caused it.

    python -m fuzz                     # every harness, 30 s each
    python -m fuzz --seconds 600 npy   # one harness, 10 minutes

Harnesses: ``model`` (ONNX loader), ``npy`` and ``npz`` (data files), ``image``
(image folders), ``ranges`` (saved calibrations, JSON and CSV), ``checkpoint``.
"""
