"""Summarise a test timeline (``RELCTL_TEST_TIMELINE=FILE make test``): each module's cost
to its worker, the dearest first (what ``tests/conftest.py``'s ``MODULE_SECONDS`` holds),
and when each worker ran out of work: ``python3 scripts/timeline.py FILE``."""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path


def main(path: Path) -> None:
    cost: dict[str, float] = defaultdict(float)
    start, ends = float("inf"), defaultdict(float)
    for line in path.read_text().splitlines():
        worker, module, began, ended = line.split()
        if not module.startswith("tests/"):
            continue  # a gate's own pytest, run by a test
        cost[module] += float(ended) - float(began)
        start = min(start, float(began))
        ends[worker] = max(ends[worker], float(ended))
    for module, seconds in sorted(cost.items(), key=lambda kv: -kv[1]):
        if seconds >= 10:
            print(f"{seconds:8.1f} s  {module}")
    print(f"{sum(cost.values()):8.1f} s  in all ({len(cost)} modules)")
    for worker, end in sorted(ends.items()):
        print(f"{worker}: out of work at {end - start:.0f} s")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
