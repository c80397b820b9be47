"""Release manifests: loading, path resolution, and errors that name file, line and field."""

from __future__ import annotations

import hashlib
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from controller.adapters import ansible as ansible_adapter
from controller.adapters.ansible import PlaybookRun, _environment
from controller.errors import ExitCode, InputError, PrerequisiteError
from controller.manifest_loader import (
    ConfigError,
    load_manifest,
    load_yaml_model,
    manifest_json_schema,
)
from controller.models.manifest import (
    ArtifactItem,
    ChangeWindow,
    DataItem,
    ExistingFile,
    FileItem,
    Manifest,
    PackageItem,
    Playbooks,
    ServiceItem,
    Strategy,
)
from controller.planning.release import plan_release
from controller.planning.rollback import rollback_items

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "releases"
REFERENCED = [
    "playbooks/ledger_deploy.yml",
    "playbooks/ledger_migrate.yml",
    "tests/gates/test_ledger_release.py",
    "loadtests/ledger.py",
    *(f"build/artifacts/ledger-{v}.tar.gz" for v in ("1.1.0", "1.2.0", "2.0.0", "2.0.1")),
]

# Line numbers matter: the error tests below assert them.
BASE = """\
release: ledger-1.1.0
version: "1.1.0"
service: ledger
environment: lab
targets: app_primary
items:
  - kind: artifact
    name: ledger-code
    root: /srv/ledger
    source: ../../build/artifacts/ledger-1.1.0.tar.gz
  - kind: file
    name: ledger-config
    path: /etc/ledger/ledger.conf
  - kind: package
    name: requests
    version: "2.31.0"
    manager: pip
    venv: /srv/ledger/venv
playbooks:
  apply: [../../playbooks/ledger_deploy.yml]
strategy:
  canary: 1
  batch_size: 2
gates:
  testinfra:
    - tests: ../../tests/gates/test_ledger_release.py
owners:
  release_manager: Ada Ops
"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A project tree with every file the example manifests reference (dummies)."""
    for relative in REFERENCED:
        target = tmp_path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("# dummy\n")
    (tmp_path / "examples" / "releases").mkdir(parents=True)
    return tmp_path


def write(tree: Path, text: str, name: str = "release.yml") -> Path:
    """Write a manifest into the tree's examples/releases folder."""
    path = tree / "examples" / "releases" / name
    path.write_text(text)
    return path


def errors_of(path: Path) -> ConfigError:
    """The ConfigError that loading ``path`` raises."""
    with pytest.raises(ConfigError) as caught:
        load_manifest(path)
    return caught.value


def with_line(line: int, new: str, text: str = BASE) -> str:
    """``text`` with line ``line`` (1-based) replaced by ``new``."""
    lines = text.splitlines()
    lines[line - 1] = new
    return "\n".join(lines) + "\n"


# --- valid manifests -------------------------------------------------------------------


def test_valid_manifest_loads_with_absolute_paths(tree: Path) -> None:
    path = write(tree, BASE)
    manifest = load_manifest(path)
    assert manifest.release == "ledger-1.1.0"
    assert manifest.playbooks.apply == [tree / "playbooks" / "ledger_deploy.yml"]
    assert manifest.gates.testinfra[0].tests == tree / "tests/gates/test_ledger_release.py"
    artifact = manifest.items_of(ArtifactItem)[0]
    assert artifact.source == tree / "build/artifacts/ledger-1.1.0.tar.gz"
    assert artifact.source.is_absolute()
    assert artifact.current_link == "/srv/ledger/current"
    assert artifact.release_dir("1.1.0") == "/srv/ledger/releases/1.1.0"
    assert manifest.source_path == path.absolute()
    assert manifest.source_sha256 == hashlib.sha256(BASE.encode()).hexdigest()


def test_defaults(tree: Path) -> None:
    manifest = load_manifest(write(tree, BASE))
    assert manifest.playbooks.rollback == []
    assert manifest.gates.locust is None
    assert manifest.window is None
    assert manifest.strategy.max_fail_percentage == 0
    assert manifest.inventory is None


