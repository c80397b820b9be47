"""The example release manifests, copied into a temporary tree with a dummy file at every
path they reference, so that they load anywhere without building the artifacts."""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REFERENCED = ["playbooks/ledger_deploy.yml", "playbooks/ledger_migrate.yml",
              "tests/gates/test_ledger_release.py", "loadtests/ledger.py",
              "loadtests/ledger_reads.py",
              *(f"build/artifacts/ledger-{v}.tar.gz" for v in ("1.1.0", "1.2.0", "2.0.0",
                                                                "2.0.1"))]


def example_tree(root: Path) -> Path:
    """``root`` holding ``examples/releases`` and a dummy file at every referenced path."""
    for relative in REFERENCED:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text("# dummy\n")
    shutil.copytree(ROOT / "examples" / "releases", root / "examples" / "releases")
    return root


def manifest_with(tree: Path, name: str, extra_yaml: str, version: str = "1.1.0") -> Path:
    """A copy of ledger-``version``.yml named ``name``.yml, with ``extra_yaml`` appended."""
    original = tree / "examples" / "releases" / f"ledger-{version}.yml"
    copy = original.with_name(f"{name}.yml")
    copy.write_text(original.read_text() + extra_yaml)
    return copy
