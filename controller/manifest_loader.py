"""Load YAML config files into pydantic models, with errors naming file, line and field.

The YAML is composed into nodes first, so the start line of every mapping key and sequence
item is known; pydantic then validates the plain data, and each of its errors is mapped
back to a line: ``release.yml:14: items[2].version: Input should be a valid string``.
Every problem found (not just the first) is reported in one ``ConfigError`` (exit 2).
"""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from controller.errors import InputError
from controller.journal import ReleaseRecord
from controller.models.manifest import Manifest
from controller.yaml_source import ConfigError, Loc, Problem, YamlDocument, read_yaml
from controller.yaml_source import render as _render

__all__ = ["ConfigError", "Problem", "YamlDocument", "load_manifest", "load_yaml_model",
           "read_yaml", "validate_document"]

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_HINT = "`relctl schema` prints every field a release manifest accepts"

ModelT = TypeVar("ModelT", bound=BaseModel)


def validate_document(doc: YamlDocument, model: type[ModelT], *, resolve_paths: bool = True,
                      check_files: bool = True, hint: str | None = None) -> ModelT:
    """Validate ``doc`` as ``model``; every problem becomes part of one ``ConfigError``.

    With ``resolve_paths`` the model's path fields are made absolute against the file's
    folder (and, with ``check_files``, must exist): see ``controller.models.manifest``.
    """
    problems = list(doc.duplicates)
    if not isinstance(doc.data, dict):
        problems.append(_not_a_mapping(doc))
        raise ConfigError(problems, hint=hint)
    context = {"base_dir": doc.path.absolute().parent, "check_files": check_files}
    try:
        result = model.model_validate(doc.data, context=context if resolve_paths else None)
    except RecursionError:  # a safety net: read_yaml already bounds the depth
        problems.append(Problem(str(doc.path), 1, "", "nested too deeply"))
        raise ConfigError(problems, hint=hint) from None
    except ValidationError as error:
        problems += [_problem(doc, model, detail) for detail in error.errors()]
        raise ConfigError(_sorted_unique(problems), hint=hint) from None
    if problems:
        raise ConfigError(_sorted_unique(problems), hint=hint)
    return result


def _not_a_mapping(doc: YamlDocument) -> Problem:
    found = "an empty file" if doc.data is None else f"a {type(doc.data).__name__}"
    return Problem(str(doc.path), doc.lines.get((), 1), "",
                   f"the top level must be a mapping of fields, found {found}")


def _sorted_unique(problems: list[Problem]) -> list[Problem]:
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: (p.line or 0, p.field))


def load_yaml_model(path: Path, model: type[ModelT], *, resolve_paths: bool = True,
                    check_files: bool = True, hint: str | None = None) -> ModelT:
    """Read ``path`` and validate it as ``model``, with line-aware ``ConfigError``s."""
    return validate_document(read_yaml(path), model, resolve_paths=resolve_paths,
                             check_files=check_files, hint=hint)


def load_manifest(path: Path) -> Manifest:
    """The release manifest at ``path``, paths absolute, referenced files checked."""
    doc = read_yaml(path)
    manifest = validate_document(doc, Manifest, hint=SCHEMA_HINT)
    return manifest.with_source(path.absolute(), doc.sha256)


def check_as_released(manifest: Manifest, record: ReleaseRecord, hint: str) -> Manifest:
    """``manifest`` unless its text changed since ``record`` (a journal release) ran it."""
    if manifest.source_sha256 != record.manifest_sha256:
        raise InputError(f"{record.manifest_path} changed since {record.name} was released",
                         hint=hint)
    return manifest


def manifest_json_schema() -> dict[str, Any]:
    """JSON Schema of the release manifest (for editors and ``relctl schema``)."""
    schema = Manifest.model_json_schema()
    return {"$schema": JSON_SCHEMA_DIALECT, **schema, "title": "relctl release manifest"}


# --- from a pydantic error to a problem --------------------------------------------------


def _problem(doc: YamlDocument, model: type[BaseModel], detail: ErrorDetails) -> Problem:
    shown, line = _locate(doc, model, tuple(detail["loc"]))
    kind = detail["type"]
    if kind == "extra_forbidden":
        message = "unknown field" + _did_you_mean(shown[-1], fields_at(model, detail["loc"][:-1]))
    elif kind == "missing":
        message = "required field missing"
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        return _tag_problem(doc, shown, line, detail)
    else:
        message = detail["msg"].removeprefix("Value error, ") + _quote_hint(detail)
    return Problem(str(doc.path), line, _render(shown), message)