def test_inventory_resolves_without_having_to_exist(tree: Path) -> None:
    manifest = load_manifest(write(tree, BASE + "inventory: ../../inventories/lab.yml\n"))
    assert manifest.inventory == tree / "inventories" / "lab.yml"


def test_discriminated_union_picks_the_kind(tree: Path) -> None:
    manifest = load_manifest(write(tree, BASE))
    assert [type(item) for item in manifest.items] == [ArtifactItem, FileItem, PackageItem]
    package = manifest.item("requests")
    assert isinstance(package, PackageItem)
    assert (package.version, package.manager, package.venv) == ("2.31.0", "pip", "/srv/ledger/venv")


@pytest.mark.parametrize("version", ["1.1.0", "1.2.0", "2.0.0", "2.0.1"])
def test_example_manifests_load(tree: Path, version: str) -> None:
    name = f"ledger-{version}.yml"
    shutil.copy(EXAMPLES / name, tree / "examples" / "releases" / name)
    manifest = load_manifest(tree / "examples" / "releases" / name)
    assert (manifest.release, manifest.version) == (f"ledger-{version}", version)
    assert manifest.extravars == {"ledger_version": version}
    assert manifest.targets == "app_primary"
    assert {type(i) for i in manifest.items} == {ArtifactItem, FileItem, ServiceItem, DataItem}
    assert manifest.gates.locust is not None
    assert manifest.gates.testinfra[0].env == {"EXPECTED_VERSION": version}
    irreversible = [item.name for item in manifest.irreversible_items()]
    assert irreversible == (["ledger-db"] if version == "1.2.0" else [])


def test_slow_example_has_strict_load_thresholds(tree: Path) -> None:
    shutil.copy(EXAMPLES / "ledger-2.0.0.yml", tree / "examples" / "releases")
    locust = load_manifest(tree / "examples" / "releases" / "ledger-2.0.0.yml").gates.locust
    assert locust is not None
    assert (locust.thresholds.p95_ms, locust.thresholds.p95_vs_baseline) == (150, 1.5)


def test_irreversible_data_item_with_conversion(tree: Path) -> None:
    data = (
        "  - kind: data\n    name: ledger-db\n    path: /var/lib/ledger/ledger.db\n"
        "    conversion: ../../playbooks/ledger_migrate.yml\n    reversible: false\n"
    )
    text = BASE.replace("playbooks:\n", data + "playbooks:\n", 1)
    (item,) = load_manifest(write(tree, text)).irreversible_items()
    assert item.conversion == tree / "playbooks" / "ledger_migrate.yml"
    assert item.engine == "sqlite"


def test_model_without_context_keeps_paths_as_written() -> None:
    data = {
        "release": "r1", "version": "1", "service": "s", "environment": "e", "targets": "all",
        "items": [{"kind": "file", "name": "f", "path": "/etc/f"}],
        "playbooks": {"apply": "site.yml"}, "owners": {"release_manager": "Ada"},
    }
    manifest = Manifest.model_validate(data)
    assert manifest.playbooks.apply == [Path("site.yml")]
    assert manifest.source_path is None


# --- errors ----------------------------------------------------------------------------


def test_errors_are_input_errors_with_exit_code_2(tree: Path) -> None:
    error = errors_of(write(tree, with_line(22, "  canry: 1")))
    assert isinstance(error, InputError)
    assert error.exit_code == ExitCode.INVALID_INPUT


def test_unknown_key_names_file_line_field_and_suggests(tree: Path) -> None:
    error = errors_of(write(tree, with_line(22, "  canry: 1")))
    assert error.message == (
        f"{tree}/examples/releases/release.yml:22: strategy.canry: "
        "unknown field (did you mean 'canary'?)"
    )


