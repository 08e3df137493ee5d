"""Pipelines, finished: typed values in typed fields (checked once substituted), problems at the expression's
own line in one pass, matrices and fan-outs as groups (`needs.X[*]…`), and `--only … --resume` taking values
from the state. Every refused case counts the POSTs the emulator saw: none."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import job_file, jobs_by_name, read_report

REPO = Path(__file__).resolve().parent.parent


def bodies(server, task: str) -> list[dict]:
    return [json.loads(r["body"]) for r in server.state.run_sync_requests(task)]


def queries(server, task: str) -> list[dict]:
    return [r["query"] for r in server.state.run_sync_requests(task)]


TYPED = """
jobs:
  - name: cfg
    task: me~cfg
    input: {memory: 1024, maxItems: 5, limit: 3, clean: true, bad: "many"}
  - name: typed
    task: me~typed
    needs: [cfg]
    options: {memory: "${{ needs.cfg.output.input.memory }}", maxItems: "${{ needs.cfg.output.input.maxItems }}"}
    dataset: {limit: "${{ needs.cfg.output.input.limit }}", clean: "${{ needs.cfg.output.input.clean }}"}
  - name: mistyped
    task: me~mistyped
    needs: [cfg]
    dataset: {limit: "${{ needs.cfg.output.input.bad }}"}
"""


def test_values_in_typed_fields_validate_and_are_checked_once_substituted(cli, emulator, tmp_path: Path) -> None:
    path = job_file(tmp_path, TYPED)
    code, out, err = cli("validate", path)
    assert code == 0, out + err
    server = emulator()
    code, _, _ = cli("run", path, "--out-dir", tmp_path / "out")
    jobs = jobs_by_name(read_report(tmp_path / "out"))
    assert code == 1 and jobs["typed"]["status"] == "succeeded"
    [query] = queries(server, "me~typed")
    assert (query["memory"], query["maxItems"], query["limit"], query["clean"]) == ("1024", "5", "3", "true")
    error = jobs["mistyped"]["error"]
    assert error["type"] == "needs-value-failed" and 'dataset.limit: must be a whole number, not string "many"' \
        in error["message"]
    assert server.state.per_task.get("me~mistyped", 0) == 0  # nothing sent for it


BAD = """\
version: 1
jobs:
  - name: list
    task: me~l
  - name: each
    task: me~e
    matrix: {n: [1, 2, 3, 4, 5, 6]}
    input:
      a: 1
      b: "${{ matrix.nope }}"
  - name: uses
    task: me~u
    needs: [each, uses]
    input:
      one: 1
      x: "${{ needs.each.datasetId }}"
      y: "${{ needs.list.datasetId }}"
  - name: broken
    task: me~b
    options: {memory: "lots"}
    input:
      z: "${{ needs.list.output }}"
      w: "${{ oops }}"
"""


def test_problems_at_their_own_line_in_one_pass_and_once_per_matrix(cli, emulator, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    code, out, err = cli("validate", path)
    lines = (out + err).splitlines()
    assert code == 2

    def at(line: int) -> list[str]:
        return [text for text in lines if text.startswith(f"{path}:{line}:")]

    assert len(at(10)) == 1 and "all 6 jobs of the matrix: ${{ matrix.nope }} is not defined" in at(10)[0]
    assert "job 'uses' needs itself" in at(13)[0]
    assert "'each' is a matrix (a group of jobs): write needs.each[*].datasetId" in at(16)[0]
    assert "'list' is not in this job's needs" in at(17)[0]  # the expression's line, not input's first key
    # the schema's problem and the expressions' problems of one job, in the same pass
    assert "options.memory" in at(20)[0] and "'list' is not in this job's needs" in at(22)[0]
    assert "malformed expression '${{ oops }}'" in at(23)[0]
    server = emulator()
    code, _, _ = cli("run", path, "--out-dir", tmp_path / "out")
    assert code == 2 and server.state.per_task == {}


GROUPS = """
jobs:
  - name: size
    task: me~size
    matrix: {size: [s, m, l]}
    input: {size: "${{ matrix.size }}"}
  - name: all
    task: me~all
    needs: [size]
    input: {sizes: "${{ needs.size[*].output.input.size }}", runs: "${{ needs.size[*].runId }}"}
  - name: one
    task: me~one
    needs: [size-m]
    input: {size: "${{ needs.size-m.output.input.size }}", dataset: "${{ needs.size-m.datasetId }}"}
