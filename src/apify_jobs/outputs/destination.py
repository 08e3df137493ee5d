"""Where outputs go: one `Destination` type owns the path of every output, keeps it inside the output folder,
and writes it whole or not at all.

A writer streams into a temporary file beside the target; only `commit()` fsyncs and renames it into place,
and `abort()` (or leaving the writer's `with` block without a commit) removes it. A check that must see the
whole download before it may replace an older output (the coming `expect:` block) sits between the last
`write()` and `commit()`. `cancel()` (Ctrl-C) removes every temporary file at once and makes any later
commit refuse, so an interrupt never leaves a partial file and never half-finishes one.

Writing outputs somewhere other than a local folder is a second implementation of `Destination`.
"""

from __future__ import annotations

import abc
import errno
import functools
import hashlib
import os
import queue
import re
import threading
from types import TracebackType

from apify_jobs.failures import Cancelled, OutputCollision, OutputFailure
from apify_jobs.files import (
    TEMP_SUFFIX,
    check_writable_folder,
    create_temporary,
    fsync_folder,
    pid_alive,
    remove_quietly,
    sha256_of,
)
from apify_jobs.model import Job
from apify_jobs.outputs.paths import answered_output, planned_output, stays_inside
from apify_jobs.record import WrittenOutput

REJECTED_SUFFIX = ".rejected"  # an output that failed its expectations, beside the last good one
# `.<name>.<pid>.<random>.part`: the PID tells a leftover of a dead process from a live one's download
_TEMPORARY = re.compile(r"^\..+\.(\d+)\.[A-Za-z0-9_]+\.part$")
RESERVE_FROM = 1 << 20  # below this, reserving space costs more than it can save


class OutputWriter(abc.ABC):
    """One output being written. Leaving its `with` block without `commit()` aborts it."""

    def __enter__(self) -> OutputWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.abort()

    @abc.abstractmethod
    def write(self, chunk: bytes) -> None: ...

    @abc.abstractmethod
    def commit(self, rejected: bool = False) -> WrittenOutput:
        """Make the output durable and visible, whole; after this, `abort()` does nothing. ``rejected``: it
        failed its checks, so it goes beside the target (`<output>.rejected`) and the last good one stays."""

    @abc.abstractmethod
    def abort(self) -> None:
        """Throw the partial output away; an older output stays as it was."""


class Destination(abc.ABC):
    """Where the outputs of one run go. Each output has a key, its place relative to the destination's root
    (the same wherever the tool runs from); ``shown`` is how the user finds it."""

    @abc.abstractmethod
    def planned(self, job: Job) -> str:
        """The output's place as shown to the user before the answer is known (`plan`)."""

    @abc.abstractmethod
    def shown(self, key: str) -> str:
        """Where the output with ``key`` is, for the user."""

    @abc.abstractmethod
    def key_of(self, shown: str) -> str | None:
        """The key of an output recorded by its shown place only (records from before keys), if it is here."""

    @abc.abstractmethod
    def open(self, job: Job, content_type: str | None, expected_size: int | None = None) -> OutputWriter:
        """A writer for the job's answer; raises OutputFailure when the output cannot be placed."""

    @abc.abstractmethod
    def read(self, key: str, limit: int) -> bytes:
        """An output written earlier, whole (`needs` values read it); OSError when it cannot be read, ValueError
        when it is over ``limit`` bytes."""

    @abc.abstractmethod
    def sha256_of(self, key: str) -> str | None:
        """The sha256 of an output written earlier, None when it is gone (or its key leads out)."""

    @abc.abstractmethod
    def sync(self) -> None:
        """Make every committed output durable (before a report says it exists)."""

    @abc.abstractmethod
    def cancel(self) -> None:
        """Ctrl-C: throw away every output being written; later commits refuse."""

    @abc.abstractmethod
    def check_writable(self) -> None:
        """Prove, before anything is sent, that outputs can be written (OutputFailure if not)."""

    @abc.abstractmethod
    def clean_leftovers(self, skip: str | None = None) -> tuple[int, int]:
        """Remove what killed runs left half-written; returns (how many, bytes freed)."""


