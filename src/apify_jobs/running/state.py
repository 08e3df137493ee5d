"""The durable memory of an output folder: every invocation of the tool and every job result, in SQLite
(`<out-dir>/.apify-jobs/state.sqlite3`, WAL mode), so that a `kill -9`, a partial run or a second process
cannot wipe what is known.

A job's result is committed when the job ends, after its output was fsynced and renamed into place: after
a kill at any instant the state holds every job that had finished and nothing that had not. Several
processes (shards, separate invocations) record into one state safely: SQLite's locking, a busy timeout
and one short transaction per job. A job run by a live process holds a lease on its name; a dead
process's lease is taken over.

The state stores each job's record (`apify_jobs.record`, with its version; the token is masked before
anything is written), and for `--resume` a request key: the sha256 of the request as sent (endpoint, task,
query, input sha256).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from apify_jobs import __version__
from apify_jobs.errors import ApifyJobsError
from apify_jobs.files import pid_alive
from apify_jobs.model import now
from apify_jobs.outputs.paths import STATE_FOLDER
from apify_jobs.record import RECORD_VERSION, JobResult, RecordError, from_json, to_json
from apify_jobs.redaction import Redactor

STATE_FILE = "state.sqlite3"
SCHEMA_VERSION = 2  # 2: results.record_version and results.output_key
AHEAD_FILE = "attempts.sqlite3"  # attempts written ahead: a file (and a write lock) of their own
BUSY_TIMEOUT_MS = 30_000
FOREIGN_LEASE_SECONDS = 24 * 3600  # a lease held from another machine is trusted this long


class StateError(ApifyJobsError):
    """The state cannot be opened or read (damaged, or written by a newer apify-jobs), or can no longer be
    written (a full disk): one line, exit 2, never a silent fresh start."""

    fix = ("Free disk space, or upgrade apify-jobs to the version that wrote the state; to start afresh, move the "
           "state folder (`<out-dir>/.apify-jobs/`) aside: without it, `--resume` knows of no earlier run.")


def state_folder(out_dir: str, state_dir: str | None = None) -> str:
    """Where the state lives: --state-dir, else `<out-dir>/.apify-jobs`."""
    return state_dir or os.path.join(out_dir, STATE_FOLDER)


def existing_state(out_dir: str, state_dir: str | None, redactor: Redactor) -> State | None:
    """The folder's state, if anything has run into it (reading never creates one)."""
    try:
        return State(out_dir, create=False, redactor=redactor, state_dir=state_dir)
    except StateError:
        if os.path.exists(state_path(out_dir, state_dir)):
            raise
        return None


def state_path(out_dir: str, state_dir: str | None = None) -> str:
    return os.path.join(state_folder(out_dir, state_dir), STATE_FILE)


def request_key(result: JobResult) -> str:
    """The identity of the request as sent: `--resume` skips a job only when this is unchanged."""
    target = ["actor", result.task] if result.actor else result.task
    text = json.dumps([target, result.endpoint, sorted(result.query.items()), result.input_sha256])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# Attempts in one INSERT: at most 64 (10 parameters a row, under SQLite's oldest limit of 999), and only in
# powers of two: each statement's length is prepared once and kept in the connection's cache, and a cache of
# every length up to 99 held ~11 MB of compiled statements in a 20,000-job run.
ROWS_A_STATEMENT = 64


def _placeholders(columns: int, rows: int) -> str:
    """`(?, ?), (?, ?)`: the parameters of ``rows`` rows in one multi-row statement."""
    return ", ".join(["(" + ", ".join("?" * columns) + ")"] * rows)


def _parts(items: list[Any]) -> list[list[Any]]:
    """``items`` in parts of ROWS_A_STATEMENT, then of the powers of two that add up to the rest (13: 8, 4, 1)."""
    parts, start = [], 0
    size = ROWS_A_STATEMENT
    while start < len(items):
        while size > len(items) - start:
            size //= 2
        parts.append(items[start:start + size])
        start += size
    return parts


