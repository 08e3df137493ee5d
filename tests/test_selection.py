"""Selection and refresh for scheduled runs: `refresh.maxAge`/`--max-age` against a back-dated state, every
selector (alone and combined) through `plan --json`, and `--shard` dealt evenly and stably."""

from __future__ import annotations

import json
import sqlite3
import textwrap
from pathlib import Path

import pytest

from apify_jobs.running.selection import shard_of
from tests.helpers import job_file, jobs_by_name, make_job, read_report


def back_date(out: Path, iso: str = "2026-01-01T00:00:00.000Z") -> None:
    with sqlite3.connect(out / ".apify-jobs" / "state.sqlite3") as db:
        db.execute("UPDATE results SET finished_at = ?, entry = json_set(entry, '$.finishedAt', ?)", (iso, iso))


def test_refresh_max_age_runs_an_old_success_again(cli, emulator, tmp_path: Path) -> None:
    server = emulator()
    out = tmp_path / "out"
    path = job_file(tmp_path, "defaults: {refresh: {maxAge: 24h}}\njobs:\n  - {name: a, task: me~a}\n"
                              "  - {name: b, task: me~b, refresh: {maxAge: 400d}}\n")
    assert cli("run", path, "--out-dir", out)[0] == 0
    assert cli("run", path, "--out-dir", out, "--resume")[0] == 0
    assert server.state.per_task == {"me~a": 1, "me~b": 1}  # fresh: both skipped
    back_date(out)
    code, stdout, _ = cli("plan", path, "--out-dir", out, "--resume")
    assert code == 0 and "resume: run (succeeded " in stdout and "max age 24 h)" in stdout
    (out / "a.json").unlink()  # too old to refetch as well: a refresh is a new run
    assert cli("run", path, "--out-dir", out, "--resume")[0] == 0
    assert server.state.per_task == {"me~a": 2, "me~b": 1}
    assert jobs_by_name(read_report(out))["a"]["attempts"] == 1


def test_the_max_age_flag_applies_to_every_job(cli, emulator, tmp_path: Path) -> None:
    server = emulator()
    out = tmp_path / "out"
    path = job_file(tmp_path, "jobs:\n  - {name: a, task: me~a}\n  - {name: b, task: me~b}\n")
    assert cli("run", path, "--out-dir", out)[0] == 0
    back_date(out)
    assert cli("run", path, "--out-dir", out, "--resume")[0] == 0  # no max age: old is fine
    assert server.state.per_task == {"me~a": 1, "me~b": 1}
    assert cli("run", path, "--out-dir", out, "--resume", "--max-age", "7d")[0] == 0
    assert server.state.per_task == {"me~a": 2, "me~b": 2}
    code, _, err = cli("run", path, "--out-dir", out, "--resume", "--max-age", "1 day")
    assert code == 2 and "--max-age: '1 day' is not a duration" in err


GRAPH = """
jobs:
  - {name: a, task: me~a}
  - {name: b, task: me~b, needs: [a]}
  - {name: c, task: me~c, needs: [b], input: {v: 1}}
  - {name: d, task: me~d}
  - {name: m, task: me~m, needs: [a], matrix: {n: [1, 2]}, input: {n: "${{ matrix.n }}"}}
"""


def planned(cli, path: Path, out: Path, *flags: str) -> list[str]:
    code, stdout, stderr = cli("plan", path, "--out-dir", out, "--json", *flags)
    assert code == 0, stderr
    return [entry["name"] for entry in json.loads(stdout)]


@pytest.mark.parametrize(("flags", "expected"), [
    (["--only", "b"], ["b"]),
    (["--only", "+b"], ["a", "b"]),
    (["--only", "b+"], ["b", "c"]),
    (["--only", "+b+"], ["a", "b", "c"]),
    (["--only", "a+"], ["a", "b", "c", "m-1", "m-2"]),
    (["--only", "m-*"], ["m-1", "m-2"]),
    (["--only", "+m-2", "--only", "d"], ["a", "d", "m-2"]),
])
def test_only_names_globs_and_the_graph(cli, tmp_path: Path, flags: list[str], expected: list[str]) -> None:
    assert planned(cli, job_file(tmp_path, GRAPH), tmp_path / "out", *flags) == expected


def test_failed_changed_and_combinations_read_the_state(cli, emulator, tmp_path: Path) -> None:
    emulator({"tasks": {"me~d": {"respond": "run-failed"}}})
    out = tmp_path / "out"
    path = job_file(tmp_path, GRAPH)
    code, _, _ = cli("run", path, "--out-dir", out)
    assert code == 1
    changed = job_file(tmp_path, GRAPH.replace("{v: 1}", "{v: 2}"), "changed.yaml")
    assert planned(cli, changed, out, "--failed") == ["d"]
    assert planned(cli, changed, out, "--changed") == ["c", "d"]  # d never succeeded
    assert planned(cli, changed, out, "--failed", "--changed") == ["c", "d"]
    assert planned(cli, changed, out, "--changed", "--only", "+c") == ["c"]
    assert planned(cli, path, out, "--changed") == ["d"]
    code, _, err = cli("plan", path, "--out-dir", tmp_path / "empty", "--failed")
    assert code == 2 and "nothing has run into it yet" in err


