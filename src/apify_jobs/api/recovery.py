"""Finding, waiting for and collecting the run an attempt started: after a drop (adopt it instead of paying
for a second run) and after a 408 (follow it past run-sync's 300 s).

Finding is by the attempt's identity (identity.py): the run whose `meta.userAgent` carries the attempt's ID.
"No run was started" is never a guess. It is concluded only from a listing asked for at least
`Settings.settle` (30 s) after the attempt was sent, in which no run of the window can be the attempt's:
each run carries another attempt's identity, or was not started through the API, or its INPUT is provably
not the request's. A run in the window that carries no attempt ID (the platform records no user agent, or
a proxy shortened it) is matched by input, exactly: its INPUT must equal the task's saved input with the
override's top-level keys replacing its own. When that cannot be evaluated (no saved input, an INPUT
record that cannot be read) or several runs match, the verdict is "unknown" or "several", naming the
candidate runs, and the job fails `recovery-failed`: never sent again.

Every look-up is bounded: at most MAX_PAGES listing pages, look-ups retried a few times with back-off
(drops, 429, 5xx), polls never faster than one a second, an INPUT record read up to a cap, an overall
deadline; every wait ends at once on Ctrl-C. Once a run is adopted, nothing here can lead to the job's
POST being sent again: a failure is `recovery-failed`, with the run ID and what to fetch by hand.
"""

from __future__ import annotations

import functools
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from apify_jobs.api.client import Answer, ApiClient
from apify_jobs.api.identity import (
    MAX_PAGES,
    PAGE,
    Attempt,
    Attempts,
    attempt_id_of,
    started_at,
    started_by,
    window_start,
)
from apify_jobs.api.request import build_query
from apify_jobs.api.retry import call_patiently
from apify_jobs.failures import (
    AnswerTooLarge,
    Cancelled,
    FollowTimeout,
    HttpFailure,
    JobFailure,
    RecoveryFailed,
    RunFailed,
)
from apify_jobs.model import INPUT_LIMIT_BYTES, Job, RetryPolicy
from apify_jobs.record import console_url
from apify_jobs.settings import DEFAULT, Settings

T = TypeVar("T")

FIND_DEADLINE = 60.0  # seconds the finding of one attempt's run may take, look-ups included
WAIT_FOR_FINISH = 60  # the most the API holds a GET /actor-runs/{id} open
POLL_FLOOR = 1.0  # never poll a run faster than once a second, whatever the server answers
INPUT_RECORD_LIMIT = INPUT_LIMIT_BYTES + (1 << 20)  # the 9 MiB override plus the task input's share
TERMINAL = {"SUCCEEDED", "FAILED", "TIMED-OUT", "ABORTED"}


@dataclass
class Found:
    """What a look for an attempt's run found."""

    verdict: str  # one | none | several | unknown
    runs: list[dict[str, Any]] = field(default_factory=list)
    method: str = "identity"  # identity | input (the fallback)
    note: str = ""

    @property
    def run(self) -> dict[str, Any]:
        return self.runs[0]


def find_run(client: ApiClient, job: Job, attempt: Attempt, attempts: Attempts, cancelled: threading.Event,
             settings: Settings = DEFAULT) -> Found:
    """The run ``attempt`` started, looked for until found or until the platform had time to show it."""
    deadline = time.monotonic() + max(FIND_DEADLINE, settings.settle + FIND_DEADLINE / 2)
    pauses = list(settings.look_again) or [1.0]
    for look in itertools.count():
        asked_at = time.monotonic()
        found = _look(client, job, attempt, attempts, cancelled, settings.lookup_policy)
        if found.verdict != "none" or asked_at - attempt.sent_at >= settings.settle:
            return found  # "none" from a listing asked late enough for the run to show: proven
        pause = min(pauses[min(look, len(pauses) - 1)], max(attempt.sent_at + settings.settle - time.monotonic(), 0))
        if time.monotonic() + pause > deadline:
            return Found("unknown", note=f"the run listing did not settle within {deadline - attempt.sent_at:.0f} s")
        if cancelled.wait(pause):
            raise Cancelled("cancelled while looking for the run")
    raise AssertionError("unreachable")


