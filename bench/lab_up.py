"""Seconds for `relctl lab up` of 10 and of 50 hosts: cold, warm (idempotent), and down.

Run: .venv/bin/python bench/lab_up.py [SIZES...]   (default: 10 50)
"""

from __future__ import annotations

import sys

from _lab import fresh_state_dir, relctl, timed


def bench(size: int, base: str) -> dict[str, float]:
    """Bring a lab of ``size`` hosts (LB included) up twice and down; time each step."""
    state = fresh_state_dir(f"up-{size}")
    backup = max(1, (size - 1) // 5)
    primary = size - 1 - backup
    args = ["lab", "up", "--primary", str(primary), "--backup", str(backup),
            "--base-address", base]
    try:
        cold, report = timed(relctl, state, *args)
        warm, again = timed(relctl, state, *args)
        assert len(report["started"]) == size and len(again["kept"]) == size
    finally:
        down, _ = timed(relctl, state, "lab", "down")
    return {"cold": cold, "warm": warm, "down": down}


def main() -> None:
    sizes = [int(s) for s in sys.argv[1:]] or [10, 50]
    print(f"{'hosts':>6} {'up (cold) s':>12} {'up (warm) s':>12} {'down s':>8}")
    for index, size in enumerate(sizes):
        figures = bench(size, f"127.0.{30 + index}.10")
        print(f"{size:>6} {figures['cold']:>12.2f} {figures['warm']:>12.2f} "
              f"{figures['down']:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