def test_a_job_taking_values_counts_as_changed_when_its_need_did(cli, emulator, tmp_path: Path) -> None:
    emulator()
    out = tmp_path / "out"
    text = textwrap.dedent("""
        jobs:
          - {name: list, task: me~l, input: {v: 1}}
          - {name: use, task: me~u, needs: [list], input: {ds: "${{ needs.list.datasetId }}"}}
          - {name: other, task: me~o}
        """)
    assert cli("run", job_file(tmp_path, text), "--out-dir", out)[0] == 0
    changed = job_file(tmp_path, text.replace("{v: 1}", "{v: 2}"), "changed.yaml")
    assert planned(cli, changed, out, "--changed") == ["list", "use"]


def test_run_takes_the_same_selection(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"tasks": {"me~d": [{"respond": "run-failed"}, {}]}})
    out = tmp_path / "out"
    path = job_file(tmp_path, GRAPH)
    assert cli("run", path, "--out-dir", out)[0] == 1
    assert cli("run", path, "--out-dir", out, "--failed")[0] == 0
    assert server.state.per_task == {"me~a": 1, "me~b": 1, "me~c": 1, "me~d": 2, "me~m": 2}


@pytest.mark.parametrize("count", [32, 1000])
def test_shards_are_even_and_stable(tmp_path: Path, count: int) -> None:
    jobs = [make_job(tmp_path, {"name": f"job{i}", "task": "me~t"}) for i in range(count)]
    for shards in (3, 4, 7):
        split = [shard_of(jobs, (index, shards)) for index in range(1, shards + 1)]
        sizes = [len(part) for part in split]
        assert max(sizes) - min(sizes) <= 1 and sum(sizes) == count
        assert set().union(*split) == {job.name for job in jobs}
        assert split == [shard_of(list(reversed(jobs)), (index, shards)) for index in range(1, shards + 1)]


def test_shards_keep_a_job_with_its_needs_where_they_fit(tmp_path: Path) -> None:
    jobs = []
    for chain in range(8):
        for step in range(3):
            job = make_job(tmp_path, {"name": f"c{chain}-{step}", "task": "me~t"})
            job.needs = [f"c{chain}-{step - 1}"] if step else []
            jobs.append(job)
    split = [shard_of(jobs, (index, 4)) for index in range(1, 5)]
    assert sorted(len(part) for part in split) == [6, 6, 6, 6]
    for part in split:
        assert all({f"c{name[1]}-0", f"c{name[1]}-1", f"c{name[1]}-2"} <= part for name in part)


def test_the_report_says_which_build_ran_and_tags_are_warned_about(cli, emulator, tmp_path: Path) -> None:
    server = emulator()
    text = ("jobs:\n  - {name: pinned, task: me~a, options: {build: 0.1.234}}\n"
            "  - {name: tagged, task: me~b, options: {build: latest}}\n  - {name: plain, task: me~c}\n")
    path = job_file(tmp_path, text)
    code, out, err = cli("validate", path)
    assert code == 0 and "warning: jobs[1] (tagged)" not in err  # the message names the key, not the job index
    assert f"{path}:4:" in out + err and "options.build 'latest' is a tag" in out + err
    code, out, err = cli("validate", path, "--require-pinned-build")
    assert code == 2 and "options.build 'latest' is a tag" in out + err and "no options.build" in out + err
    code, _, err = cli("run", path, "--out-dir", tmp_path / "out", "--require-pinned-build")
    assert code == 2 and server.state.per_task == {}  # refused before anything is sent
    assert cli("run", path, "--out-dir", tmp_path / "out")[0] == 0
    jobs = jobs_by_name(read_report(tmp_path / "out"))
    assert jobs["pinned"]["buildNumber"] == "0.0.1" and jobs["pinned"]["request"]["inputSha256"]


def test_report_takes_the_same_only_and_failed(cli, emulator, tmp_path: Path) -> None:
    emulator({"tasks": {"me~d": {"respond": "run-failed"}}})
    out = tmp_path / "out"
    assert cli("run", job_file(tmp_path, GRAPH), "--out-dir", out)[0] == 1
    for flags, expected in ((["--failed"], ["d"]), (["--only", "m-*"], ["m-1", "m-2"]),
                            (["--only", "+b", "--only", "d", "--failed"], ["d"])):
        report = tmp_path / "r.json"
        assert cli("report", "--out-dir", out, "--json", report, *flags)[0] == 0
        assert [job["name"] for job in json.loads(report.read_text())["jobs"]] == expected
