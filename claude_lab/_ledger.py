"""The ledger stage: the never-pay-twice record, kept in one SQLite journal file.

Jobs, their batches and rows, every request sent and every result received: what makes
runs resumable and the result cache (keyed by custom_id, the content hash of the exact
request) possible. It never stores the API key.
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import os
import secrets
import sqlite3
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Collection, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import orjson
import pandas as pd
import zstandard

from claude_lab._errors import ConfigError, InputError, JobNotFoundError, JournalError

__all__ = [
    "INACTIVE_STATUSES",
    "MIGRATIONS",
    "ROW_COUNT_KINDS",
    "SCHEMA_VERSION",
    "BatchRecord",
    "JobRecord",
    "JobStatus",
    "Journal",
    "SubmissionRecord",
    "default_home",
    "open_journal",
]

# Each step is a list of statements (or functions of the connection, for data that
# SQL alone cannot move); step i brings user_version from i to i + 1.
# Append only: never edit a step that has shipped.
MIGRATIONS: list[list[str | Callable[[sqlite3.Connection], None]]] = [
    [
        """CREATE TABLE jobs (
            job_id TEXT PRIMARY KEY,
            fingerprint TEXT NOT NULL,
            endpoint TEXT NOT NULL,
            model TEXT,
            templates TEXT NOT NULL,
            params TEXT NOT NULL,
            name TEXT,
            row_count INTEGER NOT NULL,
            request_count INTEGER NOT NULL,
            package_version TEXT,
            status TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            meta TEXT NOT NULL DEFAULT '{}'
        )""",
        """CREATE TABLE batches (
            batch_id TEXT PRIMARY KEY,
            job_id TEXT NOT NULL REFERENCES jobs(job_id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            request_count INTEGER NOT NULL,
            processing_status TEXT NOT NULL,
            request_counts TEXT NOT NULL DEFAULT '{}',
            created_at TEXT,
            expires_at TEXT,
            ended_at TEXT,
            results_fetched INTEGER NOT NULL DEFAULT 0,
            updated_at TEXT NOT NULL
        )""",
        """CREATE TABLE submissions (
            id INTEGER PRIMARY KEY,
            job_id TEXT NOT NULL REFERENCES jobs(job_id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            request_count INTEGER NOT NULL,
            body_bytes INTEGER NOT NULL,
            started_at TEXT NOT NULL,
            batch_id TEXT
        )""",
        """CREATE TABLE job_rows (
            job_id TEXT NOT NULL REFERENCES jobs(job_id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            index_label TEXT NOT NULL,
            custom_id TEXT,
            PRIMARY KEY (job_id, position)
        )""",
        """CREATE TABLE requests (
            custom_id TEXT PRIMARY KEY,
            params BLOB NOT NULL,
            created_at TEXT NOT NULL
        )""",
        """CREATE TABLE job_requests (
            job_id TEXT NOT NULL REFERENCES jobs(job_id) ON DELETE CASCADE,
            custom_id TEXT NOT NULL REFERENCES requests(custom_id),
            batch_id TEXT,
            PRIMARY KEY (job_id, custom_id)
        )""",
        # No foreign keys here on purpose: the result cache outlives the job that paid
        # for a result, and a results file must be storable even if it is odd.
        """CREATE TABLE results (
            custom_id TEXT NOT NULL,
            batch_id TEXT NOT NULL,
            status TEXT NOT NULL,
            line BLOB NOT NULL,
            fetched_at TEXT NOT NULL,
            PRIMARY KEY (custom_id, batch_id)
        )""",
    ],
    # v2: the lookups a re-run and `attach` make on every call.
    [
        "CREATE INDEX jobs_fingerprint ON jobs(fingerprint, endpoint)",
        "CREATE INDEX batches_job ON batches(job_id, position)",
        "CREATE INDEX submissions_job ON submissions(job_id)",
        "CREATE INDEX job_requests_batch ON job_requests(batch_id)",
    ],
    # v3: a submission names its owner (so a live process's create in flight is never
    # "recovered" by another) and the requests it carries (so an adopted batch is
    # known to carry them, and they are never submitted again).
    [
        "ALTER TABLE submissions ADD COLUMN owner TEXT",
        "ALTER TABLE job_requests ADD COLUMN submission_id INTEGER",
        "CREATE INDEX job_requests_submission ON job_requests(submission_id)",
    ],
    # v4 "bulk storage": rows, requests and result lines are stored in bulk, as
    # compressed blobs (one per job, per submission, per stored chunk of a results
    # file), with one compact index row per result for the cache. A 100k-row run
    # writes a few blobs and one index, not four tables of 100k rows each.
    [
        """CREATE TABLE row_sets (
            job_id TEXT PRIMARY KEY REFERENCES jobs(job_id) ON DELETE CASCADE,
            labels BLOB NOT NULL,
            custom_ids BLOB NOT NULL
        )""",
        """CREATE TABLE request_sets (
            id INTEGER PRIMARY KEY,
            job_id TEXT NOT NULL REFERENCES jobs(job_id) ON DELETE CASCADE,
            request_count INTEGER NOT NULL,
            custom_ids BLOB NOT NULL,
            params BLOB NOT NULL,
            created_at TEXT NOT NULL
        )""",
        "CREATE INDEX request_sets_job ON request_sets(job_id)",
        "ALTER TABLE submissions ADD COLUMN custom_ids BLOB",
        # No foreign keys, as before: the result cache outlives the job that paid for
        # it (the endpoint is kept here so it still scopes the cache), and an odd
        # results file must be storable.
        """CREATE TABLE result_files (
            id INTEGER PRIMARY KEY,
            batch_id TEXT NOT NULL,
            endpoint TEXT,
            line_count INTEGER NOT NULL,
            lines BLOB NOT NULL,
            fetched_at TEXT NOT NULL
        )""",
        "CREATE INDEX result_files_batch ON result_files(batch_id)",
        """CREATE TABLE result_index (
            custom_id TEXT NOT NULL,
            file_id INTEGER NOT NULL,
            ord INTEGER NOT NULL,
            succeeded INTEGER NOT NULL,
            PRIMARY KEY (custom_id, file_id)
        ) WITHOUT ROWID""",
        "CREATE INDEX result_index_file ON result_index(file_id)",
        lambda conn: _migrate_to_bulk(conn),
        "DROP TABLE results",
        "DROP TABLE job_requests",
        "DROP TABLE requests",
        "DROP TABLE job_rows",
    ],
    # v5: the input frame's columns, so a job's full table can be rebuilt and
    # exported offline (`claude-lab results`), without the notebook that ran it.
    [
        """CREATE TABLE input_sets (
            job_id TEXT PRIMARY KEY REFERENCES jobs(job_id) ON DELETE CASCADE,
            frame BLOB NOT NULL
        )""",
    ],
    # v6: evidence for lost creates. A submission whose create response was lost is
    # marked (lost_at) so any worker may settle it; a batch adopted on size alone is
    # provisional until its results' custom_ids prove it is the job's; a batch they
    # proved is someone else's is remembered per job and never considered again.
    [
        "ALTER TABLE submissions ADD COLUMN lost_at TEXT",
        "ALTER TABLE batches ADD COLUMN provisional INTEGER NOT NULL DEFAULT 0",
        """CREATE TABLE foreign_batches (
            job_id TEXT NOT NULL REFERENCES jobs(job_id) ON DELETE CASCADE,
            batch_id TEXT NOT NULL,
            noted_at TEXT NOT NULL,
            PRIMARY KEY (job_id, batch_id)
        )""",
    ],
    # v7: the result index's second index (by file) cost as much room and insert time
    # as the index itself, for prune alone, which can scan.
    ["DROP INDEX result_index_file"],
]
SCHEMA_VERSION = len(MIGRATIONS)

#: The row counts of ``Journal.row_counts`` and ``jobs()``, in display order.
ROW_COUNT_KINDS = (
    "processing",
    "succeeded",
    "errored",
    "canceled",
    "expired",
    "missing",
    "skipped",
    "cached",
)


class JobStatus(str, enum.Enum):
    """A job's status, in memory (``BatchJob.status``) and in the journal (same strings)."""

    CREATED = "created"  # recorded, nothing sent yet
    PREPARING = "preparing"
    SUBMITTING = "submitting"
    IN_PROGRESS = "in_progress"
    CANCELING = "canceling"
    FETCHING = "fetching"
    ENDED = "ended"
    CANCELED = "canceled"
    FAILED = "failed"  # stopped before anything was sent
    INTERRUPTED = "interrupted"  # stopped with batches at the API: a re-run re-attaches
    ABANDONED = "abandoned"

    @property
    def final(self) -> bool:
        """A status a running worker never leaves (only a retry starts a new round)."""
        return self in _FINAL

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


_FINAL = frozenset({JobStatus.ENDED, JobStatus.CANCELED, JobStatus.FAILED, JobStatus.INTERRUPTED})

# Jobs in these states are never re-attached to by a re-run.
INACTIVE_STATUSES = ("failed", "abandoned")
# Jobs in these states have nothing running at the API: prune may delete them.
_SETTLED_STATUSES = ("ended", "canceled", "failed", "abandoned")

_BUSY_TIMEOUT_S = 30.0
_CHUNK = 500  # ids per IN (...) query; well under SQLite's bound-variable limit
_FIND_CHUNK = 5000  # ids per JSON array looked up in the result index


@dataclass(frozen=True)
class JobRecord:
    job_id: str
    fingerprint: str
    endpoint: str
    model: str | None
    templates: Any
    params: dict[str, Any]
    name: str | None
    row_count: int
    request_count: int
    package_version: str | None
    status: str
    created_at: str
    updated_at: str
    meta: dict[str, Any]


@dataclass(frozen=True)
class BatchRecord:
    batch_id: str
    job_id: str
    position: int
    request_count: int
    processing_status: str
    request_counts: dict[str, int]
    created_at: str | None
    expires_at: str | None
    ended_at: str | None
    results_fetched: bool
    updated_at: str
    provisional: bool = False  # adopted on size alone: its custom_ids are not checked yet


@dataclass(frozen=True)
class SubmissionRecord:
    id: int
    job_id: str
    position: int
    request_count: int
    body_bytes: int
    started_at: str
    batch_id: str | None
    owner: str | None = None
    lost_at: str | None = None  # the create's response was lost: settled on evidence


def default_home() -> Path:
    """``$CLAUDE_LAB_HOME``, or ``~/.claude_lab``."""
    return Path(os.environ.get("CLAUDE_LAB_HOME") or "~/.claude_lab").expanduser()


_open_lock = threading.Lock()
_open: dict[Path, Journal] = {}


def open_journal(path: str | os.PathLike[str] | None = None) -> Journal:
    """The process-wide journal for ``path`` (default: ``default_home()/journal.sqlite3``)."""
    resolved = _resolve(path)
    with _open_lock:
        journal = _open.get(resolved)
        if journal is None or journal.closed:
            journal = _open[resolved] = Journal(resolved)
        return journal


def _resolve(path: str | os.PathLike[str] | None) -> Path:
    if path is None:
        return (default_home() / "journal.sqlite3").resolve()
    return Path(path).expanduser().resolve()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _ts(value: str | datetime | None) -> str | None:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    return value


@dataclass(frozen=True)
class Found:
    """Where the best stored result line of each request found is, as columns sorted by
    storage (result file, then line), so each file is read once and in order.

    ``pos`` is the request's position in the custom_ids asked for.
    """

    pos: np.ndarray
    file_id: np.ndarray
    ord: np.ndarray
    succeeded: np.ndarray

    @classmethod
    def empty(cls) -> Found:
        none = np.zeros(0, dtype=np.int64)
        return cls(none, none, none, np.zeros(0, dtype=bool))

    def __len__(self) -> int:
        return len(self.pos)

    def take(self, mask: np.ndarray) -> Found:
        return Found(self.pos[mask], self.file_id[mask], self.ord[mask], self.succeeded[mask])


def _clean_endpoint(endpoint: str) -> str:
    # A base URL may carry credentials (user:pass@host) or tokens in its query; neither
    # belongs on disk, and dropping them keeps find_job's key stable.
    parts = urlsplit(str(endpoint).strip())
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    return str(obj)


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj, default=_json_default, option=orjson.OPT_SERIALIZE_NUMPY).decode()


@contextlib.contextmanager
def _umask(mask: int) -> Iterator[None]:
    # The umask is process-wide, so this is held only around file creation.
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


class Journal:
    """One SQLite journal file. Safe to share between threads; many processes may open it."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = _resolve(path)
        # One connection guarded by a lock, rather than one per thread: SQLite serialises
        # writers anyway, and a single connection can be closed deterministically (a
        # thread-local one on a dead worker thread would leak its file handle).
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        try:
            with _umask(0o077):
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                # SQLite gives -wal/-shm the mode of the database file, so creating it
                # 0o600 here keeps all three owner-only.
                os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            self._conn = sqlite3.connect(
                self.path,
                timeout=_BUSY_TIMEOUT_S,
                isolation_level=None,  # we issue BEGIN IMMEDIATE / COMMIT ourselves
                check_same_thread=False,
                # A cached statement keeps its last bound values: the blobs of a run's
                # requests, ids and results (11 MB at 100k rows) would stay alive in
                # SQLite until the connection closes. Preparing afresh costs microseconds.
                cached_statements=0,
            )
            self._conn.row_factory = sqlite3.Row
            self._setup()
        except BaseException as exc:
            self.close()
            if isinstance(exc, PermissionError) and self.path.exists():
                raise journal_error(self.path, exc) from exc
            if isinstance(exc, OSError):
                raise JournalError(
                    f"cannot create the claude_lab journal at {self.path}: {exc}. "
                    "Set CLAUDE_LAB_HOME to a writable folder (cache=False does not avoid "
                    "the journal: every batch is recorded there so nothing is paid twice)."
                ) from exc
            if isinstance(exc, sqlite3.DatabaseError) and _unusable(exc):
                raise journal_error(self.path, exc) from exc
            raise

    # -- connection -------------------------------------------------------------------

    def _setup(self) -> None:
        conn = self._db
        conn.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        # A database that is not ours (no schema version, yet tables) is left untouched:
        # switching it to WAL or adding our tables would change someone else's file.
        # One statement, so one snapshot: read apart, another process's first migration
        # could commit in between and our own fresh journal would look foreign.
        version, tables = conn.execute(
            "SELECT (SELECT user_version FROM pragma_user_version),"
            " (SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%')"
        ).fetchone()
        if not version and tables:
            raise JournalError(
                f"The file at {self.path} is an SQLite database of something else, not a "
                "claude_lab journal; it was left untouched (claude_lab never deletes or "
                "overwrites a file it finds there). Move it aside, or set "
                "CLAUDE_LAB_HOME to another folder. Note that cache=False does not avoid "
                "the journal; only another CLAUDE_LAB_HOME does."
            )
        # Switching to WAL needs a moment of exclusive access, and the busy handler does
        # not always cover it when two processes open a fresh file together.
        deadline = time.monotonic() + _BUSY_TIMEOUT_S
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        # A checkpointed WAL keeps its size on disk; bound what it leaves behind.
        conn.execute("PRAGMA journal_size_limit = 1048576")
        self._migrate()

    def _migrate(self) -> None:
        conn = self._db
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"the journal at {self.path} has schema v{version}, newer than this "
                f"claude_lab understands (v{SCHEMA_VERSION}). Upgrade claude_lab, or set "
                "CLAUDE_LAB_HOME to another folder."
            )
        while version < SCHEMA_VERSION:
            with self._write() as conn:
                # Re-read under the write lock: another process may have migrated meanwhile.
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version < SCHEMA_VERSION:
                    for statement in MIGRATIONS[version]:
                        if callable(statement):
                            statement(conn)
                        else:
                            conn.execute(statement)
                    version += 1
                    conn.execute(f"PRAGMA user_version = {version}")

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ConfigError(f"the journal at {self.path} is closed; open it again.")
        return self._conn

    @property
    def closed(self) -> bool:
        return self._conn is None

    @property
    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r})"

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Turn a journal that turns out unusable mid-run (damaged, read-only) into one
        JournalError that says what to do, instead of a bare sqlite3 error."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            if _unusable(exc):
                raise journal_error(self.path, exc) from exc
            raise

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        # BEGIN IMMEDIATE takes the write lock up front (waiting up to busy_timeout), so
        # two processes never both read-then-write and fail with SQLITE_BUSY mid-way.
        with self._lock, self._guard():
            conn = self._db
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._lock, self._guard():
            return self._db.execute(sql, args).fetchall()

    # -- jobs -------------------------------------------------------------------------

    def create_job(self, **job: Any) -> str:
        """Record a job, and with ``rows``/``requests`` its rows and requests, atomically:
        a job that exists without its requests would not know what it already sent.
        Takes the keywords of ``_insert_job``."""
        with self._write() as conn:
            return self._insert_job(conn, **job)

    @staticmethod
    def _insert_job(
        conn: sqlite3.Connection,
        *,
        fingerprint: str,
        endpoint: str,
        model: str | None,
        templates: Any,
        params: dict[str, Any],
        name: str | None,
        row_count: int,
        request_count: int,
        package_version: str | None,
        meta: dict[str, Any] | None = None,
        status: str = "created",
        rows: tuple[Sequence[Hashable], Sequence[str | None]] | None = None,
        requests: tuple[Sequence[str], Sequence[bytes]] | None = None,
    ) -> str:
        job_id = "job_" + secrets.token_hex(6)
        now = _now()
        conn.execute(
            "INSERT INTO jobs (job_id, fingerprint, endpoint, model, templates, params,"
            " name, row_count, request_count, package_version, status, created_at,"
            " updated_at, meta) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                job_id,
                fingerprint,
                _clean_endpoint(endpoint),
                model,
                _dumps(templates),
                _dumps(params),
                name,
                int(row_count),
                int(request_count),
                package_version,
                status,
                now,
                now,
                _dumps(meta or {}),
            ),
        )
        if rows is not None:
            _insert_rows(conn, job_id, *rows)
        if requests is not None:
            _insert_requests(conn, job_id, *requests)
        return job_id

    def find_job(self, fingerprint: str, endpoint: str) -> JobRecord | None:
        """The newest job for exactly these requests at this endpoint that can be resumed."""
        rows = self._read(
            f"SELECT * FROM jobs WHERE fingerprint = ? AND endpoint = ?"
            f" AND status NOT IN ({', '.join('?' * len(INACTIVE_STATUSES))})"
            " ORDER BY created_at DESC, rowid DESC LIMIT 1",
            (fingerprint, _clean_endpoint(endpoint), *INACTIVE_STATUSES),
        )
        return _job(rows[0]) if rows else None

    def get_job(self, job_or_batch_id: str) -> JobRecord:
        """A job by its id, a unique prefix of its id, or the id of any of its batches."""
        key = str(job_or_batch_id).strip()
        rows = self._read("SELECT * FROM jobs WHERE job_id = ?", (key,))
        if not rows:
            rows = self._read(
                "SELECT jobs.* FROM jobs JOIN batches USING (job_id) WHERE batch_id = ?", (key,)
            )
        if not rows and key:
            rows = self._read(
                "SELECT * FROM jobs WHERE substr(job_id, 1, ?) = ? ORDER BY created_at",
                (len(key), key),
            )
        if len(rows) == 1:
            return _job(rows[0])
        if rows:
            ids = ", ".join(row["job_id"] for row in rows[:5])
            raise JobNotFoundError(
                f"{key!r} matches {len(rows)} jobs ({ids}); give more of the job id. "
                "claude_lab.jobs() (or `claude-lab jobs`) lists them."
            )
        raise JobNotFoundError(
            f"no job or batch {key!r} in the journal at {self.path}. "
            "claude_lab.jobs() (or `claude-lab jobs`) lists the recorded jobs; "
            "check CLAUDE_LAB_HOME if you expected it here."
        )

    def set_job_status(self, job_id: str, status: str) -> None:
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE jobs SET status = ?, updated_at = ? WHERE job_id = ?",
                (str(status), _now(), job_id),
            )
            if cur.rowcount == 0:
                raise JobNotFoundError(
                    f"no job {job_id!r} in the journal at {self.path}. "
                    "claude_lab.jobs() (or `claude-lab jobs`) lists the recorded jobs."
                )

    def row_counts(self, job_id: str | None = None) -> dict[str, dict[str, int]]:
        """Per job, its rows by final status, as a re-built result table would have them.

        A row's status is that of the best result known for its request at the job's
        endpoint (a success from any job, so after a retry or from the cache; else the
        newest line); ``cached`` counts the rows whose result came from another job's
        batch. Rows with no result yet are ``processing`` while the job is active and
        ``missing`` once it ended; ``skipped`` rows were never sent.
        """
        sql = "SELECT j.job_id, j.status, j.endpoint, r.custom_ids FROM jobs j"
        sql += " LEFT JOIN row_sets r USING (job_id)"
        jobs = self._read(sql + " WHERE j.job_id = ?", (job_id,)) if job_id else self._read(sql)
        owner = dict(self._read("SELECT batch_id, job_id FROM batches"))
        out: dict[str, dict[str, int]] = {}
        for jid, job_status, endpoint, ids_blob in jobs:
            sums = out[jid] = dict.fromkeys(ROW_COUNT_KINDS, 0)
            per_id = Counter(_unpack_ids(ids_blob))
            sums["skipped"] = per_id.pop("", 0)
            ids = list(per_id)
            found = self.find_results(ids, endpoint)
            status = dict.fromkeys(found.pos[found.succeeded].tolist(), "succeeded")
            failed = found.take(~found.succeeded)
            for _, pos, lines in self.read_results(failed):  # only failures need reading
                status.update(zip(pos.tolist(), map(_line_status, lines)))
            batch_of = self._batch_ids(found.file_id)
            foreign = {
                p
                for p, f in zip(found.pos.tolist(), found.file_id.tolist())
                if f in batch_of and owner.get(batch_of[f]) != jid  # (f: pruned meanwhile)
            }
            pending = "missing" if job_status in ("ended", "canceled") else "processing"
            for p, count in enumerate(per_id.values()):
                sums[status.get(p, pending)] += count
                if p in foreign:
                    sums["cached"] += count
        return out

    def _batch_ids(self, file_ids: np.ndarray) -> dict[int, str]:
        """The batch each of these result files came from."""
        wanted = np.unique(file_ids).tolist()
        out: dict[int, str] = {}
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            out.update(
                self._read(
                    "SELECT id, batch_id FROM result_files"
                    f" WHERE id IN ({', '.join('?' * len(chunk))})",
                    chunk,
                )
            )
        return out

    def list_jobs(self) -> pd.DataFrame:
        """One row per job, newest first, with its rows counted by final status (see
        ``row_counts``: after retries, cache hits included)."""
        kinds = ROW_COUNT_KINDS
        with self._lock, self._guard():
            jobs = self._db.execute(
                "SELECT job_id, name, status, model, row_count, request_count, created_at,"
                " updated_at FROM jobs ORDER BY created_at DESC, rowid DESC"
            ).fetchall()
            batches = self._db.execute("SELECT job_id FROM batches").fetchall()
        n_batches: dict[str, int] = {}
        for row in batches:
            n_batches[row[0]] = n_batches.get(row[0], 0) + 1
        totals = self.row_counts()
        records = []
        for row in jobs:
            sums = totals.get(row["job_id"], dict.fromkeys(kinds, 0))
            records.append(
                {
                    "job_id": row["job_id"],
                    "name": row["name"],
                    "status": row["status"],
                    "model": row["model"],
                    "rows": row["row_count"],
                    "requests": row["request_count"],
                    "batches": n_batches.get(row["job_id"], 0),
                    **sums,
                    "created_at": row["created_at"],
                    "updated_at": row["updated_at"],
                }
            )
        columns = ["job_id", "name", "status", "model", "rows", "requests", "batches"]
        columns += [*kinds, "created_at", "updated_at"]
        frame = pd.DataFrame.from_records(records, columns=columns)
        for col in ("created_at", "updated_at"):
            frame[col] = pd.to_datetime(frame[col], utc=True, format="ISO8601")
        for col in ("rows", "requests", "batches", *kinds):
            frame[col] = frame[col].astype("int64")
        return frame

    # -- rows and requests ------------------------------------------------------------

    def add_rows(
        self, job_id: str, index_labels: Iterable[Hashable], row_custom_ids: Iterable[str | None]
    ) -> None:
        """Record each input row's index label and custom_id (None = skipped), in order."""
        with self._write() as conn:
            _insert_rows(conn, job_id, list(index_labels), list(row_custom_ids))

    def get_rows(self, job_id: str) -> tuple[list[Hashable], list[str | None]]:
        rows = self._read("SELECT labels, custom_ids FROM row_sets WHERE job_id = ?", (job_id,))
        if not rows:
            return [], []
        labels = orjson.loads(_inflate(rows[0][0]))
        # JSON has no tuples; index labels are hashable, so a list can only have been a tuple.
        labels = [tuple(x) if isinstance(x, list) else x for x in labels]
        return labels, [c or None for c in _unpack_ids(rows[0][1])]

    def add_input(self, job_id: str, frame: pd.DataFrame) -> None:
        """Record the input frame's columns (values and dtypes; compressed), in row order."""
        blob = _encode_frame(frame)
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO input_sets (job_id, frame) VALUES (?, ?)", (job_id, blob)
            )

    def get_input(self, job_id: str) -> pd.DataFrame | None:
        """The input columns recorded with ``add_input`` (a RangeIndex), or None."""
        rows = self._read("SELECT frame FROM input_sets WHERE job_id = ?", (job_id,))
        return _decode_frame(rows[0][0]) if rows else None

    def add_requests(
        self, job_id: str, custom_ids: Sequence[str], params_bytes: Sequence[bytes]
    ) -> None:
        """Record the job's unique requests (one compressed blob for the lot)."""
        with self._write() as conn:
            _insert_requests(conn, job_id, custom_ids, params_bytes)

    def get_request_params(
        self, custom_ids: Iterable[str], job_id: str | None = None
    ) -> dict[str, bytes]:
        """The params recorded for these custom_ids (by ``job_id`` if given, which is
        much faster than searching every job); the first recorded copy wins."""
        wanted = set(custom_ids)
        sql = "SELECT custom_ids, params FROM request_sets"
        args: tuple[Any, ...] = ()
        if job_id is not None:
            sql, args = sql + " WHERE job_id = ?", (job_id,)
        found: dict[str, bytes] = {}
        for ids_blob, params_blob in self._read(sql + " ORDER BY id", args):
            ids = _unpack_ids(ids_blob)
            if wanted.isdisjoint(ids):
                continue
            for cid, params in zip(ids, _unpack(params_blob)):
                if cid in wanted and cid not in found:
                    found[cid] = params
            if len(found) == len(wanted):
                break
        return found

    def job_custom_ids(self, job_id: str, batch_id: str | None = None) -> list[str]:
        """The job's unique custom_ids, or only those a given batch carried."""
        if batch_id is None:
            rows = self._read(
                "SELECT custom_ids FROM request_sets WHERE job_id = ? ORDER BY id", (job_id,)
            )
        else:
            rows = self._read(
                "SELECT custom_ids FROM submissions WHERE job_id = ? AND batch_id = ?"
                " AND custom_ids IS NOT NULL ORDER BY id",
                (job_id, batch_id),
            )
        return list(dict.fromkeys(c for row in rows for c in _unpack_ids(row[0])))

    # -- submissions and batches ------------------------------------------------------

    def carried_custom_ids(self, job_id: str) -> set[str]:
        """The job's custom_ids that a recorded batch, or a create in flight, carries."""
        rows = self._read(
            "SELECT custom_ids FROM submissions WHERE job_id = ? AND custom_ids IS NOT NULL",
            (job_id,),
        )
        carried: set[str] = set()
        for row in rows:
            carried.update(_unpack_ids(row[0]))
        return carried

    def begin_submission(
        self,
        job_id: str,
        position: int,
        request_count: int,
        body_bytes: int,
        custom_ids: Iterable[str] = (),
        owner: str | None = None,
    ) -> int:
        """Log the intent to create a batch carrying ``custom_ids``, before the create call
        (see pending_submissions); ``owner`` names the process making the call."""
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO submissions (job_id, position, request_count, body_bytes,"
                " started_at, owner, custom_ids) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    position,
                    request_count,
                    body_bytes,
                    _now(),
                    owner,
                    _pack_ids(list(custom_ids)),
                ),
            )
            return int(cur.lastrowid or 0)

    def finish_submission(
        self,
        submission_id: int,
        batch_id: str,
        created_at: str | datetime | None,
        expires_at: str | datetime | None,
        custom_ids: Iterable[str] = (),
        provisional: bool = False,
    ) -> None:
        """Record the created batch and the custom_ids it carries (those given, and those
        logged with the submission), atomically. ``provisional``: the batch was found by
        its size after a lost create, and is the job's only once its results' custom_ids
        match (see confirm_batch / release_batch)."""
        now = _now()
        with self._write() as conn:
            row = conn.execute(
                "SELECT job_id, position, request_count FROM submissions WHERE id = ?",
                (submission_id,),
            ).fetchone()
            if row is None:
                raise KeyError(f"no submission {submission_id} in the journal at {self.path}")
            job_id, position, request_count = row
            conn.execute(
                "UPDATE submissions SET batch_id = ? WHERE id = ?", (batch_id, submission_id)
            )
            counts = dict.fromkeys(("succeeded", "errored", "canceled", "expired"), 0)
            counts["processing"] = request_count
            conn.execute(
                "INSERT OR IGNORE INTO batches (batch_id, job_id, position, request_count,"
                " processing_status, request_counts, created_at, expires_at, updated_at,"
                " provisional) VALUES (?, ?, ?, ?, 'in_progress', ?, ?, ?, ?, ?)",
                (
                    batch_id,
                    job_id,
                    position,
                    request_count,
                    _dumps(counts),
                    _ts(created_at),
                    _ts(expires_at),
                    now,
                    int(provisional),
                ),
            )
            extra = list(custom_ids)
            if extra:
                carried = conn.execute(
                    "SELECT custom_ids FROM submissions WHERE id = ?", (submission_id,)
                ).fetchone()[0]
                ids = list(dict.fromkeys([*_unpack_ids(carried), *extra]))
                conn.execute(
                    "UPDATE submissions SET custom_ids = ? WHERE id = ?",
                    (_pack_ids(ids), submission_id),
                )
            conn.execute("UPDATE jobs SET updated_at = ? WHERE job_id = ?", (now, job_id))

    def pending_submissions(self, job_id: str) -> list[SubmissionRecord]:
        """Create calls that started but whose batch id was never recorded (a crash)."""
        rows = self._read(
            "SELECT * FROM submissions WHERE job_id = ? AND batch_id IS NULL ORDER BY id",
            (job_id,),
        )
        # The blob of custom_ids stays here: carried_custom_ids reads it in bulk.
        records = [dict(row) for row in rows]
        for data in records:
            data.pop("custom_ids", None)
        return [SubmissionRecord(**data) for data in records]

    def find_or_create_job(
        self, fingerprint: str, endpoint: str, **job: Any
    ) -> tuple[JobRecord | None, str]:
        """The resumable job for this fingerprint, or a new one made from ``job`` (the
        arguments of create_job), in ONE write transaction: of any number of identical
        calls starting together, in threads or processes, exactly one creates the job
        and the others attach to it. -> (the existing record or None, job_id).

        A canceled job is not resumed (a re-run of it is on purpose); the new job made
        instead is then what the other simultaneous re-runs find.
        """
        with self._write() as conn:
            row = conn.execute(
                f"SELECT * FROM jobs WHERE fingerprint = ? AND endpoint = ?"
                f" AND status NOT IN ({', '.join('?' * len(INACTIVE_STATUSES))})"
                " ORDER BY created_at DESC, rowid DESC LIMIT 1",
                (fingerprint, _clean_endpoint(endpoint), *INACTIVE_STATUSES),
            ).fetchone()
            if row is not None and row["status"] != "canceled":
                record = _job(row)
                return record, record.job_id
            job_id = self._insert_job(conn, fingerprint=fingerprint, endpoint=endpoint, **job)
            return None, job_id

    def claim_submissions(
        self,
        job_id: str,
        custom_ids: Sequence[str],
        plan: Callable[[list[str]], list[tuple[int, int, list[str]]]],
        owner: str | None,
        again: Collection[str] | None = None,
    ) -> list[int]:
        """Atomically take the requests among ``custom_ids`` (unique) that nobody else is
        sending, and log one submission per batch ``plan`` cuts them into.

        ``plan(free_ids) -> [(request_count, body_bytes, ids), ...]``. A request is free
        when no submission of the job carries it. ``again`` (a retry) holds the batches
        whose outcome the caller has seen: a request is then also free when the latest
        batch that carried it is one of those (no one has sent it again since). Two
        workers claiming at once: one gets the requests, the other nothing (it then
        follows the first one's batches). -> the submission ids, in plan order.
        """
        with self._write() as conn:
            # Only the candidates are looked up, one submission's ids at a time: a job's
            # later waves must not hold every id it ever sent (~130 MB per million).
            wanted: dict[str, None] | None = None  # built only if the job sent before
            latest: dict[str, str | None] = {}  # candidate -> batch of its latest submission
            for ids_blob, batch_id in conn.execute(
                "SELECT custom_ids, batch_id FROM submissions WHERE job_id = ? ORDER BY id",
                (job_id,),
            ):
                if wanted is None:
                    wanted = dict.fromkeys(custom_ids)
                for cid in _unpack_ids(ids_blob):
                    if cid in wanted:
                        latest[cid] = batch_id
            seen = set(again or ())
            free = [
                c
                for c in (custom_ids if wanted is None else wanted)
                if c not in latest or (again is not None and latest[c] in seen)
            ]
            del wanted, latest
            if not free:
                return []
            subs = []
            now = _now()
            for position, (count, body_bytes, ids) in enumerate(plan(free)):
                cur = conn.execute(
                    "INSERT INTO submissions (job_id, position, request_count, body_bytes,"
                    " started_at, owner, custom_ids) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (job_id, position, count, body_bytes, now, owner, _pack_ids(ids)),
                )
                subs.append(int(cur.lastrowid or 0))
            return subs

    def submission_custom_ids(self, submission_id: int) -> set[str]:
        rows = self._read("SELECT custom_ids FROM submissions WHERE id = ?", (submission_id,))
        return set(_unpack_ids(rows[0][0])) if rows else set()

    def mark_lost(self, submission_id: int) -> None:
        """The create's response was lost and a batch of its size exists: the submission
        stays pending until the evidence (custom_ids of ended batches) settles it."""
        with self._write() as conn:
            conn.execute(
                "UPDATE submissions SET lost_at = ? WHERE id = ? AND batch_id IS NULL",
                (_now(), submission_id),
            )

    def confirm_batch(self, batch_id: str) -> None:
        """A provisional batch's custom_ids matched: it is the job's."""
        with self._write() as conn:
            conn.execute("UPDATE batches SET provisional = 0 WHERE batch_id = ?", (batch_id,))

    def release_batch(self, job_id: str, batch_id: str) -> None:
        """A provisional batch's custom_ids proved it someone else's: drop it from the job
        (it is never canceled or deleted at the API) and remember it as foreign to the
        job. Its submission is lost again, so the evidence settles it anew: another
        batch may be the job's, or none is and its requests are sent again, once."""
        with self._write() as conn:
            cur = conn.execute(
                "DELETE FROM batches WHERE batch_id = ? AND job_id = ? AND provisional = 1",
                (batch_id, job_id),
            )
            if cur.rowcount:
                conn.execute(
                    "UPDATE submissions SET batch_id = NULL, lost_at = ?"
                    " WHERE job_id = ? AND batch_id = ?",
                    (_now(), job_id, batch_id),
                )
            conn.execute(
                "INSERT OR IGNORE INTO foreign_batches (job_id, batch_id, noted_at)"
                " VALUES (?, ?, ?)",
                (job_id, batch_id, _now()),
            )

    def note_foreign(self, job_id: str, batch_id: str) -> None:
        """Remember a batch whose custom_ids are not the job's (never considered again)."""
        with self._write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO foreign_batches (job_id, batch_id, noted_at)"
                " VALUES (?, ?, ?)",
                (job_id, batch_id, _now()),
            )

    def foreign_batches(self, job_id: str) -> set[str]:
        rows = self._read("SELECT batch_id FROM foreign_batches WHERE job_id = ?", (job_id,))
        return {row[0] for row in rows}

    def batch_owner(self, batch_id: str) -> tuple[str, bool] | None:
        """(job_id, provisional) of a batch the journal knows, else None."""
        rows = self._read("SELECT job_id, provisional FROM batches WHERE batch_id = ?", (batch_id,))
        return (rows[0][0], bool(rows[0][1])) if rows else None

    def abandon_submission(self, submission_id: int) -> None:
        """Forget a pending submission once it is known no batch was created for it."""
        with self._write() as conn:
            # Its custom_ids go with it, so they count as not carried again.
            conn.execute(
                "DELETE FROM submissions WHERE id = ? AND batch_id IS NULL", (submission_id,)
            )

    def update_batch(
        self,
        batch_id: str,
        processing_status: str,
        request_counts: dict[str, int],
        ended_at: str | datetime | None = None,
    ) -> None:
        now = _now()
        with self._write() as conn:
            row = conn.execute(
                "SELECT processing_status FROM batches WHERE batch_id = ?", (batch_id,)
            ).fetchone()
            if row is None:
                raise JobNotFoundError(f"no batch {batch_id!r} in the journal at {self.path}")
            if _STAGE.get(processing_status, 0) < _STAGE.get(row[0], 0):
                # A retrieve answered before a fresher one (another thread's, the CLI's)
                # but written after it: a batch never goes back, so keep what is newer.
                return
            conn.execute(
                "UPDATE batches SET processing_status = ?, request_counts = ?,"
                " ended_at = COALESCE(?, ended_at), updated_at = ? WHERE batch_id = ?",
                (processing_status, _dumps(request_counts), _ts(ended_at), now, batch_id),
            )
            conn.execute(
                "UPDATE jobs SET updated_at = ? WHERE job_id ="
                " (SELECT job_id FROM batches WHERE batch_id = ?)",
                (now, batch_id),
            )

    def batches(self, job_id: str) -> list[BatchRecord]:
        rows = self._read(
            "SELECT * FROM batches WHERE job_id = ? ORDER BY position, created_at", (job_id,)
        )
        return [_batch(row) for row in rows]

    def mark_fetched(self, batch_id: str) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE batches SET results_fetched = 1, updated_at = ? WHERE batch_id = ?",
                (_now(), batch_id),
            )

    # -- results ----------------------------------------------------------------------

    def store_results(self, batch_id: str, items: Iterable[tuple[str, str, bytes]]) -> None:
        """Store raw result lines ``(custom_id, status, line)``: see ``store_lines``."""
        items = list(items)
        self.store_lines(
            batch_id,
            [cid for cid, _, _ in items],
            [status for _, status, _ in items],
            [line for _, _, line in items],
        )

    def store_lines(
        self,
        batch_id: str,
        custom_ids: Sequence[str],
        statuses: Sequence[str],
        lines: Sequence[bytes],
        *,
        replace: bool = True,
    ) -> None:
        """Store a batch's raw result lines as one compressed blob, indexed by custom_id;
        they replace earlier copies of the same (custom_id, batch_id).

        ``replace=False``: the caller knows no earlier copy of these lines is indexed
        (the worker stores each request's line once per process), so the per-id search
        for one is skipped. A copy another process stored meanwhile then stays beside
        this one: the same bytes, and reads take one of them.
        """
        if not lines:
            return
        now = _now()
        ids = custom_ids
        blob = _pack(lines)
        # Sorted keys go into the index's B-tree in order: far fewer page splits. The
        # index rows go in as one JSON array read by SQLite itself, not bound row by row.
        order = sorted(range(len(ids)), key=ids.__getitem__)
        index = orjson.dumps([(ids[k], k, statuses[k] == "succeeded") for k in order])
        with self._write() as conn:
            found = conn.execute(
                "SELECT j.endpoint FROM batches b JOIN jobs j USING (job_id) WHERE b.batch_id = ?",
                (batch_id,),
            ).fetchone()
            earlier = [
                r[0]
                for r in conn.execute("SELECT id FROM result_files WHERE batch_id = ?", (batch_id,))
            ]
            cur = conn.execute(
                "INSERT INTO result_files (batch_id, endpoint, line_count, lines, fetched_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (batch_id, found[0] if found else None, len(lines), blob, now),
            )
            file_id = int(cur.lastrowid or 0)
            if earlier and replace:  # a second download of the batch: new lines replace old
                marks = ", ".join("?" * len(earlier))
                for start in range(0, len(ids), _CHUNK):
                    chunk = ids[start : start + _CHUNK]
                    conn.execute(
                        f"DELETE FROM result_index WHERE file_id IN ({marks})"
                        f" AND custom_id IN ({', '.join('?' * len(chunk))})",
                        [*earlier, *chunk],
                    )
            conn.execute(
                "INSERT OR REPLACE INTO result_index (custom_id, file_id, ord, succeeded)"
                " SELECT json_extract(value, '$[0]'), ?, json_extract(value, '$[1]'),"
                " json_extract(value, '$[2]') FROM json_each(?)",
                (file_id, index),
            )

    def find_results(
        self, custom_ids: Sequence[str], endpoint: str, *, succeeded_only: bool = False
    ) -> Found:
        """Where the best line known at ``endpoint`` for each of ``custom_ids`` is stored,
        from the index alone: a success (from any job) beats any failure, otherwise the
        newest wins. ``succeeded_only``: successes only (the result cache).

        Only results fetched from ``endpoint`` count: an emulator's reply must never
        answer a request meant for the real API, nor the other way round.
        """
        endpoint = _clean_endpoint(endpoint)
        if not custom_ids or not self._read(
            "SELECT 1 FROM result_files WHERE endpoint = ? LIMIT 1", (endpoint,)
        ):
            return Found.empty()  # nothing was ever fetched from there: no lookups to make
        # The ids go in as one JSON array per query and come back as their positions in
        # it: no custom_id string is made per hit (8 MB per 100k), nor a bound variable.
        sql = (
            "SELECT j.key, i.file_id, i.ord, i.succeeded FROM json_each(?) j"
            " JOIN result_index i ON i.custom_id = j.value"
            " JOIN result_files f ON f.id = i.file_id WHERE f.endpoint = ?"
        ) + (" AND i.succeeded = 1" if succeeded_only else "")
        parts: list[np.ndarray] = []
        with self._lock, self._guard():
            cur = self._db.cursor()
            cur.row_factory = None  # plain tuples: a sqlite3.Row each is 4x the cost here
            for start in range(0, len(custom_ids), _FIND_CHUNK):
                ids = orjson.dumps(list(custom_ids[start : start + _FIND_CHUNK])).decode()
                rows = cur.execute(sql, (ids, endpoint)).fetchall()
                if rows:
                    flat = itertools.chain.from_iterable(rows)
                    part = np.fromiter(flat, dtype=np.int64, count=4 * len(rows))
                    part = part.reshape(-1, 4)
                    part[:, 0] += start
                    parts.append(part)
        if not parts:
            return Found.empty()
        # One column at a time, so the whole set of hits is never copied at once.
        pos, file_id, line, ok = (np.concatenate([p[:, k] for p in parts]) for k in range(4))
        del parts
        # Several hits of a request (a retry's, another job's) leave the best: a success,
        # then the newest. Usually each has one, in the order asked: no sort needed.
        if pos.size > 1 and not (pos[1:] > pos[:-1]).all():
            order = np.lexsort((line, file_id, ok, pos))
            last = np.ones(pos.size, dtype=bool)
            last[:-1] = pos[order][1:] != pos[order][:-1]
            order = order[last]
            pos, file_id, line, ok = pos[order], file_id[order], line[order], ok[order]
        order = np.lexsort((line, file_id))  # storage order: each file read once, forward
        return Found(pos[order], file_id[order], line[order], ok[order] != 0)

    def read_results(
        self, found: Found, step: int = 4096
    ) -> Iterator[tuple[str, np.ndarray, list[bytes]]]:
        """The lines ``found`` points to, ``step`` at a time: ``(batch_id, pos, lines)``.

        Each result file (at most 10k lines or 8 MB, as a download stores them) is read
        and decompressed once, and its lines are cut a block at a time: a run's lines
        are never all held at once (a re-run of 100k rows held ~90 MB so before).
        """
        cuts = np.flatnonzero(np.diff(found.file_id)) + 1
        for a, b in zip([0, *cuts.tolist()], [*cuts.tolist(), len(found)]):
            if a == b:
                continue
            rows = self._read(
                "SELECT batch_id, lines FROM result_files WHERE id = ?",
                (int(found.file_id[a]),),
            )
            if not rows:
                continue  # pruned since it was found
            batch_id, blob = rows[0]
            pos = found.pos[a:b]
            for k, lines in _pick(blob, found.ord[a:b], step):
                yield batch_id, pos[k : k + len(lines)], lines

    def results(
        self, custom_ids: Sequence[str], endpoint: str, *, succeeded_only: bool = False
    ) -> Iterator[tuple[str, np.ndarray, list[bytes]]]:
        """``read_results(find_results(...))``: the best lines for ``custom_ids``, streamed."""
        return self.read_results(
            self.find_results(custom_ids, endpoint, succeeded_only=succeeded_only)
        )

    def cached_results(self, custom_ids: Sequence[str], endpoint: str) -> dict[str, bytes]:
        """``{custom_id: line}``, the newest succeeded line of each request that has one
        (see ``results`` to stream them instead)."""
        return _by_id(custom_ids, self.results(custom_ids, endpoint, succeeded_only=True))

    def cached_ids(self, custom_ids: Sequence[str], endpoint: str) -> set[str]:
        """Which of these requests ``cached_results`` would answer, from the index alone
        (no result file is read)."""
        found = self.find_results(custom_ids, endpoint, succeeded_only=True)
        return {custom_ids[p] for p in found.pos.tolist()}

    def job_results(self, job_id: str) -> dict[str, bytes]:
        """For each of the job's requests, the best line known at the job's endpoint."""
        rows = self._read("SELECT endpoint FROM jobs WHERE job_id = ?", (job_id,))
        if not rows:
            return {}
        ids = self.job_custom_ids(job_id)
        return _by_id(ids, self.results(ids, rows[0][0]))

    # -- housekeeping -----------------------------------------------------------------

    @property
    def size_bytes(self) -> int:
        """The journal's size on disk (the database and its write-ahead log)."""
        return sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())

    def stored_bytes(self) -> dict[str, int]:
        """Per job, the compressed bytes its rows, requests and results take up."""
        sizes: dict[str, int] = {}
        for sql in (
            "SELECT job_id, length(labels) + length(custom_ids) FROM row_sets",
            "SELECT job_id, length(custom_ids) + length(params) FROM request_sets",
            "SELECT b.job_id, length(f.lines) FROM result_files f JOIN batches b USING (batch_id)",
        ):
            for job_id, size in self._read(sql):
                sizes[job_id] = sizes.get(job_id, 0) + int(size or 0)
        return sizes

    def prune(
        self,
        *,
        older_than: timedelta | None = None,
        job_ids: Sequence[str] = (),
        keep_cache: bool = False,
    ) -> dict[str, int]:
        """Delete finished jobs: those last updated more than ``older_than`` ago, and/or
        the jobs named (ids, prefixes or batch ids). Their result lines go too unless
        ``keep_cache`` (then a later identical request is still answered from them).

        A job whose batches may still be running is never pruned by age, and naming
        one is an error: forgetting it would lose what it is paying for.
        """
        named = [self.get_job(j) for j in job_ids]
        for rec in named:
            if not self._settled(rec):
                raise InputError(
                    f"job {rec.job_id} is still {rec.status}: its batches may be running and "
                    f"costing money. Wait for it (`claude-lab wait {rec.job_id}`) or cancel it "
                    "(`claude-lab cancel ...`) first, then forget it."
                )
        before = self.size_bytes
        ids = [rec.job_id for rec in named]
        if older_than is not None:
            cutoff = (datetime.now(timezone.utc) - older_than).isoformat()
            marks = ", ".join("?" * len(_SETTLED_STATUSES))
            ids += [
                row[0]
                for row in self._read(
                    f"SELECT job_id FROM jobs WHERE updated_at < ? AND status IN ({marks})"
                    " AND job_id NOT IN (SELECT job_id FROM submissions WHERE batch_id IS NULL)"
                    " AND job_id NOT IN"
                    " (SELECT job_id FROM batches WHERE processing_status != 'ended')",
                    (cutoff, *_SETTLED_STATUSES),
                )
            ]
        ids = list(dict.fromkeys(ids))
        lines = 0
        with self._write() as conn:
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                marks = ", ".join("?" * len(chunk))
                if not keep_cache:
                    files = (
                        "SELECT f.id FROM result_files f JOIN batches b USING (batch_id)"
                        f" WHERE b.job_id IN ({marks})"
                    )
                    lines += conn.execute(
                        f"DELETE FROM result_index WHERE file_id IN ({files})", chunk
                    ).rowcount
                    conn.execute(f"DELETE FROM result_files WHERE id IN ({files})", chunk)
                # Batches, submissions, rows and requests go with the job (ON DELETE CASCADE).
                conn.execute(f"DELETE FROM jobs WHERE job_id IN ({marks})", chunk)
        if ids:
            self._compact()
        return {
            "jobs": len(ids),
            "result_lines": lines,
            "bytes_before": before,
            "bytes_after": self.size_bytes,
        }

    def _settled(self, rec: JobRecord) -> bool:
        return (
            rec.status in _SETTLED_STATUSES
            and not self.pending_submissions(rec.job_id)
            and all(b.processing_status == "ended" for b in self.batches(rec.job_id))
        )

    def _compact(self) -> None:
        """Give freed pages back to the file system, if no one else is using the file."""
        with self._lock, contextlib.suppress(sqlite3.OperationalError):
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.execute("VACUUM")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


