"""How a job can fail: one exception type per row of the retry table, the registry of retry classes, and the
rules that sort an answer (by status and body) or a connection error (by exception type) into them."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

ERROR_BODY_LIMIT = 64 * 1024
_RUN_ID = re.compile(r"run ID:?\s*([A-Za-z0-9]{6,})|runs?/([A-Za-z0-9]{6,})")


class JobFailure(Exception):
    """A job did not produce its output. ``retry_class`` names the `retry.on` entry that may retry it;
    ``stops_batch``: every other job would fail the same way."""

    error_type = "failed"
    retry_class: str | None = None
    stops_batch = False

    def __init__(self, message: str, http_status: int | None = None, error_type: str | None = None,
                 run_id: str | None = None):
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        if error_type:
            self.error_type = error_type
        self.run_id = run_id
        self.attempts = 0  # set by the retry loop when it gives up


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

    stops_batch = True


class HttpFailure(JobFailure):
    """Any other answer that is not 201."""


class RecoveryFailed(JobFailure):
    """A run was adopted, but its state or output could not be fetched: never a reason to send it again."""

    error_type = "recovery-failed"


class FollowTimeout(JobFailure):
    """A run followed past run-sync's 300 s (or adopted) did not finish within `follow.maxWait`; it goes on."""

    error_type = "follow-timeout"


class OutputFailure(JobFailure):
    """The answer arrived but could not be written (disk full, a path that leads out of the folder)."""

    error_type = "output-failed"


class Cancelled(JobFailure):
    error_type = "cancelled"


# The one registry of `retry.on` values: the schema's enum must equal its keys (tests/test_failures.py).
RETRY_CLASSES: dict[str, type[JobFailure]] = {
    cls.retry_class: cls for cls in (ConnectionDropped, RateLimited, CapacityExceeded, ServerError)
    if cls.retry_class is not None
}

CAPACITY_TYPES = frozenset({"concurrent-runs-limit-exceeded", "actor-memory-limit-exceeded"})


def classify(status: int, body: bytes, headers: Mapping[str, str]) -> JobFailure:
    """The failure an answer other than 201 stands for."""
    error_type, message = _error_of(body)
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


def _error_of(body: bytes) -> tuple[str | None, str]:
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


# --- connection errors, by type -----------------------------------------------------------------

def causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and everything it wraps: requests keeps urllib3's error in ``args[0]``, urllib3 keeps the
    socket's in ``reason`` or ``__context__``."""
    seen: list[BaseException] = []
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop(0)
        if current is None or any(current is s for s in seen) or len(seen) > 20:
            continue
        seen.append(current)
        wrapped = current.args[0] if current.args and isinstance(current.args[0], BaseException) else None
        pending += [wrapped, getattr(current, "reason", None) if isinstance(getattr(current, "reason", None),
                                                                            BaseException) else None,
                    current.__cause__, current.__context__]
    return seen


def drop_reason(exc: BaseException) -> tuple[str, bool]:
    """What a transport error means, said plainly, and whether the request had left (a run may have started);
    decided by the exception types in its chain, never by matching their messages."""
    import http.client  # only when a connection failed

    import urllib3.exceptions

    chain = causes(exc)

    def has(*kinds: type[BaseException]) -> BaseException | None:
        return next((c for c in chain if isinstance(c, kinds)), None)

    if has(urllib3.exceptions.ConnectTimeoutError):
        return "could not connect in time", False
    if has(ConnectionRefusedError):
        return "connection refused", False
    unsent = has(urllib3.exceptions.NameResolutionError, urllib3.exceptions.NewConnectionError)
    if unsent is not None:
        return _last_clause(unsent), False
    cut = has(http.client.IncompleteRead, urllib3.exceptions.IncompleteRead)
    if isinstance(cut, (http.client.IncompleteRead, urllib3.exceptions.IncompleteRead)):
        got = len(cut.partial) if isinstance(cut.partial, bytes) else cut.partial
        return f"the answer was cut short after {got} bytes, {cut.expected} more expected", True
    if has(http.client.RemoteDisconnected):
        return "the server closed the connection without answering", True
    if has(ConnectionResetError):
        return "the connection was reset", True
    if has(urllib3.exceptions.ReadTimeoutError, TimeoutError):
        return "no answer within the read timeout", True
    return _last_clause(exc), True


def drop_of(exc: BaseException, *, connecting: bool = False) -> ConnectionDropped:
    """The ConnectionDropped a transport error before the answer stands for; ``connecting``: it is known that
    no byte of the request left (a connect timeout)."""
    if connecting:
        return ConnectionDropped("could not connect in time", request_sent=False)
    reason, sent = drop_reason(exc)
    if not sent:
        return ConnectionDropped(reason if reason.startswith("could not") else f"could not connect: {reason}",
                                 request_sent=False)
    if reason == "no answer within the read timeout":
        return ConnectionDropped(reason, request_sent=True)
    return ConnectionDropped(f"connection dropped before the answer: {reason}", request_sent=True)


def _last_clause(exc: BaseException) -> str:
    # urllib3 repeats the whole connection object and URL; the last clause says what happened.
    text = str(exc)
    if "(Caused by" in text:
        text = text.split("(Caused by", 1)[1].rstrip(")")
    return text.strip()[:200]
