"""The release pipeline on 10 lab hosts: apply-phase overhead, rollback time, controller RSS.

1. ledger 1.0.0 -> 1.1.0 with plain ``ansible-playbook`` (same playbook, same ansible.cfg);
   hosts reset to 1.0.0; the same change through ``relctl apply`` (one batch). The
   apply phase's seconds come from relctl's journal.
2. ``relctl apply`` of 2.0.1 (broken): seconds from the failed gate to the fleet restored
   and verified (the journal's rollback and restored-check phases).
3. Peak RSS of the relctl controller process (its children, Ansible and pytest, apart).
4. The whole release (baseline load, snapshot, apply, testinfra gate, Locust gate), the
   example's 1.1.0 as one batch over every host, on the same lab in the same run, by:
   - the anchor: relctl as it was when issue 27 was filed (commit ``ANCHOR``, taken from
     this repository's history with ``git archive``, run on the same venv), Ansible's
     linear strategy;
   - relctl now, its defaults (linear);
   - relctl now, ``playbooks.strategy: mitogen``.
   The three alternate, ROUNDS times each, every host reset to 1.0.0 before each run;
   the median wall time of each, and its ratio to the anchor's, are printed.

Run: .venv/bin/python bench/release_pipeline.py [HOSTS] [--rounds N] [--part all|pipeline|whole]
     (defaults: 10 hosts, 2 rounds, all)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
from _lab import (
    LEDGER,
    RELCTL,
    ROOT,
    deploy_ledger,
    ensure_artifacts,
    fresh_state_dir,
    relctl,
    timed,
)

from controller.adapters.ssh import close_control_masters
from controller.paths import tools_path

RELEASES = ROOT / "examples" / "releases"
# relctl when issue 27 (canary analysis; "releases twice as fast") was filed.
ANCHOR = "461f5cc"


def one_batch(version: str, hosts: int) -> str:
    """The example manifest of ``version`` as one batch over ``hosts`` hosts, its paths
    made absolute."""
    text = (RELEASES / f"ledger-{version}.yml").read_text()
    return text.replace("  canary: 1\n", f"  canary: {hosts}\n").replace("../../", f"{ROOT}/")


def bench_manifest(state: Path, version: str, hosts: int) -> Path:
    """The example manifest as one batch over every host, without the Locust gate."""
    text = one_batch(version, hosts)
    text = text.split("  locust:")[0] + "owners:" + text.split("owners:")[1]
    path = state / f"bench-{version}.yml"
    path.write_text(text)
    return path


def ansible_playbook(lab: Path, version: str) -> None:
    env = {**os.environ, "ANSIBLE_CONFIG": str(lab / "ansible.cfg"),
           "PATH": tools_path()}
    command = ["ansible-playbook", str(ROOT / "playbooks" / "ledger_deploy.yml"),
               "-l", "app_primary", "-e", f"ledger_version={version}",
               "-e", f"ledger_artifacts_dir={ROOT / 'build' / 'artifacts'}"]
    subprocess.run(command, env=env, check=True, capture_output=True)


def reset_to_1_0_0(state: Path, lab: Path) -> None:
    deploy_ledger(state, "1.0.0")
    env = {**os.environ, "ANSIBLE_CONFIG": str(lab / "ansible.cfg")}
    subprocess.run([str(Path(sys.executable).parent / "ansible"), "app_primary", "-m",
                    "ansible.builtin.file", "-a", "path=/srv/ledger/releases/1.1.0 state=absent"],
                   env=env, check=True, capture_output=True)


def relctl_apply(state: Path, manifest: Path) -> tuple[dict[str, object], int]:
    """Run ``relctl apply`` and sample the controller's own RSS while it runs."""
    proc = subprocess.Popen([*RELCTL, "--state-dir", str(state), "apply", str(manifest),
                             "--yes", "--json"], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    peak = [0]
    watcher = psutil.Process(proc.pid)

    def sample() -> None:
        while proc.poll() is None:
            try:
                peak[0] = max(peak[0], watcher.memory_info().rss)
            except psutil.NoSuchProcess:
                return
            threading.Event().wait(0.05)

    thread = threading.Thread(target=sample)
    thread.start()
    out, _ = proc.communicate()
    thread.join()
    return json.loads(out), peak[0]


def phase_seconds(state: Path, release: str, prefixes: tuple[str, ...]) -> float:
    shown = relctl(state, "show", release)
    return sum(p["seconds"] or 0 for p in shown["phases"]  # type: ignore[union-attr]
               if str(p["name"]).startswith(prefixes))


def whole_manifest(state: Path, name: str, hosts: int, url: str, mitogen: bool) -> Path:
    """The example's 1.1.0 with both gates, one batch over every host, under a release name
    of its own; the load balancer's URL named (the anchor's relctl does not read the lab)."""
    text = one_batch("1.1.0", hosts)
    text = text.replace("release: ledger-1.1.0\n", f"release: {name}\n")
    text = text.replace("    url: null\n", f"    url: {url}\n")
    if mitogen:
        text = text.replace("  check_mode_supported: false\n",
                            "  check_mode_supported: false\n  strategy: mitogen\n")
    path = state / f"{name}.yml"
    path.write_text(text)
    return path


def anchor_source(state: Path) -> Path:
    """The anchor's ``controller`` package, from git, in a folder of its own."""
    folder = state / f"relctl-{ANCHOR}"
    folder.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ANCHOR, "controller"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    found = subprocess.run([sys.executable, "-c", "import controller; print(controller.__file__)"],
                           cwd=folder, capture_output=True, text=True, check=True).stdout
    if not found.startswith(str(folder)):
        raise SystemExit(f"the anchor's package is not the one imported: {found}")
    return folder


def timed_release(state: Path, manifest: Path, inventory: Path,
                  source: Path | None = None) -> float:
    """Wall seconds of one ``relctl apply`` (the anchor's when ``source``), which must pass."""
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "controller", "--state-dir", str(state),
                             "apply", str(manifest), "--inventory", str(inventory), "--yes",
                             "--json"], capture_output=True, text=True, check=False,
                            cwd=source or ROOT)
    took = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"{manifest.name} failed (exit {result.returncode}):\n"
                         f"{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return took


