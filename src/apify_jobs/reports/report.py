"""The report files, views of the durable state: report.json (its shape published as
`schema/report.schema.json`) and JUnit XML. They are built from the jobs' report entries (what the state
keeps), so that `run` and `apify-jobs report` write the same documents, also after a `kill -9`."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from apify_jobs import __version__
from apify_jobs.model import GoingRun, JobResult, Status, now
from apify_jobs.outputs.destination import write_file_whole
from apify_jobs.redaction import redact

REPORT_SCHEMA_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "report.schema.json")


def total_usage(results: list[JobResult]) -> tuple[float, bool] | None:
    """The batch's cost in USD (every run found, retried ones included), and whether it is preliminary."""
    runs = [run for r in results for run in r.runs if run.usage_total_usd is not None]
    if not runs:
        return None
    return round(sum(run.usage_total_usd or 0.0 for run in runs), 6), any(run.preliminary for run in runs)


class Entries(Protocol):
    """Report entries: a list, or the state's (read a batch at a time, on every pass)."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[dict[str, Any]]: ...


@dataclass
class ReportOf:
    """What a report is about: a run of the tool (or, with `report --run all`, the whole folder)."""

    entries: Entries
    files: list[dict[str, str]] = field(default_factory=list)
    interrupted: bool = False
    complete: bool = True  # False: the run was killed before it finished (its report is rebuilt from the state)
    going: list[GoingRun] = field(default_factory=list)
    run: int | None = None  # the run's number in the state
    started_at: str | None = None
    finished_at: str | None = None


def _totals(entries: Entries) -> dict[str, Any]:
    counts = dict.fromkeys((status.value for status in Status), 0)
    failed_expectations, usages, preliminary = 0, [], False
    for entry in entries:  # one pass: the state's entries are decoded as they come
        if entry.get("status") in counts:
            counts[entry["status"]] += 1
        failed_expectations += (entry.get("error") or {}).get("type") == "expectation-failed"
        if not entry.get("resumed"):
            usages += [run["usageTotalUsd"] for run in [entry, *(entry.get("otherRuns") or [])]
                       if isinstance(run.get("usageTotalUsd"), (int, float))]
            preliminary = preliminary or bool(entry.get("usagePreliminary"))
    totals: dict[str, Any] = {"jobs": len(entries), **counts, "failedExpectations": failed_expectations}
    if usages:
        totals["usageTotalUsd"] = round(sum(usages), 6)
        totals["usagePreliminary"] = preliminary
    return totals


def _document(of: ReportOf, jobs: Any) -> dict[str, Any]:
    report: dict[str, Any] = {
        "tool": {"name": "apify-jobs", "version": __version__},
        "generatedAt": now(),
        "run": of.run,
        "startedAt": of.started_at,
        "finishedAt": of.finished_at,
        "complete": of.complete,
        "interrupted": of.interrupted,
        "files": of.files,
        "totals": _totals(of.entries),
        "jobs": jobs,
    }
    if of.interrupted:
        report["runsStillGoing"] = [{"job": g.job, "runId": g.run_id, "consoleUrl": g.console_url,
                                     "aborted": g.aborted} for g in of.going]
    return report


def build(of: ReportOf) -> dict[str, Any]:
    """The whole report in memory (for the HTML and Markdown views; report.json is streamed by json_text)."""
    return _document(of, list(of.entries))


_JOBS_HERE = "\u0000jobs"


def json_text(of: ReportOf) -> Iterator[str]:
    """report.json in pieces, redacted, one job per line: its memory stays flat whatever the number of jobs."""
    head = json.dumps(_document(of, _JOBS_HERE), indent=2, ensure_ascii=False)
    before, after = head.split(json.dumps(_JOBS_HERE), 1)
    yield redact(before + "[")
    separator = "\n    "
    for entry in of.entries:
        yield redact(separator + json.dumps(entry, ensure_ascii=False))
        separator = ",\n    "
    yield redact(("]" if separator == "\n    " else "\n  ]") + after) + "\n"


def markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown summary (a CI job's summary page): the totals, then a row a job."""
    totals = report["totals"]
    counts = ", ".join(f"{totals[s.value]} {s.value}" for s in Status if totals.get(s.value))
    cost = f"; cost ${totals['usageTotalUsd']:.4f}" if "usageTotalUsd" in totals else ""
    lines = ["## apify-jobs", "", f"{totals['jobs']} jobs: {counts or 'none'}{cost}", "",
             "| job | status | tries | output / error | run |", "| --- | --- | --- | --- | --- |"]
    for entry in report["jobs"]:
        error = entry.get("error") or {}
        detail = (entry.get("output") or {}).get("path") if entry.get("status") == "succeeded" else \
            f"{error.get('type', '')}: {error.get('message', '')}"
        run = f"[{entry['runId']}]({entry['consoleUrl']})" if entry.get("runId") else ""
        cell = str(detail or "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {entry['name']} | {entry['status']} | {entry.get('attempts', 0)} | {cell} | {run} |")
    return "\n".join(lines) + "\n"


