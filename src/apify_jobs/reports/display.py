"""Which progress display a run gets: the live one where stderr is a terminal (rich, imported only then),
else a line per event."""

from __future__ import annotations

import os
import sys

from apify_jobs.redaction import Redactor
from apify_jobs.reports.progress import Progress


def make_progress(total: int, quiet: bool, color: str, redact: Redactor) -> Progress:
    if not quiet and sys.stderr.isatty():
        from apify_jobs.reports.live import LiveProgress, console

        return LiveProgress(total, console(color), redact)
    # Without a terminal, colour only when asked for, as `git --color=always` does (FORCE_COLOR too; NO_COLOR
    # and --color never win over it).
    forced = color == "always" or (color == "auto" and bool(os.environ.get("FORCE_COLOR"))
                                   and not os.environ.get("NO_COLOR"))
    return Progress(total, quiet, redact=redact, colour=forced)
