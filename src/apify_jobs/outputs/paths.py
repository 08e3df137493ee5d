"""The path of a job's output relative to its destination: the same for every destination, and cheap to import
(`validate` checks outputs with it)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from apify_jobs.model import Job

_EXTENSIONS = {
    "application/json": ".json", "application/jsonl": ".jsonl", "application/x-ndjson": ".jsonl",
    "text/csv": ".csv", "text/html": ".html", "application/xml": ".xml", "text/xml": ".xml",
    "application/rss+xml": ".rss", "text/plain": ".txt",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
    "application/pdf": ".pdf", "image/png": ".png", "image/jpeg": ".jpg",
}
_DATASET_EXTENSIONS = {"json": ".json", "jsonl": ".jsonl", "csv": ".csv", "html": ".html", "xlsx": ".xlsx",
                       "xml": ".xml", "rss": ".rss"}
DEFAULT_REPORT = "report.json"  # in the output folder, unless --report says otherwise
STATE_FOLDER = ".apify-jobs"  # the durable state, in the output folder
UNKNOWN_EXTENSION = ".*"  # run-sync's OUTPUT record: the extension comes from the answer's Content-Type


def extension_for(content_type: str | None) -> str:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return _EXTENSIONS.get(media, ".json" if media.endswith("+json") else ".bin")


def planned_output(job: Job) -> str:
    """The job's output path relative to the destination, before the answer: ``.*`` where only the answer's
    Content-Type can tell the extension."""
    return _relative(job, UNKNOWN_EXTENSION)


def answered_output(job: Job, content_type: str | None) -> str:
    """The job's output path relative to the destination, once the answer's Content-Type is known."""
    return _relative(job, extension_for(content_type))


def _relative(job: Job, unknown_extension: str) -> str:
    if job.output:
        return job.output
    if job.dataset is not None:
        return job.name + _DATASET_EXTENSIONS[job.dataset.get("format", "json")]
    return job.name + unknown_extension


def stays_inside(relative: str) -> bool:
    """A relative path that cannot climb out of the folder it is relative to (links are checked on writing)."""
    if os.path.isabs(relative) or relative.startswith(("/", "\\")):
        return False
    normal = os.path.normpath(relative)
    return normal != ".." and not normal.startswith(".." + os.sep) and normal != "."


def may_land_on(planned: str, path: str) -> bool:
    """Whether an output planned at ``planned`` (perhaps ending in ``.*``) could be written at ``path``."""
    planned, path = os.path.normpath(planned), os.path.normpath(path)
    if planned.endswith(UNKNOWN_EXTENSION):
        return os.path.splitext(path)[0] == planned[: -len(UNKNOWN_EXTENSION)]
    return planned == path


def collisions(jobs: Iterable[Job]) -> Iterator[tuple[Job, Job, str]]:
    """Pairs of jobs that could write one file, each once: (the later job, the earlier one, the path). An output
    whose extension comes from the answer (`x.*`) could be any `x.<ext>`."""
    exact: dict[str, Job] = {}
    by_stem: dict[str, list[tuple[str, Job]]] = {}
    unknown: dict[str, Job] = {}  # stem -> the job whose output is `stem.*`
    for job in jobs:
        path = os.path.normpath(planned_output(job))
        if path.endswith(UNKNOWN_EXTENSION):
            stem = path[: -len(UNKNOWN_EXTENSION)]
            for known, other in by_stem.get(stem, []):
                yield job, other, known
            unknown.setdefault(stem, job)
            continue
        stem = os.path.splitext(path)[0]
        clash = exact.get(path) or unknown.get(stem)
        if clash is not None:
            yield job, clash, path
        exact.setdefault(path, job)
        by_stem.setdefault(stem, []).append((path, job))


def placement_problem(new: list[Job], others: Iterable[Job]) -> tuple[str, str] | None:
    """Why jobs made late (a fan-out's) cannot place their outputs beside the batch's other jobs, if they
    cannot, as (error type, message): checked before any of them is sent."""
    fresh = {id(job) for job in new}
    for job in new:
        path = planned_output(job)
        if not stays_inside(path):
            return "output-failed", f"job '{job.name}': output '{path}' leaves the output folder"
        clash = reserved_clash(path)
        if clash:
            return "output-collision", f"job '{job.name}': output '{path}' would be written over {clash}"
    for job, other, path in collisions([*others, *new]):
        if id(job) in fresh or id(other) in fresh:
            return "output-collision", f"jobs '{other.name}' and '{job.name}' can both write '{path}'"
    return None


def reserved_clash(relative: str) -> str | None:
    """What a job's output (relative to the output folder) would overwrite of the tool's own files, if anything."""
    normal = os.path.normpath(relative)
    if normal == STATE_FOLDER or normal.startswith(STATE_FOLDER + os.sep):
        return f"the state folder {STATE_FOLDER}/"
    if may_land_on(normal, DEFAULT_REPORT):
        return f"the report, {DEFAULT_REPORT}"
    return None
