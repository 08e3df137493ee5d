"""Drop recovery over real sockets: a dropped request whose run started ends with one run, not two."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import job_file, jobs_by_name, leftovers, read_report

FAST = "backoff: {initial: 0, max: 0}"


def run(cli, tmp_path: Path, body: str, *extra: str):
    path = job_file(tmp_path, body)
    out = tmp_path / "out"
    code, _, stderr = cli("run", path, "--out-dir", out, *extra)
    return code, jobs_by_name(read_report(out)), out, stderr


def test_adopts_the_run_instead_of_starting_a_second(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"tasks": {"me~t": [{"drop": "after-start", "latency": 0.3}, {}]}})
    code, jobs, out, stderr = run(cli, tmp_path, f"jobs:\n  - {{name: a, task: me~t, input: {{q: 1}}, retry: {{{FAST}}}}}\n")
    assert code == 0 and server.state.per_task == {"me~t": 1} and len(server.state.runs) == 1
    started = server.state.runs[0]
    assert jobs["a"]["recovery"]["adopted"] is True and jobs["a"]["recovery"]["runId"] == started.id
    assert json.loads((out / "a.json").read_text()) == {"taskId": "me~t", "input": {"q": 1}, "options": {}}
    assert "adopting run" in stderr and leftovers(tmp_path) == []


def test_without_recovery_the_retry_starts_a_second_run(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"tasks": {"me~t": [{"drop": "after-start"}, {}]}})
    code, jobs, _, _ = run(cli, tmp_path, f"jobs:\n  - {{name: a, task: me~t, retry: {{{FAST}, recover: false}}}}\n")
    assert code == 0 and server.state.per_task == {"me~t": 2} and len(server.state.runs) == 2
    assert jobs["a"]["recovery"] is None and jobs["a"]["attempts"] == 2


def test_drop_in_the_middle_of_the_body_is_recovered_too(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"tasks": {"me~t": [{"drop": "mid-body"}, {}]}})
    code, jobs, out, _ = run(cli, tmp_path, f"jobs:\n  - {{name: a, task: me~t, input: {{k: v}}, retry: {{{FAST}}}}}\n")
    assert code == 0 and server.state.per_task == {"me~t": 1} and len(server.state.runs) == 1
    assert json.loads((out / "a.json").read_text())["input"] == {"k": "v"}


def test_adopted_run_that_failed_is_run_failed_and_not_retried(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"tasks": {"me~t": {"drop": "after-start", "runStatus": "FAILED"}}})
    code, jobs, out, _ = run(cli, tmp_path, f"jobs:\n  - {{name: a, task: me~t, retry: {{{FAST}}}}}\n")
    assert code == 1 and server.state.per_task == {"me~t": 1}
    assert jobs["a"]["error"]["type"] == "run-failed" and jobs["a"]["error"]["runId"] == server.state.runs[0].id
    assert jobs["a"]["attempts"] == 1 and not (out / "a.json").exists()


def test_no_run_found_means_it_never_started_so_it_is_sent_again(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"tasks": {"me~t": [{"drop": "before-response"}, {}]}})
    code, jobs, _, _ = run(cli, tmp_path, f"jobs:\n  - {{name: a, task: me~t, retry: {{{FAST}}}}}\n")
    assert code == 0 and server.state.per_task == {"me~t": 2} and len(server.state.runs) == 1
    assert jobs["a"]["recovery"]["adopted"] is False
    assert jobs["a"]["recovery"]["looks"][0]["found"] == "none"


NO_AGENT = {"recordUserAgent": False}  # a platform that does not record user agents: recovery matches inputs


def test_several_candidates_are_not_guessed(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"tasks": {"me~t": [{}, {"drop": "after-start"}, {}]}, "platform": NO_AGENT})
    code, jobs, _, _ = run(cli, tmp_path, f"""
        jobs:
          - {{name: first, task: me~t}}
          - {{name: second, task: me~t, needs: [first], retry: {{{FAST}}}}}
        """)
    assert code == 0 and server.state.per_task == {"me~t": 3}
    look = jobs["second"]["recovery"]["looks"][0]
    assert look["found"] == "several" and len(look["runIds"]) == 2 and "not guessing" in look["note"]
    assert jobs["second"]["recovery"]["adopted"] is False and jobs["second"]["attempts"] == 2


def test_several_candidates_with_no_attempt_left_fail_without_sending(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"tasks": {"me~t": [{}, {"drop": "after-start"}, {}]}, "platform": NO_AGENT})
    code, jobs, _, _ = run(cli, tmp_path, """
        jobs:
          - {name: first, task: me~t}
          - {name: second, task: me~t, needs: [first], retry: {attempts: 1}}
        """)
    assert code == 1 and server.state.per_task == {"me~t": 2}
    assert jobs["second"]["error"]["type"] == "connection-dropped"


def test_parallel_jobs_on_one_task_each_adopt_their_own_run(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"tasks": {"me~t": {"drop": "after-start", "latency": 0.2}}})
    jobs = "\n".join(f"  - {{name: j{i}, task: me~t, input: {{n: {i}}}, retry: {{{FAST}}}}}" for i in range(4))
    code, report, out, _ = run(cli, tmp_path, f"concurrency: 4\njobs:\n{jobs}\n")
    assert code == 0 and server.state.per_task == {"me~t": 4} and len(server.state.runs) == 4
    adopted = {report[f"j{i}"]["recovery"]["runId"] for i in range(4)}
    assert adopted == {started.id for started in server.state.runs}
    for i in range(4):
        assert json.loads((out / f"j{i}.json").read_text())["input"] == {"n": i}


def test_dataset_job_adopts_and_fetches_items_with_its_parameters(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"tasks": {"me~t": [{"drop": "after-start"}, {}]}})
    code, jobs, out, _ = run(cli, tmp_path, f"""
        jobs:
          - {{name: d, task: me~t, input: {{q: x}}, dataset: {{format: csv}}, retry: {{{FAST}}}}}
        """)
    assert code == 0 and server.state.per_task == {"me~t": 1}
    assert (out / "d.csv").read_text().startswith("taskId,input,options")


def test_a_run_started_with_other_options_is_not_adopted(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"tasks": {"me~t": [{}, {"drop": "after-start"}, {}]}, "platform": NO_AGENT})
    code, jobs, _, _ = run(cli, tmp_path, f"""
        jobs:
          - {{name: small, task: me~t, options: {{memory: 256}}}}
          - {{name: big, task: me~t, options: {{memory: 4096}}, needs: [small], retry: {{{FAST}}}}}
        """)
    # `small`'s run has the same (empty) input but 256 MB: only `big`'s own 4096 MB run is a candidate
    assert code == 0 and server.state.per_task == {"me~t": 2}
    assert jobs["big"]["recovery"]["adopted"] is True and jobs["big"]["recovery"]["looks"][0]["runIds"] == [
        server.state.runs[1].id]
