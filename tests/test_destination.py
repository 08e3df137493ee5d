"""The output seam: a writer commits whole or aborts leaving nothing, containment, read-back, cancel."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from apify_jobs.failures import Cancelled, OutputFailure
from apify_jobs.outputs.destination import LocalFolder
from tests.helpers import leftovers, make_job


def test_nothing_is_visible_until_commit_and_commit_reports_the_digest(tmp_path: Path) -> None:
    folder = LocalFolder(str(tmp_path / "out"))
    job = make_job(tmp_path, {"name": "a", "task": "me~t"})
    with folder.open(job, "text/csv", None) as writer:
        writer.write(b"a,b\n")
        writer.write(b"1,2\n")
        assert not (tmp_path / "out" / "a.csv").exists() and len(leftovers(tmp_path)) == 1
        written = writer.commit()
    assert written.path == str(tmp_path / "out" / "a.csv") and written.bytes == 8
    assert written.key == "a.csv" and folder.sha256_of(written.key) == written.sha256 and leftovers(tmp_path) == []
    assert folder.sha256_of("../out/a.csv") is None  # a key never leads out of the folder


def test_abort_keeps_the_older_output_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    folder = LocalFolder(str(tmp_path / "out"))
    job = make_job(tmp_path, {"name": "a", "task": "me~t", "output": "a.json"})
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.json").write_bytes(b"yesterday")
    with pytest.raises(RuntimeError):
        with folder.open(job, "application/json") as writer:
            writer.write(b"half of tod")
            raise RuntimeError("a check between write and commit said no")
    assert (tmp_path / "out" / "a.json").read_bytes() == b"yesterday" and leftovers(tmp_path) == []


def test_a_link_out_of_the_folder_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "out" / "sub")
    job = make_job(tmp_path, {"name": "a", "task": "me~t", "output": "sub/a.json"})
    with pytest.raises(OutputFailure, match="leads outside the output folder"):
        LocalFolder(str(tmp_path / "out")).open(job, None)
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_a_link_at_the_output_name_is_replaced_never_written_through(tmp_path: Path, monkeypatch) -> None:
    """The folder an output lands in is resolved once (realpath's lstats, each a hand-off of the interpreter lock,
    ran for every output); the output's own name is not followed: the rename replaces a link there."""
    (tmp_path / "out").mkdir()
    (tmp_path / "elsewhere").write_bytes(b"not ours")
    os.symlink(tmp_path / "elsewhere", tmp_path / "out" / "a.json")
    folder = LocalFolder(str(tmp_path / "out"))
    resolved: list[str] = []
    realpath = os.path.realpath
    monkeypatch.setattr(os.path, "realpath", lambda path, **kw: resolved.append(path) or realpath(path, **kw))
    for name in ("a", "b", "c"):
        with folder.open(make_job(tmp_path, {"name": name, "task": "me~t", "output": f"{name}.json"}), None) as writer:
            writer.write(b"ours")
            writer.commit()
    assert (tmp_path / "elsewhere").read_bytes() == b"not ours"
    assert not (tmp_path / "out" / "a.json").is_symlink() and (tmp_path / "out" / "a.json").read_bytes() == b"ours"
    assert len(resolved) <= 2, resolved  # the output folder, and the folder the outputs land in: once each


def test_cancel_removes_what_is_being_written_and_refuses_the_commit(tmp_path: Path) -> None:
    folder = LocalFolder(str(tmp_path / "out"))
    job = make_job(tmp_path, {"name": "a", "task": "me~t"})
    writer = folder.open(job, "application/json")
    writer.write(b"{}")
    folder.cancel()
    assert leftovers(tmp_path) == []
    with pytest.raises(Cancelled):
        writer.commit()
    assert not (tmp_path / "out" / "a.json").exists()
    with pytest.raises(Cancelled):
        folder.open(job, "application/json")


def test_planned_paths_show_the_unknown_extension(tmp_path: Path) -> None:
    folder = LocalFolder("out")
    assert folder.planned(make_job(tmp_path, {"name": "a", "task": "me~t"})) == os.path.join("out", "a.*")
    assert folder.planned(make_job(tmp_path, {"name": "d", "task": "me~t", "dataset": {"format": "csv"}})) == \
        os.path.join("out", "d.csv")


def test_a_path_is_one_jobs_for_the_batch(tmp_path: Path) -> None:
    from apify_jobs.failures import OutputCollision

    folder = LocalFolder(str(tmp_path / "out"))
    x = make_job(tmp_path, {"name": "x", "task": "me~t"})
    y = make_job(tmp_path, {"name": "y", "task": "me~t", "output": "x.json"})
    with folder.open(x, "application/json") as writer:
        writer.write(b"[1]")
        writer.commit()
    with folder.open(x, "application/json") as writer:  # the same job again (a retry, an adoption): its own path
        writer.commit()
    with pytest.raises(OutputCollision, match="job 'x' of this batch writes"):
        folder.open(y, "application/json")
    assert (tmp_path / "out" / "x.json").read_bytes() == b""
