"""One HTTP call to a run-sync endpoint over a shared `requests.Session`, sorted into success or a failure class.

Retrying is not done here (see retry.py); this module only sends once and says what happened.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

import requests
import requests.auth
import requests.utils
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NameResolutionError, NewConnectionError

from apify_jobs import __version__, redaction
from apify_jobs.errors import UsageError
from apify_jobs.failures import ERROR_BODY_LIMIT, ConnectionDropped, classify
from apify_jobs.model import HttpTimeouts
from apify_jobs.request import DEFAULT_BASE_URL, RunRequest

CHUNK_BYTES = 4 << 20
TRICKLE_FLOOR = 1024
USER_AGENT = f"apify-jobs/{__version__}"


@dataclass(frozen=True)
class Answer:
    """A 201 whose body is being streamed; ``chunks`` raises ConnectionDropped if the body is cut short."""

    status: int
    content_type: str | None
    length: int | None
    chunks: Iterator[bytes]


def check_base_url(base_url: str) -> None:
    """The token is never sent over plain http, except to this machine."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"APIFY_API_BASE_URL {base_url!r} is not an http(s) URL")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise UsageError(f"refusing to send the token over plain http to {parts.hostname}; use https "
                         "(plain http is allowed only to a loopback address)")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    import ipaddress  # only for a plain-http base URL

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _BearerAuth(requests.auth.AuthBase):
    """The token goes into the Authorization header and nowhere else (its repr does not show it)."""

    def __init__(self, token: str | None):
        self._token = token
        redaction.register(token)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if self._token:
            request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "<BearerAuth [redacted]>"


class ApiClient:
    """Sends run requests; one instance (one connection pool sized to the concurrency) per run."""

    def __init__(self, token: str | None, pool_size: int = 10, base_url: str = DEFAULT_BASE_URL):
        self._session = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(pool_size, 1), max_retries=0)
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        self._session.auth = _BearerAuth(token)
        # The environment is read once, not on every request (that cost ~0.2 ms a request): proxies
        # (HTTPS_PROXY, NO_PROXY) and a CA bundle (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE) still apply;
        # ~/.netrc never does, so nothing can replace the bearer token. TLS verification stays on.
        self._session.trust_env = False
        if not _is_loopback(urlsplit(base_url).hostname or ""):  # the emulator is never behind a proxy
            self._session.proxies.update(requests.utils.get_environ_proxies(base_url))
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if bundle:
            self._session.verify = bundle
        self._headers = {"User-Agent": USER_AGENT, "Content-Type": "application/json"}

    def close(self) -> None:
        self._session.close()

    def get(self, url: str, timeouts: HttpTimeouts, params: dict[str, Any] | None = None) -> requests.Response:
        """A small GET (drop recovery); raises the same failure classes as `send`."""
        return self._open("GET", url, timeouts, (200,), params=params)

    def send(self, request: RunRequest, timeouts: HttpTimeouts) -> tuple[Answer, Callable[[], None]]:
        """POST once. Returns the 201 answer and a closer; raises a JobFailure for anything else."""
        response = self._open("POST", request.url, timeouts, (200, 201), data=request.body)
        return Answer(response.status_code, response.headers.get("Content-Type"), content_length(response),
                      body_chunks(response, timeouts.read)), response.close

    def _open(self, method: str, url: str, timeouts: HttpTimeouts, ok: tuple[int, ...], **kw: Any) -> requests.Response:
        """One streamed request, its connection failures and non-`ok` answers turned into failure classes."""
        response = self._call(lambda: self._session.request(method, url, headers=self._headers, stream=True,
                                                            timeout=(timeouts.connect, timeouts.read), **kw))
        return self._checked(response, ok)

    @staticmethod
    def _call(send: Callable[[], requests.Response]) -> requests.Response:
        try:
            return send()
        except requests.ConnectTimeout:
            raise ConnectionDropped("could not connect in time", request_sent=False) from None
        except requests.ConnectionError as exc:
            reason = getattr(exc.args[0], "reason", None) if exc.args else None
            if isinstance(reason, (NewConnectionError, NameResolutionError)):
                raise ConnectionDropped(f"could not connect: {_short(reason)}", request_sent=False) from None
            raise ConnectionDropped(f"connection dropped before the answer: {_short(exc)}", request_sent=True) from None
        except requests.Timeout:
            raise ConnectionDropped("no answer within the read timeout", request_sent=True) from None
        except requests.RequestException as exc:
            raise ConnectionDropped(f"request failed: {_short(exc)}", request_sent=True) from None

    @staticmethod
    def _checked(response: requests.Response, ok: tuple[int, ...]) -> requests.Response:
        if response.status_code in ok:
            return response
        try:
            body = b"".join(_limited(response, ERROR_BODY_LIMIT))
        except ConnectionDropped:
            body = b""
        finally:
            response.close()
        raise classify(response.status_code, body, response.headers)


def content_length(response: requests.Response) -> int | None:
    try:
        length = int(response.headers.get("Content-Length", ""))
    except ValueError:
        return None
    return length if length >= 0 and "Content-Encoding" not in response.headers else None


def body_chunks(response: requests.Response, window: float = 330.0) -> Iterator[bytes]:
    """The body as it arrives. Silence longer than the read timeout ends it (the socket's timeout), and so
    does a trickle: fewer than TRICKLE_FLOOR bytes in any read-timeout window (read1 returns whatever has
    arrived, so a slow server cannot hold one read open for ever)."""
    window_started, window_bytes = time.monotonic(), 0
    try:
        while True:
            data = response.raw.read1(CHUNK_BYTES)
            if not data:
                return
            yield data
            window_bytes += len(data)
            if time.monotonic() - window_started >= window:
                if window_bytes < TRICKLE_FLOOR:
                    raise ConnectionDropped(f"the answer trickled in: {window_bytes} bytes in {window:g} s; "
                                            "giving up on it", request_sent=True)
                window_started, window_bytes = time.monotonic(), 0
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise ConnectionDropped(f"connection dropped in the middle of the answer: {_short(exc)}",
                                request_sent=True) from None
    finally:
        response.close()


def _limited(response: requests.Response, limit: int) -> Iterator[bytes]:
    taken = 0
    for chunk in body_chunks(response):
        yield chunk[: limit - taken]
        taken += len(chunk)
        if taken >= limit:
            return


def _short(exc: BaseException) -> str:
    text = str(exc)
    cut = re.search(r"IncompleteRead\((\d+) bytes read, (\d+) more expected\)", text)
    if cut:
        return f"the answer was cut short after {cut.group(1)} bytes, {cut.group(2)} more expected"
    if "RemoteDisconnected" in text or "without response" in text:
        return "the server closed the connection without answering"
    if "Connection reset" in text or "ConnectionResetError" in text:
        return "the connection was reset"
    if "Connection refused" in text:
        return "connection refused"
    # urllib3 repeats the whole connection object and URL; the last clause says what happened.
    if "(Caused by" in text:
        text = text.split("(Caused by", 1)[1].rstrip(")")
    return text.strip()[:200]
