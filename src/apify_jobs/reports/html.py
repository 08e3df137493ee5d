"""The HTML report: one self-contained page (no network, no scripts, no fonts to fetch) to look at after a
run — the totals, a timeline of this run, and a table of the jobs.

The timeline shows what this run did: one bar per job it ran (coloured by status, after a grey line for the
time it waited), on a time axis with ticks, under a step line of how many jobs ran at once. Jobs it reused
(resumed from an earlier run's success) have no bar: their times are that run's, and the table says which
run and when. Failures come first. At a thousand jobs the chart keeps its axis and scrolls in a frame of its
own."""

from __future__ import annotations

import html
import math
import os
from collections.abc import Callable
from datetime import datetime
from urllib.parse import quote

from apify_jobs.record import JobResult
from apify_jobs.reports.report import Report, origin_text, provenance

COLOURS = {"succeeded": "#2e7d32", "failed": "#c62828", "skipped": "#f9a825", "cancelled": "#9e9e9e"}
ORDER = {"failed": 0, "cancelled": 1, "skipped": 2, "succeeded": 3}  # failures first
WIDTH, ROW, LEFT, TOP = 960, 20, 240, 64
FRAME = 640  # pixels of timeline rows shown at once; more scroll inside the frame

Span = tuple[JobResult, float | None, float | None]
Text = Callable[[object], str]


def _time(value: str | None) -> float | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _inert(redact: Callable[[str], str]) -> Text:
    """Any field, masked first, then as inert HTML text (names, statuses and messages can come from outside)."""
    return lambda value: html.escape(redact(str(value)), quote=True)


def _plain(value: object) -> str:
    """The tool's own words (statuses, CSS classes): escaped, never masked."""
    return html.escape(str(value), quote=True)


def _ordered(records: list[JobResult]) -> list[JobResult]:
    return sorted(records, key=lambda r: (ORDER.get(r.status.value, 4), _time(r.started_at) or math.inf))


def render(report: Report, folder: str = ".") -> str:
    """The page; output links are relative to ``folder`` (where the page is written)."""
    _text = _inert(report.of.redactor)
    jobs = _ordered(report.records)
    ran = [record for record in jobs if provenance(record) != "resumed"]  # on this run's timeline
    spans = [(record, _time(record.started_at), _time(record.finished_at)) for record in ran]
    known = [t for _, start, end in spans for t in (start, end) if t is not None]
    origin = _time(report.of.started_at) or (min(known) if known else 0.0)
    finish = max([*known, _time(report.of.finished_at) or origin, origin + 0.001])
    totals = report.totals
    cost = f", this run's cost ${totals.usage_usd:.4f}" if totals.usage_usd is not None else ""
    counts = ", ".join(f"{totals.counts.get(s, 0)} {s}" for s in COLOURS if totals.counts.get(s))
    return "\n".join([
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>apify-jobs report, run {_text(report.of.run)}</title>",
        "<style>body{font:14px system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse}"
        "td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}"
        ".status{font-weight:600}svg text{font:12px system-ui,sans-serif}.num{text-align:right}"
        f"#frame{{max-height:{FRAME}px;overflow-y:auto;border:1px solid #eee;width:{WIDTH + 20}px}}"
        ".legend span{display:inline-block;margin-right:16px}.swatch{display:inline-block;width:12px;height:12px;"
        "margin-right:4px;vertical-align:middle}</style></head><body>",
        "<h1>apify-jobs</h1>",
        f'<p id="summary">{totals.jobs} jobs: {_text(counts or "none")} ({_text(totals.this_run)}); '
        f"{finish - origin:.1f} s in all{_text(cost)}</p>",
        "<h2>Timeline of this run</h2>",
        *([_legend(), _header(spans, origin, finish), f'<div id="frame">{_rows(spans, origin, finish, _text)}</div>']
          if spans else ['<p id="nothing-ran">Nothing ran in this run: every job was resumed from an earlier one.</p>']),
        "<h2>Jobs</h2>", _table(jobs, folder, _text), "</body></html>"])


def _scale(origin: float, finish: float) -> float:
    return (WIDTH - LEFT - 20) / (finish - origin)


def _legend() -> str:
    items = [f'<span><i class="swatch" style="background:{colour}"></i>{status}</span>'
             for status, colour in COLOURS.items()]
    items += ['<span><i class="swatch" style="background:#e0e0e0;height:4px"></i>waiting (for a slot or its needs)'
              '</span>', '<span><i class="swatch" style="background:#1565c0;height:2px"></i>jobs at once</span>']
    return f'<p class="legend" id="legend">{"".join(items)}</p>'


def _ticks(origin: float, finish: float) -> list[float]:
    """Round seconds along the axis: about six of them."""
    length = finish - origin
    step = 10 ** math.floor(math.log10(max(length / 6, 1e-3)))
    for factor in (1, 2, 5, 10):
        if length / (step * factor) <= 8:
            step *= factor
            break
    return [n * step for n in range(int(length / step) + 1)]


