"""`${{ secrets.NAME }}`: sent, never shown — in plan (text and JSON), the run's output with -v, the report,
JUnit, the HTML report and the state, also inside the Base64 of webhooks."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from tests.helpers import job_file

SECRET = "proxy-pass-Zq8!x/7"
JOBS = """
jobs:
  - name: a
    task: me~t
    input:
      proxyConfiguration: {password: "${{ secrets.PROXY_PASSWORD }}"}
      note: "with ${{ secrets.PROXY_PASSWORD }} inside a longer string"
    options:
      webhooks:
        - eventTypes: [ACTOR.RUN.SUCCEEDED]
          requestUrl: https://hooks.example.com/done
          headersTemplate: '{"Authorization": "Bearer ${{ secrets.PROXY_PASSWORD }}"}'
"""


def forms(secret: str) -> list[str]:
    shown = [secret, json.dumps(secret)[1:-1], base64.b64encode(secret.encode()).decode().rstrip("=")]
    for prefix in ("", "x", "xy"):  # the secret inside a Base64 blob, at each alignment
        encoded = base64.b64encode(f"{prefix}{secret}".encode()).decode()
        start = -(-len(prefix) * 8 // 6)
        shown.append(encoded[start:start + 8])
    return shown


def test_a_secret_is_sent_but_never_shown(cli, emulator, tmp_path: Path, monkeypatch) -> None:
    server = emulator()
    monkeypatch.setenv("PROXY_PASSWORD", SECRET)
    path = job_file(tmp_path, JOBS)
    out = tmp_path / "out"
    written = []
    for command in (["plan", path], ["plan", path, "--json"],
                    ["run", path, "--out-dir", out, "-v", "--junit", tmp_path / "junit.xml",
                     "--html", tmp_path / "report.html"]):
        code, stdout, stderr = cli(*command)
        assert code == 0, stderr
        written += [stdout, stderr]
    [sent] = server.state.run_sync_requests()
    body = json.loads(sent["body"])
    assert body["proxyConfiguration"]["password"] == SECRET and SECRET in body["note"]  # sent as written
    hooks = json.loads(base64.b64decode(sent["query"]["webhooks"]))
    assert SECRET in hooks[0]["headersTemplate"]
    written += [(tmp_path / name).read_text() for name in ("junit.xml", "report.html")]
    written += [(out / "report.json").read_text()]
    written += [state.read_bytes().decode("latin-1") for state in (out / ".apify-jobs").iterdir()]
    for text in written:
        for form in forms(SECRET):
            assert form not in text, form
    assert "[redacted]" in (out / "report.json").read_text()


def test_validate_warns_of_credentials_from_env(cli, tmp_path: Path) -> None:
    path = job_file(tmp_path, JOBS.replace("secrets.", "env."))
    code, _, err = cli("validate", path)
    assert code == 0 and err.count("write ${{ secrets.PROXY_PASSWORD }} to have it masked") == 2


@pytest.mark.parametrize("namespace", ["env", "secrets"])
def test_the_token_is_unreadable_through_any_namespace(cli, tmp_path: Path, monkeypatch, namespace: str) -> None:
    monkeypatch.setenv("APIFY_TOKEN", "apify_api_never_in_a_body")
    path = job_file(tmp_path, f"jobs:\n  - {{name: a, task: me~t, input: {{t: '${{{{ {namespace}.APIFY_TOKEN }}}}'}}}}\n")
    code, out, err = cli("plan", path)
    assert code == 2 and "is refused" in err and "apify_api_never_in_a_body" not in out + err


def test_a_rotated_secret_runs_the_job_again_on_resume(cli, emulator, tmp_path: Path, monkeypatch) -> None:
    server = emulator()
    path = job_file(tmp_path, "jobs:\n  - {name: a, task: me~t, input: {key: '${{ secrets.API_KEY }}'}}\n")
    for value in ("first-key-1234", "first-key-1234", "rotated-key-5678"):
        monkeypatch.setenv("API_KEY", value)
        assert cli("run", path, "--out-dir", tmp_path / "out", "--resume", "--no-run-facts")[0] == 0
    assert len(server.state.requests) == 2
