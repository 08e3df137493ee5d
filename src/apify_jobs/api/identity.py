"""Which run an attempt started. Run-sync never says; every attempt therefore carries an identity in its
`User-Agent` (`apify-jobs/<version> (+<attempt-id>)`), which the platform keeps as the run's
`meta.userAgent`, and the task's run listing finds the run by it: exactly that run, no other.

Time comes from the platform's clock: the window of runs an attempt could have started is computed from
the listing answer's `Date` header and the time elapsed (on this machine's monotonic clock) since the
attempt was sent, so a skew between the two clocks changes nothing.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from apify_jobs import __version__

PAGE = 100  # runs a listing page holds while looking for one attempt's run
MAX_PAGES = 10  # past 10 × 100 runs: "not found within the last 1,000 runs"
WINDOW_MARGIN = timedelta(seconds=5)  # the Date header's second, and the way to the platform


# 128 random bits an attempt, from a generator seeded once from the system's (os.urandom): an ID needs to be
# unique, not secret, and os.urandom's getrandom call was a hand-off of the interpreter lock before every POST
# (~2 ms of each job's time with 50 at once). getrandbits is one call, atomic under the lock.
_IDS = random.Random()
os.register_at_fork(after_in_child=_IDS.seed)  # a forked child never repeats its parent's IDs


def new_attempt_id() -> str:
    return f"{_IDS.getrandbits(128):032x}"


def user_agent(attempt_id: str) -> str:
    return f"apify-jobs/{__version__} (+{attempt_id})"


@dataclass
class Attempt:
    """One run-sync request of one job, as this batch knows it."""

    id: str
    job: str
    task: str  # the task's ID, or the Actor's when ``actor``
    number: int
    actor: bool = False
    sent_at: float = field(default_factory=time.monotonic)  # this machine's monotonic clock
    done: bool = False  # its request is over (answered, failed or given up)
    started_run: bool | None = None  # True: the platform answered as only a started run does; None: unknown
    run_id: str | None = None  # once known (adopted, followed, named in an error, or found afterwards)


class Attempts:
    """Every attempt of this batch, and the runs that are spoken for: a run is never adopted by two attempts,
    and never by one that did not start it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._all: list[Attempt] = []
        self._claimed: dict[str, str] = {}  # run ID → attempt ID

    def new(self, job: str, task: str, number: int, actor: bool = False) -> Attempt:
        attempt = Attempt(new_attempt_id(), job, task, number, actor)
        with self._lock:
            self._all.append(attempt)
        return attempt

    def restore(self, attempt_id: str, job: str, task: str, number: int, actor: bool, sent_at: float) -> Attempt:
        """An attempt another process sent (written ahead in the state), to look for its run. ``sent_at`` is on
        this machine's monotonic clock."""
        attempt = Attempt(attempt_id, job, task, number, actor, sent_at=sent_at)
        with self._lock:
            self._all.append(attempt)
        return attempt

    def claim(self, run_id: str, attempt: Attempt) -> bool:
        """Mark ``run_id`` as ``attempt``'s; False if another attempt has it already."""
        with self._lock:
            owner = self._claimed.setdefault(run_id, attempt.id)
            if owner != attempt.id:
                return False
            attempt.run_id = run_id
            return True

    def claimed(self, run_id: str) -> bool:
        with self._lock:
            return run_id in self._claimed

    def all(self) -> list[Attempt]:
        with self._lock:
            return list(self._all)

    def of_job(self, job: str) -> list[Attempt]:
        return [a for a in self.all() if a.job == job]

    def in_flight(self) -> list[Attempt]:
        return [a for a in self.all() if not a.done]


def platform_now(headers: dict[str, str]) -> datetime | None:
    """The platform's clock, from an answer's `Date` header."""
    try:
        moment = parsedate_to_datetime(headers.get("Date") or headers.get("date") or "")
    except (TypeError, ValueError, IndexError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def window_start(headers: dict[str, str], sent_at: float) -> datetime | None:
    """The earliest platform time at which an attempt sent at ``sent_at`` (monotonic) could have started a run."""
    now = platform_now(headers)
    if now is None:
        return None
    return now - timedelta(seconds=time.monotonic() - sent_at) - WINDOW_MARGIN


def started_at(run: dict[str, Any]) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(run["startedAt"]).replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def agent_of(run: dict[str, Any]) -> str | None:
    meta = run.get("meta")
    agent = meta.get("userAgent") if isinstance(meta, dict) else None
    return agent if isinstance(agent, str) else None


_IDENTITY = re.compile(r"\(\+([0-9a-f]{32})\)")


def attempt_id_of(run: dict[str, Any]) -> str | None:
    """The attempt ID in the run's user agent, if an attempt of this tool started it."""
    match = _IDENTITY.search(agent_of(run) or "")
    return match.group(1) if match else None


def started_by(run: dict[str, Any], attempt_id: str) -> bool:
    return attempt_id_of(run) == attempt_id
