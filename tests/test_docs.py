"""Every docstring example in the package runs and prints what it says."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

import instructfast

# The package's own folder: an editable install's __path__ also holds the checkout's root (it maps
# the kernels/ folder in), where walk_packages would find tests/ and bench/ as "instructfast.tests".
MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages([str(Path(instructfast.__file__).parent)], "instructfast.")
    if not m.name.startswith("instructfast.kernels") and m.name != "instructfast.__main__"
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    mod = importlib.import_module(name)
    res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert res.failed == 0, f"{res.failed} of {res.attempted} examples failed in {name}"