def whole_release(hosts: int, rounds: int) -> None:
    state = fresh_state_dir("whole-release")
    lab = state / "lab"
    url = str(relctl(state, "lab", "up", "--primary", str(hosts), "--backup", "0",
                     "--base-address", "127.0.51.10", *LEDGER)["url"])
    source = anchor_source(state)
    anchor_state = state / "anchor-state"
    anchor_state.mkdir(mode=0o700)
    kinds = {"anchor": (anchor_state, source, False), "now": (state, None, False),
             "mitogen": (state, None, True)}
    seconds: dict[str, list[float]] = {kind: [] for kind in kinds}
    try:
        for number in range(1, rounds + 1):
            for kind, (where, src, mitogen) in kinds.items():
                reset_to_1_0_0(state, lab)
                close_control_masters(lab / "cp")
                manifest = whole_manifest(state, f"whole-{kind}-{number}", hosts, url, mitogen)
                seconds[kind].append(timed_release(where, manifest, lab / "inventory.yml", src))
                print(f"  round {number} {kind:<8} {seconds[kind][-1]:6.1f} s", flush=True)
    finally:
        close_control_masters(lab / "cp")
        relctl(state, "lab", "down")
    anchor = statistics.median(seconds["anchor"])
    print(f"whole release of ledger 1.1.0 on {hosts} lab hosts, one batch, both gates "
          f"(median of {rounds}, same lab, same run)")
    labels = {"anchor": f"anchor: relctl {ANCHOR}, linear", "now": "relctl now, linear",
              "mitogen": "relctl now, strategy: mitogen"}
    for kind, label in labels.items():
        median = statistics.median(seconds[kind])
        print(f"  {label:<34} {median:7.2f} s  (ratio to the anchor {median / anchor:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("hosts", nargs="?", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--part", choices=("all", "pipeline", "whole"), default="all")
    args = parser.parse_args()
    ensure_artifacts("1.0.0", "1.1.0", "2.0.1")  # what the manifests name
    if args.part in ("all", "pipeline"):
        pipeline(args.hosts)
    if args.part in ("all", "whole"):
        whole_release(args.hosts, args.rounds)


def pipeline(hosts: int) -> None:
    state = fresh_state_dir("pipeline")
    lab = state / "lab"
    relctl(state, "lab", "up", "--primary", str(hosts), "--backup", "0",
           "--base-address", "127.0.50.10", *LEDGER)
    try:
        deploy_ledger(state, "1.0.0")
        plain, _ = timed(ansible_playbook, lab, "1.1.0")
        reset_to_1_0_0(state, lab)
        close_control_masters(lab / "cp")
        outcome, rss_ok = relctl_apply(state, bench_manifest(state, "1.1.0", hosts))
        applied = phase_seconds(state, "ledger-1.1.0", ("apply:",))
        failed, rss_rb = relctl_apply(state, bench_manifest(state, "2.0.1", hosts))
        rollback = phase_seconds(state, "ledger-2.0.1", ("rollback", "gate:testinfra:restored"))
    finally:
        relctl(state, "lab", "down")
    print(f"release pipeline on {hosts} lab hosts")
    print(f"  ansible-playbook deploy 1.0.0 -> 1.1.0     {plain:7.2f} s")
    print(f"  relctl apply phase, same change           {applied:7.2f} s  "
          f"(ratio {applied / plain:.3f}; {outcome['state']})")
    print(f"  relctl whole release (snapshot+gates)     {float(outcome['seconds']):7.2f} s")  # type: ignore[arg-type]
    print(f"  2.0.1: failed gate -> restored + verified {rollback:7.2f} s  ({failed['state']})")
    print(f"  controller peak RSS                       {max(rss_ok, rss_rb) / 2**20:7.1f} MiB")


if __name__ == "__main__":
    main()
