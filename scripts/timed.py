"""Run a command and print its wall time, measured with a monotonic clock (this machine's
wall clock jumps): ``timed.py LABEL... -- COMMAND...``; exits with the command's code."""

from __future__ import annotations

import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    split = argv.index("--")
    label, command = " ".join(argv[:split]), argv[split + 1:]
    started = time.monotonic()
    code = subprocess.call(command)
    seconds = time.monotonic() - started
    print(f"{label}: {seconds / 60:.1f} min wall ({seconds:.0f} s), exit {code}", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