_AHEAD_SCHEMA = """
CREATE TABLE IF NOT EXISTS attempts (
    id TEXT PRIMARY KEY,
    job TEXT NOT NULL,
    request_key TEXT NOT NULL,
    invocation INTEGER NOT NULL,
    number INTEGER NOT NULL,
    task TEXT NOT NULL,
    actor INTEGER NOT NULL,
    sent_at REAL NOT NULL,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    ended INTEGER NOT NULL DEFAULT 0,
    run_id TEXT
);
CREATE INDEX IF NOT EXISTS open_attempts ON attempts(ended, job);
"""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS invocations (
    id INTEGER PRIMARY KEY,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    interrupted INTEGER NOT NULL DEFAULT 0,
    version TEXT NOT NULL,
    command TEXT NOT NULL,
    selection TEXT NOT NULL,
    files TEXT NOT NULL,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    extra TEXT
);
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY,
    invocation INTEGER NOT NULL REFERENCES invocations(id),
    seq INTEGER NOT NULL,
    job TEXT NOT NULL,
    request_key TEXT NOT NULL,
    status TEXT NOT NULL,
    error_type TEXT,
    resumed INTEGER NOT NULL DEFAULT 0,
    output_path TEXT,
    output_sha256 TEXT,
    finished_at TEXT,
    entry TEXT NOT NULL,
    record_version INTEGER NOT NULL DEFAULT 1,
    output_key TEXT
);
CREATE INDEX IF NOT EXISTS results_by_job ON results(job, request_key, status, id);
CREATE INDEX IF NOT EXISTS results_by_invocation ON results(invocation, job);
CREATE TABLE IF NOT EXISTS leases (
    job TEXT PRIMARY KEY,
    pid INTEGER NOT NULL,
    pid_start TEXT,
    host TEXT NOT NULL,
    invocation INTEGER NOT NULL,
    since REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Invocation:
    id: int
    started_at: str
    finished_at: str | None
    interrupted: bool
    version: str
    command: list[str]
    selection: dict[str, Any]
    files: list[dict[str, str]]
    extra: dict[str, Any]


@dataclass(frozen=True)
class StoredAttempt:
    """An attempt written ahead of its POST, whose job never recorded an end: its run may be going on, billed."""

    id: str
    job: str
    request_key: str
    number: int
    task: str
    actor: bool
    sent_at: float  # this machine's wall clock (time.time()) when it was written, just before the POST
    run_id: str | None  # once known (the runs Ctrl-C listed as still going)


@dataclass(frozen=True)
class Earlier:
    """An earlier succeeded result of a job, for `--resume`: its record as stored, and the columns that say
    where its output is (read without decoding the record: 20,000 of them are a --resume)."""

    text: str
    finished_at: str | None
    output_path: str | None
    output_sha256: str | None
    output_key: str | None  # None: a record from before keys (its path then says where)
    invocation: int | None = None  # the run of the tool that recorded it


def _connect(path: str, prepare: Callable[[sqlite3.Connection], object]) -> sqlite3.Connection:
    """A connection to one of the state's files, in WAL mode, then ``prepare``d (tables created if new).
    Another process opening the same new file at once makes some of these steps answer "locked" without
    waiting (switching to WAL does), so the whole opening is tried again until the busy timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
        try:
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.execute("PRAGMA journal_mode = WAL")
            # A crash of the process loses nothing committed; a power cut may lose the last commits, which
            # --resume then re-checks against the outputs' sha256 (it never trusts the state alone).
            db.execute("PRAGMA synchronous = NORMAL")
            prepare(db)
            return db
        except sqlite3.OperationalError as exc:
            db.close()
            busy = getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
            if not busy or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot), to tell it from a later process with its PID."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stream:
            return stream.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int, started: str | None) -> bool:
    """``pid`` is alive and is the same process that took the lease (not a later one given its number)."""
    return pid_alive(pid) and (started is None or _process_start(pid) in (None, started))


class State:
    """One output folder's state, shared by the threads of this process (one connection, one lock)."""

    def __init__(self, out_dir: str, create: bool = True, redactor: Redactor | None = None,
                 state_dir: str | None = None):
        self.path = state_path(out_dir, state_dir)
        self._redact = redactor or Redactor()  # what is stored is masked (the invocation's secrets)
        if os.path.islink(self.path) or (os.path.lexists(self.path) and not os.path.isfile(self.path)):
            # A link (dangling or not) would put the state, or write through it, somewhere else.
            raise StateError(f"the state {self.path} is not a regular file (a link, or something else): the state "
                             "is the tool's own; move it aside")
        if not create and not os.path.exists(self.path):
            raise StateError(f"no state in {out_dir} ({self.path} does not exist): nothing has run into it")
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            self._db = _connect(self.path, self._prepare)  # tables created on the first run into the folder
        except sqlite3.DatabaseError as exc:
            raise StateError(f"the state {self.path} cannot be read ({exc}); move it aside to start afresh "
                             "(--resume then re-runs everything)") from None
        except OSError as exc:
            raise StateError(f"cannot open the state {self.path}: {exc.strerror or exc}") from None
        self._lock = threading.RLock()
        # Group commit: one committer thread takes whatever rows wait and commits them together. Attempts have
        # a committer, a connection and a file of their own: a POST waits for its attempt, never for results
        # that commit meanwhile (with 256 jobs at once a wave of starts waited ~60 ms behind a wave of ends).
        self._results = _GroupCommit(self._commit, "state-commit")
        ahead = os.path.join(os.path.dirname(self.path), AHEAD_FILE)
        try:
            if os.path.islink(ahead):
                raise StateError(f"{ahead} is a link: the state is the tool's own; move it aside")
            self._ahead_db = _connect(ahead, lambda db: db.executescript(_AHEAD_SCHEMA))
        except (sqlite3.DatabaseError, OSError) as exc:
            self._db.close()
            raise StateError(f"cannot open {ahead}: {exc}") from None
        self._ahead_lock = threading.Lock()
        self._ahead = _GroupCommit(self._commit_attempts, "attempts-commit")
        self._host = socket.gethostname()
        self._pid = os.getpid()
        self._pid_start = _process_start(self._pid)
        self.invocation: int | None = None
        self._held_elsewhere: dict[str, str] = {}  # job -> who runs it, from take_leases
        self._foreign_open = False  # another process's attempts were open when this one took its leases

    def _prepare(self, db: sqlite3.Connection) -> None:
        db.execute("BEGIN IMMEDIATE")
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StateError(f"the state {self.path} was written by a newer apify-jobs (state version "
                                 f"{version}, this one reads up to {SCHEMA_VERSION}); upgrade apify-jobs")
            if version == 0:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
            elif version == 1:  # before records carried their version: every one of them is version 1
                db.execute("ALTER TABLE results ADD COLUMN record_version INTEGER NOT NULL DEFAULT 1")
                db.execute("ALTER TABLE results ADD COLUMN output_key TEXT")
            if version < SCHEMA_VERSION:
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("SELECT count(*) FROM results").fetchone()
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._results.close()
        self._ahead.close()
        with self._lock:
            self._db.close()
        with self._ahead_lock:
            self._ahead_db.close()

    class _Tx:
        def __init__(self, db: sqlite3.Connection):
            self._db = db

        def __enter__(self) -> None:
            self._db.execute("BEGIN IMMEDIATE")

        def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
            self._db.execute("COMMIT" if kind is None else "ROLLBACK")

    def _transaction(self) -> State._Tx:
        return State._Tx(self._db)

    def _write(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        try:
            with self._lock, self._transaction():
                return self._db.execute(sql, params)
        except sqlite3.DatabaseError as exc:
            raise StateError(f"cannot write the state {self.path}: {exc}") from None

    # --- invocations ------------------------------------------------------------------------------
    def begin(self, selection: dict[str, Any], files: list[dict[str, str]]) -> int:
        cursor = self._write(
            "INSERT INTO invocations (started_at, version, command, selection, files, pid, host) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (now(), __version__, json.dumps(self._redact.values(sys.argv)), json.dumps(selection), json.dumps(files),
             self._pid, self._host))
        self.invocation = int(cursor.lastrowid or 0)
        return self.invocation

    def finish(self, interrupted: bool, extra: dict[str, Any] | None = None) -> None:
        self._write("UPDATE invocations SET finished_at = ?, interrupted = ?, extra = ? WHERE id = ?",
                    (now(), int(interrupted), json.dumps(self._redact.values(extra or {})), self.invocation))
        with self._lock:
            self._write("DELETE FROM leases WHERE pid = ? AND host = ?", (self._pid, self._host))
            ended = [row[0] for row in self._db.execute(
                f"SELECT DISTINCT job FROM results WHERE invocation = ? AND {_SETTLES}", (self.invocation,))]
        # The attempts of jobs that ended are settled: kept no longer (only a killed or interrupted run's stay).
        self._write_ahead_many("DELETE FROM attempts WHERE invocation = ? AND job = ?",
                               [(self.invocation, job) for job in ended])

    def invocation_of(self, which: str) -> Invocation:
        """``last``, or an invocation's number."""
        with self._lock:
            if which == "last":
                row = self._db.execute("SELECT * FROM invocations ORDER BY id DESC LIMIT 1").fetchone()
            else:
                try:
                    number = int(which)
                except ValueError:
                    raise StateError(f"--run takes last, all or a run number, not {which!r}") from None
                row = self._db.execute("SELECT * FROM invocations WHERE id = ?", (number,)).fetchone()
        if row is None:
            raise StateError(f"no run {which} in {self.path}")
        return _invocation(row)

    # --- leases -----------------------------------------------------------------------------------
    def take_leases(self, jobs: list[str]) -> None:
        """Take every job this run may start, in one transaction (one per job cost ~1 ms each under load):
        those another live process holds are remembered, and `lease` reports them."""
        with self._lock:
            try:
                with self._transaction():
                    held = {row[0]: row[1:] for row in self._db.execute(
                        "SELECT job, pid, pid_start, host, since FROM leases")}
                    mine = []
                    for job in jobs:
                        holder = held.get(job)
                        if holder is not None and (holder[0], holder[2]) != (self._pid, self._host):
                            pid, started, host, since = holder
                            if host == self._host and _alive(pid, started):
                                self._held_elsewhere[job] = f"running in process {pid}"
                                continue
                            if host != self._host and time.time() - since < FOREIGN_LEASE_SECONDS:
                                self._held_elsewhere[job] = f"running in process {pid} on {host}"
                                continue
                        mine.append((job, self._pid, self._pid_start, self._host, self.invocation or 0, time.time()))
                    self._db.executemany("INSERT OR REPLACE INTO leases VALUES (?, ?, ?, ?, ?, ?)", mine)
                    # Whether any job this process took has attempts another process left open: when none
                    # has (the usual case), no job looks for them (a query a job, on the hot path).
                    self._foreign_open = self._foreign_open or self._has_foreign_open()
            except sqlite3.DatabaseError as exc:
                raise StateError(f"cannot write the state {self.path}: {exc}") from None

    def lease(self, job: str) -> str | None:
        """None if this process holds ``job`` (see take_leases), else who runs it ("running in process N")."""
        return self._held_elsewhere.get(job)

    # --- results ----------------------------------------------------------------------------------
    def record(self, seq: int, result: JobResult) -> None:
        """Commit ``result`` (its output is in place already) and release the job's lease, and return only once
        that is committed. Results that end meanwhile in other threads share one transaction (group commit,
        by the committer thread): one transaction per job cost ~1.7 ms a job at concurrency 64."""
        self.record_all([(seq, result)])

    def record_all(self, decided: list[tuple[int, JobResult]]) -> None:
        """record() for many results at once, in one transaction (the jobs a `--resume` skips)."""
        for start in range(0, len(decided), 1000):  # a bounded transaction, and bounded memory
            self._record_rows([self._row(seq, result) for seq, result in decided[start:start + 1000]])

    # --- attempts, written ahead ------------------------------------------------------------------------
    def write_ahead(self, attempt_id: str, job: str, key: str, number: int, task: str, actor: bool) -> None:
        """Commit an attempt before its POST is sent, and return once it is committed: after a kill at any
        instant, every request that may have started a run is in the state. Attempts that start together
        share one transaction (the committer's group commit, as results do)."""
        self._ahead.submit([(attempt_id, job, key, self.invocation or 0, number, task, int(actor), time.time(),
                             self._pid, self._host)])

    def earlier_run(self, job: str, key: str) -> JobResult | None:
        """The job's latest success for this request, decoded (its run and output), whatever its output is now."""
        earlier = self.latest_success(job, key)
        return None if earlier is None else self._readable(RECORD_VERSION, earlier.text)

    def _has_foreign_open(self) -> bool:
        return bool(self._open_attempts("AND NOT (pid = ? AND host = ?)", (self._pid, self._host)))

    def open_attempts(self, job: str, key: str) -> list[StoredAttempt]:
        """The job's attempts for this request that another process wrote ahead and never ended (it was
        killed, or its batch was interrupted while they were in flight), oldest first. Known once this
        process took its leases (`take_leases`)."""
        if not self._foreign_open:
            return []
        return self._open_attempts("AND job = ? AND request_key = ? AND NOT (pid = ? AND host = ?)",
                          (job, key, self._pid, self._host))

    def in_flight(self) -> list[StoredAttempt]:
        """Every attempt still open: what `apify-jobs abort` aborts and `plan --resume` shows."""
        return self._open_attempts("", ())

    def _open_attempts(self, where: str, params: tuple[Any, ...]) -> list[StoredAttempt]:
        """Attempts not aborted whose job has not ended since (a result other than cancelled, in their run or a
        later one, settles every run its attempts started); oldest first."""
        with self._ahead_lock:
            rows = self._ahead_db.execute(
                "SELECT id, job, request_key, number, task, actor, sent_at, run_id, invocation FROM attempts "
                f"WHERE ended = 0 {where} ORDER BY sent_at", params).fetchall()
        if not rows:
            return []
        jobs = sorted({r[1] for r in rows})
        with self._lock:
            ended = dict(self._db.execute(
                f"SELECT job, max(invocation) FROM results WHERE {_SETTLES} AND job IN "
                f"({','.join('?' * len(jobs))}) GROUP BY job", jobs).fetchall())
        return [StoredAttempt(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6], r[7]) for r in rows
                if ended.get(r[1], -1) < r[8]]

    def note_runs(self, runs: dict[str, str]) -> None:
        """The runs attempts started, once known (attempt ID -> run ID)."""
        if runs:
            self._write_ahead_many("UPDATE attempts SET run_id = ? WHERE id = ?", [(run, a) for a, run in runs.items()])

    def end_attempts(self, ids: list[str]) -> None:
        """These attempts' runs are settled (aborted): nothing will adopt them."""
        if ids:
            self._write_ahead_many("UPDATE attempts SET ended = 1 WHERE id = ?", [(a,) for a in ids])

    def _write_ahead_many(self, sql: str, params: list[tuple[Any, ...]]) -> None:
        with self._ahead_lock:
            try:
                with State._Tx(self._ahead_db):
                    self._ahead_db.executemany(sql, params)
            except sqlite3.DatabaseError as exc:
                raise StateError(f"cannot write the state {self.path}: {exc}") from None

    def _commit_attempts(self, rows: list[tuple[Any, ...]]) -> None:
        """One statement, committed on its own: BEGIN, INSERT and COMMIT were three hand-offs of the interpreter
        lock (the sqlite3 module lets it go around each), ~2 ms each of the time before a POST with 50 jobs at
        once. A group that takes several statements (13 rows: 8, 4 and 1) is one transaction."""
        def insert(part: list[tuple[Any, ...]]) -> None:
            self._ahead_db.execute("INSERT OR IGNORE INTO attempts (id, job, request_key, invocation, number, task, "
                                   f"actor, sent_at, pid, host) VALUES {_placeholders(10, len(part))}",
                                   [value for row in part for value in row])

        parts = _parts(rows)
        with self._ahead_lock:
            try:
                if len(parts) == 1:
                    insert(parts[0])
                    return
                with State._Tx(self._ahead_db):
                    for part in parts:
                        insert(part)
            except sqlite3.DatabaseError as exc:
                raise StateError(f"cannot write the state {self.path}: {exc}") from None

    def _record_rows(self, rows: list[tuple[Any, ...]]) -> None:
        self._results.submit(rows)

    def _row(self, seq: int, result: JobResult) -> tuple[Any, ...]:
        if result.previous_json is not None:  # resumed: its earlier record, already marked resumed (no decoding)
            output, text = result.output, result.previous_json
        else:
            output, text = result.output, to_json(result, self._redact.values)  # masked, then serialized
        return (self.invocation, seq, result.name, request_key(result), result.status.value,
                result.error.type if result.error else None, int(result.resumed),
                output.path if output else None, output.sha256 if output else None, result.finished_at,
                text, RECORD_VERSION, output.key if output else None)

    def _commit(self, rows: list[tuple[Any, ...]]) -> None:
        with self._lock:
            try:
                with self._transaction():
                    self._db.executemany(
                        "INSERT INTO results (invocation, seq, job, request_key, status, error_type, resumed, "
                        "output_path, output_sha256, finished_at, entry, record_version, output_key) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
                    self._db.executemany("DELETE FROM leases WHERE job = ? AND pid = ? AND host = ?",
                                         [(row[2], self._pid, self._host) for row in rows])
            except sqlite3.DatabaseError as exc:
                raise StateError(f"cannot write the state {self.path}: {exc}") from None

    def update(self, results: Iterable[JobResult]) -> None:
        """Rewrite this invocation's entries of ``results`` (run facts arrive after the jobs ended)."""
        with self._lock:
            try:
                with self._transaction():
                    self._db.executemany(
                        "UPDATE results SET entry = ?, record_version = ? WHERE invocation = ? AND job = ? "
                        "AND resumed = 0", ((to_json(r, self._redact.values), RECORD_VERSION,
                                             self.invocation, r.name)
                                         for r in results))
            except sqlite3.DatabaseError as exc:
                raise StateError(f"cannot write the state {self.path}: {exc}") from None

    def latest_success(self, job: str, key: str) -> Earlier | None:
        """The job's latest success for this request, unless an output failed its expectations since (the
        last good output stays, but the job is not done: it runs again)."""
        with self._lock:
            row = self._db.execute(
                "SELECT entry, finished_at, id, record_version, output_path, output_sha256, output_key, invocation "
                "FROM results "
                "WHERE job = ? AND request_key = ? AND status = 'succeeded' ORDER BY id DESC LIMIT 1",
                (job, key)).fetchone()
            rejected = row is not None and self._db.execute(
                "SELECT 1 FROM results WHERE job = ? AND request_key = ? AND error_type = 'expectation-failed' "
                "AND id > ? LIMIT 1", (job, key, row[2])).fetchone() is not None
        if row is None or rejected:
            return None
        if row[3] > RECORD_VERSION:
            self._readable(row[3], row[0])  # refused: written by a newer apify-jobs
        return Earlier(row[0], row[1], row[4], row[5], row[6], row[7])

    def latest_by_job(self) -> dict[str, tuple[str, str | None]]:
        """Each job's latest result: (its status, the request key of the job's latest success, if any)."""
        with self._lock:
            statuses = self._db.execute("SELECT job, status FROM results WHERE id IN "
                                        "(SELECT MAX(id) FROM results GROUP BY job)").fetchall()
            keys = dict(self._db.execute("SELECT job, request_key FROM results WHERE id IN "
                                         "(SELECT MAX(id) FROM results WHERE status = 'succeeded' GROUP BY job)"))
        return {job: (status, keys.get(job)) for job, status in statuses}

    def everything(self) -> tuple[list[Invocation], list[StoredResult]]:
        """Every run and every result, oldest first (what `report --merge` copies)."""
        with self._lock:
            runs = [_invocation(row) for row in self._db.execute("SELECT * FROM invocations ORDER BY id")]
            rows = self._db.execute("SELECT invocation, seq, job, request_key, status, error_type, resumed, entry, "
                                    "record_version FROM results ORDER BY id").fetchall()
        return runs, [StoredResult(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), self._readable(r[8], r[7]))
                      for r in rows]

    def _readable(self, version: int, text: str) -> JobResult:
        """A stored record, or one clear line naming the state (a damaged or newer record is never guessed at)."""
        try:
            return from_json(text, version)
        except RecordError as exc:
            raise StateError(f"the state {self.path} holds {exc}") from None

    def adopt(self, run: Invocation, results: list[StoredResult]) -> int:
        """Copy another folder's run and its results into this state, as a run of its own; returns its number."""
        with self._lock:
            try:
                with self._transaction():
                    cursor = self._db.execute(
                        "INSERT INTO invocations (started_at, finished_at, interrupted, version, command, selection, "
                        "files, pid, host, extra) VALUES (?, ?, ?, ?, ?, ?, ?, 0, '', ?)",
                        (run.started_at, run.finished_at, int(run.interrupted), run.version, json.dumps(run.command),
                         json.dumps(run.selection), json.dumps(run.files), json.dumps(run.extra)))
                    number = int(cursor.lastrowid or 0)
                    self._db.executemany(
                        "INSERT INTO results (invocation, seq, job, request_key, status, error_type, resumed, "
                        "output_path, output_sha256, finished_at, entry, record_version, output_key) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [(number, r.seq, r.job, r.request_key, r.status, r.error_type, int(r.resumed),
                          r.record.output.path if r.record.output else None,
                          r.record.output.sha256 if r.record.output else None,
                          r.record.finished_at, to_json(r.record), RECORD_VERSION,
                          r.record.output.key if r.record.output else None) for r in results])
            except sqlite3.DatabaseError as exc:
                raise StateError(f"cannot write the state {self.path}: {exc}") from None
        return number

    def entries(self, which: str, keep: Callable[[str, str], bool] | None = None
                ) -> tuple[Invocation | None, StoredEntries]:
        """The report entries of one invocation (``last`` or a number), in the order it selected them; or with
        ``all``, each job's latest entry over every invocation; ``keep(job, status)`` selects among them. Read a
        batch at a time whenever iterated (the state must stay open meanwhile): a report of 20,000 jobs never
        holds 20,000 entries."""
        invocation = None if which == "all" else self.invocation_of(which)
        with self._lock:
            if invocation is None:
                rows = self._db.execute("SELECT id, job, status FROM results WHERE id IN "
                                        "(SELECT max(id) FROM results GROUP BY job) ORDER BY job").fetchall()
            else:
                rows = self._db.execute("SELECT id, job, status FROM results WHERE invocation = ? ORDER BY seq, id",
                                        (invocation.id,)).fetchall()
        return invocation, StoredEntries(self, [number for number, job, status in rows
                                                if keep is None or keep(job, status)])

    def _texts_by_id(self, ids: list[int]) -> dict[int, tuple[str, int]]:
        with self._lock:
            marks = ",".join("?" * len(ids))
            rows = self._db.execute(f"SELECT id, entry, record_version FROM results WHERE id IN ({marks})",
                                    ids).fetchall()
        return {number: (text, version) for number, text, version in rows}


