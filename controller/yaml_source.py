"""Read a YAML config file without trusting it, keeping the line of every key and item.

A config file is input from anyone who can write one, so reading it is bounded:

- only a regular file is read (never ``/dev/zero``, a FIFO or a folder: checked with
  ``stat`` before opening, opened non-blocking, checked again on the open descriptor),
  and at most ``MAX_BYTES`` of it;
- the YAML is composed into nodes at most ``MAX_DEPTH`` deep, and the tree its aliases
  expand to is measured (iteratively, each node once) before anything walks it: more
  than ``MAX_NODES`` nodes or ``MAX_EXPANDED_BYTES`` of text (an alias bomb: a 60 KB
  value aliased 4,000 times is 4,000 nodes but 240 MB once validated), ``MAX_DEPTH``
  levels or an alias that contains itself is refused before Python objects are built,
  naming the line and the field;
- no single value is longer than ``MAX_VALUE_BYTES``: a value reaches command lines
  (Ansible's, ssh's), whose arguments the kernel bounds (128 KiB each), and an oversize
  one is refused here, at load, not after a release has taken its snapshots;
- every reader, scanner, composer and constructor error (a NUL byte, a bad date, an
  integer of 5,000 digits) becomes one ``Problem`` with the file and line.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError

from controller.errors import InputError

MAX_SHOWN = 10
MAX_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_NODES = 100_000
MAX_EXPANDED_BYTES = 4 * MAX_BYTES
MAX_VALUE_BYTES = 64 * 1024

CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")

Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a config file."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        field = f" {printable(self.field)}:" if self.field else ""
        return f"{where}:{field} {printable(self.message)}"


def printable(text: str) -> str:
    """``text`` on one line: control characters (a newline in a key) shown escaped."""
    return CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


class ConfigError(InputError):
    """A config file did not load; ``problems`` holds every problem found, by line."""

    def __init__(self, problems: list[Problem], *, hint: str | None = None) -> None:
        super().__init__(_summary(problems), hint=hint)
        self.problems = problems


def _summary(problems: list[Problem]) -> str:
    if len(problems) == 1:
        return str(problems[0])
    lines = [f"{problems[0].file}: {len(problems)} problems"]
    lines += [str(p) for p in problems[:MAX_SHOWN]]
    if len(problems) > MAX_SHOWN:
        lines.append(f"... and {len(problems) - MAX_SHOWN} more")
    return "\n".join(lines)


@dataclass(frozen=True)
class YamlDocument:
    """A parsed YAML file: its text, its data, and the line of every key and item."""

    path: Path
    text: str
    data: Any
    lines: dict[Loc, int]
    duplicates: list[Problem]

    @property
    def sha256(self) -> str:
        """sha256 of the file's text."""
        return hashlib.sha256(self.text.encode()).hexdigest()


# --- the file -----------------------------------------------------------------------------


