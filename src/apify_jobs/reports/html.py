"""The HTML report: one self-contained page (no network, no scripts, no fonts to fetch) to look at after a
run — the totals, a table of the jobs, and a timeline: one bar per job on a time axis, coloured by status,
with the time it waited before it started, and above it how many jobs ran at once."""

from __future__ import annotations

import html
import os
from datetime import datetime
from typing import Any

COLOURS = {"succeeded": "#2e7d32", "failed": "#c62828", "skipped": "#f9a825", "cancelled": "#9e9e9e"}
WIDTH, ROW, LEFT = 900, 22, 220


def _time(value: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def render(report: dict[str, Any], folder: str = ".") -> str:
    """The page; output links are relative to ``folder`` (where the page is written)."""
    jobs = report.get("jobs") or []
    spans = [(entry, _time(entry.get("startedAt")), _time(entry.get("finishedAt"))) for entry in jobs]
    known = [t for _, start, end in spans for t in (start, end) if t is not None]
    origin = _time(report.get("startedAt")) or (min(known) if known else 0.0)
    finish = max([*known, _time(report.get("finishedAt")) or origin, origin + 0.001])
    scale = (WIDTH - LEFT - 20) / (finish - origin)
    totals = report.get("totals") or {}
    cost = f", cost ${totals['usageTotalUsd']:.4f}" if "usageTotalUsd" in totals else ""
    counts = ", ".join(f"{totals.get(s, 0)} {s}" for s in COLOURS if totals.get(s))
    return "\n".join([
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>apify-jobs report, run {html.escape(str(report.get('run')))}</title>",
        "<style>body{font:14px system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse}"
        "td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}"
        ".status{font-weight:600}svg text{font:12px system-ui,sans-serif}</style></head><body>",
        "<h1>apify-jobs</h1>",
        f'<p id="summary">{totals.get("jobs", len(jobs))} jobs: {html.escape(counts or "none")}; '
        f"{finish - origin:.1f} s in all{html.escape(cost)}</p>",
        "<h2>Timeline</h2>", _timeline(spans, origin, finish, scale),
        "<h2>Jobs</h2>", _table(jobs, folder), "</body></html>"])


def _timeline(spans: list[tuple[dict[str, Any], float | None, float | None]], origin: float, finish: float,
              scale: float) -> str:
    height = 60 + ROW * len(spans) + 30
    parts = [f'<svg id="timeline" width="{WIDTH}" height="{height}" xmlns="http://www.w3.org/2000/svg" role="img">']
    parts.append(_concurrency(spans, origin, scale))
    for index, (entry, start, end) in enumerate(spans):
        y = 60 + index * ROW
        name = html.escape(str(entry.get("name")))
        status = str(entry.get("status"))
        parts.append(f'<text x="4" y="{y + 14}">{name}</text>')
        begin = start if start is not None else (end if end is not None else origin)
        stop = end if end is not None else begin
        if begin > origin:  # waiting: for a slot or for its needs
            parts.append(f'<rect class="wait" x="{LEFT}" y="{y + 7}" width="{(begin - origin) * scale:.1f}" height="4" '
                         'fill="#e0e0e0"><title>waited</title></rect>')
        title = (f"{name}: {status}, {entry.get('attempts', 0)} attempt(s), {(stop - begin):.2f} s"
                 + (f", run {entry['runId']}" if entry.get("runId") else ""))
        parts.append(f'<rect class="job-bar" data-job="{name}" x="{LEFT + (begin - origin) * scale:.1f}" y="{y + 2}" '
                     f'width="{max((stop - begin) * scale, 2):.1f}" height="{ROW - 6}" '
                     f'fill="{COLOURS.get(status, "#607d8b")}"><title>{html.escape(title)}</title></rect>')
    axis_y = height - 12
    parts.append(f'<text x="{LEFT}" y="{axis_y}">0 s</text>')
    parts.append(f'<text x="{WIDTH - 60}" y="{axis_y}">{finish - origin:.1f} s</text>')
    parts.append("</svg>")
    return "".join(parts)


def _concurrency(spans: list[tuple[dict[str, Any], float | None, float | None]], origin: float, scale: float) -> str:
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


def _table(jobs: list[dict[str, Any]], folder: str) -> str:
    rows = ["<table id=\"jobs\"><tr><th>job</th><th>status</th><th>attempts</th><th>time</th><th>output / error</th>"
            "<th>run</th></tr>"]
    for entry in jobs:
        status = str(entry.get("status"))
        output = entry.get("output") or {}
        if status == "succeeded" and output.get("path"):
            link = os.path.relpath(str(output["path"]), folder)
            detail = f'<a href="{html.escape(link)}">{html.escape(link)}</a>'
        else:
            error = entry.get("error") or {}
            detail = html.escape(f"{error.get('type', '')}: {error.get('message', '')}".strip(": "))
        run = (f'<a href="{html.escape(str(entry["consoleUrl"]))}">{html.escape(str(entry["runId"]))}</a>'
               if entry.get("runId") else "")
        seconds = f"{(entry.get('durationMs') or 0) / 1000:.1f} s" if entry.get("durationMs") is not None else "-"
        rows.append(f"<tr><td>{html.escape(str(entry.get('name')))}</td>"
                    f'<td class="status" style="color:{COLOURS.get(status, "#222")}">{status}</td>'
                    f"<td>{entry.get('attempts', 0)}</td><td>{seconds}</td><td>{detail}</td><td>{run}</td></tr>")
    rows.append("</table>")
    return "".join(rows)