class StoredEntries:
    """Records in the state, decoded one batch at a time, as often as they are iterated."""

    BATCH = 500

    def __init__(self, state: State, ids: list[int]):
        self._state = state
        self._ids = ids

    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self) -> Iterator[JobResult]:
        for text, version in self._texts():
            yield self._state._readable(version, text)

    def as_json(self) -> Iterator[str]:
        """Each record in its dict form as JSON, as stored (masked when it was written): what report.json
        holds of it, without decoding it (a record round-trips: tests/test_record.py)."""
        for text, version in self._texts():
            if version > RECORD_VERSION:
                self._state._readable(version, text)  # refused: written by a newer apify-jobs
            yield text

    def _texts(self) -> Iterator[tuple[str, int]]:
        for start in range(0, len(self._ids), self.BATCH):
            batch = self._ids[start:start + self.BATCH]
            texts = self._state._texts_by_id(batch)
            for number in batch:
                yield texts[number]


class _Pending:
    """Rows waiting for a committer, and what became of them: ``wake`` is set once they are committed, or once
    their thread is to lead the next commit."""

    __slots__ = ("rows", "wake", "leads", "committed", "failure")

    def __init__(self, rows: list[tuple[Any, ...]]):
        self.rows = rows
        self.wake = threading.Event()
        self.leads = False
        self.committed = False
        self.failure: StateError | None = None


