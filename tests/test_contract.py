"""Every request the runner sends conforms to Apify's official OpenAPI description (an excerpt kept in tests/)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import responses
from openapi_core import OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest

from apify_jobs.api.client import ApiClient
from apify_jobs.outputs.destination import LocalFolder
from apify_jobs.running.runner import RunContext, run_job
from tests.helpers import make_job

SPEC = OpenAPI.from_dict(json.loads((Path(__file__).parent / "contract" / "apify-openapi-excerpt.json").read_text()))
BASE = "https://api.apify.com"

EVERY_OPTION = {"timeout": 120, "memory": 2048, "maxItems": 100, "maxTotalChargeUsd": 2.5, "restartOnError": False,
                "build": "latest", "outputRecordKey": "OUTPUT",
                "webhooks": [{"eventTypes": ["ACTOR.RUN.FAILED"], "requestUrl": "https://h.example/x",
                              "idempotencyKey": "k", "ignoreSslErrors": False}]}
DATASET = {"format": "csv", "clean": True, "fields": ["title", "url"], "omit": "x", "unwind": ["a"], "desc": True,
           "limit": 10, "offset": 5, "bom": True, "delimiter": ";", "skipHeaderRow": False, "attachment": False}


@pytest.mark.parametrize("spec", [
    {"name": "every-option", "task": "janedoe~maps", "input": {"q": ["cafe"], "n": 1}, "options": EVERY_OPTION},
    {"name": "no-option", "task": "janedoe/maps"},
    {"name": "dataset", "task": "HG7ML7M8z78YcAPEB", "input": {"x": None},
     "options": {k: v for k, v in EVERY_OPTION.items() if k != "outputRecordKey"}, "dataset": DATASET},
])
@responses.activate
def test_sent_request_conforms_to_the_openapi_description(tmp_path: Path, spec: dict) -> None:
    responses.post(re.compile(BASE + r"/v2/actor-tasks/.*"), body=b"[{}]" if "dataset" not in spec or spec["dataset"]["format"] != "csv" else b"a,b\n1,2\n", status=201, content_type="application/json")
    job = make_job(tmp_path, spec)
    result = run_job(job, RunContext(ApiClient("token", base_url=BASE), LocalFolder(str(tmp_path / "out"))))
    assert result.status == "succeeded", result.error
    [call] = responses.calls
    SPEC.validate_request(RequestsOpenAPIRequest(call.request))
    assert call.request.url.split("?")[0].endswith("/run-sync-get-dataset-items" if "dataset" in spec else "/run-sync")


@responses.activate
def test_a_malformed_request_would_be_caught(tmp_path: Path) -> None:
    """The contract check itself can fail: a wrong type in the query is refused by the description."""
    import requests
    from openapi_core.exceptions import OpenAPIError

    prepared = requests.Request("POST", BASE + "/v2/actor-tasks/me~t/run-sync?memory=lots", data=b"{}",
                                headers={"Authorization": "Bearer t", "Content-Type": "application/json"}).prepare()
    with pytest.raises(OpenAPIError):
        SPEC.validate_request(RequestsOpenAPIRequest(prepared))


@pytest.mark.parametrize("records_agent", [True, False])
@responses.activate
def test_recovery_requests_conform_too(tmp_path: Path, records_agent: bool) -> None:
    """The look-ups of drop recovery fit the description: by identity (runs list, run wait, dataset items) and
    by the fallback where the platform records no user agent (task input and INPUT record too)."""
    from email.utils import formatdate

    import requests

    from apify_jobs.model import now

    sent: list[str] = []

    def drop(request):
        sent.append(request.headers["User-Agent"])
        raise requests.ConnectionError("reset")

    def listing(request):
        run = {"id": "abcdefghijklmnopq", "actId": "a", "status": "RUNNING", "startedAt": now(), "buildId": "b",
               "meta": {"origin": "API", "userAgent": sent[-1] if records_agent else None}, "usageTotalUsd": 0.1,
               "defaultKeyValueStoreId": "kvs1", "defaultDatasetId": "ds1", "defaultRequestQueueId": "rq1"}
        return 200, {"Date": formatdate(usegmt=True)}, json.dumps({"data": {"items": [run]}})

    responses.add_callback(responses.POST, BASE + "/v2/actor-tasks/me~t/run-sync-get-dataset-items", callback=drop)
    responses.add_callback(responses.GET, BASE + "/v2/actor-tasks/me~t/runs", callback=listing)
    responses.get(BASE + "/v2/actor-tasks/me~t/input", json={"saved": True})
    responses.get(BASE + "/v2/key-value-stores/kvs1/records/INPUT", json={"q": 1, "saved": True})
    responses.get(BASE + "/v2/actor-runs/abcdefghijklmnopq", json={"data": {"id": "abcdefghijklmnopq",
                                                                            "status": "SUCCEEDED"}})
    responses.get(BASE + "/v2/datasets/ds1/items", body=b"a,b\n1,2\n", content_type="text/csv")
    job = make_job(tmp_path, {"name": "d", "task": "me~t", "input": {"q": 1},
                              "dataset": {"format": "csv", "clean": True, "fields": ["a", "b"]}})
    result = run_job(job, RunContext(ApiClient("token", base_url=BASE), LocalFolder(str(tmp_path / "out"))))
    assert result.status == "succeeded" and result.recovery.run_id == "abcdefghijklmnopq"
    assert result.recovery.looks[0].method == ("identity" if records_agent else "input")
    assert (tmp_path / "out" / "d.csv").read_bytes() == b"a,b\n1,2\n"
    paths = [c.request.url.split("?")[0].removeprefix(BASE) for c in responses.calls]
    lookups = ["/v2/actor-tasks/me~t/input", "/v2/key-value-stores/kvs1/records/INPUT"] if not records_agent else []
    assert paths == ["/v2/actor-tasks/me~t/run-sync-get-dataset-items", "/v2/actor-tasks/me~t/runs", *lookups,
                     "/v2/actor-runs/abcdefghijklmnopq", "/v2/datasets/ds1/items"]
    for call in responses.calls:
        SPEC.validate_request(RequestsOpenAPIRequest(call.request))
    assert responses.calls[-1].request.url.endswith("/v2/datasets/ds1/items?format=csv&clean=true&fields=a%2Cb")


@responses.activate
def test_every_client_endpoint_conforms() -> None:
    """Each ApiClient method's request fits the description: listing, run, record, items, task input, abort."""
    from apify_jobs.api.client import ApiClient

    responses.get(re.compile(BASE + r"/v2/.*"), json={"data": {"items": []}})
    responses.post(re.compile(BASE + r"/v2/actor-runs/.*/abort"), json={"data": {}})
    client = ApiClient("token", base_url=BASE)
    calls = [lambda: client.list_runs("janedoe~maps", offset=100, limit=1000, desc=True),
             lambda: client.get_run("abcdefghijklmnopq", wait_for_finish=60),
             lambda: client.get_record("kvs1", "OUTPUT"),
             lambda: client.dataset_items("ds1", {"format": "csv", "clean": "true"}),
             lambda: client.task_input("janedoe~maps"),
             lambda: client.abort_run("abcdefghijklmnopq")]
    for call in calls:
        with call():
            pass
    assert len(responses.calls) == len(calls)
    for call in responses.calls:
        SPEC.validate_request(RequestsOpenAPIRequest(call.request))


