"""Run look-ups: a task's run listing, one run (with `waitForFinish`), and aborting a run."""

from __future__ import annotations

import time

from apify_jobs.emulator.handler import Handler, Request, route

LIST_LIMIT = 1000  # the API's largest page
WAIT_LIMIT = 60.0  # the most the API holds a run look-up open


def _flag(value: str | None) -> bool:
    return value in ("1", "true")


@route("GET", "/v2/actor-tasks/{task}/runs")
@route("GET", "/v2/actors/{actor}/runs")
@route("GET", "/v2/acts/{actor}/runs")  # the deprecated alias
def list_runs(handler: Handler, request: Request) -> None:
    state = handler.state
    state.record_lookup("list-runs", request.path, request.query, request.headers)
    if handler.scripted_failure("list-runs"):
        return
    actor = "actor" in request.params
    task = (request.params.get("task") or request.params["actor"]).replace("/", "~", 1)
    try:
        offset = max(int(request.query.get("offset", 0)), 0)
        limit = min(max(int(request.query.get("limit", LIST_LIMIT)), 1), LIST_LIMIT)
    except ValueError:
        handler.error(400, "invalid-parameter", "offset and limit must be whole numbers")
        return
    desc = _flag(request.query.get("desc"))
    visible_from = time.monotonic()
    with state.lock:
        runs = [r for r in state.runs if r.task == task and r.actor == actor and r.listed_from <= visible_from]
    if desc:
        runs.reverse()
    if state.script.platform.listing_ignores_offset:
        offset = 0
    items = [state.shown(r) for r in runs[offset:offset + limit]]
    handler.send_json(200, {"data": {"total": len(runs), "offset": offset, "limit": limit, "count": len(items),
                                     "desc": desc, "items": items}})


@route("GET", "/v2/actor-runs/{run}")
def get_run(handler: Handler, request: Request) -> None:
    run = handler.run_for(request, "get-run", "Actor run was not found", id=request.params["run"])
    if run is None:
        return
    try:
        wait = min(float(request.query.get("waitForFinish") or 0), WAIT_LIMIT)
    except ValueError:
        wait = 0.0
    run.finished.wait(wait)
    handler.send_json(200, {"data": handler.state.shown_whole(run)})


@route("POST", "/v2/actor-runs/{run}/abort")
def abort_run(handler: Handler, request: Request) -> None:
    run = handler.run_for(request, "abort-run", "Actor run was not found", id=request.params["run"])
    if run is None:
        return
    with handler.state.lock:
        if not run.finished.is_set():
            run.status = "ABORTED"
            run.finished_at = handler.state.clock()
            run.finished.set()
    handler.send_json(200, {"data": handler.state.shown_whole(run)})