def _look(client: ApiClient, job: Job, attempt: Attempt, attempts: Attempts, cancelled: threading.Event,
          policy: RetryPolicy) -> Found:
    seen: set[str] = set()
    window = None
    unmarked: list[dict[str, Any]] = []  # runs of the window that carry no attempt's identity: maybe ours
    try:
        for page_number in range(MAX_PAGES):
            answer_headers, page = _listing(client, job, page_number * PAGE, cancelled, policy)
            if window is None:
                window = window_start(answer_headers, attempt.sent_at)
            fresh = [run for run in page if isinstance(run, dict) and run.get("id") not in seen]
            if not fresh:  # a listing that ignores `offset` serves the same page again
                break
            older = False
            for run in fresh:
                seen.add(str(run.get("id")))
                start = started_at(run)
                if window is not None and start is not None and start < window:
                    older = True
                    break
                if started_by(run, attempt.id):
                    return Found("one", [run], note=f"found run {run['id']} by the attempt's identity")
                if attempt_id_of(run) is None:
                    unmarked.append(run)
            if older or len(page) < PAGE:
                break
        else:
            return Found("unknown", note=f"not found within the last {MAX_PAGES * PAGE} runs of the task")
    except Cancelled:
        raise
    except (JobFailure, ValueError, KeyError, TypeError) as exc:
        return Found("unknown", note=f"could not look for the run: {exc}")
    if not unmarked:
        return Found("none", note="no run was started by the attempt")
    return _match_input(client, job, unmarked, attempts, cancelled, policy)


def _listing(client: ApiClient, job: Job, offset: int, cancelled: threading.Event,
             policy: RetryPolicy) -> tuple[dict[str, str], list[Any]]:
    def call() -> tuple[dict[str, str], list[Any]]:
        with client.list_runs(job.task, offset=offset, limit=PAGE, desc=True, actor=job.actor) as answer:
            items = answer.json()["data"]["items"]
            return answer.headers, items if isinstance(items, list) else []
    return call_patiently(call, cancelled, policy)


def _json(open_answer: Callable[[], Answer], cancelled: threading.Event, policy: RetryPolicy,
          limit: int | None = None) -> Any:
    def call() -> Any:
        with open_answer() as answer:
            return answer.json() if limit is None else answer.json(limit)
    return call_patiently(call, cancelled, policy)


# --- the fallback: a platform that records no user agent ----------------------------------------

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


def _match_input(client: ApiClient, job: Job, in_window: list[dict[str, Any]], attempts: Attempts,
                 cancelled: threading.Event, policy: RetryPolicy) -> Found:
    candidates = [run for run in in_window
                  if (run.get("meta") or {}).get("origin") == "API" and not attempts.claimed(str(run["id"]))
                  and _options_match(job, run)]
    if not candidates:
        return Found("none", method="input", note="no run was started by the attempt")
    named = ", ".join(str(r["id"]) for r in candidates)
    try:
        # An Actor run directly has no saved input: its INPUT is the input sent.
        saved = {} if job.actor else _json(lambda: client.task_input(job.task), cancelled, policy)
    except Cancelled:
        raise
    except JobFailure as exc:
        return Found("unknown", candidates, "input", f"runs {named} carry no attempt's identity and could be the "
                     f"attempt's, and the task's saved input to compare with cannot be read ({exc})")
    expected = {**saved, **job.input} if isinstance(saved, dict) else dict(job.input)
    matching = []
    for run in candidates:
        try:
            record = functools.partial(client.get_record, str(run["defaultKeyValueStoreId"]), "INPUT")
            run_input = _json(record, cancelled, policy, INPUT_RECORD_LIMIT)
        except Cancelled:
            raise
        except AnswerTooLarge:
            continue  # larger than any request could have sent: not ours
        except (JobFailure, KeyError) as exc:
            return Found("unknown", candidates, "input", f"run {run.get('id')} could be the attempt's, and its "
                         f"INPUT cannot be read to tell ({exc})")
        if run_input == expected:
            matching.append(run)
    if not matching:
        return Found("none", method="input", note="no run was started by the attempt")
    if len(matching) > 1:
        ids = ", ".join(str(r["id"]) for r in matching)
        return Found("several", matching, "input", f"several runs could be the dropped attempt's ({ids}); not guessing")
    return Found("one", matching, "input", f"found run {matching[0]['id']} by its input (the platform records no "
                                           "user agent)")


