"""After the batch: which run each attempt started (run ID, status, cost, storages), found by identity in
each task's run listing — a few listing calls per task, never one per job — and, after an interrupt,
which runs are still going (and, when asked, aborting them)."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import defaultdict
from datetime import timedelta
from typing import Any

from apify_jobs.api.client import LOOKUPS, ApiClient
from apify_jobs.api.identity import Attempt, Attempts, attempt_id_of, platform_now, started_at, window_start
from apify_jobs.api.recovery import TERMINAL
from apify_jobs.api.retry import call_patiently
from apify_jobs.failures import JobFailure
from apify_jobs.model import RetryPolicy
from apify_jobs.record import GoingRun, JobResult, RunFacts
from apify_jobs.settings import DEFAULT, Settings

log = logging.getLogger("apify_jobs")

PAGE = 1000  # the listing's largest page
MAX_PAGES = 5
# The first page asks for the attempts looked for and this many more: ours are the task's newest runs, bar those
# that others started since. A full page (1,000 runs, ~600 KB from a task with a long history) for a batch of
# a few jobs took 150 ms of the tool's 0.8 s for 300 jobs, and 100 more than ours still took half the look-up's
# time for 200 jobs over 7 tasks (18 -> 10 ms at 20, the emulator holding 1,400 earlier runs); a short first
# page that misses some goes on to full ones, so as many runs as before are looked at (MAX_PAGES full pages
# after it) before one is given up on.
FIRST_PAGE_SLACK = 20
# Tasks are looked up LOOKUPS at a time only while their pages are small (a batch of a few jobs per task, where
# the time is the round trips): four 1,000-run pages parsed at once, on four threads, took a 20,000-job run's
# peak from 123 to 148 MB; one after another, to 140 MB.
SMALL_PAGE = 200
PRELIMINARY_FOR = timedelta(seconds=10)  # "wait about 10 seconds" for stable cost figures (Apify's docs)


def find_runs(client: ApiClient, attempts: list[Attempt], cancelled: threading.Event, settings: Settings = DEFAULT,
              look_again_after: float | None = None) -> dict[str, RunFacts]:
    """Each attempt's run (by attempt ID), looked up in its task's listing; attempts that started none are
    simply absent. Only the facts are kept of each listed run (20,000 listed runs are ~30 MB as dicts). The
    tasks are looked up at once, LOOKUPS at a time, when their pages are small: one after another, a batch over
    7 tasks waited for 7 listings in a row (28 ms of 1.42 s against the emulator; each is 0.1-0.3 s from the
    platform)."""
    by_task: dict[tuple[str, bool], list[Attempt]] = defaultdict(list)
    for attempt in attempts:
        by_task[(attempt.task, attempt.actor)].append(attempt)

    def of_task(item: tuple[tuple[str, bool], list[Attempt]]) -> dict[str, RunFacts]:
        (task, actor), wanted = item
        found: dict[str, RunFacts] = {}
        for look in range(2):
            _look(client, task, actor, [a for a in wanted if a.id not in found], found, cancelled,
                  settings.lookup_policy,
                  timedelta(seconds=settings.cost_settle) if settings.cost_settle > 0 else PRELIMINARY_FOR)
            certain = [a for a in wanted if a.id not in found and a.started_run]
            pause = settings.look_again_after if look_again_after is None else look_again_after
            if not certain or look or cancelled.wait(pause):
                break
        return found

    tasks = list(by_task.items())
    if len(tasks) <= 1 or any(_first_page(wanted) > SMALL_PAGE for wanted in by_task.values()):
        per_task = [of_task(item) for item in tasks]
    else:
        from concurrent.futures import ThreadPoolExecutor  # only for a batch over several tasks

        with ThreadPoolExecutor(max_workers=min(len(tasks), LOOKUPS), thread_name_prefix="facts") as pool:
            per_task = list(pool.map(of_task, tasks))  # the first failure is raised, as one after another
    return {attempt: facts for found in per_task for attempt, facts in found.items()}


def _first_page(wanted: list[Attempt]) -> int:
    """How many runs the first listing page of a task asks for, when these attempts are looked for."""
    return min(PAGE, len(wanted) + FIRST_PAGE_SLACK)


def _look(client: ApiClient, task: str, actor: bool, wanted: list[Attempt], found: dict[str, RunFacts],
          cancelled: threading.Event, policy: RetryPolicy, settle: timedelta = PRELIMINARY_FOR) -> None:
    if not wanted:
        return
    by_id = {a.id: a for a in wanted}
    by_run = {a.run_id: a for a in wanted if a.run_id}  # known without identity (fallback platforms)
    earliest = min(a.sent_at for a in wanted)
    offset, limit = 0, _first_page(wanted)
    for _ in range(MAX_PAGES + 1):
        def call(offset: int = offset, limit: int = limit) -> tuple[dict[str, str], list[Any]]:
            with client.list_runs(task, offset=offset, limit=limit, desc=True, actor=actor) as answer:
                items = answer.json()["data"]["items"]
                return answer.headers, items if isinstance(items, list) else []
        headers, page = call_patiently(call, cancelled, policy)
        window = window_start(headers, earliest)
        now = platform_now(headers)
        for run in page:
            if not isinstance(run, dict):
                continue
            owner = by_id.get(attempt_id_of(run) or "") or by_run.get(str(run.get("id")))
            if owner is not None and owner.id not in found:
                found[owner.id] = _facts(run, _preliminary(run, now, settle))
        start = started_at(page[-1]) if page and isinstance(page[-1], dict) else None
        done = all(a.id in found for a in wanted)
        if done or len(page) < limit or (window is not None and start is not None and start < window):
            return
        offset, limit = offset + len(page), PAGE


def _preliminary(run: dict[str, Any], now: Any, settle: timedelta = PRELIMINARY_FOR) -> bool:
    if run.get("status") not in TERMINAL or now is None:
        return True
    try:
        finished = started_at({"startedAt": run.get("finishedAt")})
    except TypeError:
        return True
    return finished is None or now - finished < settle


def event_cost(run: dict[str, Any]) -> float | None:
    """A pay-per-event run's cost, when it shows no `usageTotalUsd`: its charged events times the Actor's
    flat prices. None (unknown, never $0) when either is missing or an event is tier-priced."""
    counts, pricing = run.get("chargedEventCounts"), run.get("pricingInfo")
    if not isinstance(counts, dict) or not isinstance(pricing, dict) or pricing.get("pricingModel") != "PAY_PER_EVENT":
        return None
    events = (pricing.get("pricingPerEvent") or {}).get("actorChargeEvents")
    if not isinstance(events, dict):
        return None
    total = 0.0
    for name, count in counts.items():
        price = (events.get(name) or {}).get("eventPriceUsd") if isinstance(events.get(name), dict) else None
        if not isinstance(count, int) or not isinstance(price, (int, float)) or isinstance(price, bool):
            return None
        total += count * float(price)
    return round(total, 6)


def _facts(run: dict[str, Any], preliminary: bool) -> RunFacts:
    usage = run.get("usageTotalUsd")
    if not isinstance(usage, (int, float)) or isinstance(usage, bool):
        usage = event_cost(run)
    return RunFacts(str(run["id"]), run.get("status"), float(usage) if isinstance(usage, (int, float)) else None,
                    run.get("defaultDatasetId"), run.get("defaultKeyValueStoreId"), preliminary,
                    run.get("buildNumber") if isinstance(run.get("buildNumber"), str) else None)


def add_run_facts(client: ApiClient, attempts: Attempts, results: list[JobResult], settings: Settings = DEFAULT) -> None:
    """Give every job that was sent its runs; a run that cannot be found is a note, never a failure."""
    sent = [r for r in results if r.attempt_ids]
    if not sent:
        return
    try:
        found = find_runs(client, [a for a in attempts.all() if a.started_run is not False], threading.Event(),
                           settings)
    except JobFailure as failure:
        for result in sent:
            result.facts_note = f"run facts could not be looked up: {failure}"
        return
    started = {a.id for a in attempts.all() if a.started_run}
    _settled(client, attempts, found, settings)
    _whole_cost(client, found)
    for result in sent:
        runs = [found[attempt_id] for attempt_id in result.attempt_ids if attempt_id in found]
        if runs:
            result.run, result.other_runs = runs[-1], runs[:-1]
        elif any(attempt_id in started for attempt_id in result.attempt_ids):
            result.facts_note = "its run was not found in the task's run listing"


def _settled(client: ApiClient, attempts: Attempts, found: dict[str, RunFacts], settings: Settings) -> None:
    """Runs whose cost was still preliminary (they had just ended) are read once more, once the platform's
    figure has settled (``settings.cost_settle`` later): the report's cost is the final one where it can be."""
    early = {attempt_id for attempt_id, facts in found.items() if facts.preliminary}
    if not early or settings.cost_settle <= 0:
        return
    time.sleep(settings.cost_settle + 1.0)  # + the listing's Date header's resolution (whole seconds)
    try:
        again = find_runs(client, [a for a in attempts.all() if a.id in early], threading.Event(), settings)
    except JobFailure:
        return  # the preliminary figures stay, marked as such
    found.update(again)


