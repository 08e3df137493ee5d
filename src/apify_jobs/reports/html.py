"""The HTML report: one self-contained page (no network, no scripts, no fonts to fetch) to look at after a
run — the totals, a table of the jobs, and a timeline: one bar per job on a time axis, coloured by status,
with the time it waited before it started, and above it how many jobs ran at once."""

from __future__ import annotations

import html
import os
from collections.abc import Callable
from datetime import datetime
from urllib.parse import quote

from apify_jobs.record import JobResult
from apify_jobs.reports.report import Report

COLOURS = {"succeeded": "#2e7d32", "failed": "#c62828", "skipped": "#f9a825", "cancelled": "#9e9e9e"}
WIDTH, ROW, LEFT = 900, 22, 220


Span = tuple[JobResult, float | None, float | None]


def _time(value: str | None) -> float | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


Text = Callable[[object], str]


def _inert(redact: Callable[[str], str]) -> Text:
    """Any field, masked first, then as inert HTML text (names, statuses and messages can come from outside)."""
    return lambda value: html.escape(redact(str(value)), quote=True)


def render(report: Report, folder: str = ".") -> str:
    """The page; output links are relative to ``folder`` (where the page is written)."""
    _text = _inert(report.of.redactor)
    jobs = report.records
    spans = [(record, _time(record.started_at), _time(record.finished_at)) for record in jobs]
    known = [t for _, start, end in spans for t in (start, end) if t is not None]
    origin = _time(report.of.started_at) or (min(known) if known else 0.0)
    finish = max([*known, _time(report.of.finished_at) or origin, origin + 0.001])
    scale = (WIDTH - LEFT - 20) / (finish - origin)
    totals = report.totals
    cost = f", cost ${totals.usage_usd:.4f}" if totals.usage_usd is not None else ""
    counts = ", ".join(f"{totals.counts.get(s, 0)} {s}" for s in COLOURS if totals.counts.get(s))
    return "\n".join([
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>apify-jobs report, run {_text(report.of.run)}</title>",
        "<style>body{font:14px system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse}"
        "td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}"
        ".status{font-weight:600}svg text{font:12px system-ui,sans-serif}</style></head><body>",
        "<h1>apify-jobs</h1>",
        f'<p id="summary">{totals.jobs} jobs: {_text(counts or "none")}; '
        f"{finish - origin:.1f} s in all{_text(cost)}</p>",
        "<h2>Timeline</h2>", _timeline(spans, origin, finish, scale, _text),
        "<h2>Jobs</h2>", _table(jobs, folder, _text), "</body></html>"])


def _timeline(spans: list[Span], origin: float, finish: float, scale: float, _text: Text) -> str:
    height = 60 + ROW * len(spans) + 30
    parts = [f'<svg id="timeline" width="{WIDTH}" height="{height}" xmlns="http://www.w3.org/2000/svg" role="img">']
    parts.append(_concurrency(spans, origin, scale))
    for index, (record, start, end) in enumerate(spans):
        y = 60 + index * ROW
        name = _text(record.name)
        status = record.status.value
        parts.append(f'<text x="4" y="{y + 14}">{name}</text>')
        begin = start if start is not None else (end if end is not None else origin)
        stop = end if end is not None else begin
        if begin > origin:  # waiting: for a slot or for its needs
            parts.append(f'<rect class="wait" x="{LEFT}" y="{y + 7}" width="{(begin - origin) * scale:.1f}" height="4" '
                         'fill="#e0e0e0"><title>waited</title></rect>')
        title = (f"{record.name}: {status}, {record.attempts} attempt(s), {(stop - begin):.2f} s"
                 + (f", run {record.run.run_id}" if record.run else ""))
        parts.append(f'<rect class="job-bar" data-job="{name}" x="{LEFT + (begin - origin) * scale:.1f}" y="{y + 2}" '
                     f'width="{max((stop - begin) * scale, 2):.1f}" height="{ROW - 6}" '
                     f'fill="{COLOURS.get(status, "#607d8b")}"><title>{_text(title)}</title></rect>')
    axis_y = height - 12
    parts.append(f'<text x="{LEFT}" y="{axis_y}">0 s</text>')
    parts.append(f'<text x="{WIDTH - 60}" y="{axis_y}">{finish - origin:.1f} s</text>')
    parts.append("</svg>")
    return "".join(parts)


def _concurrency(spans: list[Span], origin: float, scale: float) -> str:
    """How many jobs ran at once, as a step line above the bars."""
    events = sorted([(start, 1) for _, start, end in spans if start is not None and end is not None]
                    + [(end, -1) for _, start, end in spans if start is not None and end is not None])
    steps: list[tuple[float, int]] = [(float(LEFT), 0)]
    running = 0
    for moment, change in events:
        x = LEFT + (moment - origin) * scale
        steps.append((x, running))
        running += change
        steps.append((x, running))
    most = max(count for _, count in steps)
    if not most:
        return '<text x="4" y="30">at once: 0</text>'
    line = " ".join(f"{x:.1f},{50 - count / most * 40:.1f}" for x, count in steps)
    return (f'<text x="4" y="30">at once (most {most})</text>'
            f'<polyline id="concurrency" points="{line}" fill="none" stroke="#1565c0" stroke-width="1.5"/>')


def _link(path: str) -> str:
    """A relative link that stays one: percent-encoded, and never read as a scheme (`javascript:x.json`)."""
    return "./" + quote(path) if not path.startswith(("/", ".")) else quote(path)


def _table(jobs: list[JobResult], folder: str, _text: Text) -> str:
    rows = ["<table id=\"jobs\"><tr><th>job</th><th>status</th><th>attempts</th><th>time</th><th>output / error</th>"
            "<th>run</th></tr>"]
    for record in jobs:
        status = record.status.value
        if record.succeeded and record.output is not None and record.output.path:
            shown = os.path.relpath(record.output.path, folder)
            inside = not shown.startswith(os.pardir) and not os.path.isabs(shown)  # a link only below the page
            detail = f'<a href="{_text(_link(shown))}">{_text(shown)}</a>' if inside else _text(shown)
        else:
            error = record.error
            detail = _text(f"{error.type}: {error.message}".strip(": ") if error else "")
        # The run's ID, with its console address to copy: the page links only to files below it (no scheme).
        run = (f'<span class="run" title="{_text(record.run.console_url)}">{_text(record.run.run_id)}</span>'
               if record.run else "")
        seconds = f"{record.duration_ms / 1000:.1f} s" if record.duration_ms is not None else "-"
        rows.append(f"<tr><td>{_text(record.name)}</td>"
                    f'<td class="status" style="color:{COLOURS.get(status, "#222")}">{_text(status)}</td>'
                    f"<td>{record.attempts}</td><td>{seconds}</td><td>{detail}</td><td>{run}</td></tr>")
    rows.append("</table>")
    return "".join(rows)