# --- after a run is adopted: wait, then open its output -----------------------------------------

def final(run_id: str, what: str, call: Callable[[], T]) -> T:
    """A look-up of an adopted run: whatever goes wrong is `recovery-failed` (never re-sent), naming the run
    and what to fetch by hand."""
    try:
        return call()
    except (Cancelled, RunFailed, FollowTimeout):
        raise
    except JobFailure as failure:
        raise RecoveryFailed(f"run {run_id} was adopted, but {what} failed ({failure.error_type}: {failure}); "
                             f"see {console_url(run_id)}", failure.http_status, run_id=run_id) from None


def wait_for(client: ApiClient, run: dict[str, Any], max_wait: float, cancelled: threading.Event,
             settings: Settings = DEFAULT) -> dict[str, Any]:
    """The run once it has finished, waiting at most ``max_wait`` seconds; raises RunFailed unless it
    SUCCEEDED, FollowTimeout past ``max_wait`` (the run goes on)."""
    run_id = str(run["id"])
    deadline = time.monotonic() + max_wait
    while run.get("status") not in TERMINAL:
        polled = time.monotonic()
        remaining = deadline - polled
        if remaining <= 0:
            raise FollowTimeout(f"run {run_id} is still {run.get('status', 'running')} after {max_wait:g} s; it goes "
                                f"on (and is billed) on the platform: {console_url(run_id)}", run_id=run_id)
        poll = functools.partial(client.get_run, run_id, wait_for_finish=max(0, min(WAIT_FOR_FINISH, int(remaining))))
        data = final(run_id, "waiting for it", functools.partial(_json, poll, cancelled, settings.lookup_policy))
        if isinstance(data, dict) and isinstance(data.get("data"), dict):
            run = {**run, **data["data"]}
        rest = POLL_FLOOR - (time.monotonic() - polled)
        if run.get("status") not in TERMINAL and rest > 0 and cancelled.wait(rest):
            raise Cancelled("cancelled while waiting for the run")
    if run["status"] != "SUCCEEDED":
        raise RunFailed(f"run {run_id} ended {run['status']}", run_id=run_id)
    return run


def open_output(client: ApiClient, job: Job, run: dict[str, Any], cancelled: threading.Event,
                settings: Settings = DEFAULT) -> Answer | None:
    """The finished run's answer, as run-sync would have given it: its dataset items, or its output record;
    None when the run wrote no output record (run-sync answers that with an empty 201)."""
    run_id = str(run["id"])
    store, dataset = run.get("defaultKeyValueStoreId"), run.get("defaultDatasetId")
    if not isinstance(store, str) or not isinstance(dataset, str):
        raise RecoveryFailed(f"run {run_id} was adopted, but the platform did not name its storages; see "
                             f"{console_url(run_id)}", run_id=run_id)
    if job.dataset is not None:
        query = {k: v for k, v in build_query(job) if k in job.dataset}
        return final(run_id, f"fetching its dataset items (GET /v2/datasets/{dataset}/items)",
                     lambda: call_patiently(lambda: client.dataset_items(dataset, query), cancelled,
                                                    settings.lookup_policy))
    key = str(job.options.get("outputRecordKey", "OUTPUT"))

    def record() -> Answer | None:
        try:
            return call_patiently(lambda: client.get_record(store, key), cancelled, settings.lookup_policy)
        except HttpFailure as missing:
            if missing.http_status == 404:
                return None
            raise
    return final(run_id, f"fetching its output record (GET /v2/key-value-stores/{store}/records/{key})", record)