WHOLE_RUN_LOOKS = 100  # runs whose cost the listing leaves unknown, read whole (pay-per-event): at most this many


def _whole_cost(client: ApiClient, found: dict[str, RunFacts]) -> None:
    """Runs the listing shows without a cost (pay-per-event Actors the user does not own): read whole, their
    cost from their charged events and prices where both are given; else it stays unknown, never $0."""
    unknown = [(attempt_id, facts) for attempt_id, facts in found.items() if facts.usage_total_usd is None]
    for attempt_id, facts in unknown[:WHOLE_RUN_LOOKS]:
        try:
            with client.get_run(facts.run_id) as answer:
                run = answer.json().get("data")
        except (JobFailure, ValueError, AttributeError):
            continue
        cost = event_cost(run) if isinstance(run, dict) else None
        if cost is not None:
            found[attempt_id] = dataclasses.replace(facts, usage_total_usd=cost)


def still_running(client: ApiClient, attempts: Attempts, results: list[JobResult], abort: bool,
                  settings: Settings = DEFAULT) -> list[GoingRun]:
    """After an interrupt: the runs that cancelled jobs started and that are still going; aborted if asked."""
    unfinished = {r.name for r in results if not r.succeeded}
    suspects = [a for a in attempts.all() if a.job in unfinished and a.started_run is not False]
    started = time.monotonic()
    going = going_runs(client, suspects, settings)
    if abort:
        abort_runs(client, going)
    log.info("looked for runs still going in %.1f s", time.monotonic() - started)
    return going


def going_runs(client: ApiClient, suspects: list[Attempt], settings: Settings = DEFAULT) -> list[GoingRun]:
    """The runs of these attempts that are still going (each attempt learns its run's ID when found)."""
    if not suspects:
        return []
    found = find_runs(client, suspects, threading.Event(), settings, look_again_after=0.5)
    for attempt in suspects:
        if attempt.id in found:
            attempt.run_id = found[attempt.id].run_id
    return [GoingRun(a.job, found[a.id].run_id) for a in suspects
            if a.id in found and found[a.id].status not in TERMINAL]


def abort_runs(client: ApiClient, going: list[GoingRun]) -> None:
    for entry in going:
        try:
            with client.abort_run(entry.run_id):
                entry.aborted = True
        except JobFailure as failure:
            log.warning("could not abort run %s of %s: %s", entry.run_id, entry.job, failure)
