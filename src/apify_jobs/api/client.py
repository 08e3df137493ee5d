"""The Apify API as this tool uses it: one method an endpoint, each sending once and returning an `Answer`.

`ApiClient` owns the base URL, the session (one connection pool sized to the concurrency) and the token;
no other module builds an API URL or holds a `requests.Response`. Retrying is not done here (retry.py);
this module sends once and says what happened: an Answer for the expected statuses, otherwise the
failure class of the answer or of the connection error (failures.py).
"""

from __future__ import annotations

import json
import os
import re
import time
import zlib
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any, cast
from urllib.parse import quote, urlencode, urlsplit

import requests
import requests.auth
import requests.utils
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import DEFAULT_CA_BUNDLE_PATH

from apify_jobs import __version__
from apify_jobs.api.failures import ERROR_BODY_LIMIT, classify, drop_reason, transport_failure
from apify_jobs.api.identity import user_agent
from apify_jobs.api.request import DEFAULT_BASE_URL, RunRequest, target_path
from apify_jobs.errors import UsageError
from apify_jobs.failures import AnswerTooLarge, ConnectionDropped, InvalidAnswer, JobFailure
from apify_jobs.model import HttpTimeouts

# At most this much per read (decoded): 4 MiB reads allocated and faulted in a fresh 4 MiB buffer each time:
# 512 MiB gzip-served took 1.7-2.1 s, 1.1-1.3 s at 256 KiB, where buffers are reused; plain answers
# 0.8-1.4 s -> 0.72-0.75 s.
CHUNK_BYTES = 256 << 10
TRICKLE_FLOOR = 1024
MAX_CONTENT_LENGTH = 1 << 50  # a petabyte: anything larger is not an answer, it is a broken server
ENCODINGS = ("", "identity", "gzip")  # we ask for gzip only, and decode it as it streams (_Gunzip)
CA_SETTINGS = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")  # the first one set wins
JSON_LIMIT = 16 << 20  # a run listing of 1,000 runs is ~2 MB; anything far larger is not an answer we parse
USER_AGENT = f"apify-jobs/{__version__}"
# A URL of only the characters RFC 3986 allows unescaped (and escapes): what this module builds with quote() and
# urlencode() from a plain base URL. Anything else (a space, a non-ASCII host) goes through requests' preparation.
_PLAIN_URL = re.compile(r"https?://[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
LOOKUPS = 4  # look-ups (GETs) that may be under way at once beside the jobs' POSTs
LOOKUP_TIMEOUTS = HttpTimeouts(connect=10.0, read=90.0)  # GETs: waitForFinish holds one open for at most 60 s


def check_base_url(base_url: str) -> None:
    """The token is never sent over plain http, except to this machine."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"APIFY_API_BASE_URL {base_url!r} is not an http(s) URL")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise UsageError(f"refusing to send the token over plain http to {parts.hostname}; use https "
                         "(plain http is allowed only to a loopback address)")


def ca_setting(environ: Mapping[str, str]) -> tuple[str, str] | None:
    """The CA certificates to trust instead of the defaults: (variable, path) of the first one set. A path that
    does not exist is a usage error, before anything is sent (an "internal error" on every job otherwise)."""
    for name in CA_SETTINGS:
        path = environ.get(name)
        if path:
            if not os.path.exists(path):
                raise UsageError(f"{name} points at {path}, which does not exist; fix or unset it")
            return name, path
    return None


def is_loopback(host: str) -> bool:
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

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers.update(self.headers_for({}))
        return request

    def headers_for(self, headers: Mapping[str, str]) -> dict[str, str]:
        """``headers`` as this auth sends them: with the Authorization header (not shown by their repr)."""
        return _WithToken({**headers, "Authorization": f"Bearer {self._token}"} if self._token else headers)

    def __repr__(self) -> str:
        return "<BearerAuth [redacted]>"


class _WithToken(dict[str, str]):
    """Headers that carry the token: their repr (a traceback's locals, a debugger) does not show it."""

    def __repr__(self) -> str:
        return f"<headers {sorted(self)} [redacted]>"


class Answer:
    """An answer with the expected status, its body not yet read. A context manager: leaving it closes the
    connection. ``chunks()`` streams the body and raises ConnectionDropped if it is cut short."""

    def __init__(self, response: requests.Response, read_timeout: float):
        self._response = response
        self._window = read_timeout
        self.status: int = response.status_code
        self.headers: dict[str, str] = dict(response.headers)
        self.content_type: str | None = response.headers.get("Content-Type")
        self.encoding = (response.headers.get("Content-Encoding") or "").strip().lower()
        self.length: int | None = _content_length(response)

    def __enter__(self) -> Answer:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._response.close()

    def chunks(self) -> Iterator[bytes]:
        """The body as it arrives, decoded. Silence longer than the read timeout ends it (the socket's timeout),
        and so does a trickle: fewer than TRICKLE_FLOOR bytes in any read-timeout window (read1 returns whatever
        has arrived, so a slow server cannot hold one read open for ever)."""
        window_started, window_bytes = time.monotonic(), 0
        raw = self._response.raw
        gunzip = _Gunzip() if self.encoding == "gzip" else None
        try:
            while True:
                # gzip is decoded here, not by urllib3 (which copies each decoded chunk twice more: 512 MiB
                # gzip-served took ~40 % longer); what is written, hashed and bounded is the decoded body.
                data = raw.read1(CHUNK_BYTES, decode_content=gunzip is None)
                if not data:
                    if gunzip is not None:
                        gunzip.finish()
                    raw.release_conn()  # read to its end: the connection goes back to the pool for the next job
                    return
                if gunzip is None:
                    yield data
                else:
                    yield from gunzip.feed(data)
                window_bytes += len(data)
                if time.monotonic() - window_started >= self._window:
                    if window_bytes < TRICKLE_FLOOR:
                        raise ConnectionDropped(f"the answer trickled in: {window_bytes} bytes in {self._window:g} s; "
                                                "giving up on it", request_sent=True)
                    window_started, window_bytes = time.monotonic(), 0
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError, zlib.error) as exc:
            raise ConnectionDropped(f"connection dropped in the middle of the answer: {drop_reason(exc)[0]}",
                                    request_sent=True) from None
        finally:
            self.close()

    def read(self, limit: int) -> bytes:
        """At most ``limit`` bytes of the body; the rest is not read."""
        taken: list[bytes] = []
        size = 0
        for chunk in self.chunks():
            taken.append(chunk[: limit - size])
            size += len(chunk)
            if size >= limit:
                break
        return b"".join(taken)

    def json(self, limit: int = JSON_LIMIT) -> Any:
        """The body parsed as JSON; a body that is not JSON (or larger than ``limit``) is a JobFailure."""
        body = self.read(limit + 1)
        if len(body) > limit:
            raise AnswerTooLarge(f"the answer is larger than {limit} bytes; not parsed", self.status)
        try:
            return json.loads(body)
        except ValueError:
            raise JobFailure(f"the answer (HTTP {self.status}) is not JSON", self.status, "invalid-answer") from None


class _Gunzip:
    """A gzip body decoded as it arrives, CHUNK_BYTES at most at a time (however well it compresses), members
    one after another as gzip allows; what follows a complete member, if it is not gzip, is ignored (as
    urllib3 and curl do)."""

    def __init__(self) -> None:
        self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._after_a_member = False  # a complete member ended, and nothing of what follows was decoded yet

    def feed(self, data: bytes) -> Iterator[bytes]:
        while data:
            try:
                out = self._inflate.decompress(data, CHUNK_BYTES)
            except zlib.error:
                if self._after_a_member:
                    return  # trailing bytes that are not another member
                raise
            if out:
                self._after_a_member = False
                yield out
            data = self._inflate.unconsumed_tail
            if self._inflate.eof:
                data = self._inflate.unused_data
                self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
                self._after_a_member = True

    def finish(self) -> None:
        """The body ended: a member cut short means part of the output is missing."""
        if not self._after_a_member:
            raise zlib.error("the compressed answer ended before its end")


def _content_length(response: requests.Response) -> int | None:
    """The decoded body's size when the answer says it (not for a compressed one); None when unknown."""
    try:
        length = int(response.headers.get("Content-Length", ""))
    except ValueError:
        return None
    if length > MAX_CONTENT_LENGTH:
        raise InvalidAnswer(f"the answer declares a Content-Length of {length} bytes; as the server did answer, "
                            "nothing is sent again", response.status_code)
    return length if length >= 0 and "Content-Encoding" not in response.headers else None


def _keepalive_options() -> list[tuple[int, int, int]]:
    """TCP keepalive on every connection: run-sync holds one idle for up to 300 s, and NAT gateways and proxies
    drop idle flows after minutes; the cheapest drop is the one that never happens (idle 30 s, then a probe
    every 10 s, 5 probes)."""
    import socket

    from urllib3.connection import HTTPConnection

    options = [*HTTPConnection.default_socket_options, (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    for name, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 5)):
        if hasattr(socket, name):  # Linux names; other systems keep their defaults
            options.append((socket.IPPROTO_TCP, getattr(socket, name), value))
    return options


class _KeepaliveAdapter(HTTPAdapter):
    def __init__(self, ca: str | None, **kwargs: Any):
        # requests looks at the CA bundle on the disk on every request (one stat for plain http with a bundle
        # set, two for https): each a hand-off of the interpreter lock, ~2 ms of a job's time with 50 jobs at
        # once. Looked at once here, and passed on as requests would.
        self._ca = ca or DEFAULT_CA_BUNDLE_PATH
        self._ca_key = "ca_cert_dir" if os.path.isdir(self._ca) else "ca_certs"
        self._ca_found = os.path.exists(self._ca)
        super().__init__(**kwargs)

    def build_connection_pool_key_attributes(self, request: requests.PreparedRequest, verify: bool | str,
                                             cert: Any = None) -> Any:
        host, pool = super().build_connection_pool_key_attributes(request, bool(verify), cert)
        if isinstance(verify, str):
            cast(dict[str, Any], pool)[self._ca_key] = verify
        return host, pool

    def cert_verify(self, conn: Any, url: str, verify: bool | str, cert: Any) -> None:
        """As requests does it, from what was looked at once (no client certificate is ever sent)."""
        if url[:5].lower() != "https" or not verify:
            conn.cert_reqs, conn.ca_certs, conn.ca_cert_dir = "CERT_NONE", None, None
            return
        if not self._ca_found:
            raise OSError(f"Could not find a suitable TLS CA certificate bundle, invalid path: {self._ca}")
        conn.cert_reqs = "CERT_REQUIRED"
        setattr(conn, self._ca_key, self._ca)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["socket_options"] = _keepalive_options()
        super().init_poolmanager(*args, **kwargs)

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        kwargs["socket_options"] = _keepalive_options()
        return super().proxy_manager_for(proxy, **kwargs)

    def build_response(self, req: requests.PreparedRequest, resp: Any) -> requests.Response:
        """`HTTPAdapter.build_response` without its cookie jar (the API sets no cookies we would send back, and
        we never do) or text encoding (bodies are read as bytes): ~15 us a request."""
        response = requests.Response()
        response.status_code = resp.status
        response.headers = CaseInsensitiveDict(resp.headers)
        response.raw = resp
        response.reason = resp.reason
        response.url = str(req.url)
        response.request = req
        response.connection = self
        return response


class ApiClient:
    """The endpoints this tool calls. One instance (one connection pool sized to the concurrency) per run."""

    def __init__(self, token: str | None, pool_size: int = 10, base_url: str = DEFAULT_BASE_URL):
        self.base_url = base_url.rstrip("/")
        self._session = requests.Session()
        # At least LOOKUPS connections kept: the run facts of a batch over several tasks are looked up at once.
        ca = ca_setting(os.environ)
        adapter = self._adapter = _KeepaliveAdapter(ca[1] if ca else None, pool_connections=4,
                                                    pool_maxsize=max(pool_size, LOOKUPS), max_retries=0)
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        auth = self._session.auth = _BearerAuth(token)
        # The environment is read once, not on every request (that cost ~0.2 ms a request): proxies
        # (HTTPS_PROXY, NO_PROXY) and CA certificates (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, SSL_CERT_FILE,
        # SSL_CERT_DIR) still apply; ~/.netrc never does, so nothing can replace the bearer token. TLS
        # verification is never turned off.
        self._session.trust_env = False
        if not is_loopback(urlsplit(base_url).hostname or ""):  # the emulator is never behind a proxy
            self._session.proxies.update(requests.utils.get_environ_proxies(base_url))
        self._verify: bool | str = ca[1] if ca else True
        self._session.verify = self._verify
        self._proxy = self._session.proxies.get("https" if base_url.startswith("https") else "http")
        self._headers = {"User-Agent": USER_AGENT, "Content-Type": "application/json", "Accept-Encoding": "gzip"}
        # What `Session.request` would send under this request's own headers: the session's defaults, then ours,
        # then the bearer token (merged once, not on every request).
        session_headers = {name: str(value) for name, value in self._session.headers.items()}
        self._sent_headers = auth.headers_for({**session_headers, **self._headers})

    def close(self) -> None:
        self._session.close()

    # --- the endpoints ---------------------------------------------------------------------------
    def run_sync(self, request: RunRequest, timeouts: HttpTimeouts, attempt_id: str | None = None) -> Answer:
        """POST a run-sync request once: the 201 (or 200) answer, or the failure it stands for. ``attempt_id``
        goes into the User-Agent, where the run's `meta.userAgent` keeps it (identity.py)."""
        headers = {**self._headers, "User-Agent": user_agent(attempt_id)} if attempt_id else None
        return self._open("POST", request.url, timeouts, (200, 201), data=request.body, headers=headers)

    def list_runs(self, task: str, *, offset: int = 0, limit: int = 50, desc: bool = True, actor: bool = False,
                  timeouts: HttpTimeouts = LOOKUP_TIMEOUTS) -> Answer:
        """The runs of a task (or, with ``actor``, of an Actor)."""
        query = {"offset": offset, "limit": limit, "desc": "true" if desc else "false"}
        return self._get(f"{target_path(task, actor)}/runs", timeouts, query)

    def get_run(self, run_id: str, *, wait_for_finish: int | None = None,
                timeouts: HttpTimeouts = LOOKUP_TIMEOUTS) -> Answer:
        query = {"waitForFinish": wait_for_finish} if wait_for_finish is not None else None
        return self._get(f"/v2/actor-runs/{quote(run_id, safe='')}", timeouts, query)

    def get_record(self, store_id: str, key: str, timeouts: HttpTimeouts = LOOKUP_TIMEOUTS) -> Answer:
        return self._get(f"/v2/key-value-stores/{quote(store_id, safe='')}/records/{quote(key, safe='')}", timeouts)

    def dataset_items(self, dataset_id: str, params: dict[str, str],
                      timeouts: HttpTimeouts = LOOKUP_TIMEOUTS) -> Answer:
        return self._get(f"/v2/datasets/{quote(dataset_id, safe='')}/items", timeouts, params)

    def task_input(self, task: str, timeouts: HttpTimeouts = LOOKUP_TIMEOUTS) -> Answer:
        return self._get(f"/v2/actor-tasks/{quote(task, safe='~')}/input", timeouts)

    def abort_run(self, run_id: str, timeouts: HttpTimeouts = LOOKUP_TIMEOUTS) -> Answer:
        return self._open("POST", f"{self.base_url}/v2/actor-runs/{quote(run_id, safe='')}/abort", timeouts, (200,))

    # --- one request -----------------------------------------------------------------------------
    def account_limits(self, timeouts: HttpTimeouts = LOOKUP_TIMEOUTS) -> Answer:
        return self._get("/v2/users/me/limits", timeouts)

    def _prepare(self, method: str, url: str, headers: dict[str, str] | None, data: bytes | None
                 ) -> requests.PreparedRequest:
        """The request `Session.request` would send (the session's headers under this request's, the bearer
        auth), sent straight to the adapter: the session's per-request merging of cookies, hooks, params and the
        environment does nothing here (none is used, the environment is read once) and cost ~0.1 ms of CPU a
        request (requests 2.34 checks runtime Protocols on every merged setting). Redirects are never followed, so
        the session's redirect handling is not needed either. A URL this module built is already quoted: it is
        sent as it is, without `prepare`'s parsing, IDNA and re-quoting (~50 us); any other goes through them."""
        if not _PLAIN_URL.fullmatch(url):
            prepared = requests.PreparedRequest()
            prepared.prepare(method=method, url=url, headers={**self._session.headers, **(headers or self._headers)},
                             data=data, auth=self._session.auth)
            return prepared
        prepared = requests.PreparedRequest()
        prepared.method = method
        prepared.url = url
        prepared.headers = CaseInsensitiveDict(self._sent_headers)
        if headers:
            prepared.headers.update(headers)
        if data is not None:
            prepared.headers["Content-Length"] = str(len(data))
        elif method not in ("GET", "HEAD"):
            prepared.headers["Content-Length"] = "0"
        prepared.body = data
        return prepared

    def _get(self, path: str, timeouts: HttpTimeouts, query: dict[str, Any] | None = None) -> Answer:
        url = self.base_url + path + (f"?{urlencode(query)}" if query else "")
        return self._open("GET", url, timeouts, (200,))

    def _open(self, method: str, url: str, timeouts: HttpTimeouts, ok: tuple[int, ...],
              headers: dict[str, str] | None = None, data: bytes | None = None) -> Answer:
        """One streamed request: an Answer for an ``ok`` status, a failure class for anything else."""
        try:
            response = self._adapter.send(self._prepare(method, url, headers, data),
                                          stream=True, timeout=(timeouts.connect, timeouts.read),
                                          verify=self._verify, cert=None, proxies=self._session.proxies)
        except requests.ConnectTimeout as exc:
            raise transport_failure(exc, connecting=True, proxied=self._proxy) from None
        except requests.RequestException as exc:
            raise transport_failure(exc, proxied=self._proxy) from None
        try:
            answer = Answer(response, timeouts.read)
        except JobFailure:
            response.close()
            raise
        if answer.encoding not in ENCODINGS:
            answer.close()
            raise InvalidAnswer(f"the answer (HTTP {answer.status}) is encoded as {answer.encoding!r}, which was not "
                                "asked for (only gzip is); it was not saved", answer.status)
        if response.status_code in ok:
            return answer
        try:
            body = answer.read(ERROR_BODY_LIMIT)
        except ConnectionDropped:
            body = b""
        finally:
            answer.close()
        failure = classify(response.status_code, body, response.headers)
        if failure.http_status == 404:  # a wrong base URL or name must be obvious from the message
            failure.message = (f"HTTP 404 for {method} {urlsplit(url).path}: {failure.message}; check the task or "
                               "Actor name and APIFY_API_BASE_URL")
            failure.args = (failure.message,)
        raise failure
