"""Reports tell this run: after `--resume`, resumed jobs are marked in the summary, report.json, JUnit, HTML
and Markdown, with the run they come from; their times are not this run's; the totals say what was sent."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree

from tests.helpers import job_file, jobs_by_name, read_report


def test_a_resumed_run_is_told_as_such_in_every_format(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"default": {"latency": 0.05}})
    out = tmp_path / "out"
    text = "jobs:\n  - {name: a, task: me~a}\n  - {name: b, task: me~b, input: {v: 1}}\n"
    assert cli("run", job_file(tmp_path, text), "--out-dir", out)[0] == 0
    summary = tmp_path / "summary.md"
    code, stdout, _ = cli("run", job_file(tmp_path, text.replace("v: 1", "v: 2")), "--out-dir", out, "--resume",
                          "--junit", out / "junit.xml", "--html", out / "report.html", "--markdown", summary)
    assert code == 0 and server.state.per_task == {"me~a": 1, "me~b": 2}
    row = next(line for line in stdout.splitlines() if line.startswith("a "))
    assert "(resumed from run 1 at " in row and row.split()[2] == "-"  # no tries of this run
    assert "this run: 1 sent, 1 resumed" in stdout
    report = read_report(out)
    assert (report["totals"]["sent"], report["totals"]["resumed"]) == (1, 1)
    assert jobs_by_name(report)["a"]["resumed"] is True and jobs_by_name(report)["a"]["fromRun"] == 1
    case = next(c for c in ElementTree.parse(out / "junit.xml").iter("testcase") if c.get("name") == "a")
    properties = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert properties["provenance"] == "resumed" and case.get("time") == "0.000"
    markdown = summary.read_text()
    assert "| a | succeeded (resumed) | - |" in markdown and "(1 sent, 1 resumed)" in markdown
    page = (out / "report.html").read_text()
    assert page.count('class="job-bar"') == 1 and 'data-job="b"' in page and "at once (most 1)" in page
    assert "resumed from run 1 at" in page
    json.dumps(report)  # the report stays JSON
