"""Unit tests of the HTTP layer with `responses`: headers, encoding, classification of every answer."""

from __future__ import annotations

import base64
import json

import pytest
import requests
import responses

from apify_jobs.api import failures
from apify_jobs.api.client import USER_AGENT, ApiClient, check_base_url
from apify_jobs.api.request import build_request
from apify_jobs.errors import UsageError
from apify_jobs.model import HttpTimeouts
from tests.helpers import make_job

URL = "https://api.apify.com/v2/actor-tasks/me~t/run-sync"


@pytest.fixture
def job(tmp_path):
    return make_job(tmp_path, {"name": "a", "task": "me/t", "input": {"q": "café", "n": 1}})


@responses.activate
def test_headers_body_and_token_only_in_authorization(job) -> None:
    responses.post(URL, json={"ok": True}, status=201)
    with ApiClient("secret-token").run_sync(build_request(job), HttpTimeouts()) as answer:
        assert b"".join(answer.chunks()) == b'{"ok": true}'
    sent = responses.calls[0].request
    assert sent.headers["Authorization"] == "Bearer secret-token"
    assert sent.headers["User-Agent"] == USER_AGENT and sent.headers["Content-Type"] == "application/json"
    assert json.loads(sent.body) == {"q": "café", "n": 1} and "secret-token" not in sent.url


def test_query_encoding_of_every_option_type(tmp_path) -> None:
    hooks = [{"eventTypes": ["ACTOR.RUN.FAILED"], "requestUrl": "https://h.example/x"}]
    job = make_job(tmp_path, {"name": "a", "task": "me~t", "options": {
        "timeout": 60.0, "memory": 1024, "maxItems": 10, "maxTotalChargeUsd": 2.5, "restartOnError": True,
        "build": "latest", "outputRecordKey": "RESULT", "webhooks": hooks}})
    query = dict(build_request(job).query)
    assert query == {"timeout": "60", "memory": "1024", "maxItems": "10", "maxTotalChargeUsd": "2.5",
                     "restartOnError": "true", "build": "latest", "outputRecordKey": "RESULT",
                     "webhooks": query["webhooks"]}
    assert json.loads(base64.b64decode(query["webhooks"])) == hooks


def test_no_options_sends_no_query_and_an_empty_object(tmp_path) -> None:
    request = build_request(make_job(tmp_path, {"name": "a", "task": "abcDEF123"}))
    assert request.url == "https://api.apify.com/v2/actor-tasks/abcDEF123/run-sync" and request.body == b"{}"


@pytest.mark.parametrize(("status", "body", "headers", "kind", "error_type", "retry_class"), [
    (400, {"error": {"type": "run-failed", "message": "Actor run did not succeed (run ID: abcdefghijklmnopq, status: FAILED)"}},
     {}, failures.RunFailed, "run-failed", None),
    (408, {"error": {"type": "run-timeout-exceeded", "message": "late"}}, {}, failures.RunTimeoutExceeded,
     "run-timeout-exceeded", None),
    (429, {"error": {"type": "rate-limit-exceeded", "message": "slow down"}}, {"Retry-After": "3"},
     failures.RateLimited, "rate-limit-exceeded", "rate-limit"),
    (402, {"error": {"type": "concurrent-runs-limit-exceeded", "message": "full"}}, {}, failures.CapacityExceeded,
     "concurrent-runs-limit-exceeded", "capacity"),
    (400, {"error": {"type": "actor-memory-limit-exceeded", "message": "full"}}, {}, failures.CapacityExceeded,
     "actor-memory-limit-exceeded", "capacity"),
    (503, {"error": {"type": "server-overloaded", "message": "busy"}}, {}, failures.ServerError, "server-overloaded",
     "server-error"),
    (502, "<html><body>Bad Gateway</body></html>", {}, failures.ServerError, "http-502", "server-error"),
    (401, {"error": {"type": "token-not-valid", "message": "no"}}, {}, failures.AuthFailed, "token-not-valid", None),
    (404, {"error": {"type": "record-not-found", "message": "Actor task was not found"}}, {}, failures.HttpFailure,
     "record-not-found", None),
    (418, "", {}, failures.HttpFailure, "http-418", None),
])
@responses.activate
def test_every_answer_is_classified(job, status, body, headers, kind, error_type, retry_class) -> None:
    if isinstance(body, dict):
        responses.post(URL, json=body, status=status, headers=headers)
    else:
        responses.post(URL, body=body, status=status, headers=headers, content_type="text/html")
    with pytest.raises(failures.JobFailure) as caught:
        ApiClient("t").run_sync(build_request(job), HttpTimeouts())
    failure = caught.value
    assert type(failure) is kind and failure.error_type == error_type and failure.retry_class == retry_class
    assert failure.http_status == status
    if kind is failures.RunFailed:
        assert failure.run_id == "abcdefghijklmnopq"
    if kind is failures.RateLimited:
        assert failure.retry_after == 3.0
    if status == 502:
        assert failure.message == "HTTP 502 with a text/html body"


