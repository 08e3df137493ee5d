"""Values flowing along `needs` on the emulator: IDs of a needed job's run, typed values from its output,
failures that send nothing, `plan` before, and `--resume` after the first job's output changed."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import job_file, jobs_by_name, read_report


def bodies(server, task: str) -> list[dict]:
    return [json.loads(r["body"]) for r in server.state.run_sync_requests(task)]


PIPELINE = """
jobs:
  - name: crawl
    task: me~crawl
    input: {start: [{url: "https://a.example"}, {url: "https://b.example"}]}
  - name: process
    task: me~process
    needs: [crawl]
    input:
      datasetId: "${{ needs.crawl.datasetId }}"
      runId: "${{ needs.crawl.runId }}"
      urls: "${{ needs.crawl.output.input.start[*].url }}"
      first: "first is ${{ needs.crawl.output.input.start[0].url }}"
  - name: label
    task: me~label
    needs: [crawl]
    input: {task: "${{ needs.crawl.output.taskId }}"}
"""


def test_a_pipeline_passes_ids_and_typed_values(cli, emulator, tmp_path: Path) -> None:
    server = emulator()
    code, _, err = cli("run", job_file(tmp_path, PIPELINE), "--out-dir", tmp_path / "out")
    assert code == 0, err
    [crawl_run] = [r for r in server.state.runs if r.task == "me~crawl"]
    [sent] = bodies(server, "me~process")
    assert sent == {"datasetId": crawl_run.dataset_id, "runId": crawl_run.id,
                    "urls": ["https://a.example", "https://b.example"], "first": "first is https://a.example"}


def test_plan_shows_values_from_needs_as_deferred(cli, tmp_path: Path) -> None:
    code, out, _ = cli("plan", job_file(tmp_path, PIPELINE), "--json")
    process = {p["name"]: p for p in json.loads(out)}["process"]
    assert code == 0 and process["body"]["urls"] == "<from crawl.output.input.start[*].url>"
    assert process["body"]["datasetId"] == "<from crawl.datasetId>"


def test_a_path_that_selects_nothing_fails_the_job_without_sending(cli, emulator, tmp_path: Path) -> None:
    server = emulator()
    path = job_file(tmp_path, PIPELINE.replace("start[*].url", "missing[*].url"))
    code, _, _ = cli("run", path, "--out-dir", tmp_path / "out")
    process = jobs_by_name(read_report(tmp_path / "out"))["process"]
    assert code == 1 and bodies(server, "me~process") == [] and process["error"]["type"] == "needs-value-failed"
    assert "needs.crawl.output.input.missing[*].url" in process["error"]["message"]
    assert "selects nothing: .input of crawl's output is an object with keys start" in process["error"]["message"]


def test_star_on_something_that_is_not_a_list_is_a_clear_failure(cli, emulator, tmp_path: Path) -> None:
    server = emulator()
    path = job_file(tmp_path, PIPELINE.replace("input.start[*].url", "taskId[*]"))
    code, _, _ = cli("run", path, "--out-dir", tmp_path / "out")
    process = jobs_by_name(read_report(tmp_path / "out"))["process"]
    assert code == 1 and bodies(server, "me~process") == [] and "[*] needs a list" in process["error"]["message"]


def test_a_reference_to_a_job_not_needed_is_a_validation_error(cli, tmp_path: Path) -> None:
    path = job_file(tmp_path, PIPELINE.replace("    needs: [crawl]\n    input: {task:", "    input: {task:"))
    code, _, err = cli("validate", path)
    assert code == 2 and "'crawl' is not in this job's needs; add it there" in err
    code, _, err = cli("validate", job_file(tmp_path, "jobs:\n  - {name: a, task: me~t}\n"
                                                      "  - {name: b, task: me~t, needs: [a], output: '${{ needs.a.runId }}'}\n"))
    assert code == 2 and "may only stand in input, options or dataset" in err


def test_resume_resends_exactly_the_dependants_whose_requests_changed(cli, emulator, tmp_path: Path) -> None:
    server = emulator()
    out = tmp_path / "out"
    one_url = PIPELINE.replace(', {url: "https://b.example"}]', "]")
    first = job_file(tmp_path, one_url, "first.yaml")
    assert cli("run", first, "--out-dir", out)[0] == 0
    assert cli("run", first, "--out-dir", out, "--resume")[0] == 0
    assert len(server.state.requests) == 3  # nothing changed: nothing sent again
    changed = job_file(tmp_path, PIPELINE, "first.yaml")  # crawl's input has a second URL now
    assert cli("run", changed, "--out-dir", out, "--resume")[0] == 0
    # crawl ran again (its input changed), so did process (its urls changed); label's request stayed the same
    assert sorted(r["task"] for r in server.state.run_sync_requests()[3:]) == ["me~crawl", "me~process"]
    assert jobs_by_name(read_report(out))["label"].get("resumed") is True


def test_ids_of_a_resumed_needed_job_are_found_without_run_facts(cli, emulator, tmp_path: Path) -> None:
    server = emulator()
    out = tmp_path / "out"
    path = job_file(tmp_path, "jobs:\n  - {name: crawl, task: me~crawl}\n"
                              "  - {name: use, task: me~use, needs: [crawl], input: {run: '${{ needs.crawl.runId }}'}}\n")
    assert cli("run", path, "--out-dir", out, "--no-run-facts", "--only", "crawl")[0] == 0
    assert cli("run", path, "--out-dir", out, "--no-run-facts", "--resume")[0] == 0
    [crawl_run] = server.state.runs[:1]
    assert bodies(server, "me~use") == [{"run": crawl_run.id}] and len(bodies(server, "me~crawl")) == 1


# --- Actors as well as tasks ---------------------------------------------------------------------

ACTOR_JOBS = """
jobs:
  - {name: record, actor: apify/web-scraper, input: {startUrls: [{url: "https://a.example"}]}}
  - {name: items, actor: apify~web-scraper, input: {q: 1}, dataset: {format: jsonl}}
