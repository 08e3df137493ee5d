"""The retry table of the guide (docs/guide/retries.md), row by row, over real sockets: the emulator counts what
it received."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from tests.helpers import job_file, jobs_by_name, leftovers, read_report

FAST = "retry: {attempts: 3, backoff: {initial: 0, max: 0}"


def run(cli, tmp_path: Path, body: str, *extra: str):
    path = job_file(tmp_path, body)
    out = tmp_path / "out"
    code, stdout, stderr = cli("run", path, "--out-dir", out, *extra)
    report = read_report(out)
    return code, jobs_by_name(report), out, stderr


def test_201_writes_the_output_and_reports_it(cli, emulator, tmp_path: Path) -> None:
    server = emulator()
    code, jobs, out, _ = run(cli, tmp_path, """
        jobs:
          - {name: a, task: me~t, input: {q: cafe}, options: {memory: 256}}
        """)
    assert code == 0 and server.state.per_task == {"me~t": 1}
    entry = jobs["a"]
    assert entry["status"] == "succeeded" and entry["attempts"] == 1 and entry["httpStatus"] == 201
    written = out / "a.json"
    assert entry["output"]["path"] == str(written) and entry["output"]["bytes"] == written.stat().st_size
    assert written.read_text() == '{"taskId": "me~t", "input": {"q": "cafe"}, "options": {"memory": "256"}}'
    assert entry["request"] == {"endpoint": "run-sync", "query": {"memory": "256"},
                                "inputSha256": hashlib.sha256(b'{"q":"cafe"}').hexdigest()}
    whole = read_report(out)
    assert whole["files"] == [{"path": str(tmp_path / "jobs.yaml"),
                               "sha256": hashlib.sha256((tmp_path / "jobs.yaml").read_bytes()).hexdigest()}]
    assert whole["totals"] == {"jobs": 1, "succeeded": 1, "failed": 0, "skipped": 0, "cancelled": 0, "failedExpectations": 0,
                               "sent": 1, "resumed": 0, "refetched": 0, "adopted": 0,
                               "usageTotalUsd": entry["usageTotalUsd"], "usagePreliminary": True}
    assert entry["runId"] == server.state.runs[0].id and entry["usageTotalUsd"] > 0
    assert whole["tool"]["version"] and entry["startedAt"] <= entry["finishedAt"] and entry["durationMs"] >= 0


@pytest.mark.parametrize("drop", ["before-response", "mid-body"])
def test_connection_drop_is_retried_until_attempts_run_out(cli, emulator, tmp_path: Path, drop: str) -> None:
    server = emulator({"tasks": {"me~t": {"drop": drop}}})
    code, jobs, out, stderr = run(cli, tmp_path, f"""
        jobs:
          - {{name: a, task: me~t, {FAST}, recover: false}}}}
        """)
    assert code == 1 and server.state.per_task == {"me~t": 3}
    assert jobs["a"]["status"] == "failed" and jobs["a"]["attempts"] == 3
    assert jobs["a"]["error"]["type"] == "connection-dropped"
    assert not (out / "a.json").exists() and leftovers(tmp_path) == []
    assert stderr.count("may already have started a run") == 2


def test_connection_drop_then_success_writes_the_output(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"tasks": {"me~t": [{"drop": "mid-body"}, {"drop": "before-response"}, {}]}})
    code, jobs, out, _ = run(cli, tmp_path, f"""
        jobs:
          - {{name: a, task: me~t, {FAST}, recover: false}}}}
        """)
    assert code == 0 and server.state.per_task == {"me~t": 3} and jobs["a"]["attempts"] == 3
    assert (out / "a.json").read_bytes().startswith(b'{"taskId"') and leftovers(tmp_path) == []


def test_read_timeout_counts_as_a_drop(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"tasks": {"me~t": {"latency": 1.0}}})
    code, jobs, _, _ = run(cli, tmp_path, """
        jobs:
          - {name: a, task: me~t, http: {readTimeout: 0.2}, retry: {attempts: 2, backoff: {initial: 0, max: 0}, recover: false}}
        """)
    assert code == 1 and server.state.per_task == {"me~t": 2}
    assert jobs["a"]["error"]["type"] == "connection-dropped" and jobs["a"]["attempts"] == 2


def test_no_connection_is_retried_and_reported(cli, emulator, tmp_path: Path, monkeypatch) -> None:
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    emulator()
    monkeypatch.setenv("APIFY_API_BASE_URL", f"http://127.0.0.1:{port}")
    code, jobs, _, stderr = run(cli, tmp_path, f"""
        jobs:
          - {{name: a, task: me~t, {FAST}}}}}
        """)
    assert code == 1 and jobs["a"]["attempts"] == 3 and jobs["a"]["error"]["type"] == "connection-failed"
    assert "could not connect" in jobs["a"]["error"]["message"]
    # nothing reached a server, so no run can have started: no look-ups, no warning that one may have
    assert jobs["a"]["recovery"] is None and "may already have started" not in stderr


ALL_CLASSES = "retry: {attempts: 3, backoff: {initial: 0, max: 0}, on: [connection, rate-limit, capacity, server-error]}"


@pytest.mark.parametrize(("behaviour", "status", "error_type"), [
    ({"respond": "run-failed"}, 400, "run-failed"),
    ({"respond": "run-timeout"}, 408, "run-timeout-exceeded"),
])
def test_run_failed_and_408_are_never_retried(cli, emulator, tmp_path: Path, behaviour, status, error_type) -> None:
    server = emulator({"tasks": {"me~t": behaviour}})
    code, jobs, out, _ = run(cli, tmp_path, f"""
        jobs:
          - {{name: a, task: me~t, follow: false, {ALL_CLASSES}}}
        """)
    assert code == 1 and server.state.per_task == {"me~t": 1}
    entry = jobs["a"]
    assert entry["attempts"] == 1 and entry["httpStatus"] == status and entry["error"]["type"] == error_type
    if error_type == "run-failed":
        assert entry["error"]["runId"] == server.state.runs[0].id
    assert not (out / "a.json").exists()


def test_the_schema_cannot_even_ask_to_retry_a_failed_run(cli, tmp_path: Path) -> None:
    path = job_file(tmp_path, "jobs:\n  - {name: a, task: me~t, retry: {on: [connection, run-failed]}}\n")
    code, _, err = cli("validate", path)
    assert code == 2 and 'jobs[0] (a).retry.on[1]: "run-failed" is not one of "connection", "rate-limit", "capacity", "server-error"' in err


@pytest.mark.parametrize(("behaviour", "opt_in", "status", "error_type"), [
    ({"respond": "rate-limit"}, "rate-limit", 429, "rate-limit-exceeded"),
  # capacity refusals are admission, not retries: tests/test_e2e_account.py
    ({"respond": "server-error", "status": 503, "errorType": "server-overloaded"}, "server-error", 503, "server-overloaded"),
    ({"respond": "server-error", "status": 502, "html": True}, "server-error", 502, "http-502"),
])
def test_opt_in_classes_are_retried_only_when_opted_in(cli, emulator, tmp_path: Path, behaviour, opt_in, status,
                                                       error_type) -> None:
    server = emulator({"tasks": {"me~default": behaviour, "me~optin": behaviour}})
    code, jobs, _, _ = run(cli, tmp_path, f"""
        jobs:
          - {{name: default, task: me~default, {FAST}}}}}
          - {{name: optin, task: me~optin, {FAST}, on: [connection, {opt_in}]}}}}
        """)
    assert code == 1
    assert server.state.per_task == {"me~default": 1, "me~optin": 3}
    for name, attempts in (("default", 1), ("optin", 3)):
        assert jobs[name]["attempts"] == attempts and jobs[name]["httpStatus"] == status
        assert jobs[name]["error"]["type"] == error_type


def test_rate_limit_honours_retry_after(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"tasks": {"me~t": [{"respond": "rate-limit", "retryAfter": 1}, {}]}})
    started = time.monotonic()
    code, jobs, _, _ = run(cli, tmp_path, f"""
        jobs:
          - {{name: a, task: me~t, {FAST}, on: [rate-limit]}}}}
        """)
    assert code == 0 and server.state.per_task == {"me~t": 2} and jobs["a"]["attempts"] == 2
    assert time.monotonic() - started >= 1.0


@pytest.mark.parametrize(("status", "error_type"), [(404, "record-not-found"), (402, "not-enough-usage-to-run-paid-actor")])
def test_any_other_status_is_never_retried(cli, emulator, tmp_path: Path, status: int, error_type: str) -> None:
    server = emulator({"tasks": {"me~t": {"respond": "status", "status": status, "errorType": error_type}}})
    code, jobs, _, _ = run(cli, tmp_path, f"""
        jobs:
          - {{name: a, task: me~t, {ALL_CLASSES}}}
        """)
    assert code == 1 and server.state.per_task == {"me~t": 1}
    assert jobs["a"]["httpStatus"] == status and jobs["a"]["error"]["type"] == error_type


def test_failed_redownload_keeps_the_older_output(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"tasks": {"me~t": [{}, {"drop": "mid-body", "bodyBytes": 4_000_000}]}})
    path = job_file(tmp_path, "jobs:\n  - {name: a, task: me~t, output: a.json, retry: {attempts: 1, recover: false}}\n")
    out = tmp_path / "out"
    assert cli("run", path, "--out-dir", out)[0] == 0
    first = (out / "a.json").read_bytes()
    assert cli("run", path, "--out-dir", out)[0] == 1
    assert (out / "a.json").read_bytes() == first and leftovers(tmp_path) == []
    assert server.state.per_task == {"me~t": 2}


def test_large_body_is_streamed_whole(cli, emulator, tmp_path: Path) -> None:
    emulator({"tasks": {"me~t": {"bodyBytes": 20 * 1024 * 1024 + 7, "contentType": "text/csv"}}})
    code, jobs, out, _ = run(cli, tmp_path, "jobs:\n  - {name: a, task: me~t}\n")
    assert code == 0 and (out / "a.csv").stat().st_size == 20 * 1024 * 1024 + 7
    assert jobs["a"]["output"]["contentType"] == "text/csv" and jobs["a"]["output"]["bytes"] == 20 * 1024 * 1024 + 7


def test_empty_201_is_an_empty_file_flagged_in_the_report_when_allowed(cli, emulator, tmp_path: Path) -> None:
    emulator({"tasks": {"me~t": {"bodyBytes": 0, "contentType": "application/json"}}})
    code, jobs, out, _ = run(cli, tmp_path, "jobs:\n  - {name: a, task: me~t, expect: {nonEmpty: false}}\n")
    assert code == 0 and (out / "a.json").read_bytes() == b""
    assert jobs["a"]["output"]["empty"] is True and "no output record" in jobs["a"]["note"]


def test_token_only_in_the_authorization_header(cli, emulator, tmp_path: Path) -> None:
    server = emulator()
    code, _, out, stderr = run(cli, tmp_path, "jobs:\n  - {name: a, task: me~t}\n", "-v")
    [request] = server.state.run_sync_requests()
    assert request["headers"]["Authorization"] == "Bearer test-token-not-secret"
    assert "test-token-not-secret" not in (out / "report.json").read_text() and "test-token-not-secret" not in stderr
