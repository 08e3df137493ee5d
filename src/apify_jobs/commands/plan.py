"""`apify-jobs plan`: every request `run` would send, exactly; no token, no network."""

from __future__ import annotations

import argparse
import json
from typing import Any

from apify_jobs import jobfile
from apify_jobs.api.request import DEFAULT_BASE_URL, build_request
from apify_jobs.cli_output import parse_vars, print_problems, print_safely
from apify_jobs.commands.choose import chosen
from apify_jobs.durations import too_old
from apify_jobs.environment import Environment
from apify_jobs.model import Job, JobFile
from apify_jobs.outputs.destination import Destination, destination_for
from apify_jobs.record import JobResult, RunFacts
from apify_jobs.running.needs import NeedsValueFailed, deferred, describe_fan_out, expand, resolved, uses_needs
from apify_jobs.running.runner import new_result
from apify_jobs.running.selection import resumed_result, still_standing
from apify_jobs.running.state import existing_state, request_key


def main(args: argparse.Namespace, env: Environment) -> int:
    job_files, warnings = jobfile.load(args.paths, parse_vars(args.var, args.var_file), env.environ, args.max_jobs,
                                       args.exclude, env.redactor, args.require_pinned_build)
    print_problems(warnings, env.redactor)
    base_url = env.environ.get("APIFY_API_BASE_URL") or DEFAULT_BASE_URL
    destination = destination_for(args.out_dir)
    plan = chosen(args, env, job_files)
    state = existing_state(args.out_dir, args.state_dir, env.redactor) if args.resume else None
    in_flight = state.in_flight() if state is not None else []
    # With --resume, jobs whose needs have intact outputs in the state are shown with the real values.
    standing = {job.name: resumed for job_file in job_files for job in job_file.jobs
                if state and (resumed := resumed_result(job, state, destination, base_url)) is not None}
    planned = []
    shown_jobs: dict[str, Job] = {}
    for planned_entry in plan.entries:
        for job in _as_planned(planned_entry.job, standing, destination):
            request = build_request(job, base_url)
            entry: dict[str, Any] = {
                "name": job.name,
                "file": job.file,
                "actor" if job.actor else "task": job.task,
                "needs": job.needs,
                "method": request.method,
                "url": request.url,
                "query": dict(request.query),
                "body": job.input,
                "inputSha256": request.input_sha256,
                "output": destination.planned(job),
                "expect": job.expect.to_dict(),
            }
            shown_jobs[job.name] = job
            if args.resume:
                earlier = still_standing(job, state, destination, base_url) if state else None
                entry["resume"] = "skip" if earlier else "run"
                entry["succeededAt"] = earlier.finished_at if earlier else None
                latest = state.latest_success(job.name, request_key(new_result(job, request))) \
                    if state and not earlier else None
                entry["why"] = too_old(job.max_age, latest.finished_at) if latest else None
                if earlier is None and state is not None:
                    key = request_key(new_result(job, request))
                    entry["inFlight"] = [{"attempt": a.id, "runId": a.run_id} for a in in_flight
                                         if a.job == job.name and a.request_key == key]
            planned.append(entry)
    if state is not None:
        state.close()
    # Secrets (`${{ secrets.NAME }}`) are masked in what plan shows, Base64 of webhooks included.
    if args.json:
        print_safely(env.redactor(json.dumps(planned, ensure_ascii=False, indent=2)))
        return 0
    lines = []
    for entry in planned:
        lines += [f"{entry['name']}", f"  {entry['method']} {entry['url']}",
                  f"  body:   {json.dumps(entry['body'], ensure_ascii=False)}", f"  output: {entry['output']}",
                  f"  expect: {shown_jobs[entry['name']].expect.describe()}"]
        if args.resume:
            shown = f"skip (succeeded {entry['succeededAt']}, output intact)" if entry["resume"] == "skip" else \
                f"run ({entry['why']})" if entry.get("why") else "run"
            lines.append(f"  resume: {shown}")
            lines += [f"  in flight: adopt run {a['runId']}" if a["runId"] else
                      f"  in flight: look for the run of attempt {a['attempt']}, adopt it if found"
                      for a in entry.get("inFlight", [])]
        if shown_jobs[entry["name"]].fan_out is not None:
            lines.append(f"  fan-out: {describe_fan_out(shown_jobs[entry['name']])}")
    lines += _worst_case([shown_jobs[e["name"]] for e in planned if e.get("resume") != "skip"], job_files,
                         args.max_cost_usd)
    print_safely(env.redactor("\n".join(lines)))
    return 0


def _worst_case(jobs: list[Job], job_files: list[JobFile], max_cost: float | None) -> list[str]:
    """What the jobs `run` would send could cost at most, as far as their caps (`maxTotalChargeUsd`) say."""
    from apify_jobs.running.admission import worst_case

    known, unbounded = worst_case(jobs)
    line = f"worst case: ${known:.2f}" + (f" + unbounded ({len(unbounded)} job{'s' * (len(unbounded) != 1)} without "
                                          "options.maxTotalChargeUsd)" if unbounded else "")
    lines = ["", line]
    budgets = [f.budget_usd for f in job_files if f.budget_usd is not None] + ([max_cost] if max_cost else [])
    if budgets and unbounded:
        lines.append(f"warning: a budget is set, but {', '.join(unbounded[:5])}"
                     f"{f' and {len(unbounded) - 5} more' if len(unbounded) > 5 else ''} can cost any amount: give "
                     "them options.maxTotalChargeUsd, so that the budget can hold them back")
    return lines


def _as_planned(job: Job, standing: dict[str, JobResult], destination: Destination) -> list[Job]:
    """The job as it would be sent: with the values of its needs where the state has their intact outputs
    (a fan-out expanded), else with those values shown as `<from …>`. No network: run IDs come from the state."""
    if job.fan_out is None and not uses_needs(job):
        return [job]
    if all(need in standing for need in job.needs):
        try:
            jobs = expand(job, standing, _earlier, set(), destination) if job.fan_out is not None else [job]
            return [resolved(each, standing, _earlier, destination) if uses_needs(each) else each for each in jobs]
        except NeedsValueFailed:
            pass
    return [deferred(job)]


def _earlier(result: JobResult) -> RunFacts | None:
    """A resumed job's run, as the state recorded it (plan sends nothing to look it up)."""
    return result.effective.run



