"""Which progress display a run gets: the live one where stderr is a terminal (rich, imported only then),
else a line per event."""

from __future__ import annotations

import sys

from apify_jobs.redaction import Redactor
from apify_jobs.reports.progress import Progress


def make_progress(total: int, quiet: bool, color: str, redact: Redactor) -> Progress:
    if not quiet and sys.stderr.isatty():
        from apify_jobs.reports.live import LiveProgress, console

        return LiveProgress(total, console(color), redact)
    return Progress(total, quiet, redact=redact)
