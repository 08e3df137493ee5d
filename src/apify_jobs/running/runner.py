"""Run one job: send its request under its retry policy and write its answer whole, into a JobResult.

Each attempt carries an identity (identity.py). A drop after the request left, or a 408, hands over to
recovery.py: the run the attempt started is found by that identity, waited for and collected exactly as
run-sync would have answered. Once a run is adopted, the job's POST is never sent again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from apify_jobs.api import recovery
from apify_jobs.api.client import ApiClient
from apify_jobs.api.identity import Attempt, Attempts
from apify_jobs.api.request import RunRequest, build_request
from apify_jobs.api.retry import call_with_retries
from apify_jobs.durations import shown as shown_duration
from apify_jobs.durations import too_old
from apify_jobs.failures import (
    Cancelled,
    CapacityExceeded,
    CapacityWaitExceeded,
    ConnectionDropped,
    ExpectationFailed,
    JobFailure,
    RecoveryFailed,
    RunFailed,
    RunTimeoutExceeded,
)
from apify_jobs.model import SYNC_WAIT_SECONDS, Job, now
from apify_jobs.outputs.destination import Destination
from apify_jobs.outputs.expect import Check
from apify_jobs.record import JobError, JobResult, Recovery, RecoveryLook, RunFacts, Status
from apify_jobs.running.admission import Admission
from apify_jobs.running.needs import NeedsValueFailed, resolved, uses_needs
from apify_jobs.running.run_facts import find_runs
from apify_jobs.running.state import StoredAttempt, request_key
from apify_jobs.settings import DEFAULT, Settings

log = logging.getLogger("apify_jobs")
_Write = Callable[[str | None, Iterable[bytes], int | None], None]  # content type, body, length
NO_FOLLOW_WAIT = 60.0  # with `follow: false`, an adopted run may still take this long past its timeout


@dataclass
class RunContext:
    """What every job of one run shares."""

    client: ApiClient
    destination: Destination
    cancelled: threading.Event = field(default_factory=threading.Event)
    attempts: Attempts = field(default_factory=Attempts)
    finished: dict[str, JobResult] = field(default_factory=dict)  # decided jobs, for `needs` values
    # --resume of a job whose request is only known once its needs ran: the earlier result that stands
    resume_check: Callable[[Job], JobResult | None] | None = None
    settings: Settings = DEFAULT  # how patiently runs are looked for (the invocation's)
    ledger: Ledger | None = None  # where attempts are written ahead of their POST (the state)
    refetch: bool = False  # --resume: a success whose output is gone is fetched again from its run, not re-run
    admission: Admission | None = None  # the account's limits and the budgets: who may start, and waits

    @property
    def base_url(self) -> str:
        return self.client.base_url


class Ledger(Protocol):
    """Attempts written ahead of their POST, so that a killed or interrupted process's runs are adopted, not
    paid for again (the state implements it)."""

    def write_ahead(self, attempt_id: str, job: str, key: str, number: int, task: str, actor: bool) -> None: ...

    def open_attempts(self, job: str, key: str) -> list[StoredAttempt]: ...

    def earlier_run(self, job: str, key: str) -> JobResult | None: ...


# Clocks of two machines (a CI job resumed on another runner) differ: a run of an earlier process's attempt
# is looked for from this much before the attempt's recorded time (its identity still decides).
CLOCK_MARGIN = 60.0


def new_result(job: Job, request: RunRequest) -> JobResult:
    return JobResult(name=job.name, task=job.task, file=job.file, endpoint=request.endpoint,
                     query=dict(request.query), input_sha256=request.input_sha256, actor=job.actor)


def decided(job: Job, base_url: str, status: Status, message: str, error_type: str | None = None) -> JobResult:
    """The result of a job that was not run (skipped, cancelled, resumed, or failed before sending)."""
    result = new_result(job, build_request(job, base_url))
    result.status = status
    result.error = JobError(error_type or status.value, message)
    result.finished_at = now()
    return result


def run_job(job: Job, context: RunContext) -> JobResult:
    if uses_needs(job):
        try:
            job = resolved(job, context.finished, lambda result: facts_of(result, context), context.destination)
        except NeedsValueFailed as failure:
            return decided(job, context.base_url, Status.FAILED, failure.message, failure.error_type)
        earlier = context.resume_check(job) if context.resume_check else None
        if earlier is not None:
            return earlier
    request = build_request(job, context.base_url)
    result = new_result(job, request)
    key = request_key(result)
    result.started_at = now()
    started = time.monotonic()

    def write(content_type: str | None, chunks: Iterable[bytes], length: int | None = None) -> None:
        check = Check(job, content_type)
        with context.destination.open(job, content_type, length) as writer:
            for chunk in chunks:
                writer.write(chunk)
                check.feed(chunk)
            verdict = check.finish()  # between the download and the commit: a failed output never replaces
            if verdict is not None:  # the last good one
                result.rejected = writer.commit(rejected=True)
                raise ExpectationFailed(f"{verdict.message}; kept as {result.rejected.path}", verdict.total)
            result.output = writer.commit()
            if check.counted is not None:
                result.output = dataclasses.replace(result.output, items=check.counted)

    until = time.monotonic() + job.capacity_wait

    def attempt(number: int) -> None:
        while True:
            sent = context.attempts.new(job.name, job.task, number, job.actor)
            result.attempt_ids.append(sent.id)
            if context.ledger is not None:  # committed before the POST: a kill after it leaves it to be adopted
                context.ledger.write_ahead(sent.id, job.name, key, number, job.task, job.actor)
            log.info("%s: attempt %d: %s %s (attempt ID %s)", job.name, number, request.method, request.url, sent.id)
            try:
                _send(job, request, context, sent, result, write)
                return
            except CapacityExceeded as refused:
                # Admission, not a retry: no run was started, so the job waits for room and is sent again.
                if context.admission is None:
                    raise
                log.warning("%s: the account refused the start (%s: no run, nothing billed); waiting for room, "
                            "at most %s", job.name, refused.error_type, shown_duration(job.capacity_wait))
                if not context.admission.refused(job, until, context.cancelled):
                    if context.cancelled.is_set():
                        raise Cancelled("cancelled while waiting for the account's room") from None
                    raise CapacityWaitExceeded(
                        f"the account refused the start for {shown_duration(job.capacity_wait)} "
                        f"({refused.error_type}: {refused.message}); no run was started. Raise capacity.maxWait, "
                        "lower --concurrency, or free the account's runs and memory", refused.http_status) from None
            finally:
                sent.done = True

    try:
        if _adopt_in_flight(job, context, key, result, write) or _refetch(job, context, key, result, write):
            result.attempts = 0  # nothing sent: an earlier run gave the output
        else:
            _, result.attempts = call_with_retries(job.name, job.retry, attempt, context.cancelled)
        result.status = Status.SUCCEEDED
        if result.empty_output:
            result.note = "the run produced no output record: an empty file was written (expect.nonEmpty is false)"
    except Cancelled as failure:
        result.status = Status.CANCELLED
        result.attempts = failure.attempts or len(result.attempt_ids)
        result.error = JobError("cancelled", str(failure))
        if result.attempts:
            result.note = "cancelled while running: the platform may still be running it"
    except JobFailure as failure:
        result.status = Status.FAILED
        result.attempts = failure.attempts or 1
        result.http_status = failure.http_status
        result.error = JobError(failure.error_type, failure.message, failure.run_id, type(failure).stops_batch,
                                getattr(failure, "violations", None))
    except Exception as bug:  # a bug after a POST must not lose its attempts: the paid run stays findable
        log.exception("%s: internal error", job.name)
        result.status = Status.FAILED
        result.attempts = len(result.attempt_ids)
        result.error = JobError("failed", f"internal error (a bug in apify-jobs, please report it): "
                                          f"{type(bug).__name__}: {bug}")
    result.finished_at = now()
    result.duration_ms = int((time.monotonic() - started) * 1000)
    if context.admission is not None and context.admission.budgeted and result.attempt_ids and result.run is None:
        with contextlib.suppress(JobFailure):  # a look-up that fails leaves the job's cap counted
            facts_of(result, context)  # a budget counts what each run cost as soon as it ends
    return result


def facts_of(result: JobResult, context: RunContext) -> RunFacts | None:
    """A needed job's run facts (runId, storages): from its result or its earlier one, else looked up now by
    its attempts' identity (the batch's own look-up comes only at its end)."""
    earlier = result.previous
    if earlier is not None:  # resumed: its run is the earlier one's
        ids = earlier.attempt_ids
        if earlier.run is not None or not ids:
            return earlier.run
        attempts = [Attempt(attempt_id, result.name, result.task, n, result.actor, sent_at=0.0)
                    for n, attempt_id in enumerate(ids)]
        found = find_runs(context.client, attempts, context.cancelled, context.settings)
        return found.get(ids[-1])
    if result.run is None and result.attempt_ids:
        found = find_runs(context.client, context.attempts.of_job(result.name), context.cancelled, context.settings)
        runs = [found[a] for a in result.attempt_ids if a in found]
        if runs:
            result.run, result.other_runs = runs[-1], runs[:-1]
    if result.run is None and result.recovery is not None and result.recovery.run_id:
        return RunFacts(result.recovery.run_id)
    return result.run


def restored(attempts: Attempts, stored: StoredAttempt) -> Attempt:
    """An attempt another process wrote ahead, back in ``attempts``: its send time on this machine's monotonic
    clock, from the wall-clock time it was written, less CLOCK_MARGIN (its run is looked for by identity)."""
    elapsed = max(time.time() - stored.sent_at, 0.0) + CLOCK_MARGIN
    attempt = attempts.restore(stored.id, stored.job, stored.task, stored.number, stored.actor,
                               time.monotonic() - elapsed)
    attempt.run_id = stored.run_id
    return attempt


def _adopt_in_flight(job: Job, context: RunContext, key: str, result: JobResult, write: _Write) -> bool:
    """The runs that attempts of a killed or interrupted process started for this very request: looked for by
    identity and adopted (followed, the output collected and checked, as after a drop) before anything is
    sent. True when one gave the output; False when each proved to have started no run (sending is safe).
    When it cannot be told, RecoveryFailed: never a second POST."""
    if context.ledger is None:
        return False
    for stored in context.ledger.open_attempts(job.name, key):
        sent = restored(context.attempts, stored)
        result.attempt_ids.append(sent.id)
        log.warning("%s: attempt %s of an earlier process never ended; looking for its run before sending",
                    job.name, stored.id)
        try:
            if _collect(job, context, sent, result, write, followed=False):
                return True
        finally:
            sent.done = True
    return False


def _refetch(job: Job, context: RunContext, key: str, result: JobResult, write: _Write) -> bool:
    """--resume of a job whose latest success for this request has lost its output (a CI cache that kept the
    state, not the outputs): its run's data fetched again (the job's own dataset parameters or output record,
    the same path) and checked as any output, instead of paying for a new run. False, with the reason noted,
    when the platform no longer has it (past the account's data retention, say)."""
    earlier = context.ledger.earlier_run(job.name, key) if context.refetch and context.ledger else None
    if earlier is not None and too_old(job.max_age, earlier.finished_at):
        return False  # a refresh: a new run is what is asked for
    run = earlier.run if earlier else None
    if earlier is None or run is None or run.dataset_id is None or run.store_id is None:
        return False
    storages = {"id": run.run_id, "defaultDatasetId": run.dataset_id, "defaultKeyValueStoreId": run.store_id}
    try:
        answer = recovery.open_output(context.client, job, storages, context.cancelled, context.settings)
    except RecoveryFailed as gone:
        result.note = f"its output was missing, and run {run.run_id}'s data cannot be fetched again ({gone}); run again"
        log.warning("%s: %s", job.name, result.note)
        return False
    if answer is None and earlier.output is not None and earlier.output.bytes:
        result.note = f"its output was missing, and run {run.run_id} no longer has its output record; run again"
        log.warning("%s: %s", job.name, result.note)
        return False
    if answer is None:
        write(None, [], None)
    else:
        with answer:
            write(answer.content_type, answer.chunks(), answer.length)
            result.http_status = answer.status
    result.refetched, result.run = True, run
    result.note = f"refetched from run {run.run_id}: its output was missing or changed; no new run"
    log.warning("%s: %s", job.name, result.note)
    return True


def _send(job: Job, request: RunRequest, context: RunContext, sent: Attempt, result: JobResult, write: _Write) -> None:
    """One attempt: the POST, and when it does not answer with the output, the run it started."""
    try:
        with context.client.run_sync(request, job.http, sent.id) as answer:
            sent.started_run = True
            result.http_status = answer.status
            write(answer.content_type, answer.chunks(), answer.length)
    except ConnectionDropped as drop:
        if drop.started_run is False:
            sent.started_run = False
            raise
        if job.retry.recover and _collect(job, context, sent, result, write, followed=False):
            return
        raise
    except RunTimeoutExceeded as timeout:
        sent.started_run = timeout.started_run
        if job.follow is None:
            raise
        log.warning("%s: run-sync stopped waiting after %d s (408); following the run for up to %g s",
                    job.name, SYNC_WAIT_SECONDS, job.follow)
        if not _collect(job, context, sent, result, write, followed=True):
            raise RecoveryFailed("run-sync answered 408, so the attempt started a run, but it could not be found "
                                 f"({(result.recovery.looks[-1].note if result.recovery else '')}); not sent again") \
                from None
    except RunFailed as failed:
        sent.started_run = failed.started_run
        if failed.run_id:
            context.attempts.claim(failed.run_id, sent)
        raise
    except JobFailure as failure:
        if sent.started_run is not True:  # an answer that arrived (a failed check, a full disk) stays proof
            sent.started_run = failure.started_run  # the failure's class knows (429: no run; a 5xx: nobody knows)
        raise


def _collect(job: Job, context: RunContext, sent: Attempt, result: JobResult, write: _Write, followed: bool) -> bool:
    """Find the run ``sent`` started, wait for it and write its output. False when it started none (sending
    again is then safe); raises when it cannot be told, or when the adopted run did not give its output."""
    found = recovery.find_run(context.client, job, sent, context.attempts, context.cancelled, context.settings)
    result.recovery = result.recovery or Recovery()
    result.recovery.looks.append(RecoveryLook(sent.number, found.verdict, [str(r["id"]) for r in found.runs],
                                              found.note, found.method))
    if found.verdict in ("unknown", "several"):
        # Sending again could pay for a second run; failing keeps the promise (and says why, naming the runs).
        raise RecoveryFailed(f"attempt {sent.number} may have started a run, and it cannot be told which: "
                             f"{found.note}; not sent again, so as not to pay twice")
    if found.verdict != "one" or not context.attempts.claim(str(found.run["id"]), sent):
        log.warning("%s: attempt %d dropped; %s", job.name, sent.number, found.note)
        return False
    run = found.run
    run_id = str(run["id"])
    sent.started_run = True
    result.recovery.adopted, result.recovery.run_id, result.recovery.followed = True, run_id, followed
    if not followed:
        log.warning("%s: attempt %d dropped after the run started; adopting run %s instead of starting another",
                    job.name, sent.number, run_id)
    max_wait = job.follow if job.follow is not None else float(job.options.get("timeout") or SYNC_WAIT_SECONDS) \
        + NO_FOLLOW_WAIT
    run = recovery.wait_for(context.client, run, max_wait, context.cancelled, context.settings)
    answer = recovery.open_output(context.client, job, run, context.cancelled, context.settings)
    if answer is None:
        write(None, [], None)  # the run wrote no output record: what run-sync answers with an empty 201
        return True
    with answer:
        try:
            write(answer.content_type, answer.chunks(), answer.length)
        except ConnectionDropped as drop:  # never a reason to send the run again: the run is adopted
            raise RecoveryFailed(f"adopted run {run_id}, but its output download failed: {drop}",
                                 run_id=run_id) from None
        result.http_status = answer.status
    return True
