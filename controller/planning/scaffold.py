"""The files ``relctl init`` writes for a service, rendered as data: no file is touched.

    ScaffoldRequest + the repository's folder
        -> ScaffoldLayout   where each file goes, relative to the repository
        -> context          every value the templates need, controller paths made
                            relative to the manifest's folder (as the loader reads them)
        -> {relative path: text}   from the Jinja templates in controller/scaffold_templates

The templates are package data, read with ``importlib.resources``. Values reach YAML
through ``yaml`` (a safely quoted scalar) and Python through ``py`` (a literal), so a
command or path with quotes, colons or ``#`` cannot break the files.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import yaml

from controller.models.scaffold import PG_URL, ScaffoldRequest

if TYPE_CHECKING:
    import jinja2

TEMPLATES = "scaffold_templates"
LAB_ENVIRONMENT = "lab"


@dataclass(frozen=True)
class ScaffoldLayout:
    """Where the files go, relative to the repository."""

    manifest: PurePosixPath
    continuity: PurePosixPath
    gate: PurePosixPath
    locustfile: PurePosixPath

    @property
    def config_dir(self) -> PurePosixPath:
        """The folder of the manifest and the continuity plan (their paths' base)."""
        return self.manifest.parent


@dataclass(frozen=True)
class NamedPath:
    """A configuration item's name and its path on the hosts."""

    name: str
    path: str


def python_name(service: str) -> str:
    """``service`` as a Python/Ansible identifier: ``billing-api`` -> ``billing_api``."""
    name = re.sub(r"[^a-z0-9_]", "_", service)
    return f"_{name}" if name[0].isdigit() else name


def layout_for(service: str) -> ScaffoldLayout:
    """The files of ``service``: config under ``relctl/``, tests where Python looks."""
    module = python_name(service)
    return ScaffoldLayout(
        manifest=PurePosixPath("relctl", f"{service}-release.yml"),
        continuity=PurePosixPath("relctl", f"{service}-continuity.yml"),
        gate=PurePosixPath("tests", "gates", f"test_{module}.py"),
        locustfile=PurePosixPath("loadtests", f"{module}.py"),
    )


def render_scaffold(request: ScaffoldRequest, repo: Path) -> dict[str, str]:
    """Every file's text by its path relative to ``repo`` (an absolute folder)."""
    layout = layout_for(request.service)
    context = scaffold_context(request, repo, layout)
    return {str(layout.manifest): _render("release.yml.j2", context),
            str(layout.continuity): _render("continuity.yml.j2", context),
            str(layout.gate): _render("gate.py.j2", context),
            str(layout.locustfile): _render("locustfile.py.j2", context)}


def scaffold_context(request: ScaffoldRequest, repo: Path,
                     layout: ScaffoldLayout) -> dict[str, Any]:
    """The templates' values: the request's, plus names, relative paths and the LB URL."""
    base = repo / layout.config_dir

    def rel(path: Path | PurePosixPath) -> str:  # as the loader reads it: from base
        return os.path.relpath(repo / path, base)

    lb_url, lb_note = load_test_url(request)
    return {
        **request.model_dump(exclude={"playbooks", "artifact", "inventory", "configs",
                                      "dirs", "data", "postgresql"}),
        "release": release_name(request.service, request.version),
        "manifest_path": str(layout.manifest),
        "continuity_path": str(layout.continuity),
        "inventory": rel(request.inventory) if request.inventory else None,
        "inventory_hint": "" if request.inventory or request.environment == LAB_ENVIRONMENT
        else " --inventory INVENTORY",
        "playbooks": [rel(p) for p in request.playbooks],
        "code": _code_item(request, rel),
        "capistrano": request.artifact is not None,
        "configs": named_paths(request.service, "config", request.configs),
        "config_paths": list(request.configs),
        "dirs": named_paths(request.service, "dir", request.dirs),
        "data": named_paths(request.service, "data", request.data),
        "databases": databases(request.service, request.postgresql),
        "version_var": f"{python_name(request.service)}_version",
        "gate": rel(layout.gate),
        "locustfile": rel(layout.locustfile),
        "lb_url": lb_url,
        "lb_url_note": lb_note,
    }


def _code_item(request: ScaffoldRequest,
               rel: Callable[[Path], str]) -> dict[str, str] | None:
    if request.artifact_root is None:
        return None
    item = {"name": f"{request.service}-code", "root": request.artifact_root}
    if request.artifact is None:
        return {**item, "kind": "directory"}
    return {**item, "kind": "artifact", "source": rel(request.artifact)}


def release_name(service: str, version: str) -> str:
    """The release id: ``billing-1.4.0`` (a slug, whatever the version's case)."""
    return f"{service}-{re.sub(r'[^a-z0-9._-]', '-', version.lower())}"


def databases(service: str, urls: tuple[str, ...]) -> list[dict[str, Any]]:
    """PostgreSQL data items from ``postgresql://USER@HOST[:PORT]/DB`` URLs; each password
    is read from ``<SERVICE>_<DB>_PASSWORD`` (never written in a file relctl writes)."""
    items = []
    for named in named_paths(service, "db", urls):
        found = re.fullmatch(PG_URL, named.path)
        assert found is not None, "validated by ScaffoldRequest"
        variable = re.sub(r"[^A-Z0-9]", "_", f"{service}_{found['database']}_PASSWORD".upper())
        items.append({"name": named.name, "host": found["host"],
                      "port": int(found["port"] or 5432), "database": found["database"],
                      "user": found["user"], "password_env": variable})
    return items


def named_paths(service: str, kind: str, paths: tuple[str, ...]) -> list[NamedPath]:
    """Item names for ``paths``: ``billing-config``, or one per file name when several."""
    if len(paths) == 1:
        return [NamedPath(f"{service}-{kind}", paths[0])]
    named: list[NamedPath] = []
    for path in paths:
        stem = re.sub(r"[^a-z0-9._-]", "-", PurePosixPath(path).name.lower()).strip("-._")
        base = f"{service}-{kind}-{stem or 'item'}"[:96]
        name, count = base, 2
        while name in {n.name for n in named}:
            name, count = f"{base}-{count}", count + 1
        named.append(NamedPath(name, path))
    return named


def load_test_url(request: ScaffoldRequest) -> tuple[str | None, str]:
    """The Locust gate's URL and the comment that explains it."""
    if request.lb_url:
        return request.lb_url, "your load balancer's frontend"
    if request.environment == LAB_ENVIRONMENT:
        return None, (f"null: the lab's HAProxy frontend of {request.service} "
                      f"(relctl lab up --service {request.service}:{request.port}...)")
    return None, (f"null: the lab's load balancer; set yours, e.g. "
                  f"http://lb.example.com:{request.lb_port}")


# --- rendering --------------------------------------------------------------------------


def yaml_scalar(value: object) -> str:
    """``value`` as one YAML scalar, quoted only when YAML needs it."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1_000_000, allow_unicode=True)
    return text.rstrip("\n").removesuffix("\n...")


def python_literal(value: object) -> str:
    """``value`` as Python source, strings double-quoted as formatters write them."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON's escapes are Python's too
    if isinstance(value, list | tuple):
        return "[" + ", ".join(python_literal(v) for v in value) + "]"
    return repr(value)


def _environment() -> jinja2.Environment:
    import jinja2  # noqa: PLC0415 - only `relctl init` renders templates

    env = jinja2.Environment(  # no autoescape: YAML and Python out, not HTML
        loader=jinja2.FunctionLoader(_template_source), undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(yaml=yaml_scalar, quoted=json.dumps, py=python_literal)
    return env


def _template_source(name: str) -> str:
    return resources.files("controller").joinpath(TEMPLATES, name).read_text(encoding="utf-8")


def _render(name: str, context: dict[str, Any]) -> str:
    return _environment().get_template(name).render(context)


__all__ = ["ScaffoldLayout", "layout_for", "render_scaffold", "scaffold_context"]
