"""The ledger's test harness (examples/ledger/harness.py) and the built-releases fixture."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

HARNESS_PY = Path(__file__).resolve().parents[2] / "examples" / "ledger" / "harness.py"


def load_harness() -> ModuleType:
    """Import examples/ledger/harness.py by path (once per session)."""
    if "ledger_harness" not in sys.modules:
        spec = importlib.util.spec_from_file_location("ledger_harness", HARNESS_PY)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules["ledger_harness"] = module
        spec.loader.exec_module(module)
    return sys.modules["ledger_harness"]


harness = load_harness()