# The results that settle a job's attempts (nothing will adopt their runs any more). Not a cancelled job's
# (its runs may go on), nor a recovery-failed one's: its run exists, or may, and only its lookups failed, so
# the next run looks for it again, by identity, instead of paying for another (`apify-jobs abort` settles it).
_SETTLES = "status != 'cancelled' AND coalesce(error_type, '') != 'recovery-failed'"


class _GroupCommit:
    """Group commit without a committer thread: the first thread to arrive leads, commits whatever waits (its
    own rows and those that arrived meanwhile) in one transaction and wakes those threads; if more rows arrived
    during that commit, their first thread leads the next one. A thread commits at most once for others and
    returns as soon as its own rows are in: a leader that went on while rows kept arriving held its own job
    back (a write-ahead leader's POST waited for the attempts of every job starting after it: 5 ms median,
    15 ms at p90, 50 jobs at once). A thread alone commits its own rows with no hand-off; 256 at once share
    a few transactions. ``submit`` returns once its rows are committed."""

    def __init__(self, commit: Callable[[list[tuple[Any, ...]]], None], name: str):
        self._commit = commit
        self._name = name
        self._lock = threading.Lock()
        self._waiting: list[_Pending] = []
        self._leading = False

    def submit(self, rows: list[tuple[Any, ...]]) -> None:
        pending = _Pending(rows)
        with self._lock:
            self._waiting.append(pending)
            if not self._leading:
                self._leading = pending.leads = True
        if not pending.leads:
            pending.wake.wait()
        if not pending.committed:  # woken to lead: its rows are in the batch it commits
            self._lead()
        if pending.failure is not None:
            raise pending.failure

    def _lead(self) -> None:
        with self._lock:
            batch, self._waiting = self._waiting, []
        failure: StateError | None = None
        try:
            self._commit([row for pending in batch for row in pending.rows])
        except StateError as exc:
            failure = exc
        except BaseException as exc:  # never leave followers waiting: they fail with it
            failure = StateError(f"the state could not be written: {type(exc).__name__}: {exc}")
        for pending in batch:
            pending.failure, pending.committed = failure, True
            pending.wake.set()
        with self._lock:
            if self._waiting:  # arrived during the commit: the first of them leads the next one
                successor = self._waiting[0]
                successor.leads = True
                successor.wake.set()
            else:
                self._leading = False

    def close(self) -> None:
        """Nothing runs between submits: every submit returned once its rows were committed."""


@dataclass(frozen=True)
class StoredResult:
    """One result row, as another folder's state is merged in."""

    invocation: int
    seq: int
    job: str
    request_key: str
    status: str
    error_type: str | None
    resumed: bool
    record: JobResult


def _invocation(row: tuple[Any, ...]) -> Invocation:
    (number, started, finished, interrupted, version, command, selection, files, _pid, _host, extra) = row
    return Invocation(number, started, finished, bool(interrupted), version, json.loads(command),
                      json.loads(selection), json.loads(files), json.loads(extra or "{}"))
