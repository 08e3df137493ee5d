"""The report documents, views of the records in the durable state: report.json (its shape published as
`schema/report.schema.json`), and the formats of `reports/writers.py` (JUnit, HTML, Markdown). They are
built from records (what the state keeps), so that `run`, `apify-jobs report` and `report --merge` write
the same documents, also after a `kill -9`."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from apify_jobs import __version__
from apify_jobs.model import now
from apify_jobs.record import GoingRun, JobResult, Status, to_json
from apify_jobs.redaction import Redactor

REPORT_SCHEMA_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "report.schema.json")


class Records(Protocol):
    """Records: a list, or the state's (read a batch at a time, on every pass)."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[JobResult]: ...


def provenance(record: JobResult) -> str | None:
    """How this run had the job's output without sending it: "resumed" (an earlier success stands),
    "refetched" (an earlier run's data fetched again) or "adopted" (a run an earlier, killed process started);
    None when this run sent it, or decided it without sending."""
    if record.resumed:
        return "resumed"
    if record.refetched:
        return "refetched"
    if record.recovery is not None and record.recovery.adopted and record.attempts == 0:
        return "adopted"
    return None


def origin_text(record: JobResult) -> str:
    """A reused output's origin, for people: `resumed from run 3 at 2026-12-05T02:00:00Z`."""
    kind = provenance(record)
    if kind == "resumed":
        run = f" from run {record.from_run}" if record.from_run is not None else ""
        return f"resumed{run}" + (f" at {record.finished_at}" if record.finished_at else "")
    if kind in ("refetched", "adopted"):
        return f"{kind} run {record.run.run_id}" if record.run else str(kind)
    return ""


@dataclass
class Totals:
    """A batch in numbers. Cost is this run's: every run it found (retried ones included), never a resumed or
    refetched job's, whose run an earlier batch paid for."""

    jobs: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys((s.value for s in Status), 0))
    failed_expectations: int = 0
    usage_usd: float | None = None
    preliminary: bool = False  # the platform may still revise the cost
    unknown_cost: int = 0  # runs whose cost nobody can say (never counted as $0)
    sent: int = 0  # jobs this run sent a request for
    reused: dict[str, int] = field(default_factory=lambda: dict.fromkeys(("resumed", "refetched", "adopted"), 0))

    @classmethod
    def of(cls, records: Iterable[JobResult]) -> Totals:
        totals, usages = cls(), []
        for record in records:  # one pass: the state's records are decoded as they come
            totals.jobs += 1
            totals.counts[record.status.value] += 1
            totals.failed_expectations += record.error is not None and record.error.type == "expectation-failed"
            kind = provenance(record)
            if kind is not None:
                totals.reused[kind] += 1
            totals.sent += kind is None and record.attempts > 0
            if kind not in ("resumed", "refetched"):
                runs = [run for run in record.runs if run.usage_total_usd is not None]
                usages += [run.usage_total_usd or 0.0 for run in runs]
                totals.unknown_cost += len(record.runs) - len(runs)
                totals.preliminary = totals.preliminary or any(run.preliminary for run in runs)
        totals.usage_usd = round(sum(usages), 6) if usages else None
        totals.preliminary = totals.preliminary and totals.usage_usd is not None
        return totals

    def to_dict(self) -> dict[str, Any]:
        totals: dict[str, Any] = {"jobs": self.jobs, **self.counts, "failedExpectations": self.failed_expectations}
        totals["sent"] = self.sent
        totals.update(self.reused)
        if self.usage_usd is not None:
            totals["usageTotalUsd"] = self.usage_usd
            totals["usagePreliminary"] = self.preliminary
        if self.unknown_cost:
            totals["usageUnknownRuns"] = self.unknown_cost
        return totals

    @property
    def cost_text(self) -> str | None:
        """`$0.0420`, `$0.0420 and 2 runs of unknown cost`, or `unknown (3 runs)`; None when nothing ran."""
        unknown = f"{self.unknown_cost} run{'s' * (self.unknown_cost != 1)} of unknown cost" if self.unknown_cost else ""
        if self.usage_usd is None:
            return f"unknown ({unknown})" if unknown else None
        return f"${self.usage_usd:.4f}" + (f" and {unknown}" if unknown else "")

    @property
    def this_run(self) -> str:
        """`12 sent, 40 resumed, 1 refetched`: what this run did, apart from what it reused."""
        return ", ".join([f"{self.sent} sent", *(f"{count} {kind}" for kind, count in self.reused.items() if count)])


@dataclass
class ReportOf:
    """What a report is about: a run of the tool (or, with `report --run all`, the whole folder)."""

    entries: Records
    files: list[dict[str, str]] = field(default_factory=list)
    interrupted: bool = False
    complete: bool = True  # False: the run was killed before it finished (its report is rebuilt from the state)
    going: list[GoingRun] = field(default_factory=list)
    run: int | None = None  # the run's number in the state
    started_at: str | None = None
    finished_at: str | None = None
    redactor: Redactor = field(default_factory=Redactor)  # every view masks the invocation's secrets


@dataclass
class Report:
    """A report in memory, for the views that need every record at once (HTML, Markdown)."""

    of: ReportOf
    records: list[JobResult]
    totals: Totals


def build(of: ReportOf) -> Report:
    records = list(of.entries)
    return Report(of, records, Totals.of(records))


def _head(of: ReportOf) -> dict[str, Any]:
    """The document but its jobs (the last key, so that they can be streamed after it)."""
    document: dict[str, Any] = {
        "tool": {"name": "apify-jobs", "version": __version__},
        "generatedAt": now(),
        "run": of.run,
        "startedAt": of.started_at,
        "finishedAt": of.finished_at,
        "complete": of.complete,
        "interrupted": of.interrupted,
        "files": of.files,
        "totals": Totals.of(of.entries).to_dict(),
    }
    if of.interrupted:
        document["runsStillGoing"] = [going.to_dict() for going in of.going]
    return document


def json_text(of: ReportOf) -> Iterator[str]:
    """report.json in pieces, redacted, one job per line: its memory stays flat whatever the number of jobs."""
    redact = of.redactor
    # Values masked before they are serialized, never the JSON text (a short secret masked in it broke it).
    head = json.dumps(redact.values(_head(of)), indent=2, ensure_ascii=False)
    yield head.removesuffix("\n}") + ',\n  "jobs": ['
    separator = "\n    "
    stored = getattr(of.entries, "as_json", None)  # the state's records are JSON already, masked when written
    for text in stored() if stored is not None else (to_json(record, redact.values) for record in of.entries):
        yield separator + text
        separator = ",\n    "
    yield ("]" if separator == "\n    " else "\n  ]") + "\n}\n"


def wall_seconds(of: ReportOf) -> float | None:
    """The run's wall time, from when it started to when it finished."""
    from datetime import datetime

    if not of.started_at or not of.finished_at:
        return None
    start, end = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in (of.started_at, of.finished_at))
    return max((end - start).total_seconds(), 0.0)
