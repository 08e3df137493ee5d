"""The HTML report in a real browser: headless Chromium (Debian's `chromium`) renders it and takes a
screenshot; the page has no console errors, one timeline bar per job, and fetches nothing."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import job_file

pytestmark = pytest.mark.slow  # pytest -m "not slow" leaves it out of the inner loop

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0"]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it where it can)")
def test_the_html_report_renders_with_one_bar_per_job(cli, emulator, tmp_path: Path) -> None:
    emulator({"default": {"latency": 0.2}, "tasks": {"me~bad": {"respond": "run-failed"}}})
    path = job_file(tmp_path, "concurrency: 2\njobs:\n" + "".join(f"  - {{name: job{i}, task: me~t}}\n" for i in range(3))
                    + "  - {name: broken, task: me~bad}\n")
    out = tmp_path / "out"
    code, _, _ = cli("run", path, "--out-dir", out, "--html", out / "report.html", "--no-run-facts")
    page = out / "report.html"
    text = page.read_text()
    assert code == 1 and "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "<script" not in text and "@import" not in text  # self-contained: nothing to fetch, nothing to run

    profile = tmp_path / "profile"
    dom = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count('class="job-bar"') == 4 and 'data-job="broken"' in dom.stdout
    assert "Uncaught" not in dom.stderr and ":CONSOLE(" not in dom.stderr
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--window-size=1200,900", f"--screenshot={shot}",
                    page.as_uri()], capture_output=True, text=True, timeout=120)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
