"""What happened to each job, and the report files (report.json, JUnit XML) that keep it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from apify_jobs import __version__
from apify_jobs.model import JobFile
from apify_jobs.output import WrittenOutput, write_bytes
from apify_jobs.redaction import redact

STATUSES = ("succeeded", "failed", "skipped", "cancelled")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class JobResult:
    name: str
    task: str
    file: str
    endpoint: str
    query: dict[str, str]
    input_sha256: str
    status: str = "cancelled"
    attempts: int = 0
    http_status: int | None = None
    error: dict[str, Any] | None = None
    output: WrittenOutput | None = None
    empty_output: bool = False
    started_at: str | None = None
    finished_at: str | None = None
    duration_ms: int | None = None
    resumed: bool = False
    note: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    previous: dict[str, Any] | None = None  # the earlier report's entry this job was resumed from

    def to_dict(self) -> dict[str, Any]:
        if self.previous is not None:
            return {**self.previous, "resumed": True}
        entry: dict[str, Any] = {
            "name": self.name, "task": self.task, "file": self.file, "status": self.status,
            "attempts": self.attempts, "httpStatus": self.http_status, "error": self.error,
            "output": None, "request": {"endpoint": self.endpoint, "query": self.query, "inputSha256": self.input_sha256},
            "startedAt": self.started_at, "finishedAt": self.finished_at, "durationMs": self.duration_ms,
        }
        if self.output:
            entry["output"] = {"path": self.output.path, "bytes": self.output.bytes, "sha256": self.output.sha256,
                               "contentType": self.output.content_type, "empty": self.empty_output}
        if self.resumed:
            entry["resumed"] = True
        if self.note:
            entry["note"] = self.note
        entry.update(self.extra)
        return entry


def build(results: list[JobResult], job_files: list[JobFile], interrupted: bool) -> dict[str, Any]:
    totals = {status: sum(r.status == status for r in results) for status in STATUSES}
    return {
        "tool": {"name": "apify-jobs", "version": __version__},
        "generatedAt": now(),
        "interrupted": interrupted,
        "files": [{"path": f.path, "sha256": f.sha256} for f in job_files],
        "totals": {"jobs": len(results), **totals},
        "jobs": [r.to_dict() for r in results],
    }


def write_json(path: str, report: dict[str, Any]) -> None:
    text = redact(json.dumps(report, indent=2, ensure_ascii=False))
    write_bytes(os.path.abspath(path), text.encode("utf-8") + b"\n")


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
        "failures": str(sum(r.status == "failed" for r in results)),
        "errors": "0",
        "skipped": str(sum(r.status in ("skipped", "cancelled") for r in results)),
        "time": f"{sum((r.duration_ms or 0) for r in results) / 1000:.3f}",
    })
    for result in results:
        case = ElementTree.SubElement(suite, "testcase", {
            "classname": os.path.splitext(os.path.basename(result.file))[0], "name": result.name,
            "time": f"{(result.duration_ms or 0) / 1000:.3f}"})
        error = result.error or {}
        if result.status == "failed":
            failure = ElementTree.SubElement(case, "failure", {"type": error.get("type", "failed"),
                                                               "message": error.get("message", "")})
            failure.text = json.dumps(error, ensure_ascii=False)
        elif result.status in ("skipped", "cancelled"):
            ElementTree.SubElement(case, "skipped", {"message": f"{result.status}: {error.get('message', result.note or '')}"})
    root = ElementTree.Element("testsuites")
    root.append(suite)
    ElementTree.indent(root)
    text = ElementTree.tostring(root, encoding="unicode", xml_declaration=True)
    write_bytes(os.path.abspath(path), redact(text).encode("utf-8") + b"\n")