def write_json(path: str, of: ReportOf) -> None:
    write_file_whole(path, (piece.encode("utf-8") for piece in json_text(of)))


def write_junit(path: str, entries: Entries, wall_seconds: float | None = None) -> None:
    """JUnit XML, written a test case at a time (one pass to count, one to write), like report.json."""
    from xml.etree import ElementTree  # only with --junit

    def seconds(entry: dict[str, Any]) -> float:
        return float(entry.get("durationMs") or 0) / 1000

    def testcase(entry: dict[str, Any]) -> str:
        case = ElementTree.Element("testcase", {
            "classname": os.path.relpath(str(entry.get("file") or ".")),
            "name": str(entry.get("name")), "time": f"{seconds(entry):.3f}"})
        if entry.get("runId"):
            properties = ElementTree.SubElement(case, "properties")
            for name in ("runId", "consoleUrl"):
                ElementTree.SubElement(properties, "property", {"name": name, "value": str(entry[name])})
        error = entry.get("error") or {}
        if entry.get("status") == "failed":
            failure = ElementTree.SubElement(case, "failure", {"type": str(error.get("type", "failed")),
                                                               "message": str(error.get("message", ""))})
            failure.text = json.dumps(error, ensure_ascii=False)
        elif entry.get("status") in ("skipped", "cancelled"):
            message = error.get("message", entry.get("note") or "")
            ElementTree.SubElement(case, "skipped", {"message": f"{entry['status']}: {message}"})
        ElementTree.indent(case, level=2)
        return "    " + ElementTree.tostring(case, encoding="unicode") + "\n"

    failures = skipped = 0
    total_time = 0.0
    for entry in entries:
        failures += entry.get("status") == "failed"
        skipped += entry.get("status") in ("skipped", "cancelled")
        total_time += seconds(entry)
    suite = ElementTree.Element("testsuite", {
        "name": "apify-jobs", "tests": str(len(entries)), "failures": str(failures), "errors": "0",
        "skipped": str(skipped), "time": f"{wall_seconds if wall_seconds is not None else total_time:.3f}"})
    opening = ElementTree.tostring(suite, encoding="unicode").removesuffix(" />") + ">"

    def pieces() -> Iterator[bytes]:
        yield f"<?xml version='1.0' encoding='utf-8'?>\n<testsuites>\n  {opening}\n".encode()
        for entry in entries:
            yield redact(testcase(entry)).encode("utf-8")
        yield b"  </testsuite>\n</testsuites>\n"

    write_file_whole(path, pieces())


def write(of: ReportOf, json_path: str | None, junit_path: str | None, html_path: str | None = None) -> None:
    if json_path:
        write_json(json_path, of)
    if html_path:
        from apify_jobs.reports.html import render  # only with --html

        page = render(build(of), os.path.dirname(os.path.abspath(html_path)))
        write_file_whole(html_path, redact(page).encode("utf-8"))
    if junit_path:
        write_junit(junit_path, of.entries, _wall_seconds(of))


def _wall_seconds(of: ReportOf) -> float | None:
    """The run's wall time (the suite's time in JUnit), from when it started to when it finished."""
    from datetime import datetime

    if not of.started_at or not of.finished_at:
        return None
    start, end = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in (of.started_at, of.finished_at))
    return max((end - start).total_seconds(), 0.0)
