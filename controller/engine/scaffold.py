"""``relctl init``'s one side effect: write the rendered files into the user's repository;
and, asked to, read the version a running instance reports (``--probe``) first.

Nothing is written unless everything can be: the files the request names on this
machine must exist, and no file to write may exist already unless ``force`` is given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from controller.adapters import http
from controller.errors import InputError
from controller.models.scaffold import ScaffoldRequest
from controller.planning.scaffold import ScaffoldLayout, layout_for, render_scaffold
from controller.planning.versions import read_version


@dataclass(frozen=True)
class InitResult:
    """What ``relctl init`` wrote, and the commands that come next."""

    repo: Path
    written: list[str]
    overwritten: list[str]
    next_steps: list[str]


def init_service(request: ScaffoldRequest, repo: Path, *, force: bool = False) -> InitResult:
    """Write the starter files for ``request`` into ``repo``; ``InputError`` (exit 2) when
    a named file is missing or a file would be overwritten without ``force``."""
    check_inputs(request, repo)
    files = render_scaffold(request, repo)
    existing = [path for path in files if (repo / path).exists()]
    if existing and not force:
        raise InputError(f"would overwrite {', '.join(existing)} in {repo}; nothing written",
                         hint="pass --force to replace them")
    for path, text in files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text, encoding="utf-8")
    return InitResult(repo, list(files), existing, next_steps(request, layout_for(
        request.service)))


def check_inputs(request: ScaffoldRequest, repo: Path) -> None:
    """The repository folder and every controller file the request names must exist."""
    if not repo.is_dir():
        raise InputError(f"--repo {repo}: no such folder")
    named = [("--playbook", p) for p in request.playbooks]
    named += [("--artifact", request.artifact)] if request.artifact else []
    named += [("--inventory", request.inventory)] if request.inventory else []
    for option, path in named:
        if not path.exists():
            raise InputError(f"{option} {path}: no such file")
        if path.is_dir() and option != "--inventory":
            raise InputError(f"{option} {path}: a folder, not a file")


def next_steps(request: ScaffoldRequest, layout: ScaffoldLayout) -> list[str]:
    """The commands to run after ``init``, in order."""
    on_lab = request.environment == "lab" and request.inventory is None
    inventory = "" if on_lab or request.inventory else " --inventory INVENTORY"
    steps = [f"relctl lab up --service {request.service}:{request.port}"] if on_lab else []
    steps += [f"relctl plan {layout.manifest}{inventory}",
              f"relctl apply {layout.manifest}{inventory}"]
    if request.data:
        steps.append(f"relctl replicate --plan {layout.continuity}{inventory} --count 1")
    return steps


def probe_version(url: str, request: ScaffoldRequest) -> str:
    """The version a running instance at ``url`` reports, read as the files will tell
    relctl to read it; ``InputError`` naming --probe when it cannot be read."""
    if not re.fullmatch(r"https?://[^\s/?#]+/?", url):
        raise InputError(f"--probe: {url!r} is not http://HOST:PORT")
    if request.version_path is None:
        raise InputError("--probe reads the version, and --version-path is 'none'")
    where = url.rstrip("/") + request.version_path
    answer = http.request("GET", where, timeout=5)
    if answer.status != 200:
        raise InputError(f"--probe: GET {where} answered {answer.status or answer.error}")
    read = read_version(answer.body, request.version_pointer, None)
    if read.version is None:
        raise InputError(f"--probe: {where}: {read.problem}",
                         hint="set --version-pointer to where the version is in the answer")
    return read.version
