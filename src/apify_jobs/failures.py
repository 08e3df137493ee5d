"""How a job can fail: one exception type per class of DESIGN.md's table, and the rule that sorts answers."""

from __future__ import annotations

import json
import re
from typing import Mapping

ERROR_BODY_LIMIT = 64 * 1024
_RUN_ID = re.compile(r"run ID:?\s*([A-Za-z0-9]{6,})|runs?/([A-Za-z0-9]{6,})")


class JobFailure(Exception):
    """A job did not produce its output. ``retry_class`` names the `retry.on` entry that may retry it."""

    error_type = "failed"
    retry_class: str | None = None

    def __init__(self, message: str, http_status: int | None = None, error_type: str | None = None,
                 run_id: str | None = None):
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        if error_type:
            self.error_type = error_type
        self.run_id = run_id


class ConnectionDropped(JobFailure):
    """No connection, a reset, a body cut short or a read timeout. ``request_sent``: a run may have started."""

    error_type = "connection-dropped"
    retry_class = "connection"

    def __init__(self, message: str, request_sent: bool):
        super().__init__(message)
        self.request_sent = request_sent


class RunFailed(JobFailure):
    """The run started and failed: never retried (a second run costs money and fails again)."""

    error_type = "run-failed"


class RunTimeoutExceeded(JobFailure):
    """408: run-sync stopped waiting while the run goes on: never retried."""

    error_type = "run-timeout-exceeded"


class RateLimited(JobFailure):
    error_type = "rate-limit-exceeded"
    retry_class = "rate-limit"

    def __init__(self, message: str, http_status: int, retry_after: float | None):
        super().__init__(message, http_status)
        self.retry_after = retry_after


class CapacityExceeded(JobFailure):
    """No run was started (account concurrency or memory limit)."""

    retry_class = "capacity"


class ServerError(JobFailure):
    retry_class = "server-error"


class AuthFailed(JobFailure):
    """401/403: every other job would fail the same way, so the batch stops."""


class HttpFailure(JobFailure):
    """Any other answer that is not 201."""


class OutputFailure(JobFailure):
    """The answer arrived but could not be written (disk full, a path that leads out of the folder)."""

    error_type = "output-failed"


class Cancelled(JobFailure):
    error_type = "cancelled"


CAPACITY_TYPES = frozenset({"concurrent-runs-limit-exceeded", "actor-memory-limit-exceeded"})


def classify(status: int, body: bytes, headers: Mapping[str, str]) -> JobFailure:
    """The failure an answer other than 201 stands for."""
    error_type, message = _error_of(body, headers)
    shown = message or f"HTTP {status} with a {headers.get('Content-Type', 'non-JSON')} body"
    if status == 400 and error_type == "run-failed":
        return RunFailed(shown, status, run_id=find_run_id(message))
    if status == 408:
        return RunTimeoutExceeded(shown, status, error_type or "run-timeout-exceeded")
    if status == 429:
        return RateLimited(shown, status, _retry_after(headers.get("Retry-After")))
    if error_type in CAPACITY_TYPES:
        return CapacityExceeded(shown, status, error_type)
    if status in (401, 403):
        return AuthFailed(shown, status, error_type or f"http-{status}")
    if status >= 500:
        return ServerError(shown, status, error_type or f"http-{status}")
    return HttpFailure(shown, status, error_type or f"http-{status}")


def _error_of(body: bytes, headers: Mapping[str, str]) -> tuple[str | None, str]:
    try:
        error = json.loads(body.decode("utf-8"))["error"]
        return str(error.get("type") or "") or None, str(error.get("message") or "")
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        return None, ""


def find_run_id(message: str) -> str | None:
    match = _RUN_ID.search(message or "")
    return (match.group(1) or match.group(2)) if match else None


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: fall back to our own back-off