def test_unknown_key_inside_an_item_suggests_that_kinds_fields(tree: Path) -> None:
    error = errors_of(write(tree, with_line(17, "    manger: pip")))
    assert "release.yml:17: items[2].manger: unknown field (did you mean 'manager'?)" in (
        error.message
    )


def test_wrong_type_names_line_and_field(tree: Path) -> None:
    error = errors_of(write(tree, with_line(16, "    version: 2.31")))
    assert "release.yml:16: items[2].version: Input should be a valid string" in error.message
    assert "quote it" in error.message


def test_missing_field_is_reported_at_its_parent(tree: Path) -> None:
    error = errors_of(write(tree, with_line(28, "  approvers: [Board]")))
    assert error.message.endswith("release.yml:27: owners.release_manager: required field missing")


def test_missing_top_level_field_is_reported_at_line_1(tree: Path) -> None:
    error = errors_of(write(tree, with_line(5, "# no targets")))
    assert error.message.endswith("release.yml:1: targets: required field missing")


def test_missing_referenced_file(tree: Path) -> None:
    error = errors_of(write(tree, with_line(20, "  apply: [../../playbooks/nope.yml]")))
    expected = tree / "playbooks" / "nope.yml"
    assert error.message.endswith(
        f"release.yml:20: playbooks.apply[0]: file not found: {expected}"
    )


def test_missing_artifact_and_test_file_are_both_reported(tree: Path) -> None:
    (tree / "build/artifacts/ledger-1.1.0.tar.gz").unlink()
    (tree / "tests/gates/test_ledger_release.py").unlink()
    error = errors_of(write(tree, BASE))
    assert [(p.line, p.field) for p in error.problems] == [
        (10, "items[0].source"), (26, "gates.testinfra[0].tests"),
    ]
    assert error.message.splitlines()[0].endswith("release.yml: 2 problems")


def test_all_errors_in_one_message_sorted_by_line(tree: Path) -> None:
    text = with_line(16, "    version: 2.31", with_line(3, "service: 7"))
    text = with_line(22, "  canry: 1", text)
    error = errors_of(write(tree, text))
    assert [p.line for p in error.problems] == [3, 16, 22]
    assert len(error.message.splitlines()) == 4


def test_many_errors_are_capped_in_the_message(tree: Path) -> None:
    extra = "".join(f"bogus{i}: 1\n" for i in range(15))
    error = errors_of(write(tree, BASE + extra))
    assert len(error.problems) == 15
    assert error.message.splitlines()[-1] == "... and 5 more"


def test_bad_yaml_syntax_gives_the_line(tree: Path) -> None:
    error = errors_of(write(tree, with_line(23, "  batch_size: 2: 3")))
    assert error.message.startswith(f"{tree}/examples/releases/release.yml:23: YAML syntax error")


def test_top_level_must_be_a_mapping(tree: Path) -> None:
    error = errors_of(write(tree, "- release: x\n"))
    assert "release.yml:1: the top level must be a mapping of fields, found a list" in (
        error.message
    )


def test_empty_file(tree: Path) -> None:
    assert "found an empty file" in errors_of(write(tree, "")).message


def test_missing_manifest_file(tmp_path: Path) -> None:
    assert errors_of(tmp_path / "nope.yml").message == f"{tmp_path}/nope.yml: file not found"


def test_unknown_kind_suggests_the_closest(tree: Path) -> None:
    error = errors_of(write(tree, with_line(14, "  - kind: pakage")))
    (problem,) = error.problems
    assert (problem.line, problem.field) == (14, "items[2].kind")
    assert "unknown kind 'pakage'" in problem.message
    assert "(did you mean 'package'?)" in problem.message


def test_pip_package_needs_a_venv(tree: Path) -> None:
    error = errors_of(write(tree, with_line(18, "    # no venv")))
    assert "release.yml:14: items[2]: a pip package needs 'venv'" in error.message


def test_duplicate_item_names(tree: Path) -> None:
    error = errors_of(write(tree, with_line(12, "    name: ledger-code")))
    assert "release.yml:6: items: duplicate item name 'ledger-code' (items[0] and items[1])" in (
        error.message
    )


