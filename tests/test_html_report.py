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


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it where it can)")
def test_a_thousand_jobs_keep_their_axis_failures_first_and_resumed_jobs_off_the_timeline(tmp_path: Path) -> None:
    from apify_jobs.record import JobError, JobResult, RunFacts, Status, WrittenOutput
    from apify_jobs.reports.report import ReportOf
    from apify_jobs.reports.writers import write_html

    def at(second: float) -> str:
        return f"2026-12-06T10:{int(second) // 60:02d}:{second % 60:06.3f}Z"

    records = []
    for i in range(1000):
        status = Status.FAILED if i % 97 == 5 else Status.SUCCEEDED
        record = JobResult(f"job{i:04d}", "me~t", "jobs.yaml", "run-sync", {}, "0" * 64, status=status, attempts=1,
                           started_at=at(i * 0.5), finished_at=at(i * 0.5 + 3), duration_ms=3000,
                           output=WrittenOutput(f"out/job{i}.json", 10, "0" * 64, "application/json", items=i),
                           run=RunFacts(f"run{i}", "SUCCEEDED", 0.001), error=JobError("run-failed", "x")
                           if status is Status.FAILED else None)
        if i % 10 == 0:  # resumed: an earlier run's times, months ago
            record.resumed, record.from_run, record.started_at, record.finished_at = True, 3, at(0), \
                "2026-09-01T00:00:00.000Z"
        records.append(record)
    page = tmp_path / "report.html"
    write_html(ReportOf(records, run=4, started_at=at(0), finished_at=at(520)), str(page))
    text = page.read_text()
    assert 'x="-' not in text and text.count('class="job-bar"') == 900  # the 100 resumed have no bar
    assert text.count('<line class="tick"') >= 4 and 'id="legend"' in text and 'id="frame"' in text
    assert "(900 sent, 100 resumed)" in text and "resumed from run 3 at 2026-09-01" in text
    assert '<td class="num">7</td><td class="num">$0.0010</td>' in text  # job0007's items and cost
    dom = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0 and dom.stdout.count('class="job-bar"') == 900
    first_bar = dom.stdout.index('class="job-bar"')
    assert 'data-job="job0005"' in dom.stdout[first_bar:first_bar + 80]  # failures first
    assert "Uncaught" not in dom.stderr
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,900",
                    f"--screenshot={shot}", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
