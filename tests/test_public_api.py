"""The public surface: `__all__` is exactly the sorted public names, and `import dtms` stays cheap."""

from __future__ import annotations

import json
import subprocess
import sys
import types

import dtms


def public_names(module: types.ModuleType) -> list[str]:
    """Names a user sees on `module`: its own public objects, not submodules or imported helpers."""
    names = []
    for name, value in vars(module).items():
        if name.startswith("_") or isinstance(value, types.ModuleType):
            continue
        # Objects dtms defines (classes, functions); helpers it imported (importlib's `version`,
        # __future__'s `annotations`) are implementation details, not API.
        if str(getattr(value, "__module__", "")).split(".")[0] == module.__name__:
            names.append(name)
    return [*names, "__version__"]


def test_all_is_the_sorted_public_names() -> None:
    """Every public object is exported, nothing else is, and the list is sorted."""
    assert dtms.__all__ == sorted(public_names(dtms))


def test_everything_in_all_exists() -> None:
    """No name in __all__ is missing from the package."""
    missing = [name for name in dtms.__all__ if not hasattr(dtms, name)]
    assert missing == []


def test_version_is_a_string() -> None:
    """__version__ comes from the installed metadata."""
    assert isinstance(dtms.__version__, str)
    assert dtms.__version__.count(".") >= 2


def test_import_dtms_imports_no_cli_numpy_or_metatrader() -> None:
    """A bot importing dtms pays for neither click, rich, numpy nor MetaTrader5."""
    code = "import sys, json, dtms; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    loaded = set(json.loads(out.stdout))
    heavy = {"click", "rich", "numpy", "MetaTrader5", "dtms.cli"}
    assert heavy & loaded == set()
    assert "dtms.store" in loaded
