"""Drop recovery over real sockets: a dropped request whose run started ends with one run, not two."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from apify_jobs.settings import Settings
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


@pytest.mark.parametrize("retry", [FAST, "attempts: 1"])
def test_several_candidates_are_not_guessed_and_never_sent_again(cli, emulator, tmp_path: Path, retry: str) -> None:
    """Two runs of the window carry no identity and both have the request's input: one of them is the dropped
    attempt's, nobody can tell which, so the job fails naming both, and nothing is sent again (a retry
    would pay for a second run of the same input)."""
    server = emulator({"tasks": {"me~t": [{}, {"drop": "after-start"}, {}]}, "platform": NO_AGENT})
    code, jobs, _, _ = run(cli, tmp_path, f"""
        jobs:
          - {{name: first, task: me~t}}
          - {{name: second, task: me~t, needs: [first], retry: {{{retry}}}}}
        """)
    assert code == 1 and server.state.per_task == {"me~t": 2}
    look = jobs["second"]["recovery"]["looks"][0]
    assert look["found"] == "several" and len(look["runIds"]) == 2 and "not guessing" in look["note"]
    error = jobs["second"]["error"]
    assert error["type"] == "recovery-failed" and all(run_id in error["message"] for run_id in look["runIds"])


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
          - {{name: d, task: me~t, input: {{q: x}}, dataset: {{format: csv, fields: [title, price], limit: 2, bom: false}},
              retry: {{{FAST}}}}}
        """)
    assert code == 0 and server.state.per_task == {"me~t": 1}
    assert (out / "d.csv").read_text() == "title,price\nProduct 1,10.99\nProduct 2,11.99\n"


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


# --- recovery never guesses "no run" ---------------------------------------------------------------

SHORTENED = {"shortenUserAgent": True}  # a proxy keeps only `apify-jobs/<version>`: no attempt ID reaches the run


def test_a_shortened_user_agent_is_matched_by_input_and_adopted(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"tasks": {"me~t": [{"drop": "after-start", "latency": 0.1}, {}]}, "platform": SHORTENED,
                       "inputs": {"me~t": {"saved": 1}}})
    code, jobs, out, _ = run(cli, tmp_path, f"jobs:\n  - {{name: a, task: me~t, input: {{q: 1}}, retry: {{{FAST}}}}}\n")
    [started] = server.state.runs
    assert started.user_agent is not None and "(+" not in started.user_agent
    assert code == 0 and server.state.per_task == {"me~t": 1}
    assert jobs["a"]["recovery"]["adopted"] is True and jobs["a"]["recovery"]["looks"][0]["method"] == "input"
    assert json.loads((out / "a.json").read_text())["input"] == {"q": 1}  # its INPUT was {"saved": 1, "q": 1}


@pytest.mark.parametrize("platform", [SHORTENED, NO_AGENT])
def test_when_the_input_cannot_be_compared_the_job_fails_and_is_never_sent_again(cli, emulator, tmp_path: Path,
                                                                               platform: dict) -> None:
    server = emulator({"tasks": {"me~t": [{"drop": "after-start", "latency": 0.1}, {}]},
                       "platform": {**platform, "savedInput": False}})
    code, jobs, _, _ = run(cli, tmp_path, f"jobs:\n  - {{name: a, task: me~t, input: {{q: 1}}, retry: {{{FAST}}}}}\n")
    [started] = server.state.runs
    error = jobs["a"]["error"]
    assert code == 1 and server.state.per_task == {"me~t": 1}  # one run, paid once
    assert error["type"] == "recovery-failed" and started.id in error["message"] and "saved input" in error["message"]


def test_a_drop_before_the_run_started_is_proven_and_sent_again(cli, emulator, tmp_path: Path) -> None:
    """No run in the window could be the attempt's (the only other one has another input): proven, so the retry
    is safe, and it is the only second POST."""
    server = emulator({"tasks": {"me~t": [{}, {"drop": "before-response"}, {}]}, "platform": SHORTENED})
    code, jobs, _, _ = run(cli, tmp_path, f"""
        jobs:
          - {{name: other, task: me~t, input: {{q: 0}}}}
          - {{name: a, task: me~t, input: {{q: 1}}, needs: [other], retry: {{{FAST}}}}}
        """)
    assert code == 0 and server.state.per_task == {"me~t": 3} and len(server.state.runs) == 2
    assert jobs["a"]["recovery"]["looks"][0]["found"] == "none" and jobs["a"]["attempts"] == 2


@pytest.mark.slow
@pytest.mark.parametrize("settings", [Settings()])  # the real pacing: "none" only from a listing 30 s on
def test_a_listing_that_lags_ten_seconds_still_finds_the_run(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"tasks": {"me~t": [{"drop": "after-start", "latency": 0.1}, {}]},
                       "platform": {"listingDelay": 10}})
    code, jobs, _, _ = run(cli, tmp_path, f"jobs:\n  - {{name: a, task: me~t, retry: {{{FAST}}}}}\n", "--no-run-facts")
    assert code == 0 and server.state.per_task == {"me~t": 1} and jobs["a"]["recovery"]["adopted"] is True
