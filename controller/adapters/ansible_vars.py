"""Variables for Ansible as data: relctl's ``-e @file`` documents and inventories.

Every string a manifest, a plan or the lab puts into a variable is written with YAML's
``!unsafe`` tag, so Ansible never templates it (no ``{{ lookup('pipe', ...) }}`` ever
runs), to a 0600 file created exclusively in the run's private folder and removed when
the run ends: never on a command line, where ``ps`` shows it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

EXTRAVARS_FILE = "extravars.yml"
YAML_STR = "tag:yaml.org,2002:str"


class Unsafe(str):
    """Text Ansible must take as it is: written with YAML's ``!unsafe`` tag."""

    __slots__ = ()


class _UnsafeDumper(yaml.SafeDumper):
    pass


def _represent_unsafe(dumper: _UnsafeDumper, text: Unsafe) -> yaml.Node:
    plain = str(text)
    resolved = dumper.resolve(yaml.ScalarNode, plain, (True, False))  # type: ignore[no-untyped-call]
    if resolved != YAML_STR:
        # Ansible reads an ``!unsafe`` scalar's type as if it were plain ('1.10' would be
        # 1.1, '' None); text like that (a number, true, null, a date) holds no template.
        return dumper.represent_str(plain)
    return dumper.represent_scalar("!unsafe", plain, style="'")


_UnsafeDumper.add_representer(Unsafe, _represent_unsafe)


def unsafe(value: Any) -> Any:
    """``value`` with every string in it (nested keys too) marked ``Unsafe``; other
    scalars as their plain type (an ``IntEnum`` as an int)."""
    if isinstance(value, str):
        return Unsafe(value)
    for scalar in (bool, int, float):  # bool first: it is an int too
        if isinstance(value, scalar):
            return scalar(value)
    if isinstance(value, Mapping):
        return {unsafe(k): unsafe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [unsafe(v) for v in value]
    return value


def ansible_yaml(data: Any) -> str:
    """``data`` as YAML for Ansible, its ``Unsafe`` strings tagged ``!unsafe``."""
    return yaml.dump(data, Dumper=_UnsafeDumper, sort_keys=False, allow_unicode=True)


def extravars_yaml(extravars: Mapping[str, Any]) -> str:
    """The extra variables as an ``-e @file`` document: names as they are, every string
    value (at any depth) data that Ansible never templates."""
    return ansible_yaml({str(name): unsafe(value) for name, value in extravars.items()})


@contextlib.contextmanager
def extravars_file(private: Path, extravars: Mapping[str, Any]) -> Iterator[Path | None]:
    """A 0600 file (created exclusively) holding ``extravars``; removed afterwards."""
    if not extravars:
        yield None
        return
    path = private / EXTRAVARS_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(extravars_yaml(extravars))
        yield path
    finally:
        path.unlink(missing_ok=True)
