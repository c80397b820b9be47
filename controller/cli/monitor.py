"""``relctl monitor``: watch a released release through its warranty period."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import click
from rich.markup import escape

from controller.adapters.signals import requests_on_signals
from controller.cli.context import AppContext
from controller.cli.output import JSON_OPTION, console, emit_json
from controller.cli.release import INVENTORY_OPTION, _engine_for, _find
from controller.cli.signoff import DurationType
from controller.engine.monitor import Monitor, MonitorOutcome
from controller.errors import InputError
from controller.models.durations import format_duration
from controller.planning.monitor import Schedule

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@click.command()
@click.argument("release")
@click.option("--for", "period", type=DurationType(), default=None,
              help="Length of the warranty period (72h, 30m); no round starts after it.")
@click.option("--every", type=DurationType(), default="5m", show_default=True,
              help="Interval between the starts of two rounds.")
@click.option("--rounds", type=click.IntRange(1, 1_000_000), default=None,
              help="Stop after this many rounds (alone, or with --for: whichever ends first).")
@click.option("--probe", type=DurationType(), default="5s", show_default=True,
              help="Length of each round's Locust probe, with the manifest's users and "
              "absolute thresholds (0: no probe). The probe sends the manifest's locustfile "
              "traffic to the live service.")
@click.option("--alert-only", is_flag=True,
              help="On a breach, alert (notice + journal) and exit 4; never roll back.")
@INVENTORY_OPTION
@JSON_OPTION
@click.pass_obj
def monitor(app: AppContext, release: str, period: float | None, every: float,
            rounds: int | None, probe: float, alert_only: bool, inventory: Path | None,
            as_json: bool) -> None:
    """Watch RELEASE through its warranty period; roll it back on a breach.

    \b
    Each round re-runs the manifest's testinfra gates on the hosts the release
    changed and, when the manifest has a Locust gate, a short Locust probe through
    the load balancer, judged by the gate's absolute thresholds (there is no
    baseline after a release). Each round is recorded in the journal. A failed
    round is a breach; an inconclusive one only when two come in a row. Rounds
    are skipped (not judged) while the environment is locked by another release;
    the monitor ends quietly when a later release replaces RELEASE.

    \b
    On a breach, a reversible release is rolled back (its snapshot restored on
    every host it changed, verified, marked bad; the rollback notice goes out),
    as `relctl rollback` would: data written since the release is not kept.
    A release past a point of no return (an irreversible data item), or any
    release with --alert-only, is not rolled back: a "breach" notice goes out
    through the manifest's notify channels and a human rolls forward.
    Ctrl-C or SIGTERM stops after the current round, with a summary.

    \b
    Examples:
      relctl monitor billing-2.4.0 --for 72h --every 5m
      relctl monitor billing-2.4.0 --rounds 3 --every 30s --json     # in CI

    \b
    Exit codes: 0 the period (or the rounds) passed without a breach, or a later
    release replaced RELEASE; 1 stopped early (Ctrl-C, SIGTERM); 2 invalid input
    (unknown release, not released, manifest changed since); 3 breach: rolled back;
    4 breach not rolled back (irreversible or --alert-only: roll forward) or the
    rollback failed: a human must act; 5 another monitor of RELEASE runs.
    """
    schedule = _schedule(every, period, rounds, probe)
    record = _find(app.journal().find_release(release), release)
    engine = _engine_for(app, record, inventory, as_json)
    watcher = Monitor(engine, record, schedule, alert_only=alert_only)
    # SIGINT and SIGTERM ask the monitor to stop after its round, instead of killing it.
    with requests_on_signals(lambda _signum: watcher.stop(), STOP_SIGNALS):
        outcome = watcher.run()
    _render(outcome, as_json)


def _schedule(every: float, period: float | None, rounds: int | None,
              probe: float) -> Schedule:
    try:
        return Schedule(every_s=every, for_s=period, rounds=rounds, probe_s=probe)
    except ValueError as error:
        raise InputError(str(error), hint="e.g. relctl monitor RELEASE --for 72h --every 5m"
                         ) from error


def _render(outcome: MonitorOutcome, as_json: bool) -> None:
    if as_json:
        emit_json({"ok": outcome.exit_code == 0, **vars(outcome)})
    else:
        colour = "green" if outcome.exit_code == 0 else "red"
        counts = ", ".join(f"{n} {v}" for v, n in outcome.summary["verdicts"].items() if n)
        figures = outcome.summary.get("figures") or {}
        console.print(f"[bold {colour}]{outcome.state}[/] {outcome.release}: "
                      f"{escape(outcome.message)}")
        rounds = outcome.summary["rounds"]
        console.print(f"monitor #{outcome.monitor_id}: {rounds} round{'s' * (rounds != 1)} "
                      f"({counts or 'none'}) in {format_duration(outcome.seconds)}"
                      + (f"; worst p95 {figures['worst_p95_ms']:.0f} ms, lowest "
                         f"{figures['lowest_rps']:.1f} rps, worst failure ratio "
                         f"{figures['worst_failure_ratio']:.2%}" if figures else "")
                      + f" (exit {outcome.exit_code})")
    sys.exit(outcome.exit_code)
