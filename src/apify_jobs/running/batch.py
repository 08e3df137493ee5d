"""One batch, as `run` asks for it: the checks before anything is sent (collisions, pre-flight), then the
state's bookkeeping around the executor (leftovers, --resume, leases, the run facts, the invocation's end)
and Ctrl-C. The command only parses, calls this and prints."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from apify_jobs.api.client import ApiClient
from apify_jobs.api.identity import Attempts
from apify_jobs.errors import ExitStatus, UsageError
from apify_jobs.failures import JobFailure, OutputFailure
from apify_jobs.files import check_writable_folder
from apify_jobs.jobfile.expressions import needed_jobs
from apify_jobs.model import Job, JobFile
from apify_jobs.outputs.destination import Destination
from apify_jobs.outputs.paths import may_land_on
from apify_jobs.record import GoingRun, JobResult, Status
from apify_jobs.running.admission import AccountLimits, Admission, worst_case
from apify_jobs.running.executor import Executor, Progress
from apify_jobs.running.needs import NeedsValueFailed, uses_needs
from apify_jobs.running.run_facts import abort_runs, add_run_facts, going_runs, still_running
from apify_jobs.running.runner import RunContext, decided, restored
from apify_jobs.running.selection import Plan, resume, resumed_result, standing_needs
from apify_jobs.running.state import Invocation, State, StateError, StoredEntries
from apify_jobs.settings import Settings


@dataclass(frozen=True)
class BatchOptions:
    resume: bool = False
    run_facts: bool = True  # look up each job's run (ID, status, cost) after the batch
    abort_on_interrupt: bool = False
    selection: dict[str, Any] = field(default_factory=dict)  # what the state records of the selection
    account_limits: bool = True  # read the account's limits first (--no-account-limits: not)
    max_cost_usd: float | None = None  # --max-cost-usd: the run's budget


@dataclass
class Outcome:
    results: list[JobResult]
    going: list[GoingRun]  # after an interrupt: the runs still going (aborted if asked)
    interrupted: bool
    signal: signal.Signals
    invocation: Invocation | None
    entries: StoredEntries  # the invocation's records, as the state holds them (for the reports)

    @property
    def exit_status(self) -> ExitStatus:
        if self.interrupted:
            return ExitStatus.of_signal(self.signal)
        return ExitStatus.OK if all(r.succeeded for r in self.results) else ExitStatus.FAILED


def refuse_collisions(plan: Plan, destination: Destination, reports: dict[str, str], state_folder: str) -> None:
    """The state folder, the reports and every output are distinct files; refused before anything is sent."""
    state_folder = os.path.abspath(state_folder)
    named = {flag: os.path.abspath(path) for flag, path in reports.items() if path}
    if len(set(named.values())) < len(named):
        raise UsageError(f"{', '.join(named)} must be different files; two of them are the same")
    for flag, path in named.items():
        if path == state_folder or path.startswith(state_folder + os.sep):
            raise UsageError(f"{flag} {path} is inside the state folder {state_folder}; give another path")
        for entry in plan.entries:
            if may_land_on(os.path.abspath(destination.planned(entry.job)), path):
                raise UsageError(f"{flag} {path} is where job '{entry.job.name}' writes its output; "
                                 "give one of them another path")


def preflight(destination: Destination, reports: list[str]) -> None:
    """Prove that the output folder and every report's folder can be written, before the first request costs
    money."""
    try:
        destination.check_writable()
        for path in reports:
            check_writable_folder(os.path.dirname(os.path.abspath(path)))
    except OutputFailure as failure:
        raise UsageError(f"{failure}; nothing was sent") from None


def pool_size(job_files: list[JobFile], cap: int | None) -> int:
    return cap or max(sum(f.concurrency for f in job_files), 1)


def run_batch(plan: Plan, job_files: list[JobFile], destination: Destination, state: State, client: ApiClient,
              options: BatchOptions, progress_of: Callable[[int], Progress], say: Callable[[str], None],
              settings: Settings) -> Outcome:
    """Run the plan into ``destination``, recording into ``state``. ``progress_of(total)`` makes the display;
    ``say`` tells the user what they should know (leftovers removed, needs not waited for)."""
    files = [{"path": f.path, "sha256": f.sha256} for f in job_files]
    state.begin({**options.selection, "jobs": [e.job.name for e in plan.entries]}, files)
    jobs = {job.name: job for job_file in job_files for job in job_file.jobs}
    budgets = {f.path: f.budget_usd for f in job_files if f.budget_usd is not None}
    limits = account_limits(client, say) if options.account_limits else None
    if limits is not None and limits.max_monthly_usd is not None and limits.monthly_usd is not None:
        worst, _ = worst_case([e.job for e in plan.entries])
        if limits.monthly_usd + worst > limits.max_monthly_usd:
            say(f"warning: the jobs' caps add up to ${worst:.2f}, and with the ${limits.monthly_usd:.2f} used this "
                f"month that passes the account's monthly limit of ${limits.max_monthly_usd:.2f}: the platform will "
                "refuse runs once it is reached")
    admission = Admission(limits, options.max_cost_usd, budgets)
    try:
        return _run(plan, jobs, destination, state, client, options, progress_of, say, settings, admission)
    except StateError as failure:  # one line, exit 2; the run is marked ended, not left unfinished
        with contextlib.suppress(StateError):
            state.finish(True, {"error": str(failure)})
        raise


def _run(plan: Plan, jobs: dict[str, Job], destination: Destination, state: State, client: ApiClient,
         options: BatchOptions, progress_of: Callable[[int], Progress], say: Callable[[str], None],
         settings: Settings, admission: Admission | None = None) -> Outcome:
    removed, freed = destination.clean_leftovers(skip=os.path.dirname(state.path))
    if removed:
        say(f"removed {removed} temporary file{'s' * (removed != 1)} that an earlier killed run left behind "
            f"({freed / (1 << 20):.1f} MiB freed)")
    context = RunContext(client, destination, threading.Event(), settings=settings, ledger=state,
                         refetch=options.resume, admission=admission)
    if options.resume:
        context.resume_check = lambda job: resumed_result(job, state, destination, client.base_url)
    # Leases first, then what already succeeded: a process that holds a job finishes it (its result and the
    # lease's release are one transaction), so a job is either held elsewhere or its success is visible.
    state.take_leases([e.job.name for e in plan.entries])
    resumed = resume(plan, state, destination, client.base_url) if options.resume else 0
    progress = progress_of(len(plan.entries) - resumed)
    executor = Executor(plan, context, progress, journal=state)
    if plan.ignored_needs:
        _values_of_unselected(plan, jobs, context, state if options.resume else None, destination, client.base_url)
        say(f"not selected, so not waited for: {', '.join(sorted(plan.ignored_needs))}")
    try:
        with interrupts(executor):
            results = executor.run()
    finally:
        progress.close()
    if admission is not None and admission.budgeted:
        skipped = admission.skipped_for_budget
        say(f"budget: ${admission.spent:.4f} spent by the jobs that ran" + (
            f"; {skipped} job{'s' * (skipped != 1)} not started for the budget" if skipped else ""))
    if executor.journal_failure is not None:  # one line and exit 2: the outputs written so far stay
        raise executor.journal_failure
    going = _after_the_batch(options, context, results, executor.interrupted, say)
    # The runs still going are the state's to adopt next time (or to abort): it learns their IDs.
    state.note_runs({a.id: a.run_id for a in context.attempts.all() if a.run_id})
    state.end_attempts([a.id for a in context.attempts.all() if a.run_id in {g.run_id for g in going if g.aborted}])
    destination.sync()  # outputs are durable before a report says they exist
    state.update([r for r in results if r.run is not None or r.facts_note])  # the run facts, found after the jobs
    state.finish(executor.interrupted, {"runsStillGoing": [g.to_dict() for g in going]})
    invocation, entries = state.entries(str(state.invocation))
    return Outcome(results, going, executor.interrupted, executor.signal, invocation, entries)


def account_limits(client: ApiClient, say: Callable[[str], None]) -> AccountLimits | None:
    """The account's limits, read once before anything is sent; None (and one line saying so) when they
    cannot be read: the run goes on, and refusals wait for room as they come."""
    try:
        with client.account_limits() as answer:
            limits = AccountLimits.from_answer(answer.json())
    except (JobFailure, ValueError) as failure:
        status = getattr(failure, "http_status", None)
        hint = " (the token may not be allowed to read them)" if status in (401, 403) else ""
        say(f"warning: the account's limits could not be read{hint}: {getattr(failure, 'message', failure)}; "
            "running without them (--no-account-limits skips the look-up)")
        return None
    say(limits.describe())
    return limits


def _values_of_unselected(plan: Plan, jobs: dict[str, Job], context: RunContext, state: State | None,
                          destination: Destination, base_url: str) -> None:
    """Jobs that take values from needed jobs the selection leaves out: with --resume, the values come from
    those jobs' latest intact successes in the state; a job for whose values there is none fails now, before
    anything is sent."""
    standing = standing_needs(plan.ignored_needs, jobs, state, destination, base_url)
    context.finished.update(standing)
    for entry in plan.entries:
        if entry.result is not None or not uses_needs(entry.job):
            continue
        wanted = needed_jobs([entry.job.input, entry.job.options, entry.job.dataset, entry.job.fan_out])
        members = {member for name in wanted for member in entry.job.groups.get(name, [name])}
        missing = sorted(name for name in members if name in plan.ignored_needs and name not in standing)
        if missing:
            how = ("has no intact success in the state" if state is not None
                   else "is not selected (add --resume to take its values from its last success)")
            entry.result = decided(entry.job, base_url, Status.FAILED,
                                   f"needs the values of {', '.join(missing)}, which {how}; select "
                                   f"{'it' if len(missing) == 1 else 'them'} too (--only), or run "
                                   f"{'it' if len(missing) == 1 else 'them'} first; not sent",
                                   NeedsValueFailed.error_type)


def _after_the_batch(options: BatchOptions, context: RunContext, results: list[JobResult], interrupted: bool,
                     say: Callable[[str], None]) -> list[GoingRun]:
    """Run facts for a finished batch; after an interrupt, the runs still going (aborted if asked)."""
    if interrupted:
        try:
            return still_running(context.client, context.attempts, results, options.abort_on_interrupt,
                                 context.settings)
        except JobFailure as failure:
            say(f"could not look up the runs still going: {failure}")
            return []
    if any(r.http_status == 401 for r in results):  # the token was refused: it is not sent again for facts
        say("run facts not looked up: the token was refused (HTTP 401)")
    elif options.run_facts:
        add_run_facts(context.client, context.attempts, results, context.settings)
    return []


def abort_in_flight(state: State, client: ApiClient, settings: Settings) -> list[GoingRun]:
    """`apify-jobs abort`: the runs of the attempts the state holds open, aborted where still going; the
    aborted ones' attempts are settled (nothing will adopt them), the others learn their run's ID."""
    attempts = Attempts()
    suspects = [restored(attempts, stored) for stored in state.in_flight()]
    going = going_runs(client, suspects, settings)
    abort_runs(client, going)
    aborted = {g.run_id for g in going if g.aborted}
    state.end_attempts([a.id for a in suspects if a.run_id in aborted])
    state.note_runs({a.id: a.run_id for a in suspects if a.run_id})
    return going


@contextlib.contextmanager
def interrupts(executor: Executor) -> Iterator[None]:
    """First Ctrl-C (or SIGTERM): stop starting, cancel, write the report. Second: exit at once."""

    def handle(signum: int, frame: Any) -> None:
        if executor.interrupted:
            os._exit(ExitStatus.of_signal(executor.signal))
        executor.signal = signal.Signals(signum)
        executor.interrupt()

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)
