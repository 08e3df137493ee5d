"""The report files, views of the durable state: report.json (its shape published as
`schema/report.schema.json`) and JUnit XML. They are built from the jobs' report entries (what the state
keeps), so that `run` and `apify-jobs report` write the same documents, also after a `kill -9`."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

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


@dataclass
class ReportOf:
    """What a report is about: a run of the tool (or, with `report --run all`, the whole folder)."""

    entries: list[dict[str, Any]]
    files: list[dict[str, str]] = field(default_factory=list)
    interrupted: bool = False
    complete: bool = True  # False: the run was killed before it finished (its report is rebuilt from the state)
    going: list[GoingRun] = field(default_factory=list)
    run: int | None = None  # the run's number in the state
    started_at: str | None = None
    finished_at: str | None = None


def build(of: ReportOf) -> dict[str, Any]:
    entries = of.entries
    totals: dict[str, Any] = {"jobs": len(entries)}
    totals.update({status.value: sum(e.get("status") == status.value for e in entries) for status in Status})
    totals["failedExpectations"] = sum((e.get("error") or {}).get("type") == "expectation-failed" for e in entries)
    usages = [run.get("usageTotalUsd") for e in entries if not e.get("resumed")
              for run in [e, *(e.get("otherRuns") or [])] if isinstance(run.get("usageTotalUsd"), (int, float))]
    if usages:
        totals["usageTotalUsd"] = round(sum(usages), 6)
        totals["usagePreliminary"] = any(e.get("usagePreliminary") for e in entries if not e.get("resumed"))
    report: dict[str, Any] = {
        "tool": {"name": "apify-jobs", "version": __version__},
        "generatedAt": now(),
        "run": of.run,
        "startedAt": of.started_at,
        "finishedAt": of.finished_at,
        "complete": of.complete,
        "interrupted": of.interrupted,
        "files": of.files,
        "totals": totals,
        "jobs": entries,
    }
    if of.interrupted:
        report["runsStillGoing"] = [{"job": g.job, "runId": g.run_id, "consoleUrl": g.console_url,
                                     "aborted": g.aborted} for g in of.going]
    return report


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


def write_json(path: str, report: dict[str, Any]) -> None:
    text = redact(json.dumps(report, indent=2, ensure_ascii=False))
    write_file_whole(path, text.encode("utf-8") + b"\n")


def write_junit(path: str, entries: list[dict[str, Any]], wall_seconds: float | None = None) -> None:
    from xml.etree import ElementTree  # only with --junit

    def seconds(entry: dict[str, Any]) -> float:
        return float(entry.get("durationMs") or 0) / 1000

    suite = ElementTree.Element("testsuite", {
        "name": "apify-jobs", "tests": str(len(entries)),
        "failures": str(sum(e.get("status") == "failed" for e in entries)),
        "errors": "0",
        "skipped": str(sum(e.get("status") in ("skipped", "cancelled") for e in entries)),
        "time": f"{wall_seconds if wall_seconds is not None else sum(seconds(e) for e in entries):.3f}",
    })
    for entry in entries:
        case = ElementTree.SubElement(suite, "testcase", {
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
    root = ElementTree.Element("testsuites")
    root.append(suite)
    ElementTree.indent(root)
    text = ElementTree.tostring(root, encoding="unicode", xml_declaration=True)
    write_file_whole(path, redact(text).encode("utf-8") + b"\n")


def write(of: ReportOf, json_path: str | None, junit_path: str | None, html_path: str | None = None) -> None:
    if json_path:
        write_json(json_path, build(of))
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