def _locate(doc: YamlDocument, model: type[BaseModel], loc: Loc) -> tuple[Loc, int]:
    """The part of ``loc`` that names real data (union tags dropped) and its line.

    A missing or unknown key ends the walk (reported at its parent's line); so does a
    scalar, since whatever pydantic adds below one names union branches, not data.
    """
    node: Any = doc.data
    annotation: Any = model
    shown: Loc = ()
    for element in loc:
        tag = _is_tag(annotation, element)
        annotation = _step(annotation, element)
        if tag:
            continue
        if _has(node, element):
            node, shown = node[element], (*shown, element)
        elif isinstance(node, dict):
            return (*shown, element), line_of(doc, shown)
        else:
            break
    return shown, line_of(doc, shown)


def _has(node: Any, element: str | int) -> bool:
    if isinstance(node, dict):
        return element in node
    return isinstance(node, list) and isinstance(element, int) and 0 <= element < len(node)


def line_of(doc: YamlDocument, loc: Loc) -> int:
    """The line of ``loc`` in ``doc``, or of its nearest ancestor that has one."""
    while loc not in doc.lines and loc:
        loc = loc[:-1]
    return doc.lines.get(loc, 1)



def _tag_problem(doc: YamlDocument, shown: Loc, line: int, detail: ErrorDetails) -> Problem:
    context = detail.get("ctx") or {}
    key = str(context.get("discriminator", "kind")).strip("'")
    expected = [t.strip().strip("'") for t in str(context.get("expected_tags", "")).split(",")]
    where = (*shown, key)
    if detail["type"] == "union_tag_not_found":
        message = f"required field missing (one of {', '.join(expected)})"
    else:
        tag = str(context.get("tag", ""))
        message = f"unknown {key} {tag!r}, expected one of {', '.join(expected)}"
        message += _did_you_mean(tag, expected)
    return Problem(str(doc.path), doc.lines.get(where, line), _render(where), message)


def _did_you_mean(name: object, choices: list[str]) -> str:
    close = difflib.get_close_matches(str(name), choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _quote_hint(detail: ErrorDetails) -> str:
    """YAML reads ``version: 1.10`` as the number 1.1: suggest quoting."""
    value = detail.get("input")
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if detail["type"] == "string_type" and is_number:
        return f" (YAML read {value!r} as a number: quote it)"
    return ""


# --- which fields a model accepts at a location (for "did you mean") -------------------


def fields_at(model: type[BaseModel], loc: Loc) -> list[str]:
    """Names of the fields the model accepts at ``loc`` (empty if not a model there)."""
    current: Any = model
    for element in loc:
        current = _step(current, element)
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _step(annotation: Any, element: str | int) -> Any:
    """The annotation one step below ``annotation`` along ``element``."""
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        found = annotation.model_fields.get(str(element))
        return found.annotation if found is not None else None
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (list, tuple, set, frozenset) and args:
        return args[0]
    if origin is dict and len(args) == 2:
        return args[1]
    if _is_union(annotation):
        return next((m for m in args if _has_tag(m, element)), None)
    return None


def _unwrap(annotation: Any) -> Any:
    """Strip ``Annotated`` and ``| None``."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if _is_union(annotation):
        members = [m for m in typing.get_args(annotation) if m is not type(None)]
        if len(members) == 1:
            return _unwrap(members[0])
    return annotation


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _is_tag(annotation: Any, element: str | int) -> bool:
    """True when ``annotation`` is a union and ``element`` picks one of its members."""
    union = _unwrap(annotation)
    return _is_union(union) and any(_has_tag(m, element) for m in typing.get_args(union))


def _has_tag(member: Any, tag: str | int) -> bool:
    """True when the union member has a ``Literal`` field that allows ``tag``."""
    if not (isinstance(member, type) and issubclass(member, BaseModel)):
        return False
    return any(
        typing.get_origin(f.annotation) is typing.Literal and tag in typing.get_args(f.annotation)
        for f in member.model_fields.values()
    )
