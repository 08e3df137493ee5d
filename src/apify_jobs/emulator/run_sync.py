"""The two run-sync endpoints: start a run, wait for it, answer with its output — or fail as scripted."""

from __future__ import annotations

import dataclasses
import json
import secrets
import threading
import time
from typing import Any

from apify_jobs.emulator.dataset_view import default_items, render
from apify_jobs.emulator.handler import Handler, Request, route
from apify_jobs.emulator.script import _ECHO, Behaviour
from apify_jobs.emulator.state import Run
from apify_jobs.emulator.storage import send_items, stream_generated
from apify_jobs.model import INPUT_LIMIT_BYTES


@route("POST", "/v2/actor-tasks/{task}/{endpoint}")
@route("POST", "/v2/actors/{actor}/{endpoint}")
@route("POST", "/v2/acts/{actor}/{endpoint}")  # the deprecated alias, as the API still serves it
def run_sync(handler: Handler, request: Request) -> None:
    """A task's run-sync, or an Actor's (its ID or name takes the place of the task's in scripts and counts)."""
    endpoint = request.params["endpoint"]
    if endpoint not in ("run-sync", "run-sync-get-dataset-items"):
        handler.error(404, "page-not-found", f"Page not found: POST {request.path}")
        return
    state = handler.state
    task = (request.params.get("task") or request.params["actor"]).replace("/", "~", 1)
    with state.lock:
        state.per_task[task] = number = state.per_task.get(task, 0) + 1
        state.requests.append({"kind": "run-sync", "task": task, "actor": "actor" in request.params,
                               "endpoint": endpoint, "query": request.query,
                               "body": request.body, "headers": request.headers, "number": number})
        state.in_flight += 1
        state.max_in_flight = max(state.max_in_flight, state.in_flight)
    behaviour = state.script.behaviour(task, number)
    fault = state.fault(behaviour)
    if fault:
        behaviour = dataclasses.replace(behaviour, drop=fault)
    try:
        _answer(handler, behaviour, task, endpoint, request)
    finally:
        with state.lock:
            state.in_flight -= 1


def _answer(handler: Handler, behaviour: Behaviour, task: str, endpoint: str, request: Request) -> None:
    if len(request.body) > INPUT_LIMIT_BYTES:
        handler.error(413, "request-too-large", "The POST payload is too large (limit: 9437184 bytes)")
        return
    try:
        run_input = json.loads(request.body or b"{}")
    except ValueError:
        handler.error(400, "invalid-input", "Input is not valid JSON")
        return
    if behaviour.drop == "before-response":
        time.sleep(behaviour.latency)
        handler.drop()
        return
    refusal = {
        "rate-limit": (429, "rate-limit-exceeded",
                       behaviour.message or "You have exceeded the rate limit. Please try again later."),
        "capacity": (402, behaviour.error_type or "concurrent-runs-limit-exceeded", behaviour.message or
                     "By launching this job you will exceed the concurrent runs limit of your subscription."),
    }.get(behaviour.respond)
    if refusal:  # no run is started
        time.sleep(behaviour.latency)
        headers = {"Retry-After": str(behaviour.retry_after)} if behaviour.retry_after is not None else None
        handler.error(behaviour.status or refusal[0], refusal[1], refusal[2], headers)
        return
    if behaviour.respond in ("server-error", "status"):
        time.sleep(behaviour.latency)
        status = behaviour.status or 500
        if behaviour.html:
            handler.send(status, b"<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html")
        else:
            handler.error(status, behaviour.error_type or "internal-server-error",
                          behaviour.message or f"Emulated answer {status}")
        return
    run = _start_run(handler, behaviour, task, request, run_input)
    if run is None:  # refused by the account's limits: no run
        return
    if handler.state.script.account.limited:
        handler.state.note_running()
    if behaviour.drop == "after-start":  # the run goes on; the caller never hears of it
        handler.drop()
        time.sleep(behaviour.latency)
        _finish(handler, run, behaviour)
        return
    if behaviour.sync_limit is not None and behaviour.latency > behaviour.sync_limit:
        # run-sync stops waiting; the run goes on, and ends in its own time
        run.finished.wait(behaviour.sync_limit)
        threading.Timer(behaviour.latency - behaviour.sync_limit, _finish, (handler, run, behaviour)).start()
        handler.error(408, "run-timeout-exceeded", "Actor run exceeded the timeout of 300 seconds for this API endpoint")
        return
    run.finished.wait(behaviour.latency)  # an abort ends the wait, as it ends the run
    _finish(handler, run, behaviour)
    if behaviour.respond == "run-failed" or run.status != "SUCCEEDED":
        handler.error(400, "run-failed", f"Actor run did not succeed (run ID: {run.id}, status: {run.status})")
        return
    if behaviour.respond == "run-timeout":
        handler.error(408, "run-timeout-exceeded", "Actor run exceeded the timeout of 300 seconds for this API endpoint")
        return
    if behaviour.body_bytes is not None:
        cut = behaviour.body_bytes // 2 if behaviour.drop == "mid-body" else None
        handler.stream_large(behaviour.body_bytes, run.content_type, cut)
        return
    if behaviour.generated_items is not None and endpoint != "run-sync":
        stream_generated(handler, behaviour.generated_items, request.query, behaviour.gzip, behaviour.long_line)
        return
    if behaviour.trickle:
        handler.trickle(run.output, run.content_type, behaviour.trickle)
        return
    if endpoint != "run-sync" and behaviour.body is None and behaviour.drop != "mid-body":
        send_items(handler, 201, run.items, request.query)
        return
    if endpoint == "run-sync" or behaviour.body is not None:
        payload, content_type = run.output, run.content_type
    else:
        payload, content_type = render(run.items, request.query)
    if behaviour.drop == "mid-body":
        handler.send_partial(payload, content_type)
        return
    handler.send(201, payload, content_type)