def _header(spans: list[Span], origin: float, finish: float) -> str:
    """How many ran at once, and the time axis: outside the scrolling frame, so they stay in view."""
    scale = _scale(origin, finish)
    parts = [f'<svg id="axis" width="{WIDTH}" height="{TOP}" xmlns="http://www.w3.org/2000/svg" role="img">',
             _concurrency(spans, origin, scale)]
    for second in _ticks(origin, finish):
        x = LEFT + second * scale
        label = f"{second:g} s" if second < 120 else f"{second / 60:g} min"
        parts.append(f'<line class="tick" x1="{x:.1f}" y1="{TOP - 10}" x2="{x:.1f}" y2="{TOP}" stroke="#999"/>'
                     f'<text x="{x + 2:.1f}" y="{TOP - 12}">{label}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _rows(spans: list[Span], origin: float, finish: float, _text: Text) -> str:
    scale = _scale(origin, finish)
    height = ROW * len(spans) + 4
    parts = [f'<svg id="timeline" width="{WIDTH}" height="{height}" xmlns="http://www.w3.org/2000/svg" role="img">']
    for index, (record, start, end) in enumerate(spans):
        y = index * ROW
        name = _text(record.name)
        status = record.status.value
        parts.append(f'<text x="4" y="{y + 14}">{name}</text>')
        begin = min(max(start if start is not None else (end if end is not None else origin), origin), finish)
        stop = min(max(end if end is not None else begin, begin), finish)
        if begin > origin:
            parts.append(f'<rect class="wait" x="{LEFT}" y="{y + 7}" width="{(begin - origin) * scale:.1f}" height="4" '
                         'fill="#e0e0e0"><title>waited</title></rect>')
        title = f"{record.name}: {status}, {record.attempts} attempt(s), {(stop - begin):.2f} s" + \
            (f", run {record.run.run_id}" if record.run else "") + _cost_and_items(record, ", ")
        parts.append(f'<rect class="job-bar" data-job="{name}" x="{LEFT + (begin - origin) * scale:.1f}" y="{y + 2}" '
                     f'width="{max((stop - begin) * scale, 2):.1f}" height="{ROW - 6}" '
                     f'fill="{COLOURS.get(status, "#607d8b")}"><title>{_text(title)}</title></rect>')
    parts.append("</svg>")
    return "".join(parts)


def _cost_and_items(record: JobResult, before: str) -> str:
    facts = []
    if record.run is not None and record.run.usage_total_usd is not None:
        facts.append(f"${record.run.usage_total_usd:.4f}")
    if record.output is not None and record.output.items is not None:
        facts.append(f"{record.output.items} items")
    return before + ", ".join(facts) if facts else ""


def _concurrency(spans: list[Span], origin: float, scale: float) -> str:
    """How many jobs ran at once, as a step line above the axis."""
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
        return '<text x="4" y="20">at once: 0</text>'
    line = " ".join(f"{x:.1f},{40 - count / most * 34:.1f}" for x, count in steps)
    return (f'<text x="4" y="20">at once (most {most})</text>'
            f'<polyline id="concurrency" points="{line}" fill="none" stroke="#1565c0" stroke-width="1.5"/>')


def _link(path: str) -> str:
    """A relative link that stays one: percent-encoded, and never read as a scheme (`javascript:x.json`)."""
    return "./" + quote(path) if not path.startswith(("/", ".")) else quote(path)


def _table(jobs: list[JobResult], folder: str, _text: Text) -> str:
    rows = ['<table id="jobs"><tr><th>job</th><th>status</th><th>attempts</th><th>time</th><th>items</th>'
            "<th>cost</th><th>output / error</th><th>run</th></tr>"]
    for record in jobs:
        status = record.status.value
        reused = provenance(record)
        if record.succeeded and record.output is not None and record.output.path:
            shown = os.path.relpath(record.output.path, folder)
            inside = not shown.startswith(os.pardir) and not os.path.isabs(shown)  # a link only below the page
            detail = f'<a href="{_text(_link(shown))}">{_text(shown)}</a>' if inside else _text(shown)
        else:
            error = record.error
            detail = _text(f"{error.type}: {error.message}".strip(": ") if error else "")
        if reused:
            detail += f' <em class="origin">({_text(origin_text(record))})</em>'
        # The run's ID, with its console address to copy: the page links only to files below it (no scheme).
        run = (f'<span class="run" title="{_text(record.run.console_url)}">{_text(record.run.run_id)}</span>'
               if record.run else "")
        seconds = f"{record.duration_ms / 1000:.1f} s" if record.duration_ms is not None and not record.resumed else "-"
        items = record.output.items if record.output is not None and record.output.items is not None else ""
        cost = f"${record.run.usage_total_usd:.4f}" if record.run and record.run.usage_total_usd is not None \
            and reused not in ("resumed", "refetched") else ""
        rows.append(f'<tr class="{_plain(reused or "ran")}"><td>{_text(record.name)}</td>'
                    f'<td class="status" style="color:{COLOURS.get(status, "#222")}">{_plain(status)}'
                    f'{_plain(f" ({reused})") if reused else ""}</td>'
                    f"<td>{'-' if reused else record.attempts}</td><td>{seconds}</td><td class=\"num\">{items}</td>"
                    f'<td class="num">{cost}</td><td>{detail}</td><td>{run}</td></tr>')
    rows.append("</table>")
    return "".join(rows)
