"""No tracebacks and bounded memory: ids out of range or in other scripts' digits are bad
input (exit 2); aliases are bounded in bytes as well as nodes; a value too large for a
command line is refused when the manifest is read, before anything is touched."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest

from controller.journal import Journal
from controller.manifest_loader import ConfigError, load_manifest
from controller.yaml_source import MAX_EXPANDED_BYTES, MAX_VALUE_BYTES
from tests.relctl_cli import relctl
from tests.unit.hostile import assert_located, assert_refused, hostile_tree, run_cli

RELEASE = "examples/releases/ledger-1.1.0.yml"
BAD_IDS = ["9223372036854775808", "18446744073709551616", "9" * 5000, "²", "١٢", "#²",
           "#9223372036854775808", "0x10", "1e3", " 1"]
# Each command with ID where the id goes (monitor: with the options it needs to look).
ID_COMMANDS = [["show", "ID"], ["rollback", "ID"], ["report", "ID"],
               ["monitor", "ID", "--rounds", "1"], ["drill", "report", "ID"]]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return hostile_tree(tmp_path_factory.mktemp("tracebacks"))


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state directory whose journal holds no release and no drill."""
    folder = tmp_path_factory.mktemp("state")
    Journal(folder / "journal.sqlite").close()
    return folder


@pytest.mark.parametrize("command", ID_COMMANDS, ids=" ".join)
@pytest.mark.parametrize("bad", BAD_IDS, ids=lambda bad: ascii(bad[:24]))
def test_an_id_out_of_range_or_not_ascii_is_bad_input(state: Path, command: list[str],
                                                       bad: str) -> None:
    args = [bad if arg == "ID" else arg for arg in command]
    ran = run_cli(state, *args)  # any exception but SystemExit fails here
    assert_refused(ran)


@pytest.mark.parametrize("command", [["show"], ["drill", "report"]], ids=" ".join)
def test_show_past_64_bits_exits_2_without_a_traceback(tmp_path: Path,
                                                       command: list[str]) -> None:
    ran = relctl(tmp_path / "state", *command, "9223372036854775808", timeout=60)
    assert ran.returncode == 2, ran
    assert "Traceback" not in ran.stderr
    assert ran.stderr.startswith("error: ")


def test_the_largest_id_is_still_an_id(state: Path) -> None:
    ran = run_cli(state, "drill", "report", "9223372036854775807")
    assert_refused(ran)
    assert "no drill 9223372036854775807" in ran.stderr


# --- aliases bounded in bytes, values bounded in size ---------------------------------------


def written(tree: Path, extra: str) -> Path:
    """The example with ``extra`` (``extravars:`` and its values) for its extravars."""
    path = tree / "examples" / "releases" / "case.yml"
    text = (tree / RELEASE).read_text()
    old = 'extravars: {ledger_version: "1.1.0"}\n'
    assert old in text
    path.write_text(text.replace(old, "") + extra.replace(
        "extravars:\n", 'extravars:\n  ledger_version: "1.1.0"\n', 1))
    return path


def test_an_alias_bomb_of_few_nodes_and_many_bytes_is_refused(tree: Path) -> None:
    """100 KB of file, ~240 MB once expanded: few nodes, so only a bound in bytes sees it."""
    value = "x" * 60_000
    path = written(tree, f"extravars:\n  note: &big {value}\n  copies: ["
                   + ", ".join(["*big"] * 4000) + "]\n")
    assert path.stat().st_size < 110_000
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(ConfigError) as refused:
            load_manifest(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 10  # no hang (the memory bound proves the rest)
    assert peak < 32 << 20  # bytes: the 240 MB were never built
    message = refused.value.message
    assert_located(message, path)
    assert f"aliases expand to more than {MAX_EXPANDED_BYTES} bytes" in message
    assert "extravars.copies:" in message


def test_a_value_too_large_for_a_command_line_is_refused_at_load(tree: Path) -> None:
    path = written(tree, f"extravars:\n  app_notes: \"{'n' * 200_000}\"\n")
    with pytest.raises(ConfigError) as refused:
        load_manifest(path)
    message = refused.value.message
    assert_located(message, path)
    assert "extravars.app_notes:" in message
    assert f"longer than {MAX_VALUE_BYTES}" in message


def test_plan_refuses_an_oversize_value_with_exit_2(tree: Path, tmp_path: Path) -> None:
    path = written(tree, f"extravars:\n  app_notes: {'é' * 40_000}\n")  # 80 KB in UTF-8
    ran = run_cli(tmp_path / "state", "plan", str(path), "--inventory", str(tree / "hosts.yml"))
    assert_refused(ran)
    assert "app_notes" in ran.stderr


def test_a_large_value_under_the_bound_still_loads(tree: Path) -> None:
    path = written(tree, f"extravars:\n  app_notes: {'n' * (MAX_VALUE_BYTES - 10)}\n")
    assert len(load_manifest(path).extravars["app_notes"]) == MAX_VALUE_BYTES - 10
