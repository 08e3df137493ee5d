"""Which jobs a run takes: `--only`, `--shard` and `--resume`, and the caps they run under."""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from apify_jobs.api.request import build_request
from apify_jobs.durations import too_old
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


@dataclass(frozen=True)
class Selectors:
    """One grammar for `run`, `plan` and `report`. ``only``: names or globs, `+NAME` with everything it needs,
    `NAME+` with everything that needs it (transitively); ``failed``/``changed``: from the state (together:
    either); ``shard``: this slice of every job loaded. Each given selector narrows the selection."""

    only: tuple[str, ...] = ()
    failed: bool = False
    changed: bool = False
    shard: tuple[int, int] | None = None

    @classmethod
    def from_args(cls, args: Any) -> Selectors:
        return cls(tuple(args.only), args.failed, args.changed, parse_shard(args.shard))

    @property
    def from_state(self) -> bool:
        return self.failed or self.changed

    def chosen(self, jobs: list[Job], latest: dict[str, tuple[str, str | None]] | None,
               key_of: Callable[[Job], str]) -> list[Job]:
        """The selected jobs, in listed order. ``latest``: each job's latest status and success key in the state
        (None: nothing has run into the folder); ``key_of``: the request key a job would send now."""
        chosen = [job for job in jobs if job.name in shard_of(jobs, self.shard)] if self.shard else list(jobs)
        if self.only:
            wanted = _matching(jobs, self.only)
            chosen = [job for job in chosen if job.name in wanted]
        if self.from_state:
            if latest is None:
                raise UsageError(f"{'--failed' if self.failed else '--changed'} reads the output folder's state, "
                                 "and nothing has run into it yet")
            changed = _changed(jobs, latest, key_of) if self.changed else set()
            chosen = [job for job in chosen if job.name in changed
                      or (self.failed and latest.get(job.name, ("", None))[0] in ("failed", "cancelled"))]
        return chosen


def _changed(jobs: list[Job], latest: dict[str, tuple[str, str | None]], key_of: Callable[[Job], str]) -> set[str]:
    """Jobs whose request differs from their latest success, or that never succeeded. A job that takes values
    from its needs cannot know its request yet: it counts as changed when a job it needs did."""
    import graphlib

    by_name = {job.name: job for job in jobs}
    changed: set[str] = set()
    order = graphlib.TopologicalSorter({job.name: [n for n in job.needs if n in by_name] for job in jobs})
    for name in order.static_order():
        job = by_name[name]
        success = latest.get(name, ("", None))[1]
        if success is None or (any(n in changed for n in job.needs) if uses_needs(job) else success != key_of(job)):
            changed.add(name)
    return changed


def _matching(jobs: list[Job], patterns: tuple[str, ...]) -> set[str]:
    """The names ``patterns`` select: each a name or glob, `+` before it adds what it needs, after it what
    needs it, both transitively."""
    needs = {job.name: set(job.needs) for job in jobs}
    needed_by: dict[str, set[str]] = {}
    for name, wanted in needs.items():
        for need in wanted:
            needed_by.setdefault(need, set()).add(name)
    chosen: set[str] = set()
    for pattern in patterns:
        before, after = pattern.startswith("+"), pattern.endswith("+") and len(pattern) > 1
        glob = pattern[int(before):len(pattern) - int(after)]
        matched = {job.name for job in jobs if fnmatch.fnmatchcase(job.name, glob)}
        chosen |= matched
        for graph, follow in ((needs, before), (needed_by, after)):
            stack = list(matched) if follow else []
            while stack:
                for linked in graph.get(stack.pop(), ()):
                    if linked not in chosen:
                        chosen.add(linked)
                        stack.append(linked)
    return chosen