def read_regular_file(path: Path, limit: int = MAX_BYTES) -> bytes:
    """The bytes of ``path``; ``ConfigError`` unless it is a readable regular file of at
    most ``limit`` bytes. Never blocks on a FIFO or reads a device."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise _file_problem(path, "not a regular file")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):  # swapped since stat
                raise _file_problem(path, "not a regular file")
            data = handle.read(limit + 1)
    except FileNotFoundError as error:
        raise _file_problem(path, "file not found") from error
    except (OSError, ValueError) as error:  # ValueError: a NUL byte in the path
        raise _file_problem(path, f"cannot read: {error}") from error
    if len(data) > limit:
        raise _file_problem(path, f"larger than {limit} bytes: not a config file")
    return data


def _file_problem(path: Path, message: str) -> ConfigError:
    return ConfigError([Problem(str(path), None, "", message)])


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ConfigError([Problem(str(path), line, "", f"not UTF-8 text: {error.reason} "
                                   f"at byte {error.start}")]) from error


# --- the YAML -----------------------------------------------------------------------------


class BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing nesting deeper than ``MAX_DEPTH`` while composing
    and turning a constructor's ``ValueError`` (a date like 2026-13-45) into a located
    ``ConstructorError``."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as error:
            raise ConstructorError(None, None, f"invalid value: {error}",
                                   node.start_mark) from error


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


class ExpansionError(ComposerError):
    """The tree is past a bound at ``node`` (whose field ``read_yaml`` names)."""

    def __init__(self, message: str, node: yaml.Node) -> None:
        super().__init__(None, None, message, node.start_mark)
        self.node = node


# What a node expands to: (nodes, depth, bytes of text)
Measure = tuple[int, int, int]


def check_expansion(root: yaml.Node) -> None:
    """Refuse (``ExpansionError``) a tree whose aliases expand past ``MAX_NODES`` nodes,
    ``MAX_EXPANDED_BYTES`` of text or ``MAX_DEPTH`` levels, or refer to themselves, or that
    holds a value longer than ``MAX_VALUE_BYTES``. Each distinct node is measured once:
    linear in the file."""
    measured: dict[int, Measure] = {}  # id(node) -> what it expands to
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if children_done:
            open_nodes.discard(id(node))
            measured[id(node)] = _measure(node, measured)
        elif id(node) in open_nodes:
            raise ExpansionError("an alias refers to a node that contains it", node)
        elif id(node) not in measured:
            open_nodes.add(id(node))
            stack.append((node, True))
            stack += [(child, False) for child in _children(node)]


def _measure(node: yaml.Node, measured: dict[int, Measure]) -> Measure:
    below = [measured[id(child)] for child in _children(node)]
    size = 1 + sum(n for n, _, _ in below)
    depth = 1 + max((d for _, d, _ in below), default=0)
    text = sum(b for _, _, b in below) + _scalar_bytes(node)
    if size > MAX_NODES or depth > MAX_DEPTH or text > MAX_EXPANDED_BYTES:
        what = (f"{MAX_NODES} values" if size > MAX_NODES else f"{MAX_DEPTH} levels"
                if depth > MAX_DEPTH else f"{MAX_EXPANDED_BYTES} bytes of text")
        raise ExpansionError(f"aliases expand to more than {what}", node)
    return size, depth, text


def _scalar_bytes(node: yaml.Node) -> int:
    """The UTF-8 length of a scalar's text (0 for a collection); ``ExpansionError`` past
    ``MAX_VALUE_BYTES``."""
    if not isinstance(node, yaml.ScalarNode):
        return 0
    value = str(node.value)
    size = len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))
    if size > MAX_VALUE_BYTES:
        raise ExpansionError(f"a value of {size} bytes, longer than {MAX_VALUE_BYTES}: "
                             "keep large content in a file the manifest names", node)
    return size


def read_yaml(path: Path) -> YamlDocument:
    """Parse ``path`` (one YAML document) keeping line numbers; ``ConfigError`` if it is
    unreadable, not YAML, or beyond the bounds above."""
    text = _decode(path, read_regular_file(path))
    lines: dict[Loc, int] = {}
    duplicates: list[Problem] = []
    node: yaml.Node | None = None
    try:
        loader = BoundedLoader(text)
        try:
            node = loader.get_single_node()
            if node is not None:
                check_expansion(node)
                _index(node, (), node.start_mark.line + 1, lines, duplicates, str(path))
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except ExpansionError as error:
        raise ConfigError([_expansion_problem(path, node or error.node, error)]) from None
    except yaml.YAMLError as error:
        raise ConfigError([_yaml_problem(path, text, error)]) from error
    return YamlDocument(path, text, data, lines, duplicates)


def _expansion_problem(path: Path, root: yaml.Node, error: ExpansionError) -> Problem:
    """The bound passed, at the line and field of the node where it was passed."""
    return Problem(str(path), error.node.start_mark.line + 1,
                   render(_location(root, error.node)), str(error.problem))


def _location(root: yaml.Node, target: yaml.Node) -> Loc:
    """Where ``target`` first appears in the tree (each node visited once; aliases are
    not expanded); ``()`` when it is the top."""
    seen: set[int] = set()
    queue: list[tuple[yaml.Node, Loc]] = [(root, ())]
    while queue:
        node, loc = queue.pop()
        if node is target:
            return loc
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            queue += [(value, (*loc, str(key.value))) for key, value in node.value]
        elif isinstance(node, yaml.SequenceNode):
            queue += [(item, (*loc, index)) for index, item in enumerate(node.value)]
    return ()


def _yaml_problem(path: Path, text: str, error: yaml.YAMLError) -> Problem:
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    line = mark.line + 1 if mark is not None else None
    if isinstance(error, yaml.reader.ReaderError):  # a NUL or other non-printable char
        line = text[: error.position].count("\n") + 1
    problem = getattr(error, "problem", None) or (str(error).splitlines() or ["?"])[0]
    context = getattr(error, "context", None)
    detail = f"{problem} ({context})" if context else problem
    return Problem(str(path), line, "", f"YAML syntax error: {detail}")


def _index(node: yaml.Node, loc: Loc, line: int, lines: dict[Loc, int],
           duplicates: list[Problem], file: str) -> None:
    """Record the start line of ``node`` and of every key and item below it."""
    lines[loc] = line
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            where, key_line = (*loc, str(key_node.value)), key_node.start_mark.line + 1
            if where in lines and where[-1] != "<<":
                duplicates.append(Problem(file, key_line, render(where),
                                          f"duplicate key (first at line {lines[where]})"))
                continue
            _index(value_node, where, key_line, lines, duplicates, file)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _index(item, (*loc, index), item.start_mark.line + 1, lines, duplicates, file)


def render(loc: Loc) -> str:
    """``("items", 2, "version")`` -> ``items[2].version``."""
    text = ""
    for element in loc:
        text += f"[{element}]" if isinstance(element, int) else f".{element}"
    return text.lstrip(".")
