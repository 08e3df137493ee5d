"""The path of a job's output relative to its destination: the same for every destination, and cheap to import
(`validate` checks outputs with it)."""

from __future__ import annotations

import os

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


def reserved_clash(relative: str) -> str | None:
    """What a job's output (relative to the output folder) would overwrite of the tool's own files, if anything."""
    normal = os.path.normpath(relative)
    if normal == STATE_FOLDER or normal.startswith(STATE_FOLDER + os.sep):
        return f"the state folder {STATE_FOLDER}/"
    if may_land_on(normal, DEFAULT_REPORT):
        return f"the report, {DEFAULT_REPORT}"
    return None