"""


def test_an_actor_job_runs_through_the_actor_endpoints(cli, emulator, tmp_path: Path) -> None:
    server = emulator()
    code, _, err = cli("run", job_file(tmp_path, ACTOR_JOBS), "--out-dir", tmp_path / "out")
    assert code == 0, err
    sent = server.state.run_sync_requests()
    assert sorted((r["endpoint"], r["actor"], r["task"]) for r in sent) == [
        ("run-sync", True, "apify~web-scraper"), ("run-sync-get-dataset-items", True, "apify~web-scraper")]
    jobs = jobs_by_name(read_report(tmp_path / "out"))
    assert jobs["record"]["actor"] == "apify~web-scraper" and jobs["record"]["task"] is None
    assert jobs["record"]["runId"] in {r.id for r in server.state.runs}  # run facts from the Actor's run listing
    listings = {r["path"] for r in server.state.lookups_of("list-runs")}
    assert listings == {"/v2/actors/apify~web-scraper/runs"}


def test_an_actor_jobs_dropped_run_is_adopted_from_the_actors_runs(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"tasks": {"apify~web-scraper": [{"drop": "after-start", "latency": 0.2}, {}]},
                       "platform": {"recordUserAgent": False}})  # the fallback: the INPUT is the input sent
    path = job_file(tmp_path, "jobs:\n  - {name: a, actor: apify~web-scraper, input: {q: 7}, "
                              "retry: {backoff: {initial: 0, max: 0}}}\n")
    code, _, _ = cli("run", path, "--out-dir", tmp_path / "out")
    job = jobs_by_name(read_report(tmp_path / "out"))["a"]
    assert code == 0 and server.state.per_task == {"apify~web-scraper": 1} and job["recovery"]["adopted"] is True
    assert job["recovery"]["looks"][0]["method"] == "input" and server.state.lookups_of("task-input") == []


def test_exactly_one_of_task_and_actor(cli, tmp_path: Path) -> None:
    code, _, err = cli("validate", job_file(tmp_path, "jobs:\n  - {name: a, task: me~t, actor: me~a}\n"
                                                      "  - {name: b, input: {}}\n"))
    assert code == 2 and "give exactly one of task" in err and "missing required key 'task' (or 'actor'" in err
    assert f"{tmp_path / 'jobs.yaml'}:3:5:" in err and f"{tmp_path / 'jobs.yaml'}:4:5:" in err


# --- fan-out from an output -----------------------------------------------------------------------

FAN_OUT = """
concurrency: 4
jobs:
  - {name: list, task: me~list, expect: {nonEmpty: false}}
  - name: each
    task: me~each
    needs: [list]
    matrix: {url: "${{ needs.list.output[*].url }}"}
    input: {url: "${{ matrix.url }}", fromRun: "${{ needs.list.runId }}"}
  - {name: after, task: me~after, needs: [each]}
