"""Random resets before and during answers, under parallel load, over real sockets; after each run the
invariants that users rely on are checked: one final status per job, every success's file whole and
matching its sha256, no temporary file left, no job sent more often than its attempts allow."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.helpers import job_file, jobs_by_name, leftovers, read_report

JOBS = 40


@pytest.mark.parametrize("recover", [False, True])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_invariants_hold_under_random_faults(cli, emulator, tmp_path: Path, seed: int, recover: bool) -> None:
    server = emulator({"seed": seed, "default": {"faultRate": 0.45, "latency": 0.01, "bodyBytes": 300_000}})
    body = "".join(f"  - {{name: j{i}, task: me~t{i}, input: {{n: {i}}}}}\n" for i in range(JOBS))
    head = ("concurrency: 8\ndefaults:\n"
            f"  retry: {{attempts: 3, backoff: {{initial: 0, max: 0}}, recover: {str(recover).lower()}}}\njobs:\n")
    path = job_file(tmp_path, head + body)
    out = tmp_path / "out"
    code, _, _ = cli("run", path, "--out-dir", out)
    report = read_report(out)
    jobs = jobs_by_name(report)
    assert len(report["jobs"]) == JOBS and len(jobs) == JOBS  # exactly one final entry per job
    assert {entry["status"] for entry in jobs.values()} <= {"succeeded", "failed"}
    assert code == (0 if all(e["status"] == "succeeded" for e in jobs.values()) else 1)
    for name, entry in jobs.items():
        sent = server.state.per_task.get(f"me~t{name[1:]}", 0)
        assert 1 <= sent <= 3 and entry["attempts"] <= 3, (name, sent)
        target = out / f"{name}.bin"
        if entry["status"] == "succeeded":
            data = target.read_bytes()
            assert len(data) == entry["output"]["bytes"] == 300_000
            assert hashlib.sha256(data).hexdigest() == entry["output"]["sha256"]
        else:
            assert entry["error"]["type"] == "connection-dropped" and not target.exists()
    assert leftovers(tmp_path) == []
    statuses = [e["status"] for e in jobs.values()]
    assert "succeeded" in statuses  # the faults were survivable for most jobs
    assert sum(server.state.per_task.values()) > JOBS  # and there really were faults
    adopted = [e for e in jobs.values() if e["recovery"] and e["recovery"]["adopted"]]
    assert bool(adopted) == recover  # a drop mid-answer left a finished run: adopted only with recovery on
