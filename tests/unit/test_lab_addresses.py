"""The lab modules run in parallel (``make test``: two workers, a module whole on one):
no two modules may bring up a lab on the same loopback addresses."""

from __future__ import annotations

import re
from pathlib import Path

INTEGRATION = Path(__file__).resolve().parents[1] / "integration"
BASE = re.compile(r'base_address="(127\.\d+\.\d+\.\d+)"|"--base-address", "(127\.[\d.]+)"')


def test_no_two_lab_modules_share_a_base_address() -> None:
    owners: dict[str, set[str]] = {}
    for module in sorted(INTEGRATION.glob("*.py")):
        for match in BASE.finditer(module.read_text()):
            owners.setdefault(match.group(1) or match.group(2), set()).add(module.name)
    assert owners, "no lab address found: the pattern is stale"
    shared = {address: names for address, names in owners.items() if len(names) > 1}
    assert shared == {}
