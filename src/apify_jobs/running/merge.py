"""`report --merge`: the output folders of shards that ran apart (on different CI runners, say) made into one
folder, with one state holding every run and result, every job's output, and one report.

Each job keeps its latest succeeded result; its output is copied (hard-linked when the folders share a file
system) after its sha256 is checked against the one recorded, so a damaged artifact is refused, never
merged. Two different succeeded outputs for one request are a conflict: reported, and neither is taken.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass, field, replace
from typing import Any

from apify_jobs import __version__
from apify_jobs.errors import ApifyJobsError
from apify_jobs.files import sha256_of
from apify_jobs.model import now
from apify_jobs.outputs.paths import stays_inside
from apify_jobs.record import JobResult
from apify_jobs.running.state import Invocation, State, StoredResult


class MergeRefused(ApifyJobsError):
    """An input folder cannot be merged (damaged output, no state): nothing was written."""

    fix = ("Download the shard's artifact again with its hidden files (`include-hidden-files: true`: the state "
           "is in `.apify-jobs/`), or leave the damaged shard out and run its jobs again.")


@dataclass
class Merged:
    records: list[JobResult] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    copied: int = 0
    linked: int = 0
    runs: int = 0


@dataclass
class _Candidate:
    folder: str
    result: StoredResult
    out_dir: str  # as the run recorded it: output paths are relative to this

    @property
    def relative(self) -> str | None:
        """The output's key in its folder (records from before keys: its path relative to the run's --out-dir)."""
        output = self.result.record.output
        if output is None:
            return None
        return output.key if output.key is not None else os.path.relpath(output.path, self.out_dir)


def merge(folders: list[str], out_dir: str, state_dir: str | None = None) -> Merged:
    merged_into = os.path.realpath(out_dir)  # links resolved: a link to a source is that source
    for folder in folders:
        source = os.path.realpath(folder)
        if merged_into == source or merged_into.startswith(source + os.sep) or source.startswith(merged_into + os.sep):
            raise MergeRefused(f"--out-dir {out_dir} is, or is inside, or holds the folder merged {folder}; give a "
                               "new folder beside them")
    loaded = []
    for folder in folders:
        state = State(folder, create=False)
        try:
            loaded.append((folder, *state.everything()))
        finally:
            state.close()
    chosen, conflicts = _choose(loaded)
    for candidate in chosen.values():  # every output checked before anything is written
        _check(candidate)
    os.makedirs(out_dir, exist_ok=True)
    merged = Merged(conflicts=conflicts)
    target = State(out_dir, state_dir=state_dir)
    try:
        for folder, runs, results in loaded:
            for run in runs:
                of_run = [_rewritten(r, _out_dir(run.selection, folder), out_dir) for r in results
                          if r.invocation == run.id]
                target.adopt(run, of_run)
                merged.runs += 1
        for name in sorted(chosen):
            candidate = chosen[name]
            merged.records.append(_rewritten(candidate.result, candidate.out_dir, out_dir).record)
            if candidate.relative:
                linked = _place(os.path.join(candidate.folder, candidate.relative), os.path.join(out_dir,
                                                                                                 candidate.relative))
                merged.linked += linked
                merged.copied += not linked
        # The merge is a run of its own, whose results are each job's chosen one: the report shows it.
        run = Invocation(0, now(), now(), False, __version__, ["apify-jobs", "report", "--merge", *folders],
                         {"merged": folders, "outDir": out_dir, "jobs": sorted(chosen)}, [], {"conflicts": conflicts})
        target.adopt(run, [replace(_rewritten(chosen[name].result, chosen[name].out_dir, out_dir), seq=seq)
                           for seq, name in enumerate(sorted(chosen))])
    finally:
        target.close()
    return merged


def _out_dir(selection: dict[str, Any], folder: str) -> str:
    return str(selection.get("outDir") or folder)


def _choose(loaded: list[tuple[str, Any, list[StoredResult]]]) -> tuple[dict[str, _Candidate], list[str]]:
    """Each job's latest success over every folder; conflicting successes for one request are left out."""
    latest: dict[str, _Candidate] = {}
    by_request: dict[tuple[str, str], dict[str, _Candidate]] = {}
    for folder, runs, results in loaded:
        out_dirs = {run.id: _out_dir(run.selection, folder) for run in runs}
        for result in results:
            if result.status != "succeeded" or result.resumed:
                continue
            candidate = _Candidate(folder, result, out_dirs.get(result.invocation, folder))
            sha = result.record.output.sha256 if result.record.output else ""
            by_request.setdefault((result.job, result.request_key), {})[sha] = candidate
            current = latest.get(result.job)
            if current is None or str(result.record.finished_at) >= str(current.result.record.finished_at):
                latest[result.job] = candidate
    conflicts = []
    for (job, _), outputs in sorted(by_request.items()):
        if len(outputs) > 1 and job in latest:
            places = ", ".join(f"{c.folder} ({sha[:12]})" for sha, c in sorted(outputs.items()))
            conflicts.append(f"{job}: one request, different succeeded outputs in {places}; not merged")
            del latest[job]
    return latest, conflicts


def _check(candidate: _Candidate) -> None:
    if candidate.relative is None:
        return
    if not stays_inside(candidate.relative):
        raise MergeRefused(f"{candidate.folder}: the output of {candidate.result.job} is recorded at "
                           f"{candidate.relative!r}, outside its folder: the artifact is damaged or hostile; nothing "
                           "was merged")
    source = os.path.join(candidate.folder, candidate.relative)
    output = candidate.result.record.output
    try:
        status = os.lstat(source)
    except OSError as exc:
        raise MergeRefused(f"{source}, the output of {candidate.result.job}, cannot be read ({exc.strerror}); "
                           "nothing was merged") from None
    if not stat.S_ISREG(status.st_mode):  # a link could bring any file of the machine into the next artifact
        raise MergeRefused(f"{source}, the output of {candidate.result.job}, is not a regular file (a link?): the "
                           "artifact is damaged or hostile; nothing was merged")
    if output is not None and status.st_size != output.bytes:
        raise MergeRefused(f"{source} has {status.st_size} bytes, not the {output.bytes} its run recorded: the "
                           "artifact is damaged or was changed; nothing was merged")
    expected = output.sha256 if output else None
    if sha256_of(source) != expected:
        raise MergeRefused(f"{source} does not match the sha256 its run recorded ({str(expected)[:12]}…): the "
                           "artifact is damaged or was changed; nothing was merged")


def _rewritten(result: StoredResult, old_out_dir: str, new_out_dir: str) -> StoredResult:
    output = result.record.output
    if output is None or not output.path:
        return result
    key = output.key if output.key is not None else os.path.relpath(output.path, old_out_dir)
    moved = replace(output, path=os.path.join(new_out_dir, key), key=key)
    return replace(result, record=replace(result.record, output=moved))


def _place(source: str, target: str) -> bool:
    """The output at ``target``, hard-linked when possible (True), else copied whole (temporary file, rename)."""
    os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
    temporary = f"{target}.{os.getpid()}.merge.part"
    try:
        os.link(source, temporary)
        linked = True
    except OSError:
        shutil.copyfile(source, temporary)
        linked = False
    os.replace(temporary, target)
    return linked