def _refusal(state: Any, memory: float) -> tuple[str, str] | None:
    """Why the account refuses a run asking for ``memory`` MB now (with the state's lock held), or None."""
    account = state.script.account
    if not account.limited:  # an unlimited account: no scan of every run on every start
        return None
    running = [r for r in state.runs if r.status == "RUNNING"]
    if account.max_monthly_usage_usd is not None and account.monthly_usage_usd >= account.max_monthly_usage_usd:
        return "not-enough-usage-to-run-paid-actor", "You have reached your monthly usage limit; add credit to run."
    if account.max_concurrent_runs is not None and len(running) >= account.max_concurrent_runs:
        return "concurrent-runs-limit-exceeded", ("By launching this job you will exceed the concurrent runs limit of "
                                                  f"{account.max_concurrent_runs} runs of your subscription.")
    used = sum(float(r.options.get("memory", 1024)) for r in running)
    if account.memory_mbytes is not None and used + memory > account.memory_mbytes:
        return "actor-memory-limit-exceeded", (f"By launching this job you will exceed the memory limit of "
                                               f"{account.memory_mbytes}MB for all your Actor runs and builds.")
    return None


def _start_run(handler: Handler, behaviour: Behaviour, task: str, request: Request, run_input: Any) -> Run | None:
    echo = {"taskId": task, "input": run_input, "options": request.query}
    record = echo if behaviour.output is _ECHO else behaviour.output
    output = b"" if record is None else json.dumps(record, ensure_ascii=False).encode("utf-8")
    if behaviour.body is not None:
        output = behaviour.body.encode("utf-8")
    saved = handler.state.script.inputs.get(task, {})
    # The run's INPUT: the task's saved input, the override's top-level keys replacing its own.
    full_input = {**saved, **run_input} if isinstance(run_input, dict) else run_input
    content_type = behaviour.content_type or ("application/json; charset=utf-8" if behaviour.body_bytes is None
                                              else "application/octet-stream")
    run = Run(id=secrets.token_hex(9)[:17], task=task, input=full_input, options=request.query,
              started_at=handler.state.clock(), status="RUNNING", output=output, content_type=content_type,
              items=list(behaviour.items) if behaviour.items is not None else default_items(),
              user_agent=_recorded_agent(handler, request.headers.get("User-Agent")), body_bytes=behaviour.body_bytes,
              generated_items=behaviour.generated_items, gzip=behaviour.gzip, long_line=behaviour.long_line,
              cost_usd=handler.state.script.account.cost_per_run_usd, charged_events=behaviour.charged_events,
              listed_from=time.monotonic() + handler.state.script.platform.listing_delay,
              actor="actor" in request.params)
    with handler.state.lock:  # the account's check and the run's start are one step, as on the platform
        refused = _refusal(handler.state, float(request.query.get("memory", 1024)))
        if refused is None:
            handler.state.runs.append(run)
    if refused is not None:
        handler.state.count_refusal()
        handler.error(402, *refused)
        return None
    return run


def _finish(handler: Handler, run: Run, behaviour: Behaviour) -> None:
    with handler.state.lock:
        if run.finished.is_set():  # aborted meanwhile
            return
        run.status = "FAILED" if behaviour.respond == "run-failed" else behaviour.run_status
        run.finished_at = handler.state.clock()
        run.finished.set()


def _recorded_agent(handler: Handler, agent: str | None) -> str | None:
    """The user agent as the platform keeps it (a proxy may have shortened it to its first word)."""
    if agent is not None and handler.state.script.platform.shorten_user_agent:
        return agent.split(" ", 1)[0]
    return agent