# SQLite's primary result codes that mean the file itself cannot be used as a journal
# (as opposed to a busy lock, which the busy timeout waits out).
_UNUSABLE = (
    *("SQLITE_NOTADB", "SQLITE_CORRUPT", "SQLITE_READONLY", "SQLITE_CANTOPEN"),
    *("SQLITE_IOERR", "SQLITE_FULL", "SQLITE_PERM"),
)


def _by_id(
    custom_ids: Sequence[str], streamed: Iterable[tuple[str, np.ndarray, list[bytes]]]
) -> dict[str, bytes]:
    """``{custom_id: line}`` from ``Journal.results`` blocks over ``custom_ids``."""
    return {
        custom_ids[p]: line for _, pos, lines in streamed for p, line in zip(pos.tolist(), lines)
    }


# A batch's processing_status only moves forward: in_progress -> canceling -> ended.
_STAGE = {"in_progress": 0, "canceling": 1, "ended": 2}


def _unusable(exc: sqlite3.DatabaseError) -> bool:
    name = getattr(exc, "sqlite_errorname", None) or ""
    if name:
        return any(name == code or name.startswith(code + "_") for code in _UNUSABLE)
    text = str(exc)
    return any(
        words in text
        for words in ("not a database", "malformed", "readonly", "unable to open", "I/O")
    )


