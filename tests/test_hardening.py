"""Hostile input, faults and secrets: nothing crashes, leaks or is lost."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from apify_jobs.api.client import ApiClient
from tests.conftest import run_process
from tests.helpers import job_file, jobs_by_name, leftovers, read_report

TOKEN = "apify_api_SuperSecretToken123"


# --- paths --------------------------------------------------------------------------------------

@pytest.mark.parametrize("output", ["../x.json", "/etc/x.json", "a/../../x.json", "."])
def test_output_cannot_leave_the_output_folder(cli, tmp_path: Path, output: str) -> None:
    code, _, err = cli("validate", job_file(tmp_path, f"jobs:\n  - {{name: a, task: me~t, output: '{output}'}}\n"))
    assert code == 2 and "leaves the output folder" in err


def test_output_through_a_link_that_points_out_is_refused(cli, emulator, tmp_path: Path) -> None:
    server = emulator()
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").symlink_to(outside)
    path = job_file(tmp_path, "jobs:\n  - {name: a, task: me~t, output: sub/a.json}\n")
    code, _, _ = cli("run", path, "--out-dir", out)
    entry = jobs_by_name(read_report(out))["a"]
    assert code == 1 and entry["error"]["type"] == "output-failed" and "leads outside the output folder" in entry["error"]["message"]
    assert list(outside.iterdir()) == [] and leftovers(tmp_path) == []
    assert len(server.state.requests) == 1  # the answer arrived; it was not written through the link


def test_matrix_values_cannot_turn_names_into_paths(tmp_path: Path) -> None:
    from apify_jobs import jobfile

    path = job_file(tmp_path, "jobs:\n  - {name: m, task: me~t, matrix: {p: ['../../etc/passwd', '/root']}}\n")
    files, _ = jobfile.load([str(path)], {}, {})
    assert [job.name for job in files[0].jobs] == ["m-etc-passwd", "m-root"]


@pytest.mark.parametrize("name", ["../x", "a/b", ".hidden", "-x", "a b"])
def test_job_names_that_are_paths_are_refused(cli, tmp_path: Path, name: str) -> None:
    code, _, err = cli("validate", job_file(tmp_path, f"jobs:\n  - {{name: '{name}', task: me~t}}\n"))
    assert code == 2 and f"jobs[0] ({name}).name" in err


# --- secrets ------------------------------------------------------------------------------------

def test_token_never_appears_anywhere_even_when_echoed_back(cli, emulator, tmp_path: Path, monkeypatch) -> None:
    emulator({"tasks": {
        "me~echo": {"respond": "server-error", "status": 500, "message": f"bad header: Bearer {TOKEN}"},
        "me~limit": {"respond": "rate-limit", "message": f"too many for {TOKEN}", "retryAfter": 0},
        "me~drop": {"drop": "before-response"},
        "me~fail": {"respond": "run-failed"},
        "me~ok": {},
    }})
    monkeypatch.setenv("APIFY_TOKEN", TOKEN)
    path = job_file(tmp_path, """
        jobs:
          - {name: echo, task: me~echo, retry: {attempts: 2, backoff: {initial: 0, max: 0}, on: [server-error]}}
          - {name: limit, task: me~limit, retry: {attempts: 2, backoff: {initial: 0, max: 0}, on: [rate-limit]}}
          - {name: drop, task: me~drop, retry: {attempts: 2, backoff: {initial: 0, max: 0}}}
          - {name: fail, task: me~fail}
          - {name: ok, task: me~ok}
        """)
    out = tmp_path / "out"
    code, stdout, stderr = cli("run", path, "--out-dir", out, "--junit", tmp_path / "junit.xml", "-v")
    assert code == 1
    written = [stdout, stderr, (out / "report.json").read_text(), (tmp_path / "junit.xml").read_text()]
    written += [p.read_text(errors="replace") for p in out.rglob("*") if p.is_file()]
    assert all(TOKEN not in text for text in written)
    assert "[redacted]" in (out / "report.json").read_text()  # the echo was there, and was masked


def test_env_token_expression_is_refused_without_showing_it(cli, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("APIFY_TOKEN", TOKEN)
    path = job_file(tmp_path, "jobs:\n  - {name: a, task: me~t, input: {t: '${{ env.APIFY_TOKEN }}'}}\n")
    for command in ("validate", "plan"):
        code, out, err = cli(command, path)
        assert code == 2 and "is refused" in err and TOKEN not in out + err


@pytest.mark.parametrize("base", ["http://api.example.invalid", "http://192.0.2.1:8080"])
def test_plain_http_base_url_is_refused_before_anything_is_sent(cli, tmp_path: Path, monkeypatch, base: str) -> None:
    monkeypatch.setenv("APIFY_TOKEN", TOKEN)
    monkeypatch.setenv("APIFY_API_BASE_URL", base)
    code, _, err = cli("run", job_file(tmp_path, "jobs:\n  - {name: a, task: me~t}\n"), "--out-dir", tmp_path / "out")
    assert code == 2 and "refusing to send the token over plain http" in err
    assert not (tmp_path / "out").exists()


def test_tls_verification_stays_on_and_the_auth_does_not_print_the_token(monkeypatch) -> None:
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    client = ApiClient(TOKEN)
    assert client._session.verify is True
    assert TOKEN not in repr(client._session.auth) and TOKEN not in repr(vars(client))


def test_proxy_and_ca_bundle_from_the_environment_still_apply(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.invalid:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "corporate-ca.pem"))
    (tmp_path / "corporate-ca.pem").write_text("a CA certificate")
    client = ApiClient(TOKEN, base_url="https://api.apify.com")
    assert client._session.proxies.get("https") == "http://proxy.example.invalid:3128"
    assert client._session.verify == str(tmp_path / "corporate-ca.pem")
    assert ApiClient(TOKEN, base_url="http://127.0.0.1:9")._session.proxies == {}


def test_netrc_cannot_replace_the_bearer_token(cli, emulator, tmp_path: Path, monkeypatch) -> None:
    server = emulator()
    monkeypatch.setenv("APIFY_TOKEN", TOKEN)
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine 127.0.0.1 login someone password other\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cli("run", job_file(tmp_path, "jobs:\n  - {name: a, task: me~t}\n"), "--out-dir", tmp_path / "out")[0] == 0
    assert server.state.run_sync_requests()[0]["headers"]["Authorization"] == f"Bearer {TOKEN}"


def test_token_is_not_in_a_traceback_free_usage_error(tmp_path: Path) -> None:
    result = run_process("run", str(job_file(tmp_path, "jobs:\n  - {name: a, task: me~t}\n")),
                         env={"APIFY_TOKEN": TOKEN, "APIFY_API_BASE_URL": f"http://user:{TOKEN}@example.invalid"})
    assert result.returncode == 2 and "Traceback" not in result.stderr and TOKEN not in result.stderr + result.stdout


# --- limits -------------------------------------------------------------------------------------

def test_trickling_answer_is_abandoned_within_the_read_timeout(cli, emulator, tmp_path: Path) -> None:

    server = emulator({"tasks": {"me~slow": {"trickle": 20}}})
    path = job_file(tmp_path, "jobs:\n  - {name: a, task: me~slow, http: {readTimeout: 0.5}, retry: {attempts: 1, recover: false}}\n")
    code, _, _ = cli("run", path, "--out-dir", tmp_path / "out")
    entry = jobs_by_name(read_report(tmp_path / "out"))["a"]
    assert code == 1 and server.state.per_task == {"me~slow": 1}
    assert entry["error"]["type"] == "connection-dropped" and "trickled" in entry["error"]["message"]
    assert len(server.state.requests) == 1 and leftovers(tmp_path) == []


def test_input_over_the_limit_is_refused_before_sending(cli, emulator, tmp_path: Path) -> None:
    server = emulator()
    (tmp_path / "big.json").write_text(json.dumps({"blob": "x" * (9 * 1024 * 1024)}))
    path = job_file(tmp_path, "jobs:\n  - {name: a, task: me~t, inputFile: big.json}\n  - {name: b, task: me~t}\n")
    code, _, err = cli("run", path, "--out-dir", tmp_path / "out")
    assert code == 2 and "over the API's 9 MiB request limit" in err and server.state.requests == []


def test_forbidden_stops_the_batch_across_files(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"default": {"respond": "status", "status": 403, "errorType": "insufficient-permissions"}})
    a = job_file(tmp_path, "concurrency: 1\njobs:\n" + "".join(f"  - {{name: a{i}, task: me~t}}\n" for i in range(5)), "a.yaml")
    b = job_file(tmp_path, "jobs:\n" + "".join(f"  - {{name: b{i}, task: me~t}}\n" for i in range(5)), "b.yaml")
    code, _, _ = cli("run", a, b, "--out-dir", tmp_path / "out", "--concurrency", "1")
    report = read_report(tmp_path / "out")
    assert code == 1 and len(server.state.requests) == 1 and report["totals"]["cancelled"] == 9


def test_disk_errors_are_one_clear_failure(cli, emulator, tmp_path: Path) -> None:
    emulator()
    out = tmp_path / "out"
    out.mkdir()
    (out / "blocked").write_text("a file where a folder should be")
    path = job_file(tmp_path, "jobs:\n  - {name: a, task: me~t, output: blocked/a.json}\n")
    code, _, stderr = cli("run", path, "--out-dir", out)
    entry = jobs_by_name(read_report(out))["a"]
    assert code == 1, (entry, stderr)
    assert entry["error"]["type"] == "output-failed" and "Traceback" not in stderr, (entry, stderr)
    assert os.path.isfile(out / "blocked")


def test_an_unwritable_report_is_found_before_anything_is_sent(cli, emulator, tmp_path: Path) -> None:
    server = emulator()
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    path = job_file(tmp_path, "jobs:\n  - {name: a, task: me~t}\n")
    code, stdout, stderr = cli("run", path, "--out-dir", tmp_path / "out", "--report", blocker / "report.json")
    assert code == 2 and "Traceback" not in stderr and stderr.count("\n") == 1
    assert f"cannot write into {blocker}" in stderr and "nothing was sent" in stderr
    assert server.state.requests == [] and not (tmp_path / "out" / "a.json").exists()


def test_a_name_only_the_strict_reading_refuses_is_exit_2_before_sending(cli, emulator, tmp_path: Path) -> None:
    """A task with a final newline fits Python's reading of the pattern, not JSON Schema's: refused by the
    schema gate's own errors, and nothing of the file is sent (not even the jobs that are fine)."""
    server = emulator()
    path = job_file(tmp_path, 'jobs:\n  - {name: a, task: "me~t\\n"}\n  - {name: b, task: me~t}\n')
    code, _, err = cli("run", path, "--out-dir", tmp_path / "out")
    assert code == 2 and "must be an ID or owner~name" in err and server.state.requests == []
