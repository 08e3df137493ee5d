"""Run one job: send its request under its retry policy and write its answer whole, into a JobResult."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from apify_jobs.api import recovery
from apify_jobs.api.client import Answer, ApiClient
from apify_jobs.api.failures import Cancelled, ConnectionDropped, HttpFailure, JobFailure, RecoveryFailed
from apify_jobs.api.request import RunRequest, build_request
from apify_jobs.api.retry import call_with_retries
from apify_jobs.model import Job, JobError, JobResult, Recovery, RecoveryLook, Status, now
from apify_jobs.outputs.destination import Destination

log = logging.getLogger("apify_jobs")
_Write = Callable[[str | None, Iterable[bytes], int | None], None]  # content type, body, length


@dataclass
class RunContext:
    """What every job of one run shares."""

    client: ApiClient
    destination: Destination
    cancelled: threading.Event = field(default_factory=threading.Event)
    claims: recovery.Claims = field(default_factory=recovery.Claims)

    @property
    def base_url(self) -> str:
        return self.client.base_url


def new_result(job: Job, request: RunRequest) -> JobResult:
    return JobResult(name=job.name, task=job.task, file=job.file, endpoint=request.endpoint,
                     query=dict(request.query), input_sha256=request.input_sha256)


def decided(job: Job, base_url: str, status: Status, message: str) -> JobResult:
    """The result of a job that was not run (skipped, cancelled, resumed)."""
    result = new_result(job, build_request(job, base_url))
    result.status = status
    result.error = JobError(status.value, message)
    result.finished_at = now()
    return result


def run_job(job: Job, context: RunContext) -> JobResult:
    request = build_request(job, context.base_url)
    result = new_result(job, request)
    result.started_at = now()
    started = time.monotonic()

    def write(content_type: str | None, chunks: Iterable[bytes], length: int | None = None) -> None:
        with context.destination.open(job, content_type, length) as writer:
            for chunk in chunks:
                writer.write(chunk)
            result.output = writer.commit()

    def attempt(number: int) -> None:
        log.info("%s: attempt %d: %s %s", job.name, number, request.method, request.url)
        sent_at = recovery.now_utc()
        try:
            with context.client.run_sync(request, job.http) as answer:
                result.http_status = answer.status
                write(answer.content_type, answer.chunks(), answer.length)
        except ConnectionDropped as drop:
            if drop.request_sent and job.retry.recover and _adopt(job, context, sent_at, number, result, write):
                return
            raise

    try:
        _, result.attempts = call_with_retries(job.name, job.retry, attempt, context.cancelled)
        result.status = Status.SUCCEEDED
        if result.empty_output:
            result.note = "the run produced no output record: an empty file was written"
    except Cancelled as failure:
        result.status = Status.CANCELLED
        result.attempts = failure.attempts
        result.error = JobError("cancelled", str(failure))
        if result.attempts:
            result.note = "cancelled while running: the platform may still be running it"
    except JobFailure as failure:
        result.status = Status.FAILED
        result.attempts = failure.attempts or 1
        result.http_status = failure.http_status
        result.error = JobError(failure.error_type, failure.message, failure.run_id, type(failure).stops_batch)
    result.finished_at = now()
    result.duration_ms = int((time.monotonic() - started) * 1000)
    return result


def _adopt(job: Job, context: RunContext, sent_at: datetime, number: int, result: JobResult, write: _Write) -> bool:
    """After a drop: adopt the run the attempt started, if exactly one can be found. True when its output is written."""
    found = recovery.find_runs(context.client, job, sent_at, context.claims, context.cancelled)
    note = recovery.describe(found)
    result.recovery = result.recovery or Recovery()
    result.recovery.looks.append(RecoveryLook(number, found.verdict, [r["id"] for r in found.candidates], note))
    if found.verdict != "one" or not context.claims.claim(found.candidates[0]["id"]):
        log.warning("%s: attempt %d dropped; %s", job.name, number, note)
        return False
    run = found.candidates[0]
    result.recovery.adopted, result.recovery.run_id = True, run["id"]
    log.warning("%s: attempt %d dropped after the run started; adopting run %s instead of starting another",
                job.name, number, run["id"])
    run = recovery.wait_for(context.client, job, run, context.cancelled)
    try:
        answer: Answer = recovery.open_output(context.client, job, run, context.cancelled)
    except HttpFailure as missing:
        if missing.http_status != 404:
            raise
        write(None, [], None)  # the run wrote no output record: what run-sync answers with an empty 201
        return True
    with answer:
        try:
            write(answer.content_type, answer.chunks(), answer.length)
        except ConnectionDropped as drop:  # never a reason to send the run again: the run is adopted
            raise RecoveryFailed(f"adopted run {run['id']}, but its output download failed: {drop}",
                                 run_id=run["id"]) from None
        result.http_status = answer.status
    return True