def journal_error(path: Path, exc: BaseException) -> JournalError:
    """The one error for a journal file claude_lab cannot use, with what to do about it."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc)
    read_only = isinstance(exc, PermissionError) or name.startswith(
        ("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM")
    )
    if read_only:
        what = "cannot be written: the file or its folder is read-only"
        fix = (
            "make the file and its folder writable (SQLite also writes "
            f"{path.name}-wal and {path.name}-shm next to it)"
        )
    else:
        if name.startswith("SQLITE_NOTADB") or "not a database" in text:
            what = "is not a SQLite database (it holds something else, or its header is damaged)"
        elif name.startswith("SQLITE_CORRUPT") or "malformed" in text:
            what = "is damaged or truncated"
        else:
            what = "could not be read or written"
        fix = (
            f"move it aside, with any {path.name}-wal and {path.name}-shm next to it "
            f"(e.g. `mv {path} {path}.broken`), and a fresh journal is started; jobs "
            "recorded only in the old file are then no longer found, so keep it if their "
            "batches may still be running"
        )
    return JournalError(
        f"The claude_lab journal at {path} {what} ({type(exc).__name__}: {text}). "
        "claude_lab records every batch it creates there before and after spending money, "
        "so it does not run without a working journal, and it never deletes or overwrites "
        f"one. To go on: {fix}; or set CLAUDE_LAB_HOME to another, writable folder to use a "
        "separate journal. Note that cache=False does not avoid the journal (it only stops "
        "cached results being reused); only another CLAUDE_LAB_HOME does."
    )


def _insert_rows(
    conn: sqlite3.Connection,
    job_id: str,
    labels: Sequence[Hashable],
    ids: Sequence[str | None],
) -> None:
    if len(labels) != len(ids):
        raise ValueError(f"{len(labels)} index labels but {len(ids)} custom_ids")
    encoded = orjson.dumps(list(labels), default=_json_default, option=orjson.OPT_SERIALIZE_NUMPY)
    conn.execute(
        "INSERT INTO row_sets (job_id, labels, custom_ids) VALUES (?, ?, ?)",
        (job_id, _deflate((encoded,), 1), _pack_ids([c or "" for c in ids])),
    )


def _insert_requests(
    conn: sqlite3.Connection, job_id: str, custom_ids: Sequence[str], params: Sequence[bytes]
) -> None:
    if len(custom_ids) != len(params):
        raise ValueError(f"{len(custom_ids)} custom_ids but {len(params)} params")
    if not custom_ids:
        return
    conn.execute(
        "INSERT INTO request_sets (job_id, request_count, custom_ids, params, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (job_id, len(custom_ids), _pack_ids(custom_ids), _pack(params), _now()),
    )


# Blobs are zstd at level 1: ~50x smaller for result lines, at a quarter of zlib's CPU
# (zlib level 1 took ~0.25 s of a 100k-row run's 1.6 s). Journals written before hold
# zlib streams; _inflate tells them apart by the zstd frame's magic number.
def _pack(items: Sequence[bytes]) -> bytes:
    """Byte strings (any content) -> one compressed blob: count, lengths, then the data."""
    lengths = np.fromiter(map(len, items), dtype="<u4", count=len(items))
    head = len(items).to_bytes(4, "little") + lengths.tobytes()
    step = 4096
    pieces = (b"".join(items[k : k + step]) for k in range(0, len(items), step))
    return _deflate(itertools.chain((head,), pieces), 1)


def _deflate(pieces: Iterable[bytes], level: int) -> bytes:
    """One compressed stream of the concatenated pieces, never holding them joined: a
    run's requests or results are compressed without a second uncompressed copy in
    memory. Level 0 stores (a zlib stream, for data that barely compresses)."""
    z: Any = zstandard.ZstdCompressor(level=level).compressobj() if level else zlib.compressobj(0)
    out = [z.compress(piece) for piece in pieces]
    out.append(z.flush())
    return b"".join(out)


_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _inflate(blob: bytes) -> bytes:
    if blob[:4] == _ZSTD_MAGIC:
        # Streamed frames carry no content size, so one-shot decompress() cannot size
        # its output; a decompressobj can.
        return bytes(zstandard.ZstdDecompressor().decompressobj().decompress(blob))
    return zlib.decompress(blob)


def _unpack(blob: bytes) -> list[bytes]:
    raw, starts, ends = _items(blob)
    return [raw[a:b] for a, b in zip(starts.tolist(), ends.tolist())]


def _items(blob: bytes) -> tuple[bytes, np.ndarray, np.ndarray]:
    """A ``_pack`` blob inflated, with where each of its items starts and ends in it."""
    raw = _inflate(blob)
    n = int.from_bytes(raw[:4], "little")
    ends = np.cumsum(np.frombuffer(raw, dtype="<u4", count=n, offset=4), dtype=np.int64)
    ends += 4 + 4 * n
    starts = np.empty_like(ends)
    starts[:1] = 4 + 4 * n
    starts[1:] = ends[:-1]
    return raw, starts, ends


def _pick(blob: bytes, ords: np.ndarray, step: int) -> Iterator[tuple[int, list[bytes]]]:
    """The items of a ``_pack`` blob at the rising positions ``ords``, ``step`` at a
    time: ``(offset into ords, items)``."""
    raw, starts, ends = _items(blob)
    for k in range(0, len(ords), step):
        block = ords[k : k + step]
        yield k, [raw[a:b] for a, b in zip(starts[block].tolist(), ends[block].tolist())]


def _pack_ids(ids: Sequence[str]) -> bytes:
    # custom_ids are [A-Za-z0-9_-]{1,64} by the API's rules, so a newline separates them.
    # Ours are hex digests: zstd level 1 halves them (3.4 -> 1.8 MB per 100k, in ~4 ms),
    # which is also that much less for SQLite to hold while it writes the blob. Journals
    # written before hold them stored in a zlib stream, read back the same way.
    step = 4096
    pieces = (
        ("\n" if k else "").encode() + "\n".join(ids[k : k + step]).encode()
        for k in range(0, len(ids), step)
    )
    return _deflate(pieces, 1)


def _encode_frame(frame: pd.DataFrame) -> bytes:
    columns = []
    for k in range(frame.shape[1]):
        col = frame.iloc[:, k]
        values = col.astype(object).where(col.notna(), None).tolist()
        columns.append({"name": frame.columns[k], "dtype": str(col.dtype), "values": values})
    data = orjson.dumps(columns, default=_json_default, option=orjson.OPT_SERIALIZE_NUMPY)
    return _deflate((data,), 1)


def _decode_frame(blob: bytes) -> pd.DataFrame:
    columns = orjson.loads(_inflate(blob))
    data: dict[Any, Any] = {}
    for col in columns:
        name = tuple(col["name"]) if isinstance(col["name"], list) else col["name"]
        series = pd.Series(col["values"], dtype=object)
        try:
            series = series.astype(col["dtype"])
        except (TypeError, ValueError):
            series = series.infer_objects()  # a dtype JSON cannot carry back: keep values
        data[name] = series
    return pd.DataFrame(data) if data else pd.DataFrame()


def _line_status(line: bytes) -> str:
    """The result type of a stored results line (errored if it cannot be read)."""
    with contextlib.suppress(orjson.JSONDecodeError, AttributeError, TypeError):
        kind = orjson.loads(line)["result"]["type"]
        if kind in ("succeeded", "errored", "canceled", "expired"):
            return str(kind)
    return "errored"


def _unpack_ids(blob: bytes | None) -> list[str]:
    if not blob:
        return []
    text = _inflate(blob).decode()
    return text.split("\n") if text else []


def _migrate_to_bulk(conn: sqlite3.Connection) -> None:
    """v4: move a v3 journal's per-row tables into the bulk blobs, job by job."""
    for (job_id,) in conn.execute("SELECT DISTINCT job_id FROM job_rows").fetchall():
        rows = conn.execute(
            "SELECT index_label, custom_id FROM job_rows WHERE job_id = ? ORDER BY position",
            (job_id,),
        ).fetchall()
        labels = ("[" + ",".join(r[0] for r in rows) + "]").encode()
        conn.execute(
            "INSERT INTO row_sets (job_id, labels, custom_ids) VALUES (?, ?, ?)",
            (job_id, _deflate((labels,), 1), _pack_ids([r[1] or "" for r in rows])),
        )
    for (job_id,) in conn.execute("SELECT DISTINCT job_id FROM job_requests").fetchall():
        rows = conn.execute(
            "SELECT jr.custom_id, r.params FROM job_requests jr"
            " LEFT JOIN requests r USING (custom_id) WHERE jr.job_id = ? ORDER BY jr.rowid",
            (job_id,),
        ).fetchall()
        _insert_requests(conn, job_id, [r[0] for r in rows], [bytes(r[1] or b"") for r in rows])
    # What each submission carries; a v1 batch recorded without a submission gets one.
    for sub_id, job_id, batch_id in conn.execute(
        "SELECT id, job_id, batch_id FROM submissions"
    ).fetchall():
        ids = conn.execute(
            "SELECT custom_id FROM job_requests WHERE job_id = ?"
            " AND (submission_id = ? OR (batch_id IS NOT NULL AND batch_id = ?)) ORDER BY rowid",
            (job_id, sub_id, batch_id),
        ).fetchall()
        conn.execute(
            "UPDATE submissions SET custom_ids = ? WHERE id = ?",
            (_pack_ids([r[0] for r in ids]), sub_id),
        )
    for job_id, batch_id, position, count, created in conn.execute(
        "SELECT job_id, batch_id, position, request_count, COALESCE(created_at, updated_at)"
        " FROM batches WHERE batch_id NOT IN"
        " (SELECT batch_id FROM submissions WHERE batch_id IS NOT NULL)"
    ).fetchall():
        ids = conn.execute(
            "SELECT custom_id FROM job_requests WHERE job_id = ? AND batch_id = ? ORDER BY rowid",
            (job_id, batch_id),
        ).fetchall()
        conn.execute(
            "INSERT INTO submissions (job_id, position, request_count, body_bytes, started_at,"
            " batch_id, custom_ids) VALUES (?, ?, ?, 0, ?, ?, ?)",
            (job_id, position, count, created, batch_id, _pack_ids([r[0] for r in ids])),
        )
    for (batch_id,) in conn.execute("SELECT DISTINCT batch_id FROM results").fetchall():
        found = conn.execute(
            "SELECT j.endpoint FROM batches b JOIN jobs j USING (job_id) WHERE b.batch_id = ?",
            (batch_id,),
        ).fetchone()
        rows = conn.execute(
            "SELECT custom_id, status, line, fetched_at FROM results WHERE batch_id = ?"
            " ORDER BY fetched_at, rowid",
            (batch_id,),
        ).fetchall()
        cur = conn.execute(
            "INSERT INTO result_files (batch_id, endpoint, line_count, lines, fetched_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                batch_id,
                found[0] if found else None,
                len(rows),
                _pack([bytes(r[2]) for r in rows]),
                rows[-1][3],
            ),
        )
        conn.executemany(
            "INSERT OR REPLACE INTO result_index (custom_id, file_id, ord, succeeded)"
            " VALUES (?, ?, ?, ?)",
            ((r[0], cur.lastrowid, k, r[1] == "succeeded") for k, r in enumerate(rows)),
        )


def _job(row: sqlite3.Row) -> JobRecord:
    data = dict(row)
    for key in ("templates", "params", "meta"):
        data[key] = orjson.loads(data[key])
    return JobRecord(**data)


def _batch(row: sqlite3.Row) -> BatchRecord:
    data = dict(row)
    data["request_counts"] = orjson.loads(data["request_counts"])
    data["results_fetched"] = bool(data["results_fetched"])
    data["provisional"] = bool(data.get("provisional", 0))
    return BatchRecord(**data)