"""


def test_a_matrix_is_a_group_and_one_of_its_jobs_can_be_named(cli, emulator, tmp_path: Path) -> None:
    server = emulator()
    code, _, err = cli("run", job_file(tmp_path, GROUPS), "--out-dir", tmp_path / "out")
    assert code == 0, err
    runs = {r.input["size"]: r for r in server.state.runs if r.task == "me~size"}
    [gathered] = bodies(server, "me~all")
    assert gathered == {"sizes": ["s", "m", "l"], "runs": [runs[s].id for s in "sml"]}  # in expansion order
    [one] = bodies(server, "me~one")
    assert one["size"] == "m" and one["dataset"].startswith("ds")
    assert server.state.per_task == {"me~size": 3, "me~all": 1, "me~one": 1}


def test_the_map_reduce_example_gathers_a_fan_out(cli, emulator, tmp_path: Path) -> None:
    server = emulator()
    code, _, err = cli("run", REPO / "jobs" / "map-reduce.yaml", "--out-dir", tmp_path / "out")
    assert code == 0, err
    scraped = [r for r in server.state.runs if r.task == "janedoe~shop-category"]
    [merge] = bodies(server, "janedoe~merge-datasets")
    by_category = {r.input["category"]: r for r in scraped}
    assert merge["categories"] == ["books", "games", "music"]
    assert merge["datasetIds"] == [by_category[c].dataset_id for c in ("books", "games", "music")]
    assert server.state.per_task == {"janedoe~shop-categories": 1, "janedoe~shop-category": 3,
                                     "janedoe~merge-datasets": 1}


def test_a_fan_out_read_without_its_star_is_refused_before_anything_is_sent(cli, emulator, tmp_path: Path) -> None:
    text = (REPO / "jobs" / "map-reduce.yaml").read_text().replace("needs.scrape[*].datasetId", "needs.scrape.datasetId")
    path = tmp_path / "mr.yaml"
    path.write_text(text)
    server = emulator()
    code, out, err = cli("run", path, "--out-dir", tmp_path / "out")
    assert code == 2 and "'scrape' is a fan-out (a group of jobs): write needs.scrape[*].datasetId" in out + err
    assert server.state.per_task == {}


PIPE = """
jobs:
  - name: list
    task: me~list
    input: {limit: 7}
  - name: from-ds
    task: me~from
    needs: [list]
    input: {datasetId: "${{ needs.list.datasetId }}", limit: "${{ needs.list.output.input.limit }}"EXTRA}
"""


def test_only_with_resume_takes_values_from_the_state(cli, emulator, tmp_path: Path) -> None:
    server = emulator()
    out = tmp_path / "out"
    code, _, err = cli("run", job_file(tmp_path, PIPE.replace("EXTRA", "")), "--out-dir", out)
    assert code == 0, err
    [list_run] = [r for r in server.state.runs if r.task == "me~list"]
    # from-ds changes (a new key), list does not: only from-ds runs, with list's values from the state
    changed = job_file(tmp_path, PIPE.replace("EXTRA", ", note: again"), "changed.yaml")
    code, _, err = cli("run", changed, "--out-dir", out, "--only", "from-ds", "--resume")
    assert code == 0, err
    assert server.state.per_task == {"me~list": 1, "me~from": 2}
    again = bodies(server, "me~from")[-1]
    assert again["limit"] == 7 and again["note"] == "again" and again["datasetId"] == list_run.dataset_id


def test_only_without_a_success_to_read_says_so_and_sends_nothing(cli, emulator, tmp_path: Path) -> None:
    server = emulator()
    path = job_file(tmp_path, PIPE.replace("EXTRA", ""))
    for extra in (["--resume"], []):
        out = tmp_path / f"out{len(extra)}"
        code, _, _ = cli("run", path, "--out-dir", out, "--only", "from-ds", *extra)
        error = jobs_by_name(read_report(out))["from-ds"]["error"]
        assert code == 1 and error["type"] == "needs-value-failed"
        assert ("has no intact success in the state" if extra else "add --resume") in error["message"]
    assert server.state.per_task == {}


def test_only_with_resume_reads_a_whole_group_from_the_state(cli, emulator, tmp_path: Path) -> None:
    server = emulator()
    out = tmp_path / "out"
    assert cli("run", job_file(tmp_path, GROUPS), "--out-dir", out)[0] == 0
    runs = {r.input["size"]: r.id for r in server.state.runs if r.task == "me~size"}
    changed = job_file(tmp_path, GROUPS.replace("runs: ", "note: again, runs: "), "changed.yaml")
    code, _, err = cli("run", changed, "--out-dir", out, "--only", "all", "--resume")
    assert code == 0, err
    assert server.state.per_task == {"me~size": 3, "me~all": 2, "me~one": 1}
    assert bodies(server, "me~all")[-1] == {"sizes": ["s", "m", "l"], "note": "again",
                                            "runs": [runs[s] for s in "sml"]}


def test_the_files_own_keys_are_never_substituted_so_an_expression_there_is_refused(cli, tmp_path: Path) -> None:
    path = tmp_path / "top.yaml"
    path.write_text('version: 1\nconcurrency: "${{ vars.c }}"\njobs:\n'
                    '  - {name: a, task: me~a, options: {memory: "${{ vars.m }}"}}\n')
    code, out, err = cli("validate", path)
    assert code == 2 and f"{path}:2:14: concurrency: must be a whole number" in out + err
    assert "memory" not in out + err  # a job's value is judged once substituted


def test_a_state_that_cannot_lease_a_fan_outs_jobs_stops_the_batch_in_one_line(cli, emulator, tmp_path: Path,
                                                                                monkeypatch) -> None:
    """A fan-out expands in a worker thread once its list ran: a state that cannot take its jobs' leases (a
    full disk) stops the batch, nothing of the fan-out is sent, and `run` says so in one line (raised there,
    it ended the worker's thread and the batch never ended)."""
    import threading

    from apify_jobs.running.state import State, StateError

    crashed: list[object] = []
    monkeypatch.setattr(threading, "excepthook", crashed.append)
    calls = []
    original = State.take_leases

    def full_at_the_fan_out(self, jobs):
        calls.append(jobs)
        if len(calls) > 1:  # the plan's leases were taken; the fan-out's are not
            raise StateError("cannot write the state: database or disk is full")
        return original(self, jobs)

    monkeypatch.setattr(State, "take_leases", full_at_the_fan_out)
    server = emulator()
    code, _, err = cli("run", REPO / "jobs" / "map-reduce.yaml", "--out-dir", tmp_path / "out")
    assert code != 0 and "database or disk is full" in err and "Traceback" not in err and crashed == []
    assert server.state.per_task == {"janedoe~shop-categories": 1}
