"""Text from outside is inert wherever it is shown (issue: nothing leaks, nothing injects): a hostile server's
error message carries terminal escapes, a carriage return, bidi overrides, GitHub workflow commands and
characters XML forbids. Nothing of it acts on the terminal or the CI log, and JUnit parses."""

from __future__ import annotations

import json
import os
from pathlib import Path
from xml.etree import ElementTree

from tests.conftest import run_process
from tests.helpers import job_file
from tests.hostile import HostileServer, raw

HOSTILE_MESSAGE = ("bad\x1b[2J\x1b]0;pwned\x07 title\rsucceeded all\n::error file=x::injected\n"
                   "::add-mask::secret\u202eevil\x00nul\x0bvt\ufffe")


def _answer(seen, n):
    body = json.dumps({"error": {"type": "run-failed", "message": HOSTILE_MESSAGE}}).encode()
    return raw("400 Bad Request", body, {"Content-Type": "application/json"})


def test_a_hostile_error_message_is_inert_on_the_terminal_the_log_and_in_junit(tmp_path: Path) -> None:
    server = HostileServer(_answer)
    try:
        path = job_file(tmp_path, "jobs:\n  - {name: a, task: me~t}\n")
        out = tmp_path / "out"
        env = {"APIFY_API_BASE_URL": server.url, "APIFY_TOKEN": "inert-test-token", "GITHUB_ACTIONS": "true"}
        result = run_process("run", str(path), "--out-dir", str(out), "--junit", str(tmp_path / "junit.xml"), "-v",
                             "--no-run-facts", env=env)
        assert result.returncode == 1 and server.posts == 1
        for channel in (result.stdout, result.stderr):
            assert "\x1b" not in channel and "\r" not in channel and "\u202e" not in channel and "\x00" not in channel
            assert not any(line.lstrip().startswith("::") for line in channel.splitlines()), channel
        assert "\\u001b[2J" in result.stdout + result.stderr  # shown, as a visible escape
        junit = ElementTree.parse(tmp_path / "junit.xml").getroot()  # parses: no character XML forbids
        failure = junit.find(".//failure")
        assert failure is not None and "\\u0000" in failure.get("message", "")
        report = json.loads((out / "report.json").read_text())  # the report keeps the message as it came
        assert report["jobs"][0]["error"]["message"].startswith("bad\x1b[2J")
        printed = run_process("run", str(path), "--out-dir", str(out), "--json", "--no-run-facts", env=env)
        assert "\x1b" not in printed.stdout and json.loads(printed.stdout)["jobs"][0]["error"]["message"] == \
            report["jobs"][0]["error"]["message"]  # escaped as JSON escapes: the same document
    finally:
        server.close()


def test_a_state_that_is_a_link_is_refused(emulator, tmp_path: Path) -> None:
    server = emulator()
    path, out = job_file(tmp_path, "jobs:\n  - {name: a, task: me~t}\n"), tmp_path / "out"
    (out / ".apify-jobs").mkdir(parents=True)
    os.symlink(tmp_path / "elsewhere.sqlite3", out / ".apify-jobs" / "state.sqlite3")  # dangling
    result = run_process("run", str(path), "--out-dir", str(out))
    assert result.returncode == 2 and "not a regular file" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "elsewhere.sqlite3").exists() and server.state.run_sync_requests() == []


def test_a_damaged_state_row_is_one_line_and_leaves_no_unfinished_run(emulator, tmp_path: Path) -> None:
    import sqlite3

    server = emulator()
    path, out = job_file(tmp_path, "jobs:\n  - {name: a, task: me~t}\n"), tmp_path / "out"
    assert run_process("run", str(path), "--out-dir", str(out)).returncode == 0
    with sqlite3.connect(out / ".apify-jobs" / "state.sqlite3") as db:
        db.execute("UPDATE results SET entry = '{damaged'")
    result = run_process("run", str(path), "--out-dir", str(out), "--resume")
    assert result.returncode == 2 and "damaged" in result.stderr and "internal error" not in result.stderr
    with sqlite3.connect(out / ".apify-jobs" / "state.sqlite3") as db:
        unfinished = db.execute("SELECT count(*) FROM invocations WHERE finished_at IS NULL").fetchone()[0]
    assert unfinished == 0 and len(server.state.run_sync_requests()) == 1


def test_the_inert_forms_are_what_a_terminal_shows(tmp_path: Path) -> None:
    from apify_jobs.inert import shown, xml_text

    assert shown("a\x1b[31mb\r\n::set-output x\n  ::warning::y\ttab") == \
        "a\\u001b[31mb\\u000d\n\\u003a:set-output x\n  \\u003a:warning::y\ttab"
    assert json.loads(shown(json.dumps({"k": "\u202e\x85"}, ensure_ascii=False))) == {"k": "\u202e\x85"}
    ElementTree.fromstring(f"<a b='{xml_text(chr(0) + chr(0xFFFF))}'>{xml_text(chr(1))}</a>")


def test_colour_when_asked_for_without_a_terminal(emulator, tmp_path: Path) -> None:
    emulator()
    path = job_file(tmp_path, "jobs:\n  - {name: a, task: me~t}\n")
    asked = run_process("run", str(path), "--out-dir", str(tmp_path / "o1"), "--color", "always", "--no-run-facts")
    forced = run_process("run", str(path), "--out-dir", str(tmp_path / "o2"), "--no-run-facts",
                         env={"FORCE_COLOR": "1", "NO_COLOR": ""})
    plain = run_process("run", str(path), "--out-dir", str(tmp_path / "o3"), "--no-run-facts")
    assert "\x1b[32msucceeded" in asked.stderr and "\x1b[32msucceeded" in forced.stderr
    assert "\x1b" not in plain.stderr


def test_after_a_401_the_refused_token_is_not_sent_again_and_the_reason_is_said_once(emulator, tmp_path: Path) -> None:
    server = emulator({"default": {"respond": "status", "status": 401}})
    path = job_file(tmp_path, "jobs:\n" + "".join(f"  - {{name: j{i}, task: me~t}}\n" for i in range(5)))
    result = run_process("run", str(path), "--out-dir", str(tmp_path / "out"))
    assert result.returncode == 1 and len(server.state.run_sync_requests()) == 1
    assert server.state.lookups_of("list-runs") == []  # no run facts with a refused token
    assert result.stderr.count("see j0") >= 4 and (result.stdout + result.stderr).count("check APIFY_TOKEN") <= 3


def test_the_token_echoed_in_other_encodings_is_masked() -> None:
    import html

    from apify_jobs.redaction import Redactor

    token = "apify_api_Tok3n&Value"
    redact = Redactor()
    redact.register(token)
    for form in (token.upper(), token.encode().hex(), token.encode().hex().upper(), html.escape(token),
                 "".join(f"&#{ord(c)};" for c in token), json.dumps(json.dumps(token))[1:-1]):
        masked = redact(f"echo: {form} end")
        assert form not in masked and "[redacted]" in masked and masked.startswith("echo: "), form
