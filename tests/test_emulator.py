"""The emulator as a user meets it: `apify-jobs emulator` serving real requests, and its script checks."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from apify_jobs.emulator import Behaviour, Script


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_emulator_command_serves_run_sync_and_stats(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "apify_jobs", "emulator", "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert f"listening on http://127.0.0.1:{port}" in process.stdout.readline()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v2/actor-tasks/me~t/run-sync?memory=256",
                                         data=b'{"a": 1}', method="POST", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 201
            assert json.loads(response.read()) == {"taskId": "me~t", "input": {"a": 1}, "options": {"memory": "256"}}
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_emulator/stats", timeout=5) as response:
            assert json.loads(response.read())["requests"] == 1
    finally:
        process.terminate()
        process.wait(timeout=5)


def test_run_with_emulator_needs_no_token(tmp_path: Path) -> None:
    from tests.conftest import REPO, run_process

    result = run_process("run", str(REPO / "jobs"), "--emulator", "--out-dir", str(tmp_path / "out"),
                         env={"APIFY_TOKEN": ""})
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["totals"]["succeeded"] == report["totals"]["jobs"] >= 7


def test_unknown_behaviour_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown behaviour keys"):
        Behaviour.from_dict({"latnecy": 1})
    with pytest.raises(ValueError, match="respond must be one of"):
        Behaviour.from_dict({"respond": "explode"})


def test_script_steps_repeat_the_last() -> None:
    script = Script.from_dict({"tasks": {"me/t": [{"drop": "before-response"}, {"latency": 0.5}]}})
    assert script.behaviour("me~t", 1).drop == "before-response"
    assert script.behaviour("me~t", 2).latency == 0.5 and script.behaviour("me~t", 9).latency == 0.5
    assert script.behaviour("other~t", 1) == Behaviour()


def test_bad_script_is_one_line(cli, tmp_path: Path) -> None:
    script = tmp_path / "s.yaml"
    script.write_text("tasks:\n  me~t: {respond: nope}\n")
    code, _, err = cli("emulator", "--script", script)
    assert code == 2 and err.startswith(f"apify-jobs: emulator script {script}: respond must be one of")


def test_oversized_body_gets_413_like_the_api() -> None:
    from apify_jobs.emulator import Emulator

    with Emulator() as server:
        request = urllib.request.Request(server.url + "/v2/actor-tasks/me~t/run-sync", data=b"{" + b" " * (9 * 1024 * 1024) + b"}",
                                         method="POST")
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=10)
        assert caught.value.code == 413


def test_a_client_that_goes_away_is_not_a_traceback(capsys) -> None:
    from apify_jobs.emulator import Emulator

    with Emulator(Script.from_dict({"default": {"bodyBytes": 50_000_000}})) as server:
        with socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1]))) as connection:
            connection.sendall(b"POST /v2/actor-tasks/me~t/run-sync HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
            connection.recv(1000)
        deadline = time.monotonic() + 5
        while server.state.in_flight and time.monotonic() < deadline:
            time.sleep(0.05)
    assert "Traceback" not in capsys.readouterr().err


def _start_runs(server, count: int, user_agent: str = "apify-jobs/test (+abc)") -> None:
    for n in range(count):
        request = urllib.request.Request(server.url + "/v2/actor-tasks/me~t/run-sync", data=json.dumps({"n": n}).encode(),
                                         method="POST", headers={"User-Agent": user_agent})
        urllib.request.urlopen(request, timeout=5).read()


def test_the_run_listing_pages_like_the_api_and_carries_meta_and_cost() -> None:
    from apify_jobs.api.client import ApiClient
    from apify_jobs.emulator import Emulator

    with Emulator(Script.from_dict({"inputs": {"me/t": {"saved": True, "n": -1}}})) as server:
        _start_runs(server, 5)
        client = ApiClient(None, base_url=server.url)
        with client.list_runs("me~t", offset=1, limit=2, desc=True) as answer:
            data = answer.json()["data"]
        newest_first = [r.id for r in reversed(server.state.runs)]
        assert [r["id"] for r in data["items"]] == newest_first[1:3]
        assert (data["total"], data["offset"], data["limit"], data["count"], data["desc"]) == (5, 1, 2, 2, True)
        with client.list_runs("me~t", offset=4, limit=10, desc=False) as answer:
            assert [r["id"] for r in answer.json()["data"]["items"]] == [server.state.runs[4].id]
        run = data["items"][0]
        assert run["meta"] == {"origin": "API", "userAgent": "apify-jobs/test (+abc)"}
        assert run["usageTotalUsd"] > 0 and run["status"] == "SUCCEEDED"
        with client.get_record(run["defaultKeyValueStoreId"], "INPUT") as answer:
            assert answer.json() == {"saved": True, "n": 3}  # the saved input, the override's keys replacing it
        with client.task_input("me~t") as answer:
            assert answer.json() == {"saved": True, "n": -1}


def test_abort_stops_a_running_run() -> None:
    import threading

    from apify_jobs.api.client import ApiClient
    from apify_jobs.emulator import Emulator

    with Emulator(Script.from_dict({"default": {"latency": 5}})) as server:
        answers: list[int] = []

        def start() -> None:
            try:
                _start_runs(server, 1)
            except urllib.error.HTTPError as refused:
                answers.append(refused.code)

        waiting = threading.Thread(target=start, daemon=True)
        waiting.start()
        deadline = time.monotonic() + 5
        while not server.state.runs and time.monotonic() < deadline:
            time.sleep(0.02)
        client = ApiClient(None, base_url=server.url)
        with client.abort_run(server.state.runs[0].id) as answer:
            assert answer.json()["data"]["status"] == "ABORTED"
        with client.get_run(server.state.runs[0].id, wait_for_finish=1) as answer:
            assert answer.json()["data"]["status"] == "ABORTED"
        assert [r["kind"] for r in server.state.lookups] == ["abort-run", "get-run"]
        waiting.join(5)
        assert answers == [400]  # run-sync answers run-failed for the aborted run at once


def test_a_status_alone_answers_with_that_status() -> None:
    assert Behaviour.from_dict({"status": 401}).respond == "status"
    assert Behaviour.from_dict({"status": 429, "respond": "rate-limit"}).respond == "rate-limit"
