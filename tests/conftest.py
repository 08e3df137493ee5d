from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from apify_jobs.environment import Environment
from apify_jobs.main import main as cli_main
from apify_jobs.settings import Settings

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def write(tmp_path: Path):
    """Write a dedented file below tmp_path and return its path."""

    def _write(name: str, text: str | bytes) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return _write


# Recovery looks again over seconds before it concludes that a dropped attempt started no run (run look-ups are
# eventually consistent); in-process tests get a shorter window. test_e2e_identity.py checks the real one against
# an emulator that shows new runs late.
# Costs are not read a second time 10 s later in the CLI processes the tests start (each would wait 10 s);
# tests/test_e2e_account.py tests the second reading with settings of its own.
os.environ.setdefault("APIFY_JOBS_COST_SETTLE_SECONDS", "0")
QUICK = Settings(settle=0.2, look_again=(0.05, 0.1), look_again_after=0.1, cost_settle=0,
                 lookup_policy=dataclasses.replace(Settings().lookup_policy, initial=0.01, max_wait=0.05))


@pytest.fixture
def settings() -> Settings:
    """The settings the in-process CLI runs with (a test may override this fixture)."""
    return QUICK


@pytest.fixture
def cli(capsys, monkeypatch, settings):
    """Run the command line in-process, each invocation with an Environment of its own: (exit code, stdout,
    stderr)."""

    def _cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
        code = cli_main([str(a) for a in args], Environment(settings=settings))
        out, err = capsys.readouterr()
        return code, out, err

    return _cli


def run_process(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, **kw):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "apify_jobs", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=120, **kw)


def point_at(monkeypatch, url: str) -> None:
    """Make the CLI talk to the test server at ``url``, with a token that is not secret."""
    monkeypatch.setenv("APIFY_API_BASE_URL", url)
    monkeypatch.setenv("APIFY_TOKEN", "test-token-not-secret")


@pytest.fixture
def emulator(monkeypatch):
    """A scripted emulator on a free loopback port; `run` talks to it through APIFY_API_BASE_URL."""
    from apify_jobs.emulator import Emulator, Script

    started: list[Emulator] = []

    def _start(script: dict | None = None) -> Emulator:
        server = Emulator(Script.from_dict(script)).start()
        started.append(server)
        point_at(monkeypatch, server.url)
        return server

    yield _start
    for server in started:
        server.stop()