def test_duplicate_yaml_key(tree: Path) -> None:
    error = errors_of(write(tree, with_line(23, "  canary: 2")))
    assert "release.yml:23: strategy.canary: duplicate key (first at line 22)" in error.message


def test_remote_paths_must_be_absolute(tree: Path) -> None:
    error = errors_of(write(tree, with_line(13, "    path: etc/ledger.conf")))
    assert "release.yml:13: items[1].path: must be an absolute path" in error.message


def test_bad_batch_size(tree: Path) -> None:
    error = errors_of(write(tree, with_line(23, "  batch_size: 150%")))
    assert "release.yml:23: strategy.batch_size: expected a host count >= 1 or a percentage" in (
        error.message
    )


def test_change_window_must_end_after_it_starts(tree: Path) -> None:
    window = "window:\n  start: 2026-12-02T02:00:00+00:00\n  end: 2026-12-01T22:00:00+00:00\n"
    error = errors_of(write(tree, BASE + window))
    assert "release.yml:29: window: the window must end after it starts" in error.message


# --- strategy, window, schema, reuse ---------------------------------------------------


def test_batches_canary_then_fixed_chunks() -> None:
    hosts = [f"h{i}" for i in range(1, 6)]
    assert Strategy(canary=1, batch_size=2).batches(hosts) == [
        ["h1"], ["h2", "h3"], ["h4", "h5"],
    ]
    assert Strategy(canary=2, batch_size=5).batches(hosts) == [["h1", "h2"], ["h3", "h4", "h5"]]


def test_batches_with_a_percentage_and_edge_cases() -> None:
    hosts = [f"h{i}" for i in range(1, 8)]
    assert Strategy(canary=1, batch_size="50%").batches(hosts) == [
        ["h1"], ["h2", "h3", "h4", "h5"], ["h6", "h7"],
    ]
    assert Strategy(canary=3).batches(["a", "b"]) == [["a", "b"]]
    assert Strategy().batches([]) == []
    assert Strategy(batch_size=3).batches(["a", "b", "a", "c"]) == [["a"], ["b", "c"]]


def test_a_failure_tolerance_is_refused_as_it_would_leave_a_mixed_fleet() -> None:
    assert Strategy().max_fail_percentage == 0
    with pytest.raises(ValidationError, match="less than or equal to 0"):
        Strategy(max_fail_percentage=25)


def test_change_window_contains() -> None:
    window = ChangeWindow(start=datetime(2026, 12, 1, 22, tzinfo=UTC),
                          end=datetime(2026, 12, 2, 2, tzinfo=UTC))
    assert window.contains(datetime(2026, 12, 1, 23, tzinfo=UTC))
    assert not window.contains(datetime(2026, 12, 2, 2, tzinfo=UTC))


def test_json_schema_has_every_item_kind() -> None:
    schema = manifest_json_schema()
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert schema["title"] == "relctl release manifest"
    mapping = schema["properties"]["items"]["items"]["discriminator"]["mapping"]
    assert set(mapping) == {"file", "directory", "artifact", "package", "service", "data"}
    assert schema["additionalProperties"] is False
    assert all(d.get("additionalProperties") is False
               for d in schema["$defs"].values() if d.get("type") == "object")


class _Plan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    runbook: ExistingFile


def test_load_yaml_model_is_reusable_for_other_configs(tmp_path: Path) -> None:
    (tmp_path / "runbook.md").write_text("# steps\n")
    (tmp_path / "plan.yml").write_text("name: dr\nrunbook: runbook.md\n")
    plan = load_yaml_model(tmp_path / "plan.yml", _Plan)
    assert plan.runbook == tmp_path / "runbook.md"
    (tmp_path / "bad.yml").write_text("name: dr\nrunbok: runbook.md\n")
    with pytest.raises(ConfigError) as caught:
        load_yaml_model(tmp_path / "bad.yml", _Plan)
    messages = [str(p) for p in caught.value.problems]
    assert messages == [
        f"{tmp_path}/bad.yml:1: runbook: required field missing",
        f"{tmp_path}/bad.yml:2: runbok: unknown field (did you mean 'runbook'?)",
    ]


