"""The pages of ``relctl serve``: the team view, a release, a service's status page
(rendered here, beside the data they show, like the CLI's tables).

Every value from the journal or a manifest is escaped (``html.escape``, or the report
document's escaping); the only script is the live-update one below, inline, with no
value in it. A live page holds its changing part in ``<main id="live">``: on each
server-sent ``change`` event the script fetches the same address with ``X-Fragment: 1``
and swaps that part in, so the page updates without a reload.
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from controller.reports.document import CSS, html_blocks
from controller.reports.release_report import ReleaseFacts, document
from controller.serve.board import Grid, InFlight, StatusView, TeamView, Waiting

BOARD_CSS = CSS + """
.grid td.ok{background:#cfe8c9}.grid td.running{background:#fde9b5}
.grid td.failed{background:#f6c4c0}.grid td.skipped{background:#e4e4e4}
.muted{color:#666}.state{font-weight:bold}nav a{margin-right:1em}
form.signoff{margin:.5em 0;padding:.5em;border:1px solid #bbb;background:#fafafa}
form.signoff input,form.signoff select{margin-right:.5em}
pre.diff{background:#f4f4f4;padding:.5em;overflow:auto;max-height:30em}
.status{font-size:1.4em;padding:.6em;border-radius:.3em}
.status.normal{background:#cfe8c9}.status.release,.status.drill{background:#fde9b5}
.status.failover,.status.degraded{background:#f6c4c0}"""

LIVE_SCRIPT = """<script>
(function () {
  var live = document.getElementById("live"), busy = false, again = false;
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(location.pathname + location.search, {headers: {"X-Fragment": "1"},
                                                 credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (text) {
        if (text !== null) { live.innerHTML = text; live.dataset.updated = Date.now(); }
      })
      .finally(function () { busy = false; if (again) { again = false; refresh(); } });
  }
  var source = new EventSource("/events");
  // what changed between this page's rendering and its stream (or while the stream was
  // away) comes with no event of its own: read the page again each time it opens
  source.addEventListener("open", refresh);
  source.addEventListener("change", refresh);
})();
</script>"""


def page(title: str, live: str, *, nav: bool = True) -> str:
    """A whole page: the navigation (not on a status page), then ``live`` (HTML) in
    ``<main id="live">``, and the script that keeps it up to date."""
    links = '<nav><a href="/">team view</a></nav>\n' if nav else ""
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{html.escape(title)}</title>\n<style>{BOARD_CSS}</style>\n</head>\n"
            f'<body>\n{links}<main id="live">\n{live}\n</main>\n{LIVE_SCRIPT}\n'
            "</body>\n</html>\n")


def _e(value: object) -> str:
    return html.escape(str(value))


def _when(moment: datetime | None) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def _span(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    whole = int(seconds)
    return f"{whole // 60} min {whole % 60:02d} s" if whole >= 60 else f"{seconds:.0f} s"


def _release_link(name: str, record_id: int | None = None) -> str:
    target = f"/releases/{quote(name, safe='')}" + (f"?id={record_id}" if record_id else "")
    return f'<a href="{_e(target)}">{_e(name)}</a>'


def _table(headers: list[str], rows: list[list[str]], css: str = "") -> str:
    """A table of cells that are already HTML (escaped by the caller)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "\n".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table{f" class={css!r}" if css else ""}>\n<tr>{head}</tr>\n{body}\n</table>'


# --- the team view ------------------------------------------------------------------------


def team_html(view: TeamView, *, can_sign: bool) -> str:
    """The team view's live part."""
    parts = [f'<h1>relctl: releases and continuity</h1><p class="muted">read '
             f"{_when(view.read_at)}</p>", "<h2>Environments</h2>"]
    parts.append(_table(
        ["Service", "Environment", "Last good release", "Latest", "Backup site"],
        [[_e(s.service), _e(s.environment),
          _release_link(s.last_good.name, s.last_good.id) + f" ({_e(s.last_good.version)})"
          if s.last_good else "none",
          (_release_link(s.latest.name, s.latest.id) + f": {_e(s.latest.state)}")
          if s.latest else "-",
          _e(", ".join(f"{h} {v}" for h, v in sorted(s.backup_versions.items()))
             or "not followed")]
         for s in view.scopes]) if view.scopes else "<p>no release recorded yet</p>")
    parts.append("<h2>Releases in flight</h2>")
    parts += [_in_flight(f) for f in view.in_flight] or ["<p>none</p>"]
    parts.append("<h2>Locks</h2>")
    parts.append(_table(["Environment", "Release", "Holder", "Since"],
                        [[_e(lk.environment), _e(lk.release),
                          f"{_e(lk.holder)} ({_e(lk.state)})", _e(_when(lk.since))]
                         for lk in view.locks]) if view.locks else "<p>none held</p>")
    parts.append("<h2>Sign-offs waiting</h2>")
    parts += [_waiting(w, can_sign) for w in view.waiting] or ["<p>none</p>"]
    parts.append("<h2>Drills</h2>")
    parts.append(_table(["#", "Service", "Environment", "State", "Started", "RTO / RPO",
                         "Timeline"],
                        [_drill_row(d.id, d.service, d.environment, d.state, d.started,
                                    d.detail) for d in view.drills])
                 if view.drills else "<p>none yet</p>")
    parts.append("<h2>Replication</h2>")
    parts.append(_table(["Service", "Environment", "Plan", "Last replica", "Age"],
                        [[_e(r["service"]), _e(r["environment"]), _e(r["plan"] or "-"),
                          f"#{r['last_replica']}" if r["last_replica"] else "none",
                          _span(r["age_s"])] for r in view.replication]))
    parts.append("<h2>History</h2>" + _filters(view))
    parts.append(_table(["#", "Release", "Version", "Service", "Environment", "State",
                         "Started", "Exit"],
                        [[str(r.id), _release_link(r.name, r.id), _e(r.version), _e(r.service),
                          _e(r.environment), _e(r.state + (" (bad)" if r.bad else "")),
                          _e(_when(r.started)), _e(r.exit_code)] for r in view.history]))
    return "\n".join(parts)


def _in_flight(flight: InFlight) -> str:
    r = flight.record
    usual = f" (the last good release took {_span(flight.usual_s)})" if flight.usual_s else ""
    gates = "; ".join(f"{g['kind']} {g['verdict']}: {g['figures']}" for g in flight.gates)
    return (f'<section class="flight" data-release="{_e(r.name)}">'
            f"<h3>{_release_link(r.name, r.id)}: {_e(r.service)} {_e(r.version)} into "
            f'{_e(r.environment)}, <span class="state">{_e(r.state)}</span></h3>'
            f"<p>phase now: {_e(flight.current or '-')}; running for "
            f"{_span(flight.elapsed_s)}{_e(usual)}; rollback "
            f"{_e(flight.rollback_ready)}; by {_e(r.operator)}</p>"
            + (f"<p>gates: {_e(gates)}</p>" if gates else "") + grid_html(flight.grid)
            + (f"<figure>{flight.chart}</figure>" if flight.chart else "")  # SVG, escaped
            + "</section>")


def grid_html(grid: Grid) -> str:
    """The host-by-phase grid, each cell coloured by its state."""
    head = "".join(f"<th>{_e(n)}</th>" for n in ["host", "state", *grid.phases])
    rows = []
    for host, state, cells in grid.rows:
        tds = "".join(f'<td class="{_e(c)}">{_e(c)}</td>' for c in cells)
        rows.append(f'<tr data-host="{_e(host)}"><td>{_e(host)}</td>'
                    f'<td class="hoststate">{_e(state)}</td>{tds}</tr>')
    return f'<table class="grid">\n<tr>{head}</tr>\n' + "\n".join(rows) + "\n</table>"


def _waiting(wait: Waiting, can_sign: bool) -> str:
    req = wait.request
    parts = [f'<section class="waiting" data-release="{_e(req.release)}">'
             f"<h3>{_e(req.release)} into {_e(req.manifest.environment)}</h3>"
             f"<p>apply asked at {_e(_when(req.time))} for <code>{_e(req.manifest.path)}"
             f"</code> (sha256 {_e(req.manifest.sha256[:12])})</p>"]
    if wait.problem:
        return parts[0] + f"<p>{_e(wait.problem)}</p></section>"
    parts.append(f"<p>required: {_e(', '.join(wait.required))}; missing: "
                 f"<b>{_e(', '.join(wait.missing))}</b>; signed: "
                 f"{_e(', '.join(wait.signed) or 'nobody yet')}</p>")
    if wait.gates:
        parts.append(f"<p>gates: {_e('; '.join(wait.gates))}</p>")
    if wait.risks:
        parts.append("<p>risks:</p><ul>" + "".join(f"<li>{_e(r)}</li>" for r in wait.risks)
                     + "</ul>")
    if wait.diff_against:
        parts.append(f"<p>difference from {_e(wait.diff_against)}:</p>"
                     f'<pre class="diff">{_e(chr(10).join(wait.diff) or "(none)")}</pre>')
    if can_sign:
        roles = "".join(f'<option value="{_e(r)}">{_e(r)}</option>' for r in wait.missing)
        parts.append(
            f'<form class="signoff" method="post" action="/signoff">'
            f'<input type="hidden" name="release" value="{_e(req.release)}">'
            f'<input type="hidden" name="sha256" value="{_e(req.manifest.sha256)}">'
            f'<label>role <select name="role">{roles}</select></label>'
            f'<label>name <input name="by" required maxlength="100"></label>'
            f'<label>note <input name="note" maxlength="500"></label>'
            '<label>token <input name="token" type="password" '
            'autocomplete="current-password" required></label>'
            f'<button type="submit">sign off</button></form>')
    else:
        parts.append('<p class="muted">to sign off here, start relctl serve with '
                     "--token-file; or run: relctl signoff " + _e(req.release)
                     + " --role ROLE --by NAME</p>")
    return "".join(parts) + "</section>"


def _drill_row(record_id: int, service: str, environment: str, state: str,
               started: datetime, detail: dict[str, object]) -> list[str]:
    found = detail.get("report")
    report: dict[str, Any] = found if isinstance(found, dict) else {}
    measures = report.get("measures") if isinstance(report.get("measures"), dict) else {}
    listed = report.get("targets")
    targets: list[Any] = listed if isinstance(listed, list) else []
    met = [f"{t.get('function')}: RTO {t.get('rto_s')} s of {t.get('rto_target_s')}, RPO "
           f"{t.get('rpo_s')} s of {t.get('rpo_target_s')}" for t in targets
           if isinstance(t, dict)]
    said = "; ".join(met) or (f"RTO {measures.get('rto_s')} s" if measures else "-")
    events = report.get("timeline") or detail.get("timeline")  # ended, or as it happens
    timeline: list[Any] = events if isinstance(events, list) else []
    if not timeline:
        timeline = [(0, f"faults {detail.get('faults_state', '?')}")]
    lines = "<br>".join(f"{_e(e[0])} s {_e(e[1])}" for e in timeline
                        if isinstance(e, list | tuple) and len(e) == 2)
    return [str(record_id), _e(service), _e(environment), _e(state), _e(_when(started)),
            _e(said), f'<details><summary>{len(timeline)} events</summary>{lines}</details>']


def _filters(view: TeamView) -> str:
    f = view.filters
    fields = "".join(
        f'<label>{name} <input name="{name}" value="{_e(value or "")}"></label> '
        for name, value in (("service", f.service), ("environment", f.environment),
                            ("state", f.state)))
    return f'<form method="get" action="/">{fields}<button type="submit">filter</button></form>'


def history_query(service: str | None, environment: str | None, state: str | None) -> str:
    """The query string of a filtered team view."""
    return urlencode({k: v for k, v in (("service", service), ("environment", environment),
                                         ("state", state)) if v})


# --- one release --------------------------------------------------------------------------


def release_html(facts: ReleaseFacts, grid: Grid) -> str:
    """One release's live part: the grid, then what ``relctl report`` shows."""
    return (f"<h2>Hosts by phase</h2>{grid_html(grid)}\n" + html_blocks(document(facts)))


# --- the status page ----------------------------------------------------------------------


def status_html(view: StatusView) -> str:
    """A service's status page for its users: a sentence, planned windows, incidents."""
    windows = "".join(f"<li>{_e(_when(w.start))} to {_e(_when(w.end))}"
                      f"{' (now)' if w.now else ''}</li>" for w in view.windows)
    incidents = "".join(f"<li>{_e(i['kind'])}: {_e(i['started'][:16].replace('T', ' '))} "
                        f"UTC, {_e(i['outcome'])}</li>" for i in view.incidents)
    return (f"<h1>{_e(view.service)}: service status</h1>"
            f'<p class="status {_e(view.state)}">{_e(view.headline)}</p>'
            f"<h2>Planned maintenance</h2>"
            + (f"<ul>{windows}</ul>" if windows else "<p>none planned</p>")
            + "<h2>Recent events</h2>"
            + (f"<ul>{incidents}</ul>" if incidents else "<p>none</p>")
            + f'<p class="muted">updated {_e(_when(view.read_at))}</p>')
