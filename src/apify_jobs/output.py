"""Output files appear whole or not at all: streamed to a temporary file beside the target, fsynced, renamed.

A `Guard` is shared by all writers of one run: cancelling it removes every temporary file at once and
makes any later rename refuse, so Ctrl-C never leaves a partial file and never half-finishes one.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import queue
import tempfile
import threading
from dataclasses import dataclass
from typing import Iterable

from apify_jobs.failures import Cancelled, OutputFailure

_EXTENSIONS = {
    "application/json": ".json", "application/jsonl": ".jsonl", "application/x-ndjson": ".jsonl",
    "text/csv": ".csv", "text/html": ".html", "application/xml": ".xml", "text/xml": ".xml",
    "application/rss+xml": ".rss", "text/plain": ".txt",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
    "application/pdf": ".pdf", "image/png": ".png", "image/jpeg": ".jpg",
}
TEMP_SUFFIX = ".part"
RESERVE_FROM = 1 << 20  # below this, reserving space costs more than it can save


def extension_for(content_type: str | None) -> str:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return _EXTENSIONS.get(media, ".json" if media.endswith("+json") else ".bin")


@dataclass(frozen=True)
class WrittenOutput:
    path: str
    bytes: int
    sha256: str
    content_type: str | None


class Guard:
    """What every writer of a run checks before it renames, and what Ctrl-C cancels."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._temporary: set[str] = set()
        self._renamed_in: set[str] = set()
        self.cancelled = False

    def sync(self) -> None:
        """Make the renames durable: each output folder is fsynced once, before the report is written (not
        once per file: with 50 jobs at once that queued them all on the file system's journal)."""
        with self._lock:
            folders, self._renamed_in = self._renamed_in, set()
        for folder in folders:
            _fsync_folder(folder)

    def track(self, path: str) -> None:
        with self._lock:
            if self.cancelled:
                raise Cancelled("cancelled before the output was written")
            self._temporary.add(path)

    def finish(self, temporary: str, target: str) -> None:
        """Rename the complete temporary file into place, unless the run was cancelled first.

        The rename happens outside the lock (holding it made 50 parallel jobs rename one at a time); a
        cancel racing with it either removes the temporary file first (the rename fails: nothing written)
        or comes after (the output is complete, and stays)."""
        if self.cancelled:
            raise Cancelled("cancelled while the output was downloading; nothing was written")
        try:
            os.replace(temporary, target)
        except FileNotFoundError:
            if self.cancelled:
                raise Cancelled("cancelled while the output was downloading; nothing was written") from None
            raise
        with self._lock:
            self._temporary.discard(temporary)
            self._renamed_in.add(os.path.dirname(target))

    def forget(self, path: str) -> None:
        with self._lock:
            self._temporary.discard(path)
        _remove(path)

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            for path in self._temporary:
                _remove(path)
            self._temporary.clear()


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def safe_target(out_dir: str, relative: str) -> str:
    """``relative`` inside ``out_dir``, refusing any way out: `..`, an absolute path, or a link that points out."""
    root = _real_folder(out_dir)
    target = os.path.join(root, relative)
    resolved = os.path.realpath(target)
    if os.path.commonpath([root, resolved]) != root:
        raise OutputFailure(f"output path {relative!r} leads outside the output folder {out_dir!r}; nothing was written")
    return resolved


@functools.lru_cache(maxsize=64)
def _real_folder(folder: str) -> str:
    return os.path.realpath(folder)


def write_whole(target: str, chunks: Iterable[bytes], content_type: str | None, guard: Guard,
                expected_size: int | None = None) -> WrittenOutput:
    """Stream ``chunks`` into ``target`` so that it appears complete or not at all; an older file stays intact.

    With ``expected_size`` the space is reserved first: a full disk fails before the download, not after."""
    folder = os.path.dirname(target)
    try:
        os.makedirs(folder, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(target)}.", suffix=TEMP_SUFFIX)
    except OSError as exc:
        raise OutputFailure(f"cannot write into {folder}: {exc.strerror}") from None
    digest = _Digest()
    size = 0
    try:
        guard.track(temporary)
        if expected_size and expected_size >= RESERVE_FROM:
            _reserve(handle, expected_size)
        with os.fdopen(handle, "wb") as stream:
            for chunk in chunks:
                stream.write(chunk)
                digest.update(chunk)
                size += len(chunk)
            stream.flush()
            os.fsync(stream.fileno())
        guard.finish(temporary, target)
    except OSError as exc:
        guard.forget(temporary)
        raise OutputFailure(f"cannot write {target}: {exc.strerror or exc}") from None
    except BaseException:
        guard.forget(temporary)
        raise
    finally:
        sha256 = digest.hexdigest()
    return WrittenOutput(target, size, sha256, content_type)


class _Digest:
    """sha256 of a stream. Past 16 MiB it hashes on a thread of its own (hashlib releases the GIL), so that
    hashing a large output overlaps its download instead of adding to it (measured: -0.3 s on 512 MiB)."""

    INLINE_BYTES = 16 << 20

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._seen = 0
        self._queue: queue.Queue[bytes | None] | None = None
        self._thread: threading.Thread | None = None

    def update(self, chunk: bytes) -> None:
        self._seen += len(chunk)
        if self._queue is None and self._seen > self.INLINE_BYTES:
            self._queue = queue.Queue(maxsize=4)  # bounds memory: at most 4 chunks wait
            self._thread = threading.Thread(target=self._drain, name="sha256", daemon=True)
            self._thread.start()
        if self._queue is None:
            self._hash.update(chunk)
        else:
            self._queue.put(chunk)

    def _drain(self) -> None:
        assert self._queue is not None
        while (chunk := self._queue.get()) is not None:
            self._hash.update(chunk)

    def hexdigest(self) -> str:
        if self._queue is not None and self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._queue = None
        return self._hash.hexdigest()


def _reserve(handle: int, size: int) -> None:
    try:
        os.posix_fallocate(handle, 0, size)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise
        # Filesystems without fallocate (some network ones) simply grow the file as it is written.


def write_bytes(target: str, data: bytes) -> None:
    """A small file (the report) written the same whole-or-nothing way, also after a cancel."""
    guard = Guard()
    write_whole(target, [data], None, guard)
    guard.sync()


def _fsync_folder(folder: str) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def sha256_of(path: str) -> str | None:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()
