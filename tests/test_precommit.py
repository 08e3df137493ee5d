"""The pre-commit hook, run by pre-commit itself (`try-repo`) on a repository holding a good and a bad job file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow  # pytest -m "not slow" leaves it out of the inner loop


@pytest.mark.skipif(shutil.which("git") is None, reason="pre-commit needs git")
def test_the_hook_passes_a_good_job_file_and_stops_a_bad_one(tmp_path: Path) -> None:
    repo = tmp_path / "team-repo"
    (repo / "jobs" / "inputs").mkdir(parents=True)
    (repo / "jobs" / "good.yaml").write_text("version: 1\njobs:\n  - {name: a, task: me~t}\n")
    (repo / "jobs" / "bad.yaml").write_text("version: 1\njobs:\n  - {name: a, task: me~t, options: {memory: 1000}}\n")
    (repo / "jobs" / "inputs" / "some-input.yaml").write_text("not: a job file\n")  # excluded: an input
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "cache"), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True, env=env)
    subprocess.run(["git", "add", "."], cwd=repo, check=True, env=env)
    pre_commit = [sys.executable, "-m", "pre_commit", "try-repo", str(REPO), "apify-jobs-validate", "--files"]

    good = subprocess.run([*pre_commit, "jobs/good.yaml", "jobs/inputs/some-input.yaml"], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=600)
    assert good.returncode == 0, good.stdout + good.stderr
    bad = subprocess.run([*pre_commit, "jobs/good.yaml", "jobs/bad.yaml"], cwd=repo, env=env, capture_output=True,
                         text=True, timeout=600)
    assert bad.returncode == 1
    assert "jobs/bad.yaml:3:" in bad.stdout and "jobs[0] (a).options.memory: 1000 is not one of 128" in bad.stdout