@pytest.mark.parametrize("version", ["1.1.0", "1.2.0", "2.0.0"])
def test_postgresql_examples_snapshot_the_database_once(tree: Path, version: str) -> None:
    shutil.copytree(EXAMPLES / "postgresql", tree / "examples" / "releases" / "postgresql")
    manifest = load_manifest(tree / "examples" / "releases" / "postgresql" /
                             f"ledger-{version}.yml")
    database = manifest.item("ledger-db")
    assert isinstance(database, DataItem) and database.engine == "postgresql"
    assert database.location == "postgresql://postgres@127.0.0.11:5432/ledger"
    assert manifest.irreversible_items() == []  # the dump brings schema 1 back
    plan = plan_release(manifest, ["primary-1", "primary-2"])
    assert plan.server_data == [database]
    assert "ledger-db" not in {item["name"] for item in plan.agent_items}
    assert manifest.extravars["ledger_database"] == database.location
    rollback = {row.item: row for row in rollback_items(manifest, "STORE", {})}
    assert "pg_dump restored in one transaction" in rollback["ledger-db"].restore
    assert rollback["ledger-db"].snapshot == f"STORE/objects (a dump of {database.location})"


def test_an_active_standby_analysis_takes_all_the_traffic_and_says_so(tree: Path) -> None:
    # The analysis goes under strategy (BASE line 23, batch_size): its steps on line 27.
    standby = BASE.replace("  batch_size: 2\n", "  batch_size: 2\n  analysis:\n"
                           "    locustfile: ../../build/artifacts/ledger-1.1.0.tar.gz\n"
                           "    compare: window-before\n"
                           "    on_inconclusive: {signoff: canary-review, wait: 30m}\n")
    analysis = load_manifest(write(tree, standby)).strategy.analysis
    assert analysis is not None
    assert [(s.weight, s.duration_s) for s in analysis.steps] == [(100, 20)]
    assert analysis.on_inconclusive != "fail" and analysis.on_inconclusive.wait == 1800
    half = standby.replace("    compare: window-before\n", "    compare: window-before\n"
                           "    steps: [{weight: 50, duration_s: 10}]\n")
    error = errors_of(write(tree, half, "half.yml"))
    assert "half.yml:27: strategy.analysis.steps: steps[0].weight" in error.message
    assert "with compare: window-before the canary takes all the traffic" in error.message
    same = standby.replace("compare: window-before", "compare: same-time").replace(
        "    on_inconclusive", "    steps: [{weight: 100, duration_s: 10}]\n    on_inconclusive")
    assert "use compare: window-before" in errors_of(write(tree, same, "same.yml")).message


def test_the_mitogen_strategy_is_an_opt_in_that_says_what_it_needs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """playbooks.strategy: linear by default; mitogen runs ansible-playbook with Mitogen's
    strategy plugins, or says how to install them when they are missing."""
    run = PlaybookRun(tmp_path / "p.yml", tmp_path / "inv", tmp_path / "ansible.cfg", tmp_path)
    assert "ANSIBLE_STRATEGY" not in _environment(run)
    with pytest.raises(ValueError, match="strategy"):
        Playbooks(apply=[__file__], strategy="free")
    assert Playbooks(apply=[__file__]).strategy == "linear"
    monkeypatch.setattr(ansible_adapter.importlib.util, "find_spec", lambda _name: None)
    with pytest.raises(PrerequisiteError, match="Mitogen") as missing:
        _environment(PlaybookRun(run.playbook, run.inventory, run.ansible_cfg, tmp_path,
                                 strategy="mitogen"))
    assert "pipx inject relctl mitogen" in (missing.value.hint or "")
