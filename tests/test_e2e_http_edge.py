"""The HTTP edge against hostile but legal servers over real sockets: compressed answers, redirects, TLS and
proxy failures, header floods, absurd lengths, cut error bodies, Retry-After, tokens with whitespace, closed
streams and matrix bombs. Every test counts what reached the server."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import ssl
import subprocess
import sys
import time
from email.utils import formatdate
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.conftest import point_at, run_process
from tests.helpers import job_file, jobs_by_name, leftovers, read_report
from tests.hostile import HostileServer, Seen, raw, self_signed

FAST = "retry: {attempts: 3, backoff: {initial: 0, max: 0}, on: [connection, server-error, rate-limit]}"
OUTPUT = json.dumps({"items": ["café"] * 500}).encode()
CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")


@pytest.fixture
def hostile(monkeypatch):
    started: list[HostileServer] = []

    def _start(answer, tls: ssl.SSLContext | None = None) -> HostileServer:
        server = HostileServer(answer, tls)
        started.append(server)
        point_at(monkeypatch, server.url)
        monkeypatch.setenv("APIFY_TOKEN", "hostile-test-token")  # the proxy test greps for it
        return server

    yield _start
    for server in started:
        server.close()


def run(cli, tmp_path: Path, jobs: str = f"  - {{name: a, task: me~t, {FAST}}}\n", *extra: str):
    out = tmp_path / "out"
    code, stdout, stderr = cli("run", job_file(tmp_path, f"jobs:\n{jobs}"), "--out-dir", out, "--no-run-facts",
                               "--no-account-limits", *extra)  # the run-sync edge alone: no limits look-up
    return code, jobs_by_name(read_report(out)) if (out / "report.json").exists() else {}, out, stdout + stderr


# --- compression -------------------------------------------------------------------------------

def test_a_gzip_answer_is_saved_decoded_and_hashed_decoded(cli, hostile, tmp_path: Path) -> None:
    server = hostile(lambda seen, n: raw("201 Created", gzip.compress(OUTPUT),
                                         {"Content-Type": "application/json", "Content-Encoding": "gzip"}))
    code, jobs, out, _ = run(cli, tmp_path)
    assert code == 0 and server.posts == 1 and server.seen[0].headers["accept-encoding"] == "gzip"
    assert (out / "a.json").read_bytes() == OUTPUT
    assert jobs["a"]["output"]["sha256"] == hashlib.sha256(OUTPUT).hexdigest() and jobs["a"]["output"]["bytes"] == len(OUTPUT)


def test_a_gzip_run_failed_keeps_its_type_and_run_id(cli, hostile, tmp_path: Path) -> None:
    body = json.dumps({"error": {"type": "run-failed", "message": "Actor run did not succeed (run ID: abcDEF123456)"}})
    server = hostile(lambda seen, n: raw("400 Bad Request", gzip.compress(body.encode()),
                                         {"Content-Type": "application/json", "Content-Encoding": "gzip"}))
    code, jobs, _, _ = run(cli, tmp_path)
    assert code == 1 and server.posts == 1
    assert jobs["a"]["error"] == {"type": "run-failed", "message": "Actor run did not succeed (run ID: abcDEF123456)",
                                  "runId": "abcDEF123456"}


def test_gzip_members_one_after_another_are_one_output_and_trailing_zeros_are_ignored(cli, hostile,
                                                                                     tmp_path: Path) -> None:
    body = gzip.compress(OUTPUT[:700]) + gzip.compress(OUTPUT[700:]) + b"\0" * 16
    server = hostile(lambda seen, n: raw("201 Created", body,
                                         {"Content-Type": "application/json", "Content-Encoding": "gzip"}))
    code, jobs, out, _ = run(cli, tmp_path)
    assert code == 0 and server.posts == 1 and (out / "a.json").read_bytes() == OUTPUT


def test_a_gzip_answer_that_ends_before_its_end_is_never_saved(cli, hostile, tmp_path: Path) -> None:
    """The whole Content-Length arrived, but the compressed stream inside it is cut short: saving what it
    decodes to would falsify the output."""
    packed = gzip.compress(OUTPUT)
    server = hostile(lambda seen, n: raw("201 Created", packed[: len(packed) // 2],
                                         {"Content-Type": "application/json", "Content-Encoding": "gzip"}))
    code, jobs, out, output = run(cli, tmp_path, "  - {name: a, task: me~t, retry: {attempts: 1, recover: false}}\n")
    assert code == 1 and server.posts == 1 and not (out / "a.json").exists() and leftovers(out) == []
    assert jobs["a"]["status"] == "failed" and "ended before its end" in jobs["a"]["error"]["message"]


@pytest.mark.parametrize("encoding", ["br", "deflate", "zstd"])
def test_an_encoding_that_was_not_asked_for_fails_the_job_and_saves_nothing(cli, hostile, tmp_path: Path,
                                                                            encoding: str) -> None:
    server = hostile(lambda seen, n: raw("201 Created", b"\x8b\x00\x01 not readable",
                                         {"Content-Type": "application/json", "Content-Encoding": encoding}))
    code, jobs, out, _ = run(cli, tmp_path)
    assert code == 1 and server.posts == 1 and jobs["a"]["error"]["type"] == "invalid-answer"
    assert encoding in jobs["a"]["error"]["message"] and not (out / "a.json").exists() and leftovers(tmp_path) == []


# --- redirects ---------------------------------------------------------------------------------

@pytest.mark.parametrize("status", ["301 Moved Permanently", "302 Found", "307 Temporary Redirect",
                                    "308 Permanent Redirect"])
def test_a_redirect_is_never_followed_nor_sent_again(cli, hostile, tmp_path: Path, status: str) -> None:
    elsewhere = HostileServer(lambda seen, n: raw("200 OK", b'{"other": "server"}', {"Content-Type": "application/json"}))
    try:
        server = hostile(lambda seen, n: raw(status, b"", {"Location": f"{elsewhere.url}/v2/somewhere"}))
        code, jobs, out, _ = run(cli, tmp_path)
    finally:
        elsewhere.close()
    assert code == 1 and server.posts == 1 and elsewhere.seen == []
    error = jobs["a"]["error"]
    assert error["type"] == "redirected" and "127.0.0.1" in error["message"] and status[:3] in error["message"]
    assert jobs["a"]["attempts"] == 1 and not (out / "a.json").exists()


# --- answers that cannot be read: not drops, never re-sent -------------------------------------

@pytest.mark.parametrize("answer", [
    raw("201 Created", OUTPUT, {f"X-Flood-{i}": "x" for i in range(150)}),
    raw("201 Created", OUTPUT, {"X-Long": "x" * 70_000}),
    raw("201 Created", b"{}", length=10**30),
], ids=["150 headers", "a 70 KB header", "Content-Length 10^30"])
def test_an_answer_that_cannot_be_read_is_a_clear_failure_not_a_drop(cli, hostile, tmp_path: Path,
                                                                      answer: bytes) -> None:
    server = hostile(lambda seen, n: answer)
    code, jobs, out, output = run(cli, tmp_path)
    assert code == 1 and server.posts == 1, output
    assert jobs["a"]["error"]["type"] == "invalid-answer" and jobs["a"]["recovery"] is None
    assert "Traceback" not in output and "internal error" not in output and leftovers(tmp_path) == []


def test_a_cut_error_body_still_gives_its_type_message_and_run_id(cli, hostile, tmp_path: Path) -> None:
    body = ('{"error": {"type": "run-failed", "message": "Actor run did not succeed (run ID: Zx9Zx9Zx9Zx9), '
            + "details " * 20_000 + '"}}').encode()
    server = hostile(lambda seen, n: raw("400 Bad Request", body, {"Content-Type": "application/json"}))
    code, jobs, _, _ = run(cli, tmp_path)
    assert code == 1 and server.posts == 1 and len(body) > 64 * 1024
    assert jobs["a"]["error"]["type"] == "run-failed" and jobs["a"]["error"]["runId"] == "Zx9Zx9Zx9Zx9"


# --- Retry-After -------------------------------------------------------------------------------

@pytest.mark.parametrize(("status", "kind"), [("429 Too Many Requests", "date"), ("503 Service Unavailable", "date"),
                                              ("503 Service Unavailable", "seconds")])
def test_retry_after_is_honoured_in_both_forms(cli, hostile, tmp_path: Path, status: str, kind: str) -> None:
    def answer(seen: Seen, number: int) -> bytes:
        if number == 1:
            after = formatdate(time.time() + 3, usegmt=True) if kind == "date" else "2"
            return raw(status, b'{"error": {"type": "slow-down", "message": "later"}}',
                       {"Content-Type": "application/json", "Retry-After": after})
        return raw("201 Created", OUTPUT, {"Content-Type": "application/json"})
    server = hostile(answer)
    started = time.monotonic()
    code, _, _, output = run(cli, tmp_path)
    assert code == 0 and server.posts == 2 and time.monotonic() - started >= 1.5
    assert "retrying in" in output


# --- TLS and proxies ---------------------------------------------------------------------------

@pytest.fixture
def tls_server(hostile, tmp_path: Path, monkeypatch):
    for name in CA_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    cert, key = self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = hostile(lambda seen, n: raw("201 Created", OUTPUT, {"Content-Type": "application/json"}), context)
    return server, cert


def test_a_certificate_that_fails_verification_stops_the_batch_with_one_line(cli, tls_server, tmp_path: Path) -> None:
    server, _ = tls_server
    jobs = "".join(f"  - {{name: j{i}, task: me~t, {FAST}}}\n" for i in range(4))
    code, report, _, output = run(cli, tmp_path, jobs, "--concurrency", "1")
    assert code == 1 and server.seen == [] and server.handshakes_failed == 1
    assert report["j0"]["error"]["type"] == "connection-setup-failed" and report["j0"]["attempts"] == 1
    assert "certificate verification failed" in report["j0"]["error"]["message"]
    assert "SSL_CERT_FILE" in report["j0"]["error"]["message"]
    assert [report[f"j{i}"]["status"] for i in range(1, 4)] == ["cancelled"] * 3


@pytest.mark.parametrize("variable", ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"])
def test_the_ca_from_the_environment_is_trusted(cli, tls_server, tmp_path: Path, monkeypatch, variable: str) -> None:
    server, cert = tls_server
    monkeypatch.setenv(variable, cert)
    code, jobs, out, _ = run(cli, tmp_path)
    assert code == 0 and server.posts == 1 and (out / "a.json").read_bytes() == OUTPUT


def test_the_ca_bundle_is_looked_at_once_not_on_every_request(cli, tls_server, tmp_path: Path, monkeypatch) -> None:
    """requests stats the CA bundle on every request (twice over https); each stat lets go of the interpreter
    lock, which 50 jobs at once pay for in latency. It is looked at when the client is made, and trusted."""
    server, cert = tls_server
    monkeypatch.setenv("SSL_CERT_FILE", cert)
    looked: list[str] = []
    stat = os.stat

    def counting(path, *args, **kwargs):
        if str(path) == cert:
            looked.append(str(path))
        return stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", counting)
    jobs = "".join(f"  - {{name: j{i}, task: me~t, {FAST}}}\n" for i in range(6))
    code, report, _, _ = run(cli, tmp_path, jobs, "--concurrency", "2")
    assert code == 0 and server.posts == 6 and all(entry["status"] == "succeeded" for entry in report.values())
    assert len(looked) <= 4, looked  # two checks that it exists, and the client once (6 requests: 20 before)


def test_a_ca_path_that_does_not_exist_is_exit_2_before_sending(cli, tls_server, tmp_path: Path, monkeypatch) -> None:
    server, _ = tls_server
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
    code, _, err = cli("run", job_file(tmp_path, "jobs:\n  - {name: a, task: me~t}\n"), "--out-dir", tmp_path / "out",
                     "--no-account-limits")
    assert code == 2 and "SSL_CERT_FILE points at" in err and server.seen == [] and server.handshakes_failed == 0


def test_a_proxy_that_refuses_stops_the_batch(cli, tmp_path: Path, monkeypatch) -> None:
    proxy = HostileServer(lambda seen, n: raw("403 Forbidden", b"no"))
    try:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.setenv("APIFY_API_BASE_URL", "https://api.apify.com")  # reached only through the local proxy
        monkeypatch.setenv("APIFY_TOKEN", "hostile-test-token")
        jobs = "".join(f"  - {{name: j{i}, task: me~t, {FAST}}}\n" for i in range(3))
        code, report, _, _ = run(cli, tmp_path, jobs, "--concurrency", "1")
    finally:
        proxy.close()
    assert code == 1 and [s.method for s in proxy.seen] == ["CONNECT"]
    assert report["j0"]["error"]["type"] == "connection-setup-failed" and "HTTPS_PROXY" in report["j0"]["error"]["message"]
    assert "hostile-test-token" not in json.dumps(report) and report["j1"]["status"] == "cancelled"


# --- the token ---------------------------------------------------------------------------------

def _encodings(token: str) -> list[str]:
    forms = [token, repr(token)[1:-1], json.dumps(token)[1:-1], quote(token, safe="")]
    for user in ("", "user", "u", "us"):
        forms.append(base64.b64encode(f"{user}:{token}".encode()).decode().rstrip("="))
    return forms


@pytest.mark.parametrize("token", ["abc123\n", "apify_api_LongEnoughSecret42\r\n", " Tk9z!x \t"])
def test_the_token_never_shows_on_any_failure_path_in_any_encoding(hostile, tmp_path: Path, token: str) -> None:
    """Every answer echoes the token the server received, in several encodings, into error messages."""
    def answer(seen: Seen, number: int) -> bytes:
        sent = seen.headers["authorization"].removeprefix("Bearer ")
        echoed = " ".join(_encodings(sent))
        task = seen.path.split("/")[3]
        if task == "me~gone":
            return raw("302 Found", b"", {"Location": f"https://evil.example/{quote(sent)}"})
        status = {"me~broken": "500 Internal Server Error", "me~slow": "429 Too Many Requests",
                  "me~failed": "400 Bad Request", "me~missing": "404 Not Found"}.get(task, "403 Forbidden")
        kind = "run-failed" if task == "me~failed" else "echo"
        return raw(status, json.dumps({"error": {"type": kind, "message": f"you sent {echoed}"}}).encode(),
                   {"Content-Type": "application/json", "Retry-After": "0", "X-Echo": quote(sent)})
    server = hostile(answer)
    jobs = "".join(f"  - {{name: {t}, task: me~{t}, {FAST}}}\n" for t in ("broken", "slow", "failed", "missing", "gone"))
    jobs += "  - {name: refused, task: me~refused}\n"
    out = tmp_path / "out"
    result = run_process("run", str(job_file(tmp_path, f"jobs:\n{jobs}")), "--out-dir", str(out), "-v",
                         "--junit", str(tmp_path / "junit.xml"), "--no-run-facts",
                         env={"APIFY_TOKEN": token, "APIFY_API_BASE_URL": server.url})
    assert result.returncode == 1 and server.posts >= 6
    assert server.seen[0].headers["authorization"] == f"Bearer {token.strip()}"  # whitespace stripped
    written = [result.stdout, result.stderr, (tmp_path / "junit.xml").read_text()]
    written += [p.read_bytes().decode("utf-8", "replace") for p in out.rglob("*") if p.is_file()]
    for text in written:
        for form in _encodings(token.strip()) + _encodings(token):
            assert form not in text, form
    assert "[redacted]" in (out / "report.json").read_text()


@pytest.mark.parametrize(("value", "message"), [("", "APIFY_TOKEN is empty"), ("  \n", "APIFY_TOKEN is empty"),
                                                ("abc\x07def", "control or non-printable character (at position 4")])
def test_a_token_that_cannot_be_one_is_exit_2_without_showing_it(cli, hostile, tmp_path: Path, monkeypatch,
                                                                 value: str, message: str) -> None:
    server = hostile(lambda seen, n: raw("201 Created", OUTPUT))
    monkeypatch.setenv("APIFY_TOKEN", value)
    code, out, err = cli("run", job_file(tmp_path, "jobs:\n  - {name: a, task: me~t}\n"), "--out-dir", tmp_path / "o",
                          "--no-account-limits")
    assert code == 2 and message in err and server.seen == []
    assert not value.strip() or value.strip() not in out + err


# --- closed streams and matrix bombs -----------------------------------------------------------

@pytest.mark.parametrize("closed", ["2>&-", ">&-", ">&- 2>&-"])
def test_closed_streams_are_not_a_crash(tmp_path: Path, closed: str) -> None:
    bad = job_file(tmp_path, "jobs:\n  - {name: a, task: 5}\n")
    command = f"{sys.executable} -m apify_jobs validate {bad} {closed}; echo $? >&2" if closed == ">&-" else \
        f"{sys.executable} -m apify_jobs validate {bad} {closed}; echo exit=$?"
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60)
    assert "Traceback" not in result.stdout + result.stderr
    assert "exit=2" in result.stdout or result.stderr.strip().endswith("2")


def test_a_matrix_bomb_is_refused_at_once_from_its_size(cli, tmp_path: Path, monkeypatch) -> None:
    from apify_jobs.jobfile import resolve

    built = []
    real = resolve._resolve_job
    monkeypatch.setattr(resolve, "_resolve_job", lambda *args: built.append(args[4]) or real(*args))
    axes = "".join(f"      {chr(97 + i)}: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n" for i in range(8))
    path = job_file(tmp_path, f"jobs:\n  - name: bomb\n    task: me~t\n    matrix:\n{axes}")
    code, _, err = cli("validate", path)
    assert code == 2 and built == []  # refused from the axes' sizes: not one of the 10^8 jobs was built
    assert f"{path}:6:7: matrix expands to 100,000,000 jobs, over the limit of 1,000 per job" in err


def test_the_matrix_limit_per_run_counts_every_file_and_max_jobs_raises_it(cli, tmp_path: Path) -> None:
    ten = "[" + ", ".join(str(i) for i in range(10)) + "]"
    files = [job_file(tmp_path, f"jobs:\n  - {{name: m{n}, task: me~t, matrix: {{a: {ten}, b: {ten}, c: {ten}}}}}\n",
                      f"f{n:02}.yaml") for n in range(11)]  # 1,000 each: at the limit per job, 11,000 in all
    code, _, err = cli("validate", *files)
    assert code == 2 and err.count("matrix expands to 1,000 jobs") == 1
    assert f"{files[-1]}:3:" in err and "matrix expands to 1,000 jobs, over the limit of 0 left of 10,000 per run" in err
    assert cli("validate", *files, "--max-jobs", "20000")[0] == 0


def test_connections_keep_alive_at_the_tcp_level(hostile, tmp_path: Path) -> None:
    """run-sync holds a connection idle for up to 300 s: TCP keepalive keeps NAT gateways from dropping it."""
    import socket

    from apify_jobs.api.client import ApiClient
    from apify_jobs.api.request import build_request
    from apify_jobs.model import HttpTimeouts
    from tests.helpers import make_job

    server = hostile(lambda seen, n: raw("201 Created", OUTPUT, {"Content-Type": "application/json"}))
    client = ApiClient("t", base_url=server.url)
    request = build_request(make_job(tmp_path, {"name": "a", "task": "me~t"}), server.url)
    with client.run_sync(request, HttpTimeouts()) as answer:
        sock = answer._response.raw._connection.sock  # the socket the request went over
        options = {name: sock.getsockopt(level, option) for name, level, option in [
            ("keepalive", socket.SOL_SOCKET, socket.SO_KEEPALIVE), ("idle", socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
            ("interval", socket.IPPROTO_TCP, socket.TCP_KEEPINTVL), ("probes", socket.IPPROTO_TCP, socket.TCP_KEEPCNT)]}
        assert b"".join(answer.chunks()) == OUTPUT
    assert options == {"keepalive": 1, "idle": 30, "interval": 10, "probes": 5}
