"""`${{ secrets.NAME }}`: sent, never shown — in plan (text and JSON), the run's output with -v, the report,
JUnit, the HTML report and the state, also inside the Base64 of webhooks."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from xml.etree import ElementTree

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


HARD_SECRET = 'Pw"9Tz\\é/k-7Qm2'  # a quote, a backslash and a non-ASCII character


def _echoing(seen, n):
    """A server that quotes the request body in its 400 message (common), so the secret arrives JSON-escaped."""
    from tests.hostile import raw

    body = json.dumps({"error": {"type": "invalid-input", "message": f"invalid input: {seen.body.decode()}"}})
    return raw("400 Bad Request", body.encode(), {"Content-Type": "application/json"})


def test_a_secret_echoed_escaped_by_a_server_is_masked_in_every_channel(cli, tmp_path: Path, monkeypatch) -> None:
    from tests.conftest import point_at
    from tests.hostile import HostileServer

    server = HostileServer(_echoing)
    try:
        point_at(monkeypatch, server.url)
        monkeypatch.setenv("HARD", HARD_SECRET)
        path = job_file(tmp_path, "jobs:\n  - {name: a, task: me~t, input: {key: '${{ secrets.HARD }}'}}\n")
        out = tmp_path / "out"
        code, stdout, stderr = cli("run", path, "--out-dir", out, "-v", "--junit", tmp_path / "junit.xml",
                                   "--html", tmp_path / "report.html", "--markdown", tmp_path / "summary.md",
                                   "--no-run-facts")
        assert code == 1 and server.posts == 1
        written = [stdout, stderr, *((tmp_path / n).read_text() for n in ("junit.xml", "report.html", "summary.md")),
                   (out / "report.json").read_text(),
                   *(state.read_bytes().decode("utf-8", "replace") for state in (out / ".apify-jobs").iterdir())]
        escaped = json.dumps(HARD_SECRET)[1:-1]
        for form in (HARD_SECRET, escaped, json.dumps(escaped)[1:-1], json.dumps(HARD_SECRET, ensure_ascii=False)[1:-1],
                     "Pw&quot;9Tz", "9Tz\\\\\\\\"):
            for text in written:
                assert form not in text, (form, text[:300])
        assert "[redacted]" in (out / "report.json").read_text()
    finally:
        server.close()


def test_a_secret_cut_in_two_leaves_no_part_of_it() -> None:
    from apify_jobs.redaction import CUT, Redactor, cut

    redact = Redactor()
    redact.register("SECRETvalue-0123456789abcdef")
    message = cut("item 0 at /: 'SECRETvalue-0123456789abcdef' is not of type 'integer'", 24)
    assert message.endswith(CUT) and "SECRETvalue"[:4] in message
    shown = redact(message)
    assert "SECR" not in shown and shown.endswith("[redacted]" + CUT)
    assert redact("a cut that ends in plain text" + CUT) == "a cut that ends in plain text" + CUT


SHORT_SECRET = "k9$Qz!"  # six characters


def test_a_secret_cut_in_two_by_an_expectation_message_leaks_no_part(cli, emulator, tmp_path: Path,
                                                                     monkeypatch) -> None:
    """The run echoes the input; `expect.schema` reports the value in a message cut at 200 characters, with the
    cut inside the secret: no part of it reaches any channel."""
    secret = "Sx7-" + "q" * 30 + "-tail-of-the-secret"
    monkeypatch.setenv("LONG", secret)
    monkeypatch.setenv("SHORT", SHORT_SECRET)
    emulator()
    padding = "p" * 170  # puts the cut inside the secret
    path = job_file(tmp_path, f"""
        jobs:
          - name: a
            task: me~t
            input: {{value: "{padding}${{{{ secrets.LONG }}}}", short: "${{{{ secrets.SHORT }}}}"}}
            expect: {{schema: {{type: object, properties: {{input: {{type: object, properties: {{value: {{type: integer}}, short: {{type: integer}}}}}}}}}}}}
        """)
    out = tmp_path / "out"
    code, stdout, stderr = cli("run", path, "--out-dir", out, "-v", "--junit", tmp_path / "junit.xml", "--html",
                               tmp_path / "r.html", "--markdown", tmp_path / "s.md", "--no-run-facts")
    assert code == 1
    printed = cli("report", "--out-dir", out, "--json", tmp_path / "again.json")[1]
    channels = [stdout, stderr, printed, *((tmp_path / n).read_text() for n in ("junit.xml", "r.html", "s.md",
                                                                                "again.json")),
                (out / "report.json").read_text(),
                *(f.read_bytes().decode("utf-8", "replace") for f in (out / ".apify-jobs").iterdir())]
    message = json.loads((out / "report.json").read_text())["jobs"][0]["error"]["message"]
    assert "expectation" in message and "\u2026" in message  # the violation was cut
    for text in channels:
        assert secret[:8] not in text and SHORT_SECRET not in text and "tail-of-the" not in text


@pytest.mark.parametrize("secret", ["1", "true", "e", ":"])
def test_a_short_secret_is_masked_in_values_and_never_breaks_the_state_or_the_report(
        cli, emulator, tmp_path: Path, monkeypatch, secret: str) -> None:
    """A secret as short as a digit, `true` or a letter: masking the finished JSON text (`"attempts": 1`,
    `true`, every `e`) made the report invalid JSON and the state "damaged" for every later run. Values are
    masked before they are serialized; the text that results is never masked again."""
    server = emulator()
    monkeypatch.setenv("PIN", secret)
    path = job_file(tmp_path, 'jobs:\n  - {name: a, task: me~t, input: {pin: "${{ secrets.PIN }}", n: 1}}\n')
    out = tmp_path / "out"
    pages = [tmp_path / "report.html", tmp_path / "summary.md", tmp_path / "junit.xml"]
    for _ in range(2):  # the second run reads the state the first one wrote
        code, _, stderr = cli("run", path, "--out-dir", out, "--resume", "--html", pages[0], "--markdown", pages[1],
                              "--junit", pages[2])
        assert code == 0, stderr
    page, summary = pages[0].read_text(), pages[1].read_text()
    assert re.search(r"</?[a-z0-9]*\[redacted\]", page) is None and page.rstrip().endswith("</html>")  # markup whole
    assert 'class="resumed"' in page  # the tool's own words are not masked
    assert "| job | status | tries | output / error | run |" in summary
    ElementTree.parse(pages[2])
    report = json.loads((out / "report.json").read_text())
    [job] = report["jobs"]
    assert job["status"] == "succeeded" and job["attempts"] == 1 and job["resumed"] is True
    assert len(server.state.run_sync_requests()) == 1
    code, _, stderr = cli("report", "--out-dir", out, "--report", tmp_path / "again.json")
    assert code == 0, stderr
    assert json.loads((tmp_path / "again.json").read_text())["jobs"][0]["status"] == "succeeded"
