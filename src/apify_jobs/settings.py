"""How patiently the tool looks for runs: the pacing of recovery's look-ups and of the run facts. Carried in
each invocation's Environment (tests give a quicker one; nothing is monkeypatched)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from apify_jobs.errors import UsageError
from apify_jobs.model import RetryPolicy


def _lookup_policy() -> RetryPolicy:
    # Look-ups (GETs) start no run, so drops, 429 and 5xx are all safe to retry, a bounded number of times.
    return RetryPolicy(attempts=5, initial=0.5, max_wait=8.0, on=frozenset({"connection", "rate-limit", "server-error"}),
                       recover=False)


@dataclass(frozen=True)
class Settings:
    # Run look-ups are eventually consistent: "no run was started" is concluded only from a listing asked for
    # at least this long after the attempt was sent; until then, look again after these pauses (the last
    # repeats).
    settle: float = 30.0
    look_again: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
    # A run that certainly started but is not listed yet (run facts): one more look, after this long.
    look_again_after: float = 2.0
    lookup_policy: RetryPolicy = field(default_factory=_lookup_policy)
    # "The first response after completion can still show preliminary costs ... wait about 10 seconds and
    # call the endpoint again" (Apify's docs): a run that ended less than this long before the look-up is
    # preliminary, and such runs are read once more after this long (0: not read again).
    cost_settle: float = 10.0

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Settings:
        """The defaults, but APIFY_JOBS_SETTLE_SECONDS: how long after an attempt a listing must be asked for
        before "no run" is concluded (longer on a platform whose listings lag; shorter only where listings
        are immediate, as the emulator's are). A value that is not a number is an error, not a default."""
        defaults = cls()
        return cls(settle=_seconds(environ, "APIFY_JOBS_SETTLE_SECONDS", defaults.settle),
                   cost_settle=_seconds(environ, "APIFY_JOBS_COST_SETTLE_SECONDS", defaults.cost_settle))


def _seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name)
    if raw is None:
        return default
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 3600:
        raise UsageError(f"{name} must be a number of seconds from 0 to 3600, not {raw!r}")
    return seconds


DEFAULT = Settings()
