"""A non-editable install works: the JSON Schema travels inside the wheel, not only in schema/."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import REPO


def test_wheel_carries_the_schema(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy, so that the build leaves nothing in the work tree
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", ".venv", "out", "build", "*.egg-info",
                                                               "__pycache__", "apify-jobs-bench-*"))
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                             "-w", str(tmp_path), str(source)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    [wheel] = tmp_path.glob("apify_jobs-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "apify_jobs/jobs.schema.json" in names and "apify_jobs/main.py" in names
    packaged = zipfile.ZipFile(wheel).read("apify_jobs/jobs.schema.json")
    assert packaged == (REPO / "schema" / "jobs.schema.json").read_bytes()
    assert any(name.endswith("entry_points.txt") for name in names)
