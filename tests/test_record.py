"""The one record of a job's result: it round-trips through its dict form (the report entry, what the state
stores), and every report format is a view of records that works from `run`, `report` and `report --merge`."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apify_jobs.record import (
    GoingRun,
    JobError,
    JobResult,
    RecordError,
    Recovery,
    RecoveryLook,
    RunFacts,
    Status,
    WrittenOutput,
    from_json,
    to_json,
)
from apify_jobs.reports.writers import FORMATS
from tests.helpers import job_file

text = st.text(max_size=12)
maybe_text = st.none() | text
ids = st.text("abcdefXYZ0123456789", min_size=6, max_size=12)
outputs = st.builds(WrittenOutput, path=text.filter(bool), bytes=st.integers(0, 1 << 40), sha256=text,
                    content_type=maybe_text, key=maybe_text, items=st.none() | st.integers(0, 10**9))
runs = st.builds(RunFacts, run_id=ids, status=maybe_text, usage_total_usd=st.none() | st.floats(0, 1e6),
                 dataset_id=maybe_text, store_id=maybe_text, preliminary=st.booleans(), build_number=maybe_text)
FIELDS = dict(
    name=text, task=text, file=text, endpoint=st.sampled_from(["run-sync", "run-sync-get-dataset-items"]),
    query=st.dictionaries(text, text, max_size=3), input_sha256=text, status=st.sampled_from(list(Status)),
    attempts=st.integers(0, 10), http_status=st.none() | st.integers(100, 599),
    error=st.none() | st.builds(JobError, type=text, message=text, run_id=st.none() | ids,
                                violations=st.none() | st.integers(0, 100)),
    output=st.none() | outputs, rejected=st.none() | outputs, started_at=maybe_text, finished_at=maybe_text,
    duration_ms=st.none() | st.integers(0, 10**9), resumed=st.booleans(), refetched=st.booleans(),
    from_run=st.none() | st.integers(1, 10**6), note=st.none() | text.filter(bool),
    recovery=st.none() | st.builds(Recovery, adopted=st.booleans(), run_id=st.none() | ids, followed=st.booleans(),
                                   looks=st.lists(st.builds(RecoveryLook, attempt=st.integers(1, 5), found=text,
                                                            run_ids=st.lists(ids, max_size=3), note=text,
                                                            method=st.sampled_from(["identity", "input"])),
                                                  max_size=3)),
    attempt_ids=st.lists(ids, max_size=3), run=st.none() | runs, other_runs=st.lists(runs, max_size=2),
    facts_note=st.none() | text.filter(bool), actor=st.booleans())
records = st.builds(JobResult, **FIELDS)


@settings(max_examples=300, deadline=None)
@given(records)
def test_a_record_round_trips_through_its_dict_and_json_form(record: JobResult) -> None:
    assert JobResult.from_dict(record.to_dict()) == record
    assert from_json(to_json(record)) == record
    assert json.loads(to_json(record)) == record.to_dict()


def test_the_round_trip_covers_every_field() -> None:
    """A field added to the record without its place in the dict form fails here (or in the property test)."""
    stored = {f.name for f in dataclasses.fields(JobResult)} - {"previous_json"}  # a resumed job's, read lazily
    assert set(FIELDS) == stored


def test_a_resumed_result_says_its_earlier_record_marked_resumed() -> None:
    earlier = JobResult("a", "me~t", "jobs.yaml", "run-sync", {}, "x", Status.SUCCEEDED, 1,
                        output=WrittenOutput("out/a.json", 3, "abc", "application/json"), run=RunFacts("RUNabc123"))
    marked = dataclasses.replace(earlier, resumed=True)
    now = JobResult("a", "me~t", "jobs.yaml", "run-sync", {}, "x", Status.SUCCEEDED, resumed=True,
                    previous_json=to_json(marked))
    assert now.effective == marked and now.previous == marked
    assert now.to_dict() == {**earlier.to_dict(), "resumed": True}


def test_a_newer_or_damaged_record_is_refused_not_guessed() -> None:
    with pytest.raises(RecordError, match="upgrade apify-jobs"):
        from_json("{}", version=99)
    with pytest.raises(RecordError, match="damaged"):
        from_json('{"name": "a"')
    assert GoingRun.from_dict(GoingRun("a", "RUNabc123", True).to_dict()) == GoingRun("a", "RUNabc123", True)


def test_a_damaged_record_in_the_state_is_one_line(cli, emulator, tmp_path: Path) -> None:
    emulator()
    out = tmp_path / "out"
    assert cli("run", job_file(tmp_path, "jobs:\n  - {name: a, task: me~t}\n"), "--out-dir", out)[0] == 0
    with sqlite3.connect(out / ".apify-jobs" / "state.sqlite3") as db:
        db.execute("UPDATE results SET entry = '{broken'")
    code, _, err = cli("report", "--out-dir", out)
    assert code == 2 and "holds a stored record is damaged" in err and "Traceback" not in err


def _paths(base: Path) -> dict[str, Path]:
    names = {"--report": "r.json", "--junit": "junit.xml", "--html": "report.html", "--markdown": "summary.md"}
    return {form.flags[0]: base / names[form.flags[0]] for form in FORMATS}


def _check_written(paths: dict[str, Path], jobs: int) -> None:
    from xml.etree import ElementTree

    assert json.loads(paths["--report"].read_text())["totals"]["jobs"] == jobs
    assert ElementTree.parse(paths["--junit"]).getroot()[0].get("tests") == str(jobs)
    assert paths["--html"].read_text().count('class="job-bar"') == jobs
    assert paths["--markdown"].read_text().startswith("## apify-jobs") and f"{jobs} jobs:" in paths["--markdown"].read_text()


@pytest.mark.parametrize("command", ["run", "report", "report --merge"])
def test_every_registered_format_is_written_from_every_command(cli, emulator, tmp_path: Path, command: str) -> None:
    server = emulator()
    assert set(_paths(tmp_path)) == {form.flags[0] for form in FORMATS}  # a new format needs its check above
    path = job_file(tmp_path, "concurrency: 2\njobs:\n  - {name: a, task: me~t}\n  - {name: b, task: me~t}\n")
    flags = [str(a) for flag, p in _paths(tmp_path / "r").items() for a in (flag, p)]
    (tmp_path / "r").mkdir()
    if command == "run":
        code, _, err = cli("run", path, "--out-dir", tmp_path / "out", *flags, "--no-run-facts")
    else:
        assert cli("run", path, "--out-dir", tmp_path / "out", "--no-run-facts")[0] == 0
        merge = ["--merge", tmp_path / "out"] if command == "report --merge" else []
        out = tmp_path / ("merged" if merge else "out")
        code, _, err = cli("report", "--out-dir", out, *merge, *flags)
    assert code == 0, err
    _check_written(_paths(tmp_path / "r"), 2)
    assert len(server.state.run_sync_requests()) == 2


def test_the_html_report_escapes_every_field_and_links_only_to_files(tmp_path: Path) -> None:
    from apify_jobs.reports.html import render
    from apify_jobs.reports.report import ReportOf, build

    hostile = JobResult("<b>x</b>", "me~t", "j.yaml", "run-sync", {}, "", Status.SUCCEEDED, 1,
                        output=WrittenOutput(str(tmp_path / "javascript:alert(document.domain).json"), 1, "a", None))
    failed = JobResult("y", "me~t", "j.yaml", "run-sync", {}, "", Status.FAILED, 1,
                       error=JobError("run-failed", '<img src=x onerror="alert(1)">'))
    page = render(build(ReportOf([hostile, failed])), str(tmp_path))
    assert "<b>x</b>" not in page and "<img" not in page and "&lt;b&gt;" in page
    assert 'href="./javascript%3Aalert%28document.domain%29.json"' in page and 'href="javascript:' not in page


def test_what_the_platform_sent_is_masked_in_a_record_and_the_tools_own_identifiers_are_not() -> None:
    """A server may echo a secret in a run's ID or link: masked. A short secret inside an output's sha256 or
    file name (what --resume stands on) is chance, not a leak: kept, or the finished job would look unfinished."""
    from apify_jobs.redaction import Redactor

    redactor = Redactor()
    redactor.register("s3cret-token-value")
    redactor.register("ab")
    output = WrittenOutput("out/ab.json", 3, "ab" * 32, "application/json", "ab.json")
    result = JobResult("ab", "me~t", "f.yaml", "run-sync", {}, "ab" * 32, Status.SUCCEEDED, 1, output=output,
                       run=RunFacts("s3cret-token-value", "SUCCEEDED", dataset_id="ds-s3cret-token-value"),
                       attempt_ids=["ab" * 16])
    entry = json.loads(to_json(result, redactor.values))
    assert "s3cret-token-value" not in json.dumps(entry) and entry["runId"] == "[redacted]"
    assert entry["output"]["sha256"] == "ab" * 32 and entry["output"]["key"] == "ab.json"
    assert entry["request"]["inputSha256"] == "ab" * 32 and entry["attemptIds"] == ["ab" * 16]
    assert entry["name"] == "[redacted]"  # a name is the user's text: masked