@responses.activate
def test_connection_errors_say_whether_the_request_was_sent(job) -> None:
    responses.post(URL, body=requests.ConnectionError("reset by peer"))
    with pytest.raises(failures.ConnectionDropped) as caught:
        ApiClient("t").run_sync(build_request(job), HttpTimeouts())
    assert caught.value.request_sent and caught.value.retry_class == "connection"
    responses.replace(responses.POST, URL, body=requests.ConnectTimeout("slow"))
    with pytest.raises(failures.ConnectionDropped) as caught:
        ApiClient("t").run_sync(build_request(job), HttpTimeouts())
    assert not caught.value.request_sent


@pytest.mark.parametrize("url", ["http://api.example.com", "http://10.0.0.1:8080", "ftp://x"])
def test_plain_http_to_another_host_is_refused(url: str) -> None:
    with pytest.raises(UsageError):
        check_base_url(url)


@pytest.mark.parametrize("url", ["https://api.apify.com", "http://127.0.0.1:9", "http://localhost:1", "http://[::1]:5"])
def test_https_and_loopback_are_allowed(url: str) -> None:
    check_base_url(url)


def test_gzip_is_decoded_a_bounded_chunk_at_a_time_and_a_cut_stream_is_refused() -> None:
    import gzip
    import zlib

    from apify_jobs.api.client import CHUNK_BYTES, _Gunzip

    bomb = gzip.compress(b"\0" * (64 << 20))  # 64 MiB in ~65 KB
    gunzip = _Gunzip()
    sizes = [len(piece) for piece in gunzip.feed(bomb)]
    gunzip.finish()
    assert sum(sizes) == 64 << 20 and max(sizes) <= CHUNK_BYTES
    gunzip = _Gunzip()
    assert b"".join(gunzip.feed(gzip.compress(b"a" * 7) + gzip.compress(b"b" * 3) + b"\0" * 9)) == b"aaaaaaabbb"
    gunzip.finish()
    gunzip = _Gunzip()
    list(gunzip.feed(bomb[: len(bomb) // 2]))
    with pytest.raises(zlib.error):
        gunzip.finish()


@pytest.mark.parametrize(("method", "url", "data", "headers"), [
    ("POST", URL + "?memory=1024&webhooks=W3siYSI6MX1d", b'{"q":"caf\xc3\xa9"}', None),
    ("POST", URL, b"{}", {"User-Agent": "apify-jobs/9 (+0123456789abcdef0123456789abcdef)"}),
    ("GET", "https://api.apify.com/v2/actor-tasks/me~t/runs?offset=0&limit=103&desc=true", None, None),
    ("POST", "https://api.apify.com/v2/actor-runs/abc/abort", None, None),
    ("GET", "https://api.apify.com/v2/key-value-stores/k/records/a b", None, None),  # not quoted: prepared in full
    ("GET", "https://bücher.example/v2/datasets/d/items", None, None),  # an IDN host: prepared in full
])
def test_requests_are_sent_as_session_request_would_prepare_them(method, url, data, headers) -> None:
    """The client prepares its own requests (no per-request session merging); what goes out must be exactly what
    `Session.request` would have sent: method, URL, headers (with the token) and body."""
    client = ApiClient("secret-token")
    ours = client._prepare(method, url, headers, data)
    session = requests.Session()
    session.auth = client._session.auth
    theirs = session.prepare_request(requests.Request(method, url, data=data,
                                                      headers={**client._headers, **(headers or {})}))
    assert (ours.method, ours.url, ours.body) == (theirs.method, theirs.url, theirs.body)
    assert dict(ours.headers) == dict(theirs.headers)
