"""The public API: every name a package lists in ``__all__`` exists, is defined in that
package (the module it claims), and nothing private is listed."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import quantscope

PACKAGES = ["quantscope"] + sorted(
    m.name for m in pkgutil.walk_packages(quantscope.__path__, "quantscope.") if m.ispkg and ".demo" not in m.name
)


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_lives_in_its_package(package):
    mod = importlib.import_module(package)
    names = getattr(mod, "__all__", None)
    assert names is not None, f"{package} has no __all__"
    assert len(names) == len(set(names)), f"{package}.__all__ lists a name twice"
    for name in names:
        assert not name.startswith("_") or name == "__version__", f"{package}.__all__ lists private {name}"
        assert hasattr(mod, name), f"{package}.__all__ lists {name}, which it does not define"
        obj = getattr(mod, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            home = obj.__module__
            assert home == package or home.startswith(package + "."), f"{package}.{name} is defined in {home}"
            assert not any(part.startswith("_") and part != "__init__" for part in home.split(".")), (
                f"{package}.{name} comes from the private module {home}"
            )


def test_the_top_level_names_are_the_workflow():
    expected = {"prepare", "calibrate", "validate", "quantize_network", "Network", "Calibration", "QuantizedNetwork"}
    assert expected <= set(quantscope.__all__)
