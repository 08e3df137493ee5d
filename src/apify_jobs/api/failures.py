"""The rules that sort an API answer (by status and body) or a connection error (by exception type) into the
failure classes of `apify_jobs/failures.py`."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import urlsplit

from apify_jobs.failures import (
    AuthFailed,
    CapacityExceeded,
    ConnectionDropped,
    HttpFailure,
    InvalidAnswer,
    JobFailure,
    NoCredit,
    NotConnected,
    RateLimited,
    Redirected,
    RunFailed,
    RunTimeoutExceeded,
    ServerError,
    SetupFailed,
)
from apify_jobs.redaction import CUT

ERROR_BODY_LIMIT = 64 * 1024
_RUN_ID = re.compile(r"run ID:?\s*([A-Za-z0-9]{6,})|runs?/([A-Za-z0-9]{6,})")


CAPACITY_TYPES = frozenset({"concurrent-runs-limit-exceeded", "actor-memory-limit-exceeded"})


def classify(status: int, body: bytes, headers: Mapping[str, str]) -> JobFailure:
    """The failure an answer other than 201 stands for."""
    if 300 <= status < 400:
        location = headers.get("Location") or ""
        where = urlsplit(location).hostname or (location[:100] if location else "no Location")
        return Redirected(f"the API answered {status}, a redirect to {where}; redirects are never followed (a POST "
                          "would turn into a GET, or the input and token go to another host), and nothing was sent "
                          "again: check APIFY_API_BASE_URL", status, "redirected")
    error_type, message = _error_of(body)
    shown = message or f"HTTP {status} with {_article(headers.get('Content-Type', 'non-JSON'))} body"
    if status == 400 and error_type == "run-failed":
        return RunFailed(shown, status, run_id=find_run_id(message))
    if status == 408:
        return RunTimeoutExceeded(shown, status, error_type or "run-timeout-exceeded")
    if status == 429:
        return RateLimited(shown, status, _retry_after(headers.get("Retry-After")))
    if error_type in CAPACITY_TYPES:
        return CapacityExceeded(shown, status, error_type)
    if status == 402:
        return NoCredit(shown, status, error_type or "http-402")
    if status in (401, 403):
        return AuthFailed(shown, status, error_type or f"http-{status}")
    if status >= 500:
        return ServerError(shown, status, error_type or f"http-{status}",
                           _retry_after(headers.get("Retry-After")) if status == 503 else None)
    return HttpFailure(shown, status, error_type or f"http-{status}")


def _article(what: str) -> str:
    return ("an " if what[:1].lower() in "aeiou" else "a ") + what


_TYPE = re.compile(rb'"type"\s*:\s*"((?:[^"\\]|\\.){1,200})"')
_MESSAGE = re.compile(rb'"message"\s*:\s*"((?:[^"\\]|\\.){0,2000})("?)')


def _error_of(body: bytes) -> tuple[str | None, str]:
    try:
        error = json.loads(body.decode("utf-8"))["error"]
        return str(error.get("type") or "") or None, str(error.get("message") or "")
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        pass
    # An error body cut at its cap (or otherwise broken) still names its type and message near its start.
    kind, message = _TYPE.search(body), _MESSAGE.search(body)
    shown = _unescape(message.group(1)) + ("" if message.group(2) else CUT) if message else ""  # cut: marked
    return (_unescape(kind.group(1)) if kind else None), shown


def _unescape(raw: bytes) -> str:
    try:
        return str(json.loads(b'"' + raw + b'"'))
    except ValueError:
        return raw.decode("utf-8", "replace")


def find_run_id(message: str) -> str | None:
    match = _RUN_ID.search(message or "")
    return (match.group(1) or match.group(2)) if match else None


def _retry_after(value: str | None) -> float | None:
    """Retry-After in either form: seconds, or an HTTP date (how long from now)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds: float = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds)


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


def transport_failure(exc: BaseException, *, connecting: bool = False, proxied: str | None = None) -> JobFailure:
    """The failure a transport error stands for, decided by the exception types in its chain (never by
    matching messages): nothing sent, sent and dropped, an unreadable answer, or a broken set-up."""
    import http.client  # only when a connection failed
    import ssl

    import requests
    import urllib3.exceptions

    chain = causes(exc)

    def has(*kinds: type[BaseException]) -> BaseException | None:
        return next((c for c in chain if isinstance(c, kinds)), None)

    verification = has(ssl.SSLCertVerificationError)
    if verification is not None:
        why = getattr(verification, "verify_message", "") or _last_clause(verification)
        return SetupFailed(f"TLS certificate verification failed: {why}; if a proxy or firewall inspects TLS, point "
                           "SSL_CERT_FILE or REQUESTS_CA_BUNDLE at its CA certificate (verification is never turned off)")
    if has(requests.exceptions.ProxyError, urllib3.exceptions.ProxyError):
        proxy = f"the proxy {proxied}" if proxied else "the proxy"
        return SetupFailed(f"{proxy} failed: {_last_clause(exc)}; check HTTPS_PROXY and NO_PROXY")
    if connecting or has(urllib3.exceptions.ConnectTimeoutError):
        return NotConnected("could not connect in time")
    if has(ConnectionRefusedError):
        return NotConnected("could not connect: connection refused")
    unsent = has(urllib3.exceptions.NameResolutionError, urllib3.exceptions.NewConnectionError)
    if unsent is not None:
        return NotConnected(f"could not connect: {_last_clause(unsent)}")
    if has(ssl.SSLError) and has(requests.exceptions.SSLError, urllib3.exceptions.SSLError):
        return NotConnected(f"the TLS handshake failed: {_last_clause(has(ssl.SSLError) or exc)}")
    malformed = has(http.client.LineTooLong, http.client.HTTPException)
    if malformed is not None and not isinstance(malformed, (http.client.RemoteDisconnected,
                                                            http.client.IncompleteRead)):
        return InvalidAnswer(f"the server's answer could not be read ({type(malformed).__name__}: "
                             f"{str(malformed)[:200]}); as it did answer, nothing is sent again")
    reason, sent = drop_reason(exc)
    if reason == "no answer within the read timeout":
        return ConnectionDropped(reason, request_sent=True)
    return ConnectionDropped(f"connection dropped before the answer: {reason}", request_sent=sent)


def drop_reason(exc: BaseException) -> tuple[str, bool]:
    """What a dropped connection means, said plainly, and whether the request had left."""
    import http.client  # only when a connection failed

    import urllib3.exceptions

    chain = causes(exc)

    def has(*kinds: type[BaseException]) -> BaseException | None:
        return next((c for c in chain if isinstance(c, kinds)), None)

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
    if has(urllib3.exceptions.DecodeError):
        return f"the compressed answer could not be decoded ({_last_clause(exc)})", True
    return _last_clause(exc), True


def _last_clause(exc: BaseException) -> str:
    # urllib3 repeats the whole connection object and URL; the last clause says what happened.
    text = str(exc)
    if "(Caused by" in text:
        text = text.split("(Caused by", 1)[1].rstrip(")")
    return text.strip()[:200]
