"""Which jobs a run takes: `--only`, `--shard` and `--resume`, and the caps they run under."""

from __future__ import annotations

import fnmatch
import hashlib
from dataclasses import dataclass, field

from apify_jobs.api.request import build_request
from apify_jobs.errors import UsageError
from apify_jobs.model import Job, JobFile
from apify_jobs.outputs.destination import Destination
from apify_jobs.record import JobResult, RecordError, Status, resumed_from
from apify_jobs.running.needs import uses_needs
from apify_jobs.running.runner import new_result
from apify_jobs.running.state import Earlier, State, StateError, request_key


@dataclass
class Planned:
    job: Job
    file_index: int
    seq: int = 0  # its place in the selection (the report's order)
    result: JobResult | None = None  # set once the job is decided (run, resumed, skipped or cancelled)
    started: bool = False
    started_at: str | None = None


@dataclass
class Plan:
    """The selected jobs in listed order, with the caps of their files."""

    entries: list[Planned]
    file_caps: list[int]
    file_fail_fast: list[bool]
    global_cap: int | None = None
    ignored_needs: set[str] = field(default_factory=set)
    fail_fast_all: bool = False  # --fail-fast: a failure stops every file, not only its own


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
    entries: list[Planned] = []
    keys = shard_keys(job_files) if shard else {}
    for index, job_file in enumerate(job_files):
        for job in job_file.jobs:
            if only and not any(fnmatch.fnmatchcase(job.name, pattern) for pattern in only):
                continue
            if shard and not in_shard(keys[job.name], shard):
                continue
            entries.append(Planned(job, index, len(entries)))
    if only and not entries:
        raise UsageError(f"--only {' '.join(only)} matches no job")
    selected = {entry.job.name for entry in entries}
    ignored = {need for entry in entries for need in entry.job.needs if need not in selected}
    return Plan(entries, [f.concurrency for f in job_files], [f.fail_fast for f in job_files], global_cap, ignored,
                fail_fast)


def resume(plan: Plan, state: State, destination: Destination, base_url: str) -> int:
    """Mark jobs whose latest success for the same request still stands (its output in place with the same
    sha256), whatever ran in between; returns how many."""
    count = 0
    for entry in plan.entries:
        if uses_needs(entry.job):
            continue  # its request is known once its needs ran: checked then (RunContext.resume_check)
        entry.result = resumed_result(entry.job, state, destination, base_url)
        count += entry.result is not None
    return count


def resumed_result(job: Job, state: State, destination: Destination, base_url: str) -> JobResult | None:
    """The job as resumed, if its latest success for the request it would send now still stands."""
    result = new_result(job, build_request(job, base_url))
    standing = _standing(result, state, destination)
    if standing is None:
        return None
    earlier, key = standing
    try:
        text, output = resumed_from(earlier.text, destination.shown(key), key)
    except RecordError as damaged:
        raise StateError(f"the state {state.path} holds {damaged}") from None
    # What the state and the summary need of it, and its record as JSON (20,000 decoded records are ~60 MB).
    result.status, result.resumed, result.output, result.finished_at = Status.SUCCEEDED, True, output, \
        earlier.finished_at
    result.previous_json = text
    return result


def standing_needs(names: set[str], jobs: dict[str, Job], state: State | None, destination: Destination,
                   base_url: str) -> dict[str, JobResult]:
    """The latest intact success of each named job in the state (as --resume takes it), for jobs a selection
    needs but does not run; a job that itself takes values from its needs is resolved with theirs first."""
    from apify_jobs.running.needs import NeedsValueFailed, resolved

    found: dict[str, JobResult] = {}
    looked: set[str] = set()

    def look(name: str) -> None:
        job = jobs.get(name)
        if name in looked or job is None or state is None:
            return
        looked.add(name)
        if uses_needs(job):
            for need in job.needs:
                look(need)
            try:
                job = resolved(job, found, lambda result: result.effective.run, destination)
            except NeedsValueFailed:
                return
        result = resumed_result(job, state, destination, base_url)
        if result is not None:
            found[name] = result

    for name in sorted(names):
        look(name)
    return found


def still_standing(job: Job, state: State, destination: Destination, base_url: str) -> Earlier | None:
    """The job's latest success for the request it would send now, if its output is still intact."""
    standing = _standing(new_result(job, build_request(job, base_url)), state, destination)
    return None if standing is None else standing[0]


def _standing(result: JobResult, state: State, destination: Destination) -> tuple[Earlier, str] | None:
    """The earlier success and its output's key, if the output is intact: found by its key in this
    destination, whatever folder the tool runs from and however the folder is spelled."""
    earlier = state.latest_success(result.name, request_key(result))
    if earlier is None or earlier.output_path is None:
        return None
    key = earlier.output_key if earlier.output_key is not None else destination.key_of(earlier.output_path)
    if key is None or destination.sha256_of(key) != earlier.output_sha256:
        return None
    return earlier, key
