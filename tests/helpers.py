"""Building jobs and running them in-process against an emulator, for the end-to-end tests."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from apify_jobs import jobfile
from apify_jobs.model import Job


def job_file(tmp_path: Path, body: str, name: str = "jobs.yaml") -> Path:
    path = tmp_path / name
    path.write_text("version: 1\n" + textwrap.dedent(body).lstrip("\n"), encoding="utf-8")
    return path


def make_job(tmp_path: Path, spec: dict[str, Any]) -> Job:
    path = tmp_path / "one.yaml"
    path.write_text(json.dumps({"version": 1, "jobs": [spec]}), encoding="utf-8")
    files, _ = jobfile.load([str(path)], {}, {})
    return files[0].jobs[0]


def read_report(out_dir: Path) -> dict[str, Any]:
    return json.loads((out_dir / "report.json").read_text(encoding="utf-8"))


def jobs_by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in report["jobs"]}


def leftovers(folder: Path) -> list[str]:
    """Temporary files a download left behind (there must never be any)."""
    return sorted(str(p) for p in folder.rglob("*.part"))


def until(condition, seconds: float = 20.0) -> bool:
    """Wait (polling) until ``condition()`` holds; whether it did within ``seconds``."""
    import time

    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def on_a_terminal(args: list[str], env: dict[str, str]) -> str:
    """Run the CLI with a pseudo-terminal as its stdout and stderr; what it drew there."""
    import os
    import pty
    import subprocess
    import sys

    master, slave = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "apify_jobs", *args], stdin=subprocess.DEVNULL, stdout=slave,
                               stderr=slave, env={**os.environ, "COLUMNS": "100", **env})
    os.close(slave)
    drawn = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        drawn += chunk
    process.wait(60)
    os.close(master)
    return drawn.decode("utf-8", "replace")
