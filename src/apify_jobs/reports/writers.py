"""The registry of report formats (as check-jsonschema's reporters): each is a command-line flag and a writer.
`run`, `report` and `report --merge` take the same flags through `add_flags` and write through `write`, so a
format added here works from all three. The parser imports this module at every start: what only writing
needs is imported by the writers (`--version` is measured)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from apify_jobs.record import JobResult
    from apify_jobs.reports.report import ReportOf


class ReportFormat(NamedTuple):
    flags: tuple[str, ...]  # the first is its name on the command line
    help: str
    write: Callable[[ReportOf, str], None]  # raises OutputFailure when the file cannot be written

    @property
    def dest(self) -> str:
        return self.flags[0].lstrip("-")


def write_json(of: ReportOf, path: str) -> None:
    from apify_jobs.files import write_file_whole
    from apify_jobs.reports.report import json_text

    write_file_whole(path, (piece.encode("utf-8") for piece in json_text(of)))


def write_junit(of: ReportOf, path: str) -> None:
    """JUnit XML, written a test case at a time (one pass to count, one to write), like report.json."""
    import json
    from xml.etree import ElementTree  # only with --junit

    from apify_jobs.files import write_file_whole
    from apify_jobs.inert import xml_text
    from apify_jobs.record import Status
    from apify_jobs.reports.report import origin_text, provenance, wall_seconds

    def seconds(record: JobResult) -> float:  # a resumed job took none of this run's time
        return 0.0 if record.resumed else float(record.duration_ms or 0) / 1000

    def text(value: str) -> str:
        return xml_text(of.redactor(value))  # masked, then what XML 1.0 can hold

    def testcase(record: JobResult) -> str:
        case = ElementTree.Element("testcase", {"classname": text(os.path.relpath(record.file or ".")),
                                                "name": text(record.name), "time": f"{seconds(record):.3f}"})
        reused = provenance(record)
        facts = [("runId", record.run.run_id), ("consoleUrl", record.run.console_url)] if record.run else []
        facts += [("provenance", reused), ("origin", origin_text(record))] if reused else []
        if facts:
            properties = ElementTree.SubElement(case, "properties")
            for name, value in facts:
                ElementTree.SubElement(properties, "property", {"name": name, "value": text(value)})
        error = record.error
        if record.status is Status.FAILED:
            failure = ElementTree.SubElement(case, "failure", {"type": text(error.type if error else "failed"),
                                                               "message": text(error.message if error else "")})
            failure.text = text(json.dumps(error.to_dict() if error else {}, ensure_ascii=False))
        elif record.status in (Status.SKIPPED, Status.CANCELLED):
            message = error.message if error else (record.note or "")
            ElementTree.SubElement(case, "skipped", {"message": text(f"{record.status}: {message}")})
        ElementTree.indent(case, level=2)
        return "    " + ElementTree.tostring(case, encoding="unicode") + "\n"

    failures = skipped = 0
    total_time = 0.0
    for record in of.entries:
        failures += record.status is Status.FAILED
        skipped += record.status in (Status.SKIPPED, Status.CANCELLED)
        total_time += seconds(record)
    wall = wall_seconds(of)
    suite = ElementTree.Element("testsuite", {
        "name": "apify-jobs", "tests": str(len(of.entries)), "failures": str(failures), "errors": "0",
        "skipped": str(skipped), "time": f"{wall if wall is not None else total_time:.3f}"})
    opening = ElementTree.tostring(suite, encoding="unicode").removesuffix(" />") + ">"

    def pieces() -> Iterator[bytes]:
        yield f"<?xml version='1.0' encoding='utf-8'?>\n<testsuites>\n  {opening}\n".encode()
        for record in of.entries:
            yield testcase(record).encode("utf-8")
        yield b"  </testsuite>\n</testsuites>\n"

    write_file_whole(path, pieces())


def write_html(of: ReportOf, path: str) -> None:
    from apify_jobs.files import write_file_whole
    from apify_jobs.reports.html import render  # only with --html
    from apify_jobs.reports.report import build

    # Every value in the page was masked, then escaped (html._inert); the page is never masked as text (a secret
    # as short as `1` or `div` masked in it broke its markup).
    page = render(build(of), os.path.dirname(os.path.abspath(path)))
    write_file_whole(path, page.encode("utf-8"))


def markdown(of: ReportOf) -> str:
    """The report as a Markdown summary (a CI job's summary page): the totals, then a row a job."""
    from apify_jobs.reports.report import build, origin_text, provenance

    report = build(of)
    totals = report.totals
    counts = ", ".join(f"{count} {status}" for status, count in totals.counts.items() if count)
    cost = f"; this run's cost ${totals.usage_usd:.4f}" if totals.usage_usd is not None else ""
    lines = ["## apify-jobs", "", f"{totals.jobs} jobs: {counts or 'none'} ({totals.this_run}){cost}", "",
             "| job | status | tries | output / error | run |", "| --- | --- | --- | --- | --- |"]
    for record in report.records:
        error = record.error
        reused = provenance(record)
        detail = (record.output.path if record.output else "") if record.succeeded else \
            f"{error.type if error else ''}: {error.message if error else ''}"
        if reused:
            detail += f" ({origin_text(record)})"
        run = f"[{record.run.run_id}]({record.run.console_url})" if record.run else ""
        cell = of.redactor(detail).replace("|", "\\|").replace("\n", " ")  # masked, then escaped
        name = of.redactor(record.name).replace("|", "\\|")
        status = f"{record.status} ({reused})" if reused else str(record.status)
        lines.append(f"| {name} | {status} | {'-' if reused else record.attempts} | {cell} | {run} |")
    return "\n".join(lines) + "\n"


def append_markdown(of: ReportOf, path: str) -> None:
    """Appended, not replaced: $GITHUB_STEP_SUMMARY collects every step's summary."""
    from apify_jobs.failures import OutputFailure

    try:
        with open(path, "a", encoding="utf-8") as stream:
            stream.write(markdown(of))  # its values masked, then escaped; never the table as text
    except OSError as failure:
        raise OutputFailure(f"cannot write {path}: {failure.strerror or failure}") from None


FORMATS: tuple[ReportFormat, ...] = (
    ReportFormat(("--report", "--json"), "report.json path (default <out-dir>/report.json)", write_json),
    ReportFormat(("--junit",), "also write a JUnit XML report", write_junit),
    ReportFormat(("--html",), "also write an HTML report with a timeline (self-contained)", write_html),
    ReportFormat(("--markdown",), "also append a Markdown summary (e.g. $GITHUB_STEP_SUMMARY)", append_markdown),
)
JSON_REPORT = FORMATS[0]


def add_flags(parser: argparse.ArgumentParser, json_flag: bool = True) -> None:
    """Every format's flag. ``json_flag``: `--json` also names report.json's path (`run --json` prints it)."""
    for form in FORMATS:
        flags = form.flags if json_flag else tuple(f for f in form.flags if f != "--json")
        parser.add_argument(*flags, dest=form.dest, metavar="FILE", help=form.help)


def chosen(args: argparse.Namespace, default_json: str | None) -> dict[str, tuple[ReportFormat, str]]:
    """flag -> (format, path) of every report asked for; report.json at ``default_json`` unless given."""
    paths = {form.flags[0]: (form, getattr(args, form.dest)) for form in FORMATS if getattr(args, form.dest)}
    if JSON_REPORT.flags[0] not in paths and default_json:
        paths[JSON_REPORT.flags[0]] = (JSON_REPORT, default_json)
    return paths


def write(of: ReportOf, reports: dict[str, tuple[ReportFormat, str]]) -> list[str]:
    """Write every report asked for; the paths written. Raises OutputFailure at the first that cannot be."""
    for form, path in reports.values():
        form.write(of, path)
    return [path for _, path in reports.values()]