def shard_of(jobs: list[Job], shard: tuple[int, int]) -> set[str]:
    """The names of shard I of N: every job dealt, so that shard sizes differ by at most one, the same way for
    the same set of jobs (ordered by hash, not by listing). Jobs linked by `needs` stay in one shard where
    they fit; a group larger than a shard's share is split, in listed order."""
    index, count = shard
    keys = shard_keys(jobs)
    groups: dict[str, list[str]] = {}
    for job in jobs:
        groups.setdefault(keys[job.name], []).append(job.name)
    base, extra = divmod(len(jobs), count)
    room = [base + (number < extra) for number in range(count)]
    mine: set[str] = set()
    for _, members in sorted(groups.items(), key=lambda item: (-len(item[1]), _hash(item[0]))):
        while members:
            roomiest = max(range(count), key=lambda number: (room[number], -number))
            taken, members = members[:room[roomiest]], members[room[roomiest]:]
            room[roomiest] -= len(taken)
            if roomiest == index - 1:
                mine.update(taken)
    return mine


def _hash(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big")


def shard_keys(jobs: list[Job]) -> dict[str, str]:
    """Each job's shard key: the first name (sorted) of the jobs linked to it by `needs`, so that a job and
    its needs land in the same shard where they fit."""
    parent: dict[str, str] = {}

    def root(name: str) -> str:
        while parent.setdefault(name, name) != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    for job in jobs:
        for need in job.needs:
            a, b = root(job.name), root(need)
            parent[max(a, b)] = min(a, b)
    return {job.name: root(job.name) for job in jobs}


def select(job_files: list[JobFile], selectors: Selectors, global_cap: int | None, fail_fast: bool,
           latest: dict[str, tuple[str, str | None]] | None = None,
           key_of: Callable[[Job], str] | None = None) -> Plan:
    jobs = [job for job_file in job_files for job in job_file.jobs]
    chosen = {job.name for job in selectors.chosen(jobs, latest, key_of or (lambda job: ""))}
    entries: list[Planned] = []
    for index, job_file in enumerate(job_files):
        for job in job_file.jobs:
            if job.name in chosen:
                entries.append(Planned(job, index, len(entries)))
    if (selectors.only or selectors.shard) and not entries:
        raise UsageError(f"--only {' '.join(selectors.only)} matches no job" if selectors.only and not selectors.shard
                         else "the selection matches no job")
    selected = {entry.job.name for entry in entries}
    ignored = {need for entry in entries for need in entry.job.needs if need not in selected}
    # --concurrency N is the number of jobs at once for the run: each file's own value is only its default
    caps = [global_cap if global_cap is not None else f.concurrency for f in job_files]
    return Plan(entries, caps, [f.fail_fast for f in job_files], global_cap, ignored, fail_fast)


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
    standing = _standing(job, result, state, destination)
    if standing is None:
        return None
    earlier, key = standing
    try:
        text, output, from_run = resumed_from(earlier.text, destination.shown(key), key, earlier.invocation)
    except RecordError as damaged:
        raise StateError(f"the state {state.path} holds {damaged}") from None
    # What the state and the summary need of it, and its record as JSON (20,000 decoded records are ~60 MB).
    result.status, result.resumed, result.output, result.finished_at = Status.SUCCEEDED, True, output, \
        earlier.finished_at
    result.from_run = from_run
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
    standing = _standing(job, new_result(job, build_request(job, base_url)), state, destination)
    return None if standing is None else standing[0]


def _standing(job: Job, result: JobResult, state: State, destination: Destination) -> tuple[Earlier, str] | None:
    """The earlier success and its output's key, if the output is intact and the success not older than the
    job's max age: found by its key in this destination, whatever folder the tool runs from and however the
    folder is spelled."""
    earlier = state.latest_success(result.name, request_key(result))
    if earlier is None or earlier.output_path is None or too_old(job.max_age, earlier.finished_at):
        return None
    key = earlier.output_key if earlier.output_key is not None else destination.key_of(earlier.output_path)
    if key is None or destination.sha256_of(key) != earlier.output_sha256:
        return None
    return earlier, key