@pytest.mark.parametrize("spec", [
    {"name": "actor-record", "actor": "janedoe/web-scraper", "input": {"q": 1}, "options": EVERY_OPTION},
    {"name": "actor-items", "actor": "HG7ML7M8z78YcAPEB", "options": {k: v for k, v in EVERY_OPTION.items()
                                                                    if k != "outputRecordKey"}, "dataset": DATASET},
])
@responses.activate
def test_actor_requests_conform_too(tmp_path: Path, spec: dict) -> None:
    """An Actor run directly: its run-sync paths and its run listing (the canonical /v2/actors/ prefix)."""
    from apify_jobs.api.client import ApiClient

    responses.post(re.compile(BASE + r"/v2/actors/.*"), body=b'[{"a": 1}]' if "dataset" not in spec or
                   spec["dataset"]["format"] != "csv" else b"a\n1\n", status=201, content_type="application/json")
    job = make_job(tmp_path, spec)
    result = run_job(job, RunContext(ApiClient("token", base_url=BASE), LocalFolder(str(tmp_path / "out"))))
    assert result.status == "succeeded", result.error
    responses.get(re.compile(BASE + r"/v2/actors/.*/runs"), json={"data": {"items": []}})
    with ApiClient("token", base_url=BASE).list_runs(job.task, offset=0, limit=1000, desc=True, actor=True):
        pass
    for call in responses.calls:
        SPEC.validate_request(RequestsOpenAPIRequest(call.request))
    assert responses.calls[0].request.url.split("?")[0] == BASE + f"/v2/actors/{job.task}/{job.endpoint}"


def test_the_account_limits_look_up_conforms_and_the_emulators_answer_fits_it() -> None:
    import requests
    from openapi_core.contrib.requests import RequestsOpenAPIResponse

    from apify_jobs.emulator import Emulator, Script
    from apify_jobs.running.admission import AccountLimits

    server = Emulator(Script.from_dict({"account": {"maxConcurrentRuns": 5, "memoryMbytes": 8192}})).start()
    try:
        with responses.RequestsMock(passthru_prefixes=(server.url,)) as mocked:
            mocked.get(BASE + "/v2/users/me/limits", json={"data": {}}, status=200)
            with ApiClient("token", base_url=BASE).account_limits() as answer:
                answer.json()
            [call] = mocked.calls
            SPEC.validate_request(RequestsOpenAPIRequest(call.request))
            real = requests.get(server.url + "/v2/users/me/limits", headers={"Authorization": "Bearer t"}, timeout=10)
        as_if_real = requests.Request("GET", BASE + "/v2/users/me/limits", headers={"Authorization": "Bearer t"})
        SPEC.validate_response(RequestsOpenAPIRequest(as_if_real.prepare()), RequestsOpenAPIResponse(real))
        limits = AccountLimits.from_answer(real.json())
        assert (limits.max_runs, limits.free_runs, limits.max_memory_gb) == (5, 5, 8.0)
    finally:
        server.stop()