"""


def test_a_fan_out_expands_over_a_list_output(cli, emulator, tmp_path: Path) -> None:
    urls = [{"url": "https://a.example/x"}, {"url": "https://b.example/y"}, {"url": "https://c.example/z"}]
    server = emulator({"tasks": {"me~list": {"output": urls}}})
    code, _, err = cli("run", job_file(tmp_path, FAN_OUT), "--out-dir", tmp_path / "out")
    assert code == 0, err
    [list_run] = [r for r in server.state.runs if r.task == "me~list"]
    assert sorted(b["url"] for b in bodies(server, "me~each")) == [u["url"] for u in urls]
    assert all(b["fromRun"] == list_run.id for b in bodies(server, "me~each"))
    jobs = jobs_by_name(read_report(tmp_path / "out"))
    assert sorted(jobs) == ["after", "each-https-a.example-x", "each-https-b.example-y", "each-https-c.example-z",
                            "list"]
    after = server.state.run_sync_requests("me~after")[0]
    each_numbers = [r["number"] for r in server.state.run_sync_requests("me~each")]
    assert len(each_numbers) == 3 and after  # `after` waited for every expansion
    assert server.state.requests.index(after) > max(server.state.requests.index(r)
                                                    for r in server.state.run_sync_requests("me~each"))


def test_a_fan_out_over_zero_items_is_skipped_and_over_the_limit_fails(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"tasks": {"me~list": {"output": []}}})
    code, _, _ = cli("run", job_file(tmp_path, FAN_OUT), "--out-dir", tmp_path / "out")
    jobs = jobs_by_name(read_report(tmp_path / "out"))
    assert code == 1 and jobs["each"]["status"] == "skipped" and "zero items" in jobs["each"]["error"]["message"]
    assert bodies(server, "me~each") == [] and jobs["after"]["status"] == "skipped"
    server.state.script.tasks["me~list"] = [type(server.state.script.default)(
        output=[{"url": f"https://x.example/{i}"} for i in range(1001)])]
    code, _, _ = cli("run", job_file(tmp_path, FAN_OUT), "--out-dir", tmp_path / "out2")
    jobs = jobs_by_name(read_report(tmp_path / "out2"))
    assert code == 1 and jobs["each"]["status"] == "failed" and "1,001 jobs, over the limit" in jobs["each"]["error"]["message"]
    assert bodies(server, "me~each") == []


def test_plan_says_a_fan_out_expands_later(cli, tmp_path: Path) -> None:
    code, out, _ = cli("plan", job_file(tmp_path, FAN_OUT))
    assert code == 0 and "fan-out: expands when list succeeds: one job per url from <from list.output[*].url>" in out


def test_plan_resume_shows_the_real_values_once_the_needed_output_is_in_the_state(cli, emulator, tmp_path: Path) -> None:
    urls = [{"url": "https://a.example/x"}, {"url": "https://b.example/y"}]
    emulator({"tasks": {"me~list": {"output": urls}}})
    path, out = job_file(tmp_path, FAN_OUT), tmp_path / "out"
    code, before, _ = cli("plan", path, "--out-dir", out, "--resume", "--json")
    assert code == 0 and [p["name"] for p in json.loads(before)] == ["list", "each", "after"]
    assert cli("run", path, "--out-dir", out, "--only", "list")[0] == 0
    code, after, _ = cli("plan", path, "--out-dir", out, "--resume", "--json")
    planned = {p["name"]: p for p in json.loads(after)}
    assert planned["list"]["resume"] == "skip"
    assert planned["each-https-a.example-x"]["body"]["url"] == "https://a.example/x"
    assert planned["each-https-b.example-y"]["resume"] == "run" and "each" not in planned
