"""Run one job: send its request under its retry policy and write its answer whole, into a JobResult."""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Callable, Iterable

from apify_jobs import recovery
from apify_jobs.failures import AuthFailed, Cancelled, ConnectionDropped, HttpFailure, JobFailure
from apify_jobs.http_client import ApiClient, body_chunks, content_length
from apify_jobs.model import Job
from apify_jobs.output import Guard, extension_for, safe_target, write_whole
from apify_jobs.report import JobResult, now
from apify_jobs.request import (
    UNKNOWN_EXTENSION,
    RunRequest,
    build_request,
    planned_output,
)
from apify_jobs.retry import call_with_retries

log = logging.getLogger("apify_jobs")


@dataclass
class RunContext:
    """What every job of one run shares."""

    client: ApiClient
    base_url: str
    out_dir: str
    guard: Guard
    cancelled: threading.Event
    claims: recovery.Claims = field(default_factory=recovery.Claims)


def new_result(job: Job, request: RunRequest) -> JobResult:
    return JobResult(name=job.name, task=job.task, file=job.file, endpoint=request.endpoint,
                     query=dict(request.query), input_sha256=request.input_sha256)


def run_job(job: Job, context: RunContext) -> JobResult:
    request = build_request(job, context.base_url)
    result = new_result(job, request)
    result.started_at = now()
    started = time.monotonic()

    def write(content_type: str | None, chunks: Iterable[bytes], length: int | None = None) -> None:
        shown = _target(job, context.out_dir, content_type)
        target = safe_target(context.out_dir, os.path.relpath(shown, context.out_dir))
        result.output = replace(write_whole(target, chunks, content_type, context.guard, length), path=shown)
        result.empty_output = result.output.bytes == 0

    def attempt(number: int) -> None:
        log.info("%s: attempt %d: %s %s", job.name, number, request.method, request.url)
        sent_at = recovery.now_utc()
        try:
            answer, close = context.client.send(request, job.http)
            try:
                result.http_status = answer.status
                write(answer.content_type, answer.chunks, answer.length)
            finally:
                close()
        except ConnectionDropped as drop:
            if drop.request_sent and job.retry.recover and _adopt(job, context, sent_at, number, result, write):
                return
            raise

    try:
        _, result.attempts = call_with_retries(job.name, job.retry, attempt, context.cancelled)
        result.status = "succeeded"
        if result.empty_output:
            result.note = "the run produced no output record: an empty file was written"
    except Cancelled as failure:
        result.status = "cancelled"
        result.attempts = getattr(failure, "attempts", 0)
        result.error = {"type": "cancelled", "message": str(failure)}
        if result.attempts:
            result.note = "cancelled while running: the platform may still be running it"
    except JobFailure as failure:
        result.status = "failed"
        result.attempts = getattr(failure, "attempts", 1)
        result.http_status = failure.http_status
        result.error = {"type": failure.error_type, "message": failure.message}
        if failure.run_id:
            result.error["runId"] = failure.run_id
        if isinstance(failure, AuthFailed):
            result.extra["stopsBatch"] = True
    result.extra.setdefault("recovery", None)
    result.finished_at = now()
    result.duration_ms = int((time.monotonic() - started) * 1000)
    return result


def _adopt(job: Job, context: RunContext, sent_at: datetime, number: int, result: JobResult,
           write: Callable[[str | None, Iterable[bytes], int | None], None]) -> bool:
    """After a drop: adopt the run the attempt started, if exactly one can be found. True when its output is written."""
    found = recovery.find_runs(context.client, context.base_url, job, sent_at, context.claims)
    note = recovery.describe(found)
    looks = result.extra.setdefault("recovery", {"adopted": False, "runId": None, "looks": []})["looks"]
    looks.append({"attempt": number, "found": found.verdict, "runIds": [r["id"] for r in found.candidates], "note": note})
    if found.verdict != "one" or not context.claims.claim(found.candidates[0]["id"]):
        log.warning("%s: attempt %d dropped; %s", job.name, number, note)
        return False
    run = found.candidates[0]
    result.extra["recovery"].update(adopted=True, runId=run["id"])
    log.warning("%s: attempt %d dropped after the run started; adopting run %s instead of starting another",
                job.name, number, run["id"])
    run = recovery.wait_for(context.client, context.base_url, job, run)
    url, params = recovery.output_url(context.base_url, job, run)
    try:
        response = recovery.get_patiently(context.client, url, job, params)
    except HttpFailure as missing:
        if missing.http_status != 404:
            raise
        write(None, [], None)  # the run wrote no output record: what run-sync answers with an empty 201
        return True
    try:
        write(response.headers.get("Content-Type"), body_chunks(response, job.http.read), content_length(response))
    except ConnectionDropped as drop:  # never a reason to send the run again: the run is adopted
        raise JobFailure(f"adopted run {run['id']}, but its output download failed: {drop}",
                         error_type="recovery-failed", run_id=run["id"]) from None
    result.http_status = response.status_code
    return True


def _target(job: Job, out_dir: str, content_type: str | None) -> str:
    planned = planned_output(job, out_dir)
    if planned.endswith(UNKNOWN_EXTENSION):
        planned = planned[: -len(UNKNOWN_EXTENSION)] + extension_for(content_type)
    return planned
