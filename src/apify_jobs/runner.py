"""Run one job: send its request under its retry policy and write its answer whole, into a JobResult."""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, replace

from apify_jobs.failures import AuthFailed, Cancelled, JobFailure
from apify_jobs.http_client import ApiClient
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


def new_result(job: Job, request: RunRequest) -> JobResult:
    return JobResult(name=job.name, task=job.task, file=job.file, endpoint=request.endpoint,
                     query=dict(request.query), input_sha256=request.input_sha256)


def run_job(job: Job, context: RunContext) -> JobResult:
    request = build_request(job, context.base_url)
    result = new_result(job, request)
    result.started_at = now()
    started = time.monotonic()

    def attempt(number: int) -> None:
        log.info("%s: attempt %d: %s %s", job.name, number, request.method, request.url)
        answer, close = context.client.send(request, job.http)
        try:
            result.http_status = answer.status
            shown = _target(job, context.out_dir, answer.content_type)
            target = safe_target(context.out_dir, os.path.relpath(shown, context.out_dir))
            written = write_whole(target, answer.chunks, answer.content_type, context.guard)
            result.output = replace(written, path=shown)
            result.empty_output = result.output.bytes == 0
        finally:
            close()

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
    result.finished_at = now()
    result.duration_ms = int((time.monotonic() - started) * 1000)
    return result


def _target(job: Job, out_dir: str, content_type: str | None) -> str:
    planned = planned_output(job, out_dir)
    if planned.endswith(UNKNOWN_EXTENSION):
        planned = planned[: -len(UNKNOWN_EXTENSION)] + extension_for(content_type)
    return planned
