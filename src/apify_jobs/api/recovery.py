"""Drop recovery: find the run a dropped run-sync request started, and adopt it instead of paying for another.

After a drop the request may or may not have started a run. We list the task's newest runs, keep those
started since just before the attempt, not claimed by another job of this batch, and whose INPUT record
holds the job's input override. Exactly one: wait for it and fetch what run-sync would have answered.
None: it never started, so sending again is safe. Several: we do not guess.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from apify_jobs.api.client import Answer, ApiClient
from apify_jobs.api.failures import (
    Cancelled,
    ConnectionDropped,
    HttpFailure,
    JobFailure,
    RecoveryFailed,
    RunFailed,
    RunTimeoutExceeded,
)
from apify_jobs.api.request import build_query
from apify_jobs.api.retry import call_patiently
from apify_jobs.model import SYNC_WAIT_SECONDS, Job

log = logging.getLogger("apify_jobs")
T = TypeVar("T")

CLOCK_SKEW = timedelta(seconds=30)  # our clock against the platform's
PAGE = 50
WAIT_FOR_FINISH = 60  # the most the API holds a GET /actor-runs/{id} open
TERMINAL = {"SUCCEEDED", "FAILED", "TIMED-OUT", "ABORTED"}


class Claims:
    """Runs already adopted by a job of this batch, so that two jobs never adopt the same run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: set[str] = set()

    def claim(self, run_id: str) -> bool:
        with self._lock:
            if run_id in self._ids:
                return False
            self._ids.add(run_id)
            return True

    def __contains__(self, run_id: object) -> bool:
        with self._lock:
            return run_id in self._ids


@dataclass
class Found:
    """What a look for the dropped attempt's run found."""

    candidates: list[dict[str, Any]]
    error: str | None = None  # the look itself failed: we cannot tell whether a run started

    @property
    def verdict(self) -> str:
        if self.error:
            return "unknown"
        return {0: "none", 1: "one"}.get(len(self.candidates), "several")


def find_runs(client: ApiClient, job: Job, since: datetime, claims: Claims, cancelled: threading.Event) -> Found:
    """The task's runs that the dropped attempt may have started (see the module's note)."""
    threshold = since - CLOCK_SKEW
    candidates: list[dict[str, Any]] = []
    try:
        offset = 0
        while True:
            # The API has no startedAfter filter: newest first, stop at the first run older than the attempt.
            page = _json(functools.partial(client.list_runs, job.task, offset=offset, limit=PAGE, desc=True), cancelled)
            page = page["data"]["items"]
            recent = [run for run in page if _started(run) >= threshold]
            for run in recent:
                if run["id"] not in claims and _options_match(job, run) and _input_matches(client, job, run, cancelled):
                    candidates.append(run)
            if len(page) < PAGE or len(recent) < len(page):
                return Found(candidates)
            offset += PAGE
    except (JobFailure, ValueError, KeyError, TypeError) as exc:
        if isinstance(exc, Cancelled):
            raise
        return Found(candidates, f"could not look for the run: {exc}")


def _json(open_answer: Callable[[], Answer], cancelled: threading.Event) -> Any:
    """A small JSON answer, its drops retried (never by re-sending the run)."""
    def call() -> Any:
        with open_answer() as answer:
            return answer.json()
    return call_patiently(call, cancelled)


def _started(run: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(run["startedAt"]).replace("Z", "+00:00"))


# The run object's `options` name the run options differently from run-sync's query parameters.
_RUN_OPTIONS = {"memory": "memoryMbytes", "timeout": "timeoutSecs", "build": "build"}


def _options_match(job: Job, run: dict[str, Any]) -> bool:
    """A run started with other options than the job's (memory, timeout, build) is not the job's run."""
    started_with = run.get("options")
    if not isinstance(started_with, dict):
        return True
    for ours, theirs in _RUN_OPTIONS.items():
        if ours in job.options and theirs in started_with and str(started_with[theirs]) != str(job.options[ours]):
            return False
    return True


def _input_matches(client: ApiClient, job: Job, run: dict[str, Any], cancelled: threading.Event) -> bool:
    """The run's INPUT holds every key of the job's override with the same value."""
    try:
        run_input = _json(lambda: client.get_record(run["defaultKeyValueStoreId"], "INPUT"), cancelled)
    except HttpFailure:
        return False  # no INPUT record: not a run we started
    return isinstance(run_input, dict) and all(run_input.get(k, _MISSING) == v for k, v in job.input.items())


_MISSING = object()


def wait_for(client: ApiClient, job: Job, run: dict[str, Any], cancelled: threading.Event) -> dict[str, Any]:
    """The run once it has finished, bounded by the job's timeout; raises RunFailed unless it SUCCEEDED."""
    deadline = time.monotonic() + float(job.options.get("timeout") or SYNC_WAIT_SECONDS) + WAIT_FOR_FINISH
    while run.get("status") not in TERMINAL:
        if time.monotonic() > deadline:
            raise RunTimeoutExceeded(f"adopted run {run['id']} did not finish within the job's timeout; it may go on",
                                     run_id=run["id"])
        run = _poll(client, run["id"], cancelled)
    if run["status"] != "SUCCEEDED":
        raise RunFailed(f"adopted run {run['id']} ended {run['status']}", run_id=run["id"])
    return run


def _poll(client: ApiClient, run_id: str, cancelled: threading.Event) -> dict[str, Any]:
    answer = patiently(lambda: _json(lambda: client.get_run(run_id, wait_for_finish=WAIT_FOR_FINISH), cancelled), run_id)
    run: dict[str, Any] = answer["data"]
    return run


def patiently(call: Callable[[], T], run_id: str) -> T:
    """A look-up of an adopted run whose drops outlasted their retries: the job fails, the run is not re-sent."""
    try:
        return call()
    except ConnectionDropped as last:
        raise RecoveryFailed(f"adopted run, but could not reach it: {last}", run_id=run_id) from None


def open_output(client: ApiClient, job: Job, run: dict[str, Any], cancelled: threading.Event) -> Answer:
    """The finished run's answer, as run-sync would have given it: its dataset items, or its output record."""
    if job.dataset is not None:
        query = {k: v for k, v in build_query(job) if k in job.dataset}
        return patiently(lambda: call_patiently(lambda: client.dataset_items(run["defaultDatasetId"], query),
                                                cancelled), run["id"])
    key = job.options.get("outputRecordKey", "OUTPUT")
    return patiently(lambda: call_patiently(lambda: client.get_record(run["defaultKeyValueStoreId"], key), cancelled),
                     run["id"])


def describe(found: Found) -> str:
    ids = ", ".join(run["id"] for run in found.candidates)
    return {"none": "no run was started by the dropped attempt",
            "several": f"several runs could be the dropped attempt's ({ids}); not guessing",
            "unknown": found.error or "could not look for the run",
            "one": f"adopted run {ids}"}[found.verdict]


def now_utc() -> datetime:
    return datetime.now(UTC)
