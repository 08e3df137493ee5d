"""What the user sees while jobs run: one line per event (CI, pipes; the live display of live.py builds on
it), and the summary table printed at the end."""

from __future__ import annotations

import sys
import threading
import time
from typing import IO

from apify_jobs.inert import shown
from apify_jobs.record import GoingRun, JobResult, Status
from apify_jobs.redaction import Redactor
from apify_jobs.reports.report import Totals, origin_text, provenance

_ANSI = {Status.SUCCEEDED: "32", Status.FAILED: "1;31", Status.SKIPPED: "33", Status.CANCELLED: "33"}


class Progress:
    """One line per event: a job starting, and each job's end with its status, time and output or error."""

    def __init__(self, total: int, quiet: bool = False, stream: IO[str] | None = None,
                 redact: Redactor | None = None, colour: bool = False):
        self.stream = stream or sys.stderr
        self.colour = colour  # statuses in colour without a terminal (--color always, FORCE_COLOR)
        self.redact = redact or Redactor()
        self.live = False
        self.quiet = quiet
        self.total = total
        self.started = time.monotonic()
        self.running: list[str] = []
        self.done = 0
        self.failed = 0
        self._lock = threading.Lock()

    def _line(self, text: str) -> None:
        self.stream.write(shown(self.redact(text)) + "\n")
        self.stream.flush()

    def start(self, name: str) -> None:
        with self._lock:
            self.running.append(name)
            if not self.live and not self.quiet:
                self._line(f"start  {name}")
            self._redraw()

    def finish(self, result: JobResult) -> None:
        with self._lock:
            if result.name in self.running:
                self.running.remove(result.name)
            self.done += 1
            self.failed += not result.succeeded
            if not self.quiet and (not self.live or not result.succeeded):
                seconds = (result.duration_ms or 0) / 1000
                detail = (result.output.path if result.output and result.succeeded
                          else result.error.message if result.error else (result.note or ""))
                self._status_line(result, f"{result.status.value:<9} {result.name} ({seconds:.1f} s) {detail}".rstrip())
            self._redraw()

    def _status_line(self, result: JobResult, text: str) -> None:
        if not self.colour:
            self._line(text)
            return
        status, rest = text[:9], shown(self.redact(text[9:]))  # the status is ours; the rest made inert first
        self.stream.write(f"\x1b[{_ANSI[result.status]}m{status}\x1b[0m{rest}\n")
        self.stream.flush()

    def tick(self) -> None:
        with self._lock:
            self._redraw()

    def _redraw(self) -> None:
        """Nothing to redraw in a line-per-event log (the live display redraws)."""

    def close(self) -> None:
        """Nothing to clear in a line-per-event log."""


def summary(results: list[JobResult], redact: Redactor, emulated: bool = False) -> str:
    """The table printed at the end: name, status, attempts, duration, output or error. ``emulated``: the runs
    are the built-in emulator's, so their costs are invented and they have no console page: said so."""
    rows = [("JOB", "STATUS", "TRIES", "TIME", "OUTPUT / ERROR")]
    for r in results:
        reused = provenance(r)
        if reused is not None:  # its output came from an earlier run, not from a request of this one
            detail = f"{r.output.path if r.output else ''} ({origin_text(r)})"
        elif r.succeeded and r.output:
            detail = r.output.path
        elif r.error is not None:
            detail = f"{r.error.type}: {r.error.message}".strip(": ") or (r.note or "")
            if r.error.run_id and r.error.run_id not in detail:
                detail += f" (run {r.error.run_id})"
        else:
            detail = r.note or ""
        seconds = f"{(r.duration_ms or 0) / 1000:.1f} s" if r.duration_ms is not None and reused != "resumed" else "-"
        rows.append((r.name, r.status.value, str(r.attempts) if reused is None else "-", seconds, detail))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4] for row in rows]
    batch = Totals.of(results)
    totals = dict(batch.counts)
    totals["failed"] -= batch.failed_expectations
    totals["failed expectations"] = batch.failed_expectations
    lines.append(", ".join(f"{count} {status}" for status, count in totals.items() if count) or "no jobs")
    if any(batch.reused.values()):
        lines.append(f"this run: {batch.this_run}")
    if batch.cost_text is not None:
        lines.append(f"this run's cost: {batch.cost_text}" + (" (emulated: no money was spent)" if emulated else
                     " (preliminary: the platform may still revise it)" if batch.preliminary else ""))
    for r in results:
        if r.status is Status.FAILED and r.run is not None:
            lines.append(f"{r.name}: " + (f"emulated run {r.run.run_id} (no console page)" if emulated
                                          else r.run.console_url))
    return redact("\n".join(line.rstrip() for line in lines))


def interrupted_runs(going: list[GoingRun], abort: bool, redact: Redactor) -> str:
    """After Ctrl-C or SIGTERM: the runs cancelled jobs left going on the platform."""
    if not going:
        return ("apify-jobs: no run is still going on the platform" if abort
                else "apify-jobs: no run of the cancelled jobs is still going on the platform")
    verb = "aborted" if abort else "still going (and billed)"
    lines = [f"apify-jobs: runs {verb}:"]
    for run in going:
        state = "" if run.aborted or not abort else " (could not be aborted)"
        lines.append(f"  {run.job}: {run.run_id} {run.console_url}{state}")
    if not abort:
        lines.append("  (--abort-on-interrupt aborts them)")
    return redact("\n".join(lines))
