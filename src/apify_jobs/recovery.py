"""Drop recovery: find the run a dropped run-sync request started, and adopt it instead of paying for another.

After a drop the request may or may not have started a run. We list the task's newest runs, keep those
started since just before the attempt, not claimed by another job of this batch, and whose INPUT record
holds the job's input override. Exactly one: wait for it and fetch what run-sync would have answered.
None: it never started, so sending again is safe. Several: we do not guess.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

from apify_jobs.failures import ConnectionDropped, HttpFailure, JobFailure, RunFailed, RunTimeoutExceeded
from apify_jobs.http_client import ApiClient
from apify_jobs.model import SYNC_WAIT_SECONDS, Job
from apify_jobs.request import build_query

log = logging.getLogger("apify_jobs")

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


def find_runs(client: ApiClient, base_url: str, job: Job, since: datetime, claims: Claims) -> Found:
    """The task's runs that the dropped attempt may have started (see the module's note)."""
    url = f"{base_url.rstrip('/')}/v2/actor-tasks/{quote(job.task, safe='~')}/runs"
    threshold = since - CLOCK_SKEW
    candidates: list[dict[str, Any]] = []
    try:
        offset = 0
        while True:
            # The API has no startedAfter filter: newest first, stop at the first run older than the attempt.
            page = client.get(url, job.http, {"desc": "true", "limit": PAGE, "offset": offset}).json()["data"]["items"]
            recent = [run for run in page if _started(run) >= threshold]
            for run in recent:
                if run["id"] not in claims and _options_match(job, run) and _input_matches(client, base_url, job, run):
                    candidates.append(run)
            if len(page) < PAGE or len(recent) < len(page):
                return Found(candidates)
            offset += PAGE
    except (JobFailure, ValueError, KeyError, TypeError) as exc:
        return Found(candidates, f"could not look for the run: {exc}")


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


def _input_matches(client: ApiClient, base_url: str, job: Job, run: dict[str, Any]) -> bool:
    """The run's INPUT holds every key of the job's override with the same value."""
    url = f"{base_url.rstrip('/')}/v2/key-value-stores/{run['defaultKeyValueStoreId']}/records/INPUT"
    try:
        run_input = client.get(url, job.http).json()
    except HttpFailure:
        return False  # no INPUT record: not a run we started
    return isinstance(run_input, dict) and all(run_input.get(k, _MISSING) == v for k, v in job.input.items())


_MISSING = object()


def wait_for(client: ApiClient, base_url: str, job: Job, run: dict[str, Any]) -> dict[str, Any]:
    """The run once it has finished, bounded by the job's timeout; raises RunFailed unless it SUCCEEDED."""
    url = f"{base_url.rstrip('/')}/v2/actor-runs/{run['id']}"
    deadline = time.monotonic() + float(job.options.get("timeout") or SYNC_WAIT_SECONDS) + WAIT_FOR_FINISH
    while run.get("status") not in TERMINAL:
        if time.monotonic() > deadline:
            raise RunTimeoutExceeded(f"adopted run {run['id']} did not finish within the job's timeout; it may go on",
                                     run_id=run["id"])
        run = get_patiently(client, url, job, {"waitForFinish": WAIT_FOR_FINISH}).json()["data"]
    if run["status"] != "SUCCEEDED":
        raise RunFailed(f"adopted run {run['id']} ended {run['status']}", run_id=run["id"])
    return run


def get_patiently(client: ApiClient, url: str, job: Job, params: dict[str, Any] | None = None) -> Any:
    """A GET of an adopted run's state or output. Its drops are retried here, never by re-sending the run:
    once a run is adopted, a failure must not lead to a second run."""
    last: ConnectionDropped | None = None
    for pause in (0, 1, 2):
        time.sleep(pause)
        try:
            return client.get(url, job.http, params)
        except ConnectionDropped as drop:
            last = drop
    raise JobFailure(f"adopted run, but could not reach it: {last}", error_type="recovery-failed")


def output_url(base_url: str, job: Job, run: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """Where the finished run's answer is: its dataset items, or its output record."""
    base = base_url.rstrip("/")
    if job.dataset is not None:
        query = {k: v for k, v in build_query(job) if k in job.dataset}
        return f"{base}/v2/datasets/{run['defaultDatasetId']}/items", query
    key = job.options.get("outputRecordKey", "OUTPUT")
    return f"{base}/v2/key-value-stores/{run['defaultKeyValueStoreId']}/records/{quote(key, safe='')}", {}


def describe(found: Found) -> str:
    ids = ", ".join(run["id"] for run in found.candidates)
    return {"none": "no run was started by the dropped attempt",
            "several": f"several runs could be the dropped attempt's ({ids}); not guessing",
            "unknown": found.error or "could not look for the run",
            "one": f"adopted run {ids}"}[found.verdict]


def now_utc() -> datetime:
    return datetime.now(timezone.utc)
