"""Property-based: generated manifests, continuity plans and CLI options are accepted or
refused with exit 2 and a located message; never another exception, never over 2 s.

Inputs are the valid examples mutated (a value swapped for a hostile one, a key dropped
or added, bytes inserted or cut), raw bytes, and generated paths, member names, template
strings and record ids: 2,750 cases per run in all. Derandomized:
the same cases each run, so a failure is never a fluke of one CI run.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.errors import InputError
from controller.manifest_loader import load_manifest, load_yaml_model
from controller.models.continuity import ContinuityPlan
from tests.unit.hostile import assert_located, fake_hosts, hostile_tree, run_cli

RELEASES = ["ledger-1.1.0", "ledger-1.2.0", "ledger-2.0.0", "ledger-2.0.1"]
LIMIT_S = 2.0
SETTINGS = {"deadline": None, "derandomize": True, "database": None,
            "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large,
                                      HealthCheck.function_scoped_fixture]}

HOSTILE: list[Any] = [
    True, False, None, 0, -1, 2**63, 10**400, 1.5, float("inf"),
    float("nan"), -0.0, 1e308, "", " ", "-", "--version", "-i x", "[/x]", "[bold]x[/]",
    "~nosuchuser/x", "x" * 300, "a/" * 2100, "/etc/x;touch /tmp/pwned;#", "/x/$(id)",
    "/x/`id`", "/x|y", "/x/*", "/x\ny", "/x?mode=rwc", "/%2e%2e/x", "/dev/zero", "\x00",
    "\x07bell", "é", "1e308", ".inf", "99999999999999d", "30s", "5m", "0", "-5m",
    "2026-12-01T22:00:00+01:00", "9999-12-31T23:00:00+00:00", "app;shutdown", [], {},
    [1, [2, [3]]], {"x": {"y": {"z": None}}}, {"kind": "file"}, ["/a", "/b"],
]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return hostile_tree(tmp_path_factory.mktemp("properties"))


def examples(tree: Path) -> dict[str, tuple[Path, Any]]:
    """Every valid example: name -> (its folder's case file, its data)."""
    found = {name: tree / "examples" / "releases" / f"{name}.yml" for name in RELEASES}
    found["plan"] = tree / "examples" / "continuity" / "ledger-lab.yml"
    return {name: (path.with_name("case.yml"), yaml.safe_load(path.read_text()))
            for name, path in found.items()}


def check(path: Path, load: Callable[[Path], object]) -> None:
    """``load(path)`` loads, or refuses with exit 2 and a located message, within 2 s."""
    started = time.monotonic()
    try:
        load(path)
    except InputError as error:
        assert error.exit_code == 2
        assert_located(error.message, path)
    assert time.monotonic() - started < LIMIT_S


def loader(name: str) -> Callable[[Path], object]:
    if name == "plan":
        return lambda path: load_yaml_model(path, ContinuityPlan)
    return load_manifest


# --- mutations of the data ------------------------------------------------------------


def paths_in(data: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every location in ``data``: keys of mappings and indexes of lists."""
    found = [here]
    if isinstance(data, dict):
        for key, value in data.items():
            found += paths_in(value, (*here, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += paths_in(value, (*here, index))
    return found


@st.composite
def mutated(draw: st.DrawFn, originals: dict[str, tuple[Path, Any]]) -> tuple[str, Any]:
    name = draw(st.sampled_from(sorted(originals)))
    data = copy.deepcopy(originals[name][1])
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(paths_in(data)[1:]))
        parent = data
        for step in where[:-1]:
            parent = parent[step]
        action = draw(st.sampled_from(["swap", "swap", "drop", "add"]))
        if action == "swap":
            # a copy: a hostile list or mapping must not carry one case's changes to the next
            parent[where[-1]] = copy.deepcopy(draw(st.sampled_from(HOSTILE) | st.text(max_size=20)))
        elif action == "drop":
            del parent[where[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=12))] = copy.deepcopy(
                draw(st.sampled_from(HOSTILE)))
        if not isinstance(data, dict):
            break
    return name, data


def dumped(data: Any) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def test_mutated_values_are_accepted_or_refused_with_a_line(tree: Path) -> None:
    originals = examples(tree)

    @settings(max_examples=650, **SETTINGS)  # type: ignore[arg-type]
    @given(mutated(originals))
    def run(case: tuple[str, Any]) -> None:
        name, data = case
        path = originals[name][0]
        path.write_text(dumped(data))
        check(path, loader(name))

    run()


# --- mutations of the text, and raw bytes ---------------------------------------------


NASTY_BYTES = [b"\x00", b"\x07", b"\xff", b"\xef\xbb\xbf", b"&a [*a]", b"*nope", b": :",
               b"{", b"]", b"\t", b"!!python/object:os.system ", b"- ", b"? ", b"'", b'"',
               b"%YAML 9.9\n", b"---\n", b"\n  ", b"<<: *x", b"&x ", b"[" * 100, b"\r"]


@st.composite
def damaged(draw: st.DrawFn, texts: dict[str, bytes]) -> tuple[str, bytes]:
    name = draw(st.sampled_from(sorted(texts)))
    text = texts[name]
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 8))
        piece = draw(st.sampled_from(NASTY_BYTES) | st.binary(max_size=8))
        text = text[:at] + piece + text[at + cut:]
    return name, text


def test_damaged_text_is_accepted_or_refused_with_a_line(tree: Path) -> None:
    originals = examples(tree)
    texts = {name: (tree / "examples" / ("continuity/ledger-lab.yml" if name == "plan" else
                                         f"releases/{name}.yml")).read_bytes()
             for name in originals}

    @settings(max_examples=500, **SETTINGS)  # type: ignore[arg-type]
    @given(damaged(texts))
    def run(case: tuple[str, bytes]) -> None:
        name, text = case
        path = originals[name][0]
        path.write_bytes(text)
        check(path, loader(name))

    run()


def test_raw_bytes_are_refused_with_a_line(tree: Path) -> None:
    originals = examples(tree)

    @settings(max_examples=700, **SETTINGS)  # type: ignore[arg-type]
    @given(st.sampled_from(["ledger-1.1.0", "plan"]), st.binary(max_size=300))
    def run(name: str, raw: bytes) -> None:
        path = originals[name][0]
        path.write_bytes(raw)
        check(path, loader(name))

    run()


# --- CLI options ----------------------------------------------------------------------


OPTION_VALUES = st.sampled_from(HOSTILE[14:42]) | st.text(max_size=30)


@st.composite
def plan_options(draw: st.DrawFn, folder: Path) -> list[str]:
    """``relctl plan`` options, each valid or hostile."""
    options: list[str] = []
    if draw(st.booleans()):
        options += ["--start", draw(st.sampled_from(["2026-12-01T22:00+01:00",
                                                     "9999-12-31T23:00+00:00", "0001-01-01",
                                                     "2026-12-01"]) | OPTION_VALUES)]
    if draw(st.booleans()):
        options += ["--warranty-days", draw(st.sampled_from(["0", "7", "-1", "99999999999",
                                                             "1e3"]) | OPTION_VALUES)]
    if draw(st.booleans()):
        options += ["--format", draw(st.sampled_from(["markdown", "html", "json", "xml"]))]
    if draw(st.booleans()):
        out = draw(st.sampled_from(["plan.md", "missing/plan.md", "/proc/plan.md", ".",
                                    "/dev/full"]) | OPTION_VALUES)
        options += ["-o", out if out.startswith("/") else str(folder / out)]
    return options


def _clean(text: str) -> str:
    return text.replace("\x00", "")


def test_plan_options_are_accepted_or_refused_in_one_line(tree: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = tree / "examples" / "releases" / "ledger-1.2.0.yml"

    @settings(max_examples=150, **SETTINGS)  # type: ignore[arg-type]
    @given(plan_options(tmp_path))
    def run(options: list[str]) -> None:
        started = time.monotonic()
        ran = run_cli(tmp_path / "state", "plan", str(manifest), "--inventory",
                      str(tree / "hosts.yml"), *map(_clean, options))
        assert time.monotonic() - started < LIMIT_S
        assert ran.code in (0, 2), ran
        if ran.code == 2:
            assert ran.stderr.startswith("error: "), ran

    with fake_hosts(monkeypatch, ["primary-1", "primary-2"]):
        run()


def test_journal_and_history_options_are_accepted_or_refused(tree: Path,
                                                             tmp_path: Path) -> None:
    @settings(max_examples=100, **SETTINGS)  # type: ignore[arg-type]
    @given(st.sampled_from(["j.sqlite", "/proc/j.sqlite", "/dev/zero", ".", "/",
                            "missing/j.sqlite"]) | OPTION_VALUES,
           st.sampled_from(["5", "-1", "0", "x", "99999999999999999999"]))
    def run(journal: str, limit: str) -> None:
        chosen = journal if journal.startswith("/") else str(tmp_path / "j" / journal)
        ran = run_cli(tmp_path / "state", "--journal", _clean(chosen), "history",
                      "--limit", limit)
        assert ran.code in (0, 2), ran
        if ran.code == 2:
            assert ran.stderr.startswith("error: "), ran

    run()


# --- generated paths, member names and template strings (issue 25) ----------------------
# 200 + 150 + 150 + 150 = 650 more cases per run: a manifest that loads keeps them as
# written (data, never a template), one that does not is refused with a line; an id on
# the command line is found or refused (exit 2); never a traceback, never over 2 s.

SEGMENTS = ["..", ".", "", "~", "~root", "$HOME", "${X}", "$(id)", "`id`", "{{ x }}",
            "\x00", "\n", "\t", " ", "-rf", "*", "?", "[a]", "é", "\u202e", "%2e%2e",
            "a" * 255, "b" * 300, ".relctl-restore", "current", "proc", "dev", "etc"]


@st.composite
def hostile_paths(draw: st.DrawFn) -> str:
    """Paths as an attacker writes them: ``..``, links' names, NULs, huge segments."""
    parts = draw(st.lists(st.sampled_from(SEGMENTS) | st.text(max_size=12), max_size=8))
    root = draw(st.sampled_from(["/", "", "./", "../", "//", "~/"]))
    return root + "/".join(parts)


MEMBER_NAMES = st.sampled_from(["..", "../x", "/etc/passwd", "a/../../b", "./.", "a\x00b",
                                "a\nb", "-", "--help", ".git", "con", "x" * 300, "é/ü",
                                "<<", "*", "&a", "!!python/name:os.system", "~"]) | st.text(
                                    min_size=1, max_size=20)

TEMPLATES = st.sampled_from([
    "{{ lookup('pipe', 'id > /tmp/x; echo 1.0.0') }}", "{% for x in range(10**9) %}x{% endfor %}",
    "{{ 7*7 }}", "{# c #}", "{{", "}}", "{%", "%}", "${HOME}", "$(id)", "`id`",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}", "!unsafe {{ x }}", "%(x)s", "{0}",
    "{{ q('env', 'RELCTL_JOURNAL') }}", "{{ x | default(lookup('file', '/etc/shadow')) }}",
]) | st.builds(lambda a, b: f"{a}{{{{ {b} }}}}", st.text(max_size=8), st.text(max_size=8))


def _path_locations(data: Any) -> list[tuple[Any, ...]]:
    return [where for where in paths_in(data)[1:]
            if where[-1] in ("path", "root", "source", "tests", "locustfile")
            or (isinstance(_at(data, where), str) and _at(data, where).startswith(("/", "..")))]


def _at(data: Any, where: tuple[Any, ...]) -> Any:
    for step in where:
        data = data[step]
    return data


def _set(data: Any, where: tuple[Any, ...], value: Any) -> None:
    _at(data, where[:-1])[where[-1]] = value


def test_generated_paths_are_accepted_or_refused_with_a_line(tree: Path) -> None:
    originals = examples(tree)
    cases: list[str] = []

    @settings(max_examples=200, **SETTINGS)  # type: ignore[arg-type]
    @given(st.sampled_from(sorted(originals)), st.data())
    def run(name: str, data: st.DataObject) -> None:
        cases.append(name)
        document = copy.deepcopy(originals[name][1])
        for _ in range(data.draw(st.integers(1, 3))):
            where = data.draw(st.sampled_from(_path_locations(document)))
            _set(document, where, data.draw(hostile_paths()))
        path = originals[name][0]
        path.write_text(dumped(document))
        check(path, loader(name))

    run()
    assert len(cases) >= 200  # every generated case ran


def test_generated_member_names_are_accepted_or_refused_with_a_line(tree: Path) -> None:
    originals = examples(tree)
    path, release = originals["ledger-1.2.0"]
    cases: list[str] = []

    @settings(max_examples=150, **SETTINGS)  # type: ignore[arg-type]
    @given(MEMBER_NAMES, MEMBER_NAMES, st.integers(0, 3))
    def run(item_name: str, key: str, index: int) -> None:
        cases.append(item_name)
        document = copy.deepcopy(release)
        document["items"][index % len(document["items"])]["name"] = item_name
        document["extravars"] = {**document.get("extravars", {}), key: item_name}
        path.write_text(dumped(document))
        check(path, load_manifest)

    run()
    assert len(cases) >= 150  # every generated case ran


def test_template_strings_stay_text(tree: Path) -> None:
    originals = examples(tree)
    path, release = originals["ledger-1.2.0"]
    cases: list[str] = []

    @settings(max_examples=150, **SETTINGS)  # type: ignore[arg-type]
    @given(TEMPLATES, st.sampled_from(["extravars", "release_manager", "version", "start"]))
    def run(template: str, field: str) -> None:
        cases.append(template)
        document = copy.deepcopy(release)
        if field == "extravars":
            document["extravars"] = {**document.get("extravars", {}), "note": template}
        elif field == "release_manager":
            document["owners"]["release_manager"] = template
        elif field == "version":
            document["version"] = template
        else:
            next(i for i in document["items"] if i["kind"] == "service")["start"] = template
        path.write_text(dumped(document))
        started = time.monotonic()
        try:
            loaded = load_manifest(path)
        except InputError as error:
            assert_located(error.message, path)
        else:
            if field == "extravars":
                assert loaded.extravars["note"] == template  # as written: never evaluated
        assert time.monotonic() - started < LIMIT_S

    run()
    assert len(cases) >= 150  # every generated case ran


ID_TEXT = (st.integers(-(2**70), 2**70).map(str)
           | st.text(st.characters(categories=["Nd", "No"]), min_size=1, max_size=25)
           | st.sampled_from(["#", "#1", "1.0", "1e3", "0x1f", "+1", "-0", " 7", "7\n", "9" * 5000])
           | st.text(min_size=1, max_size=12))


def test_cli_ids_are_found_or_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    cases: list[str] = []

    @settings(max_examples=150, **SETTINGS)  # type: ignore[arg-type]
    @given(ID_TEXT, st.sampled_from([["show"], ["report"], ["drill", "report"]]))
    def run(record_id: str, command: list[str]) -> None:
        cases.append(record_id)
        started = time.monotonic()
        ran = run_cli(state, *command, "--", _clean(record_id))
        assert time.monotonic() - started < LIMIT_S
        assert ran.code == 2, ran  # the journal is empty: no id names a record
        assert ran.stderr.startswith("error: "), ran

    run()
    assert len(cases) >= 150  # every generated case ran
