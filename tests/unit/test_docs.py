"""The README and docs/ stay true to the tree: every relative link (and #anchor) resolves,
and docs/layout.md names every module of the package and every shipped playbook."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def anchors(text: str) -> set[str]:
    found = set()
    for line in text.splitlines():
        if match := re.match(r"^#+\s+(.*)", line):
            heading = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower())
            found.add(heading.replace(" ", "-"))
    return found


def test_every_relative_link_resolves() -> None:
    broken = []
    for page in PAGES:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^[a-z]+://", target):
                continue
            path, _, fragment = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{page.name}: {target}: no such file")
            elif fragment and fragment not in anchors(dest.read_text()):
                broken.append(f"{page.name}: {target}: no such anchor")
    assert broken == []


def test_layout_names_every_module_and_playbook() -> None:
    layout = (ROOT / "docs" / "layout.md").read_text()
    modules = [p.relative_to(ROOT).as_posix() for p in (ROOT / "controller").rglob("*.py")
               if p.name != "__init__.py" and "__pycache__" not in p.parts]
    playbooks = [p.relative_to(ROOT).as_posix() for folder in ("controller/playbooks",
                                                               "playbooks")
                 for p in (ROOT / folder).rglob("*.yml")]
    assert modules and playbooks
    assert [name for name in modules + playbooks if name not in layout] == []
