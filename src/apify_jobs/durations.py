"""Durations as job files and flags write them (`30s`, `90m`, `24h`, `7d`), and as messages show them."""

from __future__ import annotations

import re
from datetime import UTC, datetime

PATTERN = r"^[1-9][0-9]*(s|m|h|d)$"  # the schema's, for `refresh.maxAge` and the flags
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class DurationError(ValueError):
    pass


def parse(text: str) -> float:
    """Seconds in ``text``; DurationError (saying how to write one) when it is not a duration."""
    if not isinstance(text, str) or not re.match(PATTERN, text.strip()):
        raise DurationError(f"{text!r} is not a duration; write a whole number and a unit: 30s, 90m, 24h or 7d")
    text = text.strip()
    return float(int(text[:-1]) * _UNITS[text[-1]])


def shown(seconds: float) -> str:
    """``seconds`` in the largest unit that keeps it readable: `26 h`, `90 min`, `3 d`."""
    for size, name in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= 2 * size:
            return f"{seconds / size:.0f} {name}"
    return f"{seconds:.0f} s"


def age_of(timestamp: str | None, now: datetime | None = None) -> float | None:
    """Seconds since an ISO 8601 time the state recorded (`2026-12-06T10:00:00.000Z`); None if unknown."""
    if not timestamp:
        return None
    try:
        then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return ((now or datetime.now(UTC)) - then).total_seconds()


def too_old(max_age: float | None, finished_at: str | None) -> str | None:
    """Why a success that finished at ``finished_at`` is too old to keep under ``max_age``, or None."""
    if max_age is None:
        return None
    age = age_of(finished_at)
    if age is None or age <= max_age:
        return None
    return f"succeeded {shown(age)} ago, max age {shown(max_age)}"