def destination_for(out_dir: str) -> Destination:
    """The destination --out-dir names: `plan` and `run` both ask here. Another kind (object storage, by a
    URL's scheme, say) is chosen here, and nothing else needs to know."""
    return LocalFolder(out_dir)


# --- a local folder -----------------------------------------------------------------------------

class LocalFolder(Destination):
    """Outputs as files below one folder: temporary file, fsync, rename; the folder fsynced once at `sync()`."""

    def __init__(self, out_dir: str):
        self.out_dir = out_dir
        self._lock = threading.Lock()
        self._temporary: set[str] = set()
        self._renamed_in: set[str] = set()
        self._claims: dict[str, str] = {}  # an output's key -> the job that writes it
        self._folders: dict[str, str] = {}  # a folder outputs land in -> its real path
        self.cancelled = False

    def planned(self, job: Job) -> str:
        return os.path.join(self.out_dir, planned_output(job))

    def shown(self, key: str) -> str:
        return os.path.join(self.out_dir, key)

    def key_of(self, shown: str) -> str | None:
        key = os.path.relpath(shown, self.out_dir)
        return key if stays_inside(key) else None

    def open(self, job: Job, content_type: str | None, expected_size: int | None = None) -> OutputWriter:
        relative = answered_output(job, content_type)
        with self._lock:  # a path is the batch's for one job: the first to open it
            holder = self._claims.setdefault(os.path.normcase(os.path.normpath(relative)), job.name)
        if holder != job.name:
            raise OutputCollision(f"the answer would be written to {self.shown(relative)}, which job '{holder}' "
                                  "of this batch writes; nothing was written (give one of them another `output`)")
        return _FileWriter(self, relative, self._inside(relative, writing=True), content_type, expected_size)

    def read(self, key: str, limit: int) -> bytes:
        try:
            path = self._inside(key)
        except OutputFailure as refused:
            raise OSError(errno.EACCES, str(refused)) from None
        with open(path, "rb") as stream:
            data = stream.read(limit + 1)
        if len(data) > limit:
            raise ValueError(f"{os.path.getsize(path):,} bytes")
        return data

    def sha256_of(self, key: str) -> str | None:
        # A lexical check, not _inside's realpath (0.8 s for the 20,000 outputs of a --resume): reading a sha256
        # writes nothing, and a key that climbs out is refused.
        return sha256_of(os.path.join(self.out_dir, key)) if stays_inside(key) else None

    def sync(self) -> None:
        """Each output folder is fsynced once, before the report is written (not once per file: with 50 jobs
        at once that queued them all on the file system's journal)."""
        with self._lock:
            folders, self._renamed_in = self._renamed_in, set()
        for folder in folders:
            fsync_folder(folder)

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            for path in self._temporary:
                remove_quietly(path)
            self._temporary.clear()

    def check_writable(self) -> None:
        """Prove, before anything is sent, that a file can be created in the folder (OutputFailure if not)."""
        check_writable_folder(self.out_dir)

    def clean_leftovers(self, skip: str | None = None) -> tuple[int, int]:
        """Remove temporary files that killed runs left behind (only ours, only of dead processes); returns
        (files, bytes freed, counting space that was reserved)."""
        files = freed = 0
        for root, folders, names in os.walk(self.out_dir):
            if skip:
                folders[:] = [f for f in folders if os.path.join(root, f) != skip]
            for name in names:
                match = _TEMPORARY.match(name) if name.endswith(TEMP_SUFFIX) else None
                if not match or pid_alive(int(match.group(1))):
                    continue
                path = os.path.join(root, name)
                try:
                    size = os.stat(path).st_blocks * 512
                    os.unlink(path)
                except OSError:
                    continue
                files, freed = files + 1, freed + size
        return files, freed

    def _inside(self, relative: str, writing: bool = False) -> str:
        """``relative`` inside the folder, refusing any way out: `..`, an absolute path, or a link that points out.
        For writing, only the folder the file lands in is resolved, once per folder (each lstat of `realpath` is a
        hand-off of the interpreter lock: with 50 jobs at once, ~2 ms of each job's time between its answer and
        its output): the file itself is put in place by a rename, which replaces a link at its name instead of
        following it."""
        root = _real_folder(self.out_dir)
        joined = os.path.join(root, relative)
        folder, name = os.path.split(joined)
        if writing and name not in ("", ".", ".."):
            real = self._folders.get(folder)
            if real is None:
                real = self._folders[folder] = os.path.realpath(folder)
            resolved = os.path.join(real, name)
        else:
            resolved = os.path.realpath(joined)
        if os.path.commonpath([root, resolved]) != root:
            raise OutputFailure(f"output path {relative!r} leads outside the output folder {self.out_dir!r}; "
                                "nothing was written")
        return resolved

    # Called by the writers.
    def _track(self, path: str) -> None:
        with self._lock:
            if self.cancelled:
                raise Cancelled("cancelled before the output was written")
            self._temporary.add(path)

    def _rename(self, temporary: str, target: str) -> None:
        """The rename happens outside the lock (holding it made 50 parallel jobs rename one at a time); a
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

    def _forget(self, path: str) -> None:
        with self._lock:
            self._temporary.discard(path)
        remove_quietly(path)


class _FileWriter(OutputWriter):
    def __init__(self, folder: LocalFolder, key: str, target: str, content_type: str | None,
                 expected_size: int | None):
        self._folder = folder
        self._key = key
        self._shown = folder.shown(key)
        self._target = target
        self._content_type = content_type
        self._digest = _Digest()
        self._size = 0
        self._done = False
        parent = os.path.dirname(target)
        try:
            handle, self._temporary = create_temporary(parent, os.path.basename(target))
        except OSError as exc:
            raise OutputFailure(f"cannot write into {parent}: {exc.strerror}") from None
        # The descriptor itself, unbuffered: the answer arrives in large chunks already (a buffered file cost an
        # lseek and an isatty ioctl per output, io.FileIO an fstat: each a hand-off of the interpreter lock).
        self._handle: int | None = handle
        try:
            folder._track(self._temporary)
            if expected_size and expected_size >= RESERVE_FROM:
                _reserve(handle, expected_size)
        except OSError as exc:
            self._fail(exc)
        except BaseException:
            self.abort()
            raise

    def write(self, chunk: bytes) -> None:
        try:
            view = memoryview(chunk)
            while view:
                view = view[os.write(self._descriptor(), view):]
        except OSError as exc:
            self._fail(exc)
        self._digest.update(chunk)
        self._size += len(chunk)

    def commit(self, rejected: bool = False) -> WrittenOutput:
        suffix = REJECTED_SUFFIX if rejected else ""
        try:
            os.fsync(self._descriptor())
            self._close()
            self._folder._rename(self._temporary, self._target + suffix)
        except OSError as exc:
            self._fail(exc)
        except BaseException:
            self.abort()
            raise
        self._done = True
        return WrittenOutput(self._shown + suffix, self._size, self._digest.hexdigest(), self._content_type,
                             self._key + suffix)

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self._close()
        self._digest.hexdigest()  # ends its thread
        self._folder._forget(self._temporary)

    def _descriptor(self) -> int:
        if self._handle is None:
            raise OSError(errno.EBADF, "the output's file is closed")
        return self._handle

    def _close(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            os.close(handle)

    def _fail(self, exc: OSError) -> None:
        self.abort()
        raise OutputFailure(f"cannot write {self._target}: {exc.strerror or exc}") from None





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


@functools.lru_cache(maxsize=64)
def _real_folder(folder: str) -> str:
    return os.path.realpath(folder)


def _reserve(handle: int, size: int) -> None:
    try:
        os.posix_fallocate(handle, 0, size)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise
        # Filesystems without fallocate (some network ones) simply grow the file as it is written.
