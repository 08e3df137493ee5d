"""The rough edges of the command line, each a small fix: help, signals, var files, strict JSON inputs,
slugs, warnings, messages that say what to fix, JUnit's time and classname, a quiet success."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from xml.etree import ElementTree

from tests.conftest import run_process
from tests.helpers import job_file, jobs_by_name, on_a_terminal, read_report, until


def test_bare_apify_jobs_prints_the_help_and_exits_2() -> None:
    result = run_process()
    assert result.returncode == 2 and "usage: apify-jobs" in result.stderr and "validate" in result.stderr


def test_sigterm_exits_143_and_sigint_130(emulator, tmp_path: Path) -> None:
    server = emulator({"default": {"latency": 30}})
    path = job_file(tmp_path, "jobs:\n  - {name: a, task: me~t}\n")
    for sig, code in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
        before = len(server.state.requests)
        process = subprocess.Popen([sys.executable, "-m", "apify_jobs", "run", str(path), "--out-dir",
                                    str(tmp_path / f"out{code}"), "--no-run-facts"], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        assert until(lambda: len(server.state.requests) > before)
        process.send_signal(sig)
        process.communicate(timeout=30)
        assert process.returncode == code


def test_var_file_gives_typed_values_and_var_wins(cli, tmp_path: Path) -> None:
    (tmp_path / "vars.yaml").write_text("mem: 2048\nzip: '01234'\ncity: Brno\n")
    path = job_file(tmp_path, "jobs:\n  - {name: a, task: me~t, options: {memory: '${{ vars.mem }}'}, "
                              "input: {zip: '${{ vars.zip }}', city: '${{ vars.city }}'}}\n")
    code, out, err = cli("plan", path, "--var-file", tmp_path / "vars.yaml", "--var", "city=Plzeň", "--json")
    [planned] = json.loads(out)
    assert code == 0 and "memory=2048" in planned["url"] and planned["body"] == {"zip": "01234", "city": "Plzeň"}


def test_a_json_input_file_is_strict_json(cli, tmp_path: Path) -> None:
    (tmp_path / "in.json").write_text('{"zip": 01234}')
    code, _, err = cli("validate", job_file(tmp_path, "jobs:\n  - {name: a, task: me~t, inputFile: in.json}\n"))
    assert code == 2 and "inputFile 'in.json' is not valid JSON" in err


def test_matrix_slugs_transliterate(cli, tmp_path: Path) -> None:
    path = job_file(tmp_path, "jobs:\n  - {name: m, task: me~t, matrix: {city: [Plzeň, São Paulo, Zürich]}}\n")
    code, out, _ = cli("plan", path, "--json")
    assert code == 0 and [p["name"] for p in json.loads(out)] == ["m-plzen", "m-sao-paulo", "m-zurich"]


def test_retry_on_without_connection_is_allowed_but_warned_about(cli, tmp_path: Path) -> None:
    code, _, err = cli("validate", job_file(tmp_path, "jobs:\n  - {name: a, task: me~t, retry: {on: [rate-limit]}}\n"))
    assert code == 0 and "warning: retry.on leaves out connection" in err


def test_an_empty_file_says_so(cli, tmp_path: Path) -> None:
    (tmp_path / "empty.yaml").write_text("")
    code, _, err = cli("validate", tmp_path / "empty.yaml")
    assert code == 2 and "the file is empty" in err and "null" not in err


def test_a_404_names_the_path_and_the_servers_message(cli, emulator, tmp_path: Path, monkeypatch) -> None:
    server = emulator()
    monkeypatch.setenv("APIFY_API_BASE_URL", server.url + "/wrong-prefix")
    code, _, _ = cli("run", job_file(tmp_path, "jobs:\n  - {name: a, task: me~t}\n"), "--out-dir", tmp_path / "out",
                     "--no-run-facts")
    message = jobs_by_name(read_report(tmp_path / "out"))["a"]["error"]["message"]
    assert code == 1 and "HTTP 404 for POST /wrong-prefix/v2/actor-tasks/me~t/run-sync" in message
    assert "Page not found" in message and "APIFY_API_BASE_URL" in message
    assert server.state.requests == []  # the wrong path reached no run-sync endpoint, and was not sent again


def test_a_403_says_the_token_lacks_permission_for_the_task(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"default": {"respond": "status", "status": 403, "errorType": "insufficient-permissions"}})
    path = job_file(tmp_path, "jobs:\n  - {name: a, task: me~t}\n  - {name: b, task: me~u}\n")
    code, _, _ = cli("run", path, "--out-dir", tmp_path / "out", "--concurrency", "1", "--no-run-facts")
    jobs = jobs_by_name(read_report(tmp_path / "out"))
    assert code == 1 and len(server.state.requests) == 1
    assert "the token lacks permission for me~t" in jobs["a"]["error"]["message"]  # said once, where it happened
    assert jobs["b"]["error"]["message"] == "not sent: the batch stopped (see a)"


def test_junit_time_is_the_runs_wall_time_and_classname_the_files_path(cli, emulator, tmp_path: Path,
                                                                       monkeypatch) -> None:
    emulator({"default": {"latency": 0.3}})
    monkeypatch.chdir(tmp_path)
    (tmp_path / "jobs").mkdir()
    path = job_file(tmp_path / "jobs", "concurrency: 3\njobs:\n" + "".join(f"  - {{name: j{i}, task: me~t}}\n"
                                                                           for i in range(3)))
    started = time.monotonic()
    assert cli("run", path, "--out-dir", "out", "--junit", "junit.xml", "--no-run-facts")[0] == 0
    wall = time.monotonic() - started
    suite = ElementTree.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    assert 0.3 <= float(suite.get("time")) <= wall  # not the 0.9 s the three parallel jobs add up to
    assert {case.get("classname") for case in suite.iter("testcase")} == {"jobs/jobs.yaml"}


def test_quiet_with_every_job_succeeded_prints_nothing(cli, emulator, tmp_path: Path) -> None:
    emulator()
    code, out, err = cli("run", job_file(tmp_path, "jobs:\n  - {name: a, task: me~t}\n"), "--out-dir",
                         tmp_path / "out", "-q", "--no-run-facts")
    assert code == 0 and out == "" and err == ""


def test_discovery_skips_hidden_folders_and_excluded_globs_and_warns_of_other_yaml(cli, tmp_path: Path) -> None:
    (tmp_path / "repo" / ".github" / "workflows").mkdir(parents=True)
    (tmp_path / "repo" / ".github" / "workflows" / "ci.yaml").write_text("on: push\njobs: {build: {}}\n")
    (tmp_path / "repo" / "jobs" / "drafts").mkdir(parents=True)
    (tmp_path / "repo" / "jobs" / "a.yaml").write_text("version: 1\njobs:\n  - {name: a, task: me~t}\n")
    (tmp_path / "repo" / "jobs" / "drafts" / "broken.yaml").write_text("version: 1\njobs: nonsense\n")
    (tmp_path / "repo" / "jobs" / "mkdocs.yml").write_text("site_name: docs\n")
    code, out, err = cli("validate", tmp_path / "repo", "--exclude", "drafts")
    assert code == 0 and "ok: 1 job in 1 file" in out
    assert f"{tmp_path / 'repo' / 'jobs' / 'mkdocs.yml'}:1:1: warning: not a job file" in err
    assert ".github" not in err and "broken" not in err
    code, _, err = cli("validate", tmp_path / "repo" / "jobs" / "mkdocs.yml")  # named explicitly: an error
    assert code == 2 and "missing required key" in err


def test_machine_output_of_run_plan_and_validate(cli, emulator, tmp_path: Path) -> None:
    emulator()
    path = job_file(tmp_path, "jobs:\n  - {name: a, task: me/t, input: {q: 1}, options: {memory: 256}}\n"
                              "  - {name: b, task: me~t, needs: [a]}\n")
    code, out, _ = cli("run", path, "--out-dir", tmp_path / "out", "--json", "--no-run-facts")
    assert code == 0 and json.loads(out) == {**read_report(tmp_path / "out"), "generatedAt": json.loads(out)["generatedAt"]}
    code, out, _ = cli("plan", path, "--json")
    a, b = json.loads(out)
    assert a["task"] == "me~t" and a["query"] == {"memory": "256"} and a["file"] == str(path) and b["needs"] == ["a"]
    assert len(a["inputSha256"]) == 64 and a["output"].endswith("a.*")
    bad = job_file(tmp_path, "jobs:\n  - {name: a, task: me~t, options: {memory: 1000}}\n", "bad.yaml")
    code, out, err = cli("validate", bad, "--format", "json")
    [problem] = json.loads(out)
    assert code == 2 and problem["line"] == 3 and problem["severity"] == "error" and "memory" in problem["message"]
    code, out, err = cli("validate", bad, "--format", "github")
    assert code == 2 and f"::error file={bad},line=3," in out and "1 problem found" in err


def test_plan_errors_end_with_the_count(cli, tmp_path: Path) -> None:
    code, _, err = cli("plan", job_file(tmp_path, "jobs:\n  - {name: a, task: me~t, input: {x: '${{ vars.nope }}'}}\n"))
    assert code == 2 and err.strip().endswith("1 problem found")


def test_every_command_has_examples_environment_and_exit_statuses_in_its_help() -> None:
    for command in ("validate", "plan", "run", "report", "schema", "emulator", "completion"):
        result = run_process(command, "--help")
        assert result.returncode == 0 and "examples:" in result.stdout and "exit status:" in result.stdout, command
        assert "environment:" in result.stdout
    assert "(default 8765)" in run_process("emulator", "--help").stdout


def test_completion_is_generated_from_the_parser() -> None:
    result = run_process("completion", "bash")
    assert result.returncode == 0 and "apify-jobs" in result.stdout and "--abort-on-interrupt" in result.stdout


def test_an_undefined_var_in_a_matrix_job_is_reported_once(cli, tmp_path: Path) -> None:
    path = job_file(tmp_path, "jobs:\n  - {name: m, task: me~t, matrix: {c: [a, b, c]}, input: {k: '${{ vars.nope }}'}}\n")
    code, _, err = cli("plan", path)
    assert code == 2 and err.count("vars.nope }} is not defined") == 1 and "1 problem found" in err


def test_the_summary_names_a_run_once(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"default": {"respond": "run-failed"}})
    code, out, _ = cli("run", job_file(tmp_path, "jobs:\n  - {name: a, task: me~t}\n"), "--out-dir", tmp_path / "o",
                       "--no-run-facts")
    [row] = [line for line in out.splitlines() if line.startswith("a ")]
    assert code == 1 and row.count(server.state.runs[0].id) == 1 and " s " in row


def test_a_terminal_gets_a_live_display_with_colours_that_no_color_turns_off(emulator, tmp_path: Path) -> None:
    emulator({"default": {"latency": 0.4}, "tasks": {"me~bad": {"respond": "run-failed"}}})
    path = job_file(tmp_path, "concurrency: 2\njobs:\n  - {name: slow-one, task: me~t}\n  - {name: slow-two, task: me~t}\n"
                              "  - {name: broken, task: me~bad}\n")
    drawn = on_a_terminal(["run", str(path), "--out-dir", str(tmp_path / "a"), "--no-run-facts"], {})
    assert "done, " in drawn and "running" in drawn and "━" in drawn  # the bar and the counts
    assert "slow-one" in drawn and "\x1b[1;31mfailed" in drawn  # failures as they happen, in red
    plain = on_a_terminal(["run", str(path), "--out-dir", str(tmp_path / "b"), "--no-run-facts"], {"NO_COLOR": "1"})
    assert "done, " in plain and "\x1b[1;31m" not in plain and "\x1b[31m" not in plain
    never = on_a_terminal(["run", str(path), "--out-dir", str(tmp_path / "c"), "--no-run-facts", "--color", "never"], {})
    assert "\x1b[1;31m" not in never


def test_version_and_validate_do_not_import_rich(tmp_path: Path) -> None:
    path = job_file(tmp_path, "jobs:\n  - {name: a, task: me~t}\n")
    for args in (["--version"], ["validate", str(path)]):
        code = f"import sys, runpy; sys.argv = ['apify-jobs', *{args!r}]\ntry:\n    runpy.run_module('apify_jobs', " \
               "run_name='__main__')\nexcept SystemExit:\n    pass\nprint('rich' in sys.modules)"
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert result.stdout.strip().endswith("False"), result.stdout + result.stderr


def test_retry_on_capacity_is_accepted_and_said_to_change_nothing(cli, emulator, tmp_path: Path) -> None:
    """Capacity refusals are admission now (they wait, up to capacity.maxWait): `on: [capacity]` from earlier
    files still validates and runs, with a warning at its line."""
    server = emulator()
    path = job_file(tmp_path, "jobs:\n  - {name: a, task: me~t, retry: {on: [connection, capacity]}}\n")
    code, _, err = cli("validate", path)
    assert code == 0 and f"{path}:3:" in err and "retry.on: capacity changes nothing" in err  # after version: 1
    code, _, _ = cli("run", path, "--out-dir", tmp_path / "out")
    assert code == 0 and server.state.per_task == {"me~t": 1}
