"""The progress display on a terminal, drawn with `rich`: a bar (done of total, time left), the running jobs
with how long each has run, and failures printed above it as they happen, statuses in colour. Imported
only when stderr is a terminal: `--version`, `validate` and CI runs never pay for `rich`."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from apify_jobs.inert import shown
from apify_jobs.record import JobResult, Status
from apify_jobs.redaction import Redactor
from apify_jobs.reports.progress import Progress

STYLES = {Status.SUCCEEDED: "green", Status.FAILED: "bold red", Status.SKIPPED: "yellow", Status.CANCELLED: "yellow"}
SHOWN_RUNNING = 8


def console(color: str) -> Console:
    """stderr, coloured unless `--color never` or NO_COLOR (which rich honours, as it does FORCE_COLOR)."""
    return Console(stderr=True, force_terminal=True if color == "always" else None,
                   no_color=True if color == "never" else None, highlight=False)


class LiveProgress(Progress):
    def __init__(self, total: int, screen: Console, redact: Redactor):
        super().__init__(total, quiet=False, stream=screen.file, redact=redact)
        self.live = True
        self._screen = screen
        self._since: dict[str, float] = {}
        self._display = Live(self._render(), console=screen, refresh_per_second=4, transient=True)
        self._display.start()

    def start(self, name: str) -> None:
        self._since[name] = time.monotonic()
        super().start(name)

    def finish(self, result: JobResult) -> None:
        self._since.pop(result.name, None)
        super().finish(result)

    def _line(self, text: str, status: Status | None = None) -> None:
        self._screen.print(Text(shown(self.redact(text)), style=STYLES.get(status, "") if status else ""), markup=False)

    def _status_line(self, result: JobResult, text: str) -> None:
        self._line(text, result.status)

    def _redraw(self) -> None:
        self._display.update(self._render())

    def _render(self) -> RenderableType:
        elapsed = time.monotonic() - self.started
        head = f"{self.done}/{self.total} done, {self.failed} failed, {len(self.running)} running, {elapsed:.0f} s"
        if self.done and self.done < self.total:
            head += f", about {elapsed / self.done * (self.total - self.done):.0f} s left"
        running = Table.grid(padding=(0, 2))
        now = time.monotonic()
        for name in self.running[:SHOWN_RUNNING]:
            running.add_row(Text(shown(self.redact(name)), style="cyan"), f"{now - self._since.get(name, now):.0f} s")
        parts: list[Any] = [Text(head), ProgressBar(total=max(self.total, 1), completed=self.done, width=40), running]
        if len(self.running) > SHOWN_RUNNING:
            parts.append(Text(f"... and {len(self.running) - SHOWN_RUNNING} more running", style="dim"))
        return Group(*parts)

    def close(self) -> None:
        self._display.stop()
