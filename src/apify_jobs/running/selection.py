"""Which jobs a run takes: `--only`, `--shard` and `--resume`, and the caps they run under."""

from __future__ import annotations

import fnmatch
import hashlib
from dataclasses import dataclass, field
from typing import Any

from apify_jobs.api.request import build_request
from apify_jobs.errors import UsageError
from apify_jobs.model import Job, JobFile, JobResult, Status
from apify_jobs.outputs.destination import Destination
from apify_jobs.running.runner import new_result


@dataclass
class Planned:
    job: Job
    file_index: int
    result: JobResult | None = None  # set once the job is decided (run, resumed, skipped or cancelled)
    started: bool = False


@dataclass
class Plan:
    """The selected jobs in listed order, with the caps of their files."""

    entries: list[Planned]
    file_caps: list[int]
    file_fail_fast: list[bool]
    global_cap: int | None = None
    ignored_needs: set[str] = field(default_factory=set)


def parse_shard(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        index, count = (int(part) for part in value.split("/"))
    except ValueError:
        raise UsageError(f"--shard takes I/N, like 2/4, not {value!r}") from None
    if not 1 <= index <= count:
        raise UsageError(f"--shard {value}: I must be between 1 and N")
    return index, count


def in_shard(name: str, shard: tuple[int, int]) -> bool:
    """Stable: the same name always lands in the same shard, whatever else is selected."""
    index, count = shard
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big") % count == index - 1


def shard_keys(job_files: list[JobFile]) -> dict[str, str]:
    """Each job's shard key: the first name (sorted) of the jobs linked to it by `needs`, so that a job and
    its needs always land in the same shard and still run in order."""
    parent: dict[str, str] = {}

    def root(name: str) -> str:
        while parent.setdefault(name, name) != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    for job_file in job_files:
        for job in job_file.jobs:
            for need in job.needs:
                a, b = root(job.name), root(need)
                parent[max(a, b)] = min(a, b)
    return {job.name: root(job.name) for job_file in job_files for job in job_file.jobs}


def select(job_files: list[JobFile], only: list[str], shard: tuple[int, int] | None, global_cap: int | None,
           fail_fast: bool) -> Plan:
    entries = []
    keys = shard_keys(job_files) if shard else {}
    for index, job_file in enumerate(job_files):
        for job in job_file.jobs:
            if only and not any(fnmatch.fnmatchcase(job.name, pattern) for pattern in only):
                continue
            if shard and not in_shard(keys[job.name], shard):
                continue
            entries.append(Planned(job, index))
    if only and not entries:
        raise UsageError(f"--only {' '.join(only)} matches no job")
    selected = {entry.job.name for entry in entries}
    ignored = {need for entry in entries for need in entry.job.needs if need not in selected}
    return Plan(entries, [f.concurrency for f in job_files], [fail_fast or f.fail_fast for f in job_files],
                global_cap, ignored)


def resume(plan: Plan, previous: dict[str, dict[str, Any]], destination: Destination, base_url: str) -> int:
    """Mark jobs whose earlier success still stands (same request, output intact); returns how many."""
    count = 0
    for entry in plan.entries:
        before = previous.get(entry.job.name)
        if not before or before.get("status") != "succeeded":
            continue
        request = build_request(entry.job, base_url)
        same_request = before.get("task") == entry.job.task and before.get("request") == {
            "endpoint": request.endpoint, "query": dict(request.query), "inputSha256": request.input_sha256}
        output = before.get("output") or {}
        if same_request and output.get("path") and destination.sha256_of(output["path"]) == output.get("sha256"):
            result = new_result(entry.job, request)
            result.status, result.resumed, result.previous = Status.SUCCEEDED, True, before
            entry.result = result
            count += 1
    return count
