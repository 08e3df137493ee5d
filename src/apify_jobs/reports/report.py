"""The report files that keep what happened to each job: report.json and JUnit XML."""

from __future__ import annotations

import json
import os
from typing import Any

from apify_jobs import __version__
from apify_jobs.model import GoingRun, JobFile, JobResult, Status, now
from apify_jobs.outputs.destination import write_file_whole
from apify_jobs.redaction import redact


def total_usage(results: list[JobResult]) -> tuple[float, bool] | None:
    """The batch's cost in USD (every run found, retried ones included), and whether it is preliminary."""
    runs = [run for r in results for run in r.runs if run.usage_total_usd is not None]
    if not runs:
        return None
    return round(sum(run.usage_total_usd or 0.0 for run in runs), 6), any(run.preliminary for run in runs)


def build(results: list[JobResult], job_files: list[JobFile], interrupted: bool,
          going: list[GoingRun] | None = None) -> dict[str, Any]:
    totals: dict[str, Any] = {status.value: sum(r.status is status for r in results) for status in Status}
    usage = total_usage(results)
    if usage is not None:
        totals["usageTotalUsd"], totals["usagePreliminary"] = usage
    report: dict[str, Any] = {
        "tool": {"name": "apify-jobs", "version": __version__},
        "generatedAt": now(),
        "interrupted": interrupted,
        "files": [{"path": f.path, "sha256": f.sha256} for f in job_files],
        "totals": {"jobs": len(results), **totals},
        "jobs": [r.to_dict() for r in results],
    }
    if interrupted:
        report["runsStillGoing"] = [{"job": g.job, "runId": g.run_id, "consoleUrl": g.console_url,
                                     "aborted": g.aborted} for g in going or []]
    return report


def write_json(path: str, report: dict[str, Any]) -> None:
    text = redact(json.dumps(report, indent=2, ensure_ascii=False))
    write_file_whole(path, text.encode("utf-8") + b"\n")


def load_previous(path: str) -> dict[str, dict[str, Any]]:
    """The jobs of an earlier report by name (for --resume); empty when there is none or it is unreadable."""
    try:
        with open(path, encoding="utf-8") as stream:
            data = json.load(stream)
        return {entry["name"]: entry for entry in data.get("jobs", []) if isinstance(entry, dict) and "name" in entry}
    except (OSError, ValueError, AttributeError, TypeError):
        return {}


def write_junit(path: str, results: list[JobResult]) -> None:
    from xml.etree import ElementTree  # only with --junit

    suite = ElementTree.Element("testsuite", {
        "name": "apify-jobs", "tests": str(len(results)),
        "failures": str(sum(r.status is Status.FAILED for r in results)),
        "errors": "0",
        "skipped": str(sum(r.status in (Status.SKIPPED, Status.CANCELLED) for r in results)),
        "time": f"{sum((r.duration_ms or 0) for r in results) / 1000:.3f}",
    })
    for result in results:
        case = ElementTree.SubElement(suite, "testcase", {
            "classname": os.path.splitext(os.path.basename(result.file))[0], "name": result.name,
            "time": f"{(result.duration_ms or 0) / 1000:.3f}"})
        if result.run:
            properties = ElementTree.SubElement(case, "properties")
            for name, value in (("runId", result.run.run_id), ("consoleUrl", result.run.console_url)):
                ElementTree.SubElement(properties, "property", {"name": name, "value": value})
        error = result.error
        if result.status is Status.FAILED:
            failure = ElementTree.SubElement(case, "failure", {"type": error.type if error else "failed",
                                                               "message": error.message if error else ""})
            failure.text = json.dumps(error.to_dict() if error else {}, ensure_ascii=False)
        elif result.status in (Status.SKIPPED, Status.CANCELLED):
            message = error.message if error else (result.note or "")
            ElementTree.SubElement(case, "skipped", {"message": f"{result.status}: {message}"})
    root = ElementTree.Element("testsuites")
    root.append(suite)
    ElementTree.indent(root)
    text = ElementTree.tostring(root, encoding="unicode", xml_declaration=True)
    write_file_whole(path, redact(text).encode("utf-8") + b"\n")
