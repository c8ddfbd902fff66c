"""The SQLite journal: schema, migrations, concurrency, permissions, the result cache."""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pandas as pd
import pytest

from claude_lab import _ledger as jmod
from claude_lab._errors import ConfigError, JobNotFoundError
from claude_lab._ledger import Journal, open_journal

REPO = Path(__file__).resolve().parents[1]
ENDPOINT = "https://api.example.test"  # a label only: the journal never connects


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal(tmp_path / "journal.sqlite3") as j:
        yield j


@contextlib.contextmanager
def raw(path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(path)
    try:
        yield conn
    finally:
        conn.close()


def cid(n: int) -> str:
    return f"r{n:032x}"


def make_job(j: Journal, fingerprint: str = "fp1", endpoint: str = ENDPOINT, **kw: object) -> str:
    args: dict = dict(
        fingerprint=fingerprint,
        endpoint=endpoint,
        model="claude-haiku-4-5",
        templates={"prompt": "Q: {question}", "system": None},
        params={"max_tokens": 256, "temperature": 0.0},
        name="claude",
        row_count=3,
        request_count=2,
        package_version="0.1.0",
        meta={"python": "3.11"},
    )
    args.update(kw)
    return j.create_job(**args)


def line(custom_id: str, status: str, text: str = "ok") -> bytes:
    return orjson.dumps({"custom_id": custom_id, "result": {"type": status, "text": text}})


def submit(j: Journal, job_id: str, batch_id: str, ids: list[str], position: int = 0) -> None:
    sub = j.begin_submission(job_id, position, len(ids), 1000)
    j.finish_submission(sub, batch_id, "2025-01-01T00:00:00Z", "2025-01-02T00:00:00Z", ids)


def test_job_round_trip(journal: Journal) -> None:
    job_id = make_job(journal)
    assert job_id.startswith("job_") and len(job_id) == 16
    job = journal.get_job(job_id)
    assert job.templates == {"prompt": "Q: {question}", "system": None}
    assert job.params == {"max_tokens": 256, "temperature": 0.0}
    assert job.meta == {"python": "3.11"}
    assert (job.status, job.row_count, job.request_count) == ("created", 3, 2)
    journal.set_job_status(job_id, "ended")
    assert journal.get_job(job_id).status == "ended"
    with pytest.raises(JobNotFoundError):
        journal.set_job_status("job_nope", "ended")
    assert journal.schema_version == jmod.SCHEMA_VERSION


def test_endpoint_keeps_base_url_only(journal: Journal) -> None:
    job_id = make_job(journal, endpoint="https://user:secret@example.com:8443/v1/?token=abc")
    assert journal.get_job(job_id).endpoint == "https://example.com:8443/v1"
    assert journal.find_job("fp1", "https://example.com:8443/v1/") is not None
    job_id = make_job(journal, endpoint="http://[::1]:8080")
    assert journal.get_job(job_id).endpoint == "http://[::1]:8080"


def test_find_job_by_fingerprint(journal: Journal) -> None:
    assert journal.find_job("fp1", ENDPOINT) is None
    older = make_job(journal)
    newer = make_job(journal)
    make_job(journal, fingerprint="fp2")
    assert journal.find_job("fp1", ENDPOINT).job_id == newer  # type: ignore[union-attr]
    assert journal.find_job("fp1", "http://127.0.0.1:9999") is None
    journal.set_job_status(newer, "failed")
    assert journal.find_job("fp1", ENDPOINT).job_id == older  # type: ignore[union-attr]
    journal.set_job_status(older, "abandoned")
    assert journal.find_job("fp1", ENDPOINT) is None


def test_get_job_by_prefix_batch_and_not_found(journal: Journal) -> None:
    job_id = make_job(journal)
    submit(journal, job_id, "msgbatch_abc", [cid(1)])
    assert journal.get_job(job_id[:8]).job_id == job_id
    assert journal.get_job("msgbatch_abc").job_id == job_id
    with pytest.raises(JobNotFoundError) as info:
        journal.get_job("job_doesnotexist")
    message = str(info.value)
    assert "job_doesnotexist" in message
    assert "claude_lab.jobs()" in message and "claude-lab jobs" in message
    make_job(journal)
    with pytest.raises(JobNotFoundError, match="matches 2 jobs"):
        journal.get_job("job_")
    with pytest.raises(JobNotFoundError):
        journal.get_job("")


def test_submissions_and_batches(journal: Journal) -> None:
    job_id = make_job(journal)
    ids = [cid(1), cid(2)]
    journal.add_requests(job_id, ids, [b'{"a":1}', b'{"a":2}'])
    sub = journal.begin_submission(job_id, 0, 2, 123)
    # A crash here leaves the intent visible, with no batch id.
    [pending] = journal.pending_submissions(job_id)
    assert (pending.id, pending.batch_id, pending.body_bytes) == (sub, None, 123)
    journal.finish_submission(sub, "msgbatch_1", None, None, ids)
    assert journal.pending_submissions(job_id) == []
    assert journal.job_custom_ids(job_id, "msgbatch_1") == ids

    lost = journal.begin_submission(job_id, 1, 1, 50)
    journal.abandon_submission(lost)
    assert journal.pending_submissions(job_id) == []

    [batch] = journal.batches(job_id)
    assert batch.processing_status == "in_progress"
    assert batch.request_counts["processing"] == 2 and not batch.results_fetched
    counts = {"processing": 0, "succeeded": 1, "errored": 1, "canceled": 0, "expired": 0}
    journal.update_batch("msgbatch_1", "ended", counts, "2025-01-01T01:00:00Z")
    journal.mark_fetched("msgbatch_1")
    [batch] = journal.batches(job_id)
    assert (batch.processing_status, batch.request_counts, batch.ended_at) == (
        "ended",
        counts,
        "2025-01-01T01:00:00Z",
    )
    assert batch.results_fetched
    with pytest.raises(JobNotFoundError):
        journal.update_batch("msgbatch_nope", "ended", counts)
    # A retrieve answered before the batch ended but written after (another thread's
    # poll, racing `claude-lab show`) does not take it back to in_progress.
    journal.update_batch("msgbatch_1", "in_progress", {"processing": 2}, None)
    [batch] = journal.batches(job_id)
    assert (batch.processing_status, batch.request_counts) == ("ended", counts)


def test_requests_are_shared_between_jobs(journal: Journal) -> None:
    a, b = make_job(journal), make_job(journal)
    journal.add_requests(a, [cid(1), cid(2)], [b"one", b"two"])
    journal.add_requests(b, [cid(2), cid(3)], [b"two", b"three"])
    assert journal.get_request_params([cid(1), cid(3), cid(9)]) == {
        cid(1): b"one",
        cid(3): b"three",
    }
    assert journal.job_custom_ids(b) == [cid(2), cid(3)]


def test_cached_results_succeeded_only(journal: Journal) -> None:
    job_id = make_job(journal)
    journal.add_requests(job_id, [cid(1), cid(2), cid(3)], [b"1", b"2", b"3"])
    submit(journal, job_id, "b1", [cid(1), cid(2), cid(3)])
    journal.store_results(
        "b1",
        [
            (cid(1), "succeeded", line(cid(1), "succeeded", "first")),
            (cid(2), "errored", line(cid(2), "errored")),
            (cid(3), "expired", line(cid(3), "expired")),
        ],
    )
    submit(journal, job_id, "b2", [cid(1)], position=1)
    journal.store_results("b2", [(cid(1), "succeeded", line(cid(1), "succeeded", "second"))])
    cached = journal.cached_results([cid(1), cid(2), cid(3), cid(4)], ENDPOINT)
    assert cached == {cid(1): line(cid(1), "succeeded", "second")}
    assert journal.cached_ids([cid(1), cid(2), cid(3), cid(4)], ENDPOINT) == {cid(1)}


def test_results_never_cross_endpoints(journal: Journal) -> None:
    emulated = make_job(journal, endpoint="http://127.0.0.1:8765")
    journal.add_requests(emulated, [cid(1)], [b"1"])
    submit(journal, emulated, "b_emu", [cid(1)])
    journal.store_results("b_emu", [(cid(1), "succeeded", line(cid(1), "succeeded", "emu"))])
    real = make_job(journal, endpoint=ENDPOINT)
    journal.add_requests(real, [cid(1)], [b"1"])
    assert journal.cached_results([cid(1)], ENDPOINT) == {}
    assert journal.cached_ids([cid(1)], ENDPOINT) == set()
    assert journal.job_results(real) == {}
    assert journal.cached_results([cid(1)], "http://127.0.0.1:8765") == {
        cid(1): line(cid(1), "succeeded", "emu")
    }


def test_job_results_precedence(journal: Journal) -> None:
    other = make_job(journal)
    job_id = make_job(journal)
    ids = [cid(1), cid(2), cid(3), cid(4)]
    journal.add_requests(other, [cid(4)], [b"4"])
    journal.add_requests(job_id, ids, [b"1", b"2", b"3", b"4"])
    submit(journal, other, "b0", [cid(4)])
    journal.store_results("b0", [(cid(4), "succeeded", line(cid(4), "succeeded", "cache"))])
    submit(journal, job_id, "b1", ids[:3])
    journal.store_results(
        "b1",
        [
            (cid(1), "succeeded", line(cid(1), "succeeded")),
            (cid(2), "errored", line(cid(2), "errored", "try1")),
            (cid(3), "errored", line(cid(3), "errored")),
        ],
    )
    submit(journal, job_id, "b2", ids[:3], position=1)  # a retry
    journal.store_results(
        "b2",
        [
            (cid(1), "errored", line(cid(1), "errored")),  # must not hide the success
            (cid(2), "expired", line(cid(2), "expired", "try2")),  # newest failure wins
            (cid(3), "succeeded", line(cid(3), "succeeded", "retried")),
        ],
    )
    # The same (custom_id, batch) stored again replaces the earlier line.
    journal.store_results("b2", [(cid(2), "expired", line(cid(2), "expired", "try2b"))])
    assert journal.job_results(job_id) == {
        cid(1): line(cid(1), "succeeded"),
        cid(2): line(cid(2), "expired", "try2b"),
        cid(3): line(cid(3), "succeeded", "retried"),
        cid(4): line(cid(4), "succeeded", "cache"),
    }
    assert journal.job_results(other) == {cid(4): line(cid(4), "succeeded", "cache")}


def test_results_stream_a_block_at_a_time_in_any_order_asked(journal: Journal) -> None:
    job_id = make_job(journal)
    ids = [cid(i) for i in range(7)]
    journal.add_requests(job_id, ids, [b"{}"] * 7)
    submit(journal, job_id, "b1", ids)
    # Two result files for one batch, as a download stores them chunk by chunk.
    journal.store_results(
        "b1", [(c, "succeeded", line(c, "succeeded", f"a{i}")) for i, c in enumerate(ids[:4])]
    )
    journal.store_results(
        "b1", [(c, "errored", line(c, "errored", f"b{i}")) for i, c in enumerate(ids[4:])]
    )
    asked = [*ids[::-1], cid(99)]  # any order, and one request that has no result
    found = journal.find_results(asked, ENDPOINT)
    assert len(found) == 7
    blocks = list(journal.read_results(found, step=2))
    assert len(blocks) == 4  # 4 lines of one file, 3 of the other: never more than 2 a block
    assert all(len(lines) <= 2 and len(pos) == len(lines) for _, pos, lines in blocks)
    assert {batch for batch, _, _ in blocks} == {"b1"}
    got = {asked[p]: x for _, pos, lines in blocks for p, x in zip(pos.tolist(), lines)}
    assert got == journal.job_results(job_id)
    assert got[cid(1)] == line(cid(1), "succeeded", "a1")
    assert got[cid(5)] == line(cid(5), "errored", "b1")
    ok = journal.find_results(asked, ENDPOINT, succeeded_only=True)
    assert sorted(asked[p] for p in ok.pos.tolist()) == ids[:4]
    assert len(journal.find_results(asked, "http://127.0.0.1:9")) == 0


def test_index_labels_round_trip(journal: Journal) -> None:
    frames = [
        pd.DataFrame(
            {"x": [1, 2, 3]},
            index=pd.MultiIndex.from_tuples([("a", 1), ("a", 2), ("b", 1)], names=["k", "n"]),
        ),
        pd.DataFrame({"x": [1, 2, 3]}, index=["dup", "dup", "é ✓"]),
        pd.DataFrame({"x": [1, 2, 3]}, index=[10, 10, -3]),
        pd.DataFrame({"x": [1, 2, 3]}, index=[0.5, None, True]),
    ]
    for frame in frames:
        job_id = make_job(journal)
        journal.add_rows(job_id, frame.index, [cid(1), None, cid(1)])
        labels, ids = journal.get_rows(job_id)
        assert labels == list(frame.index)
        assert ids == [cid(1), None, cid(1)]
    with pytest.raises(ValueError):
        journal.add_rows(make_job(journal), [1, 2], [cid(1)])


def test_list_jobs(journal: Journal) -> None:
    empty = journal.list_jobs()
    assert empty.empty and {"job_id", "status", "succeeded", "created_at"} <= set(empty.columns)
    first = make_job(journal)
    second = make_job(journal)
    submit(journal, second, "b1", [cid(1)])
    submit(journal, second, "b2", [cid(2)], position=1)
    counts = {"processing": 0, "succeeded": 1, "errored": 1, "canceled": 0, "expired": 0}
    journal.update_batch("b1", "ended", counts)
    journal.update_batch("b2", "ended", counts)
    frame = journal.list_jobs()
    assert list(frame["job_id"]) == [second, first]
    assert frame.iloc[0]["batches"] == 2
    assert frame.iloc[1]["batches"] == 0
    assert str(frame["created_at"].dt.tz) == "UTC"


def _add(j: Journal, job_id: str, ids: list[str | None]) -> None:
    j.add_rows(job_id, range(len(ids)), ids)
    unique = list(dict.fromkeys(c for c in ids if c is not None))
    j.add_requests(job_id, unique, [b"{}"] * len(unique))


def test_job_counts_are_rows_by_final_status_after_a_retry(journal: Journal) -> None:
    job = make_job(journal)
    _add(journal, job, [cid(1), cid(2), cid(2), None])
    submit(journal, job, "b1", [cid(1), cid(2)])
    journal.store_results("b1", [(cid(1), "succeeded", line(cid(1), "succeeded"))])
    journal.store_results("b1", [(cid(2), "errored", line(cid(2), "errored"))])
    before = journal.list_jobs().iloc[0]
    assert (before["succeeded"], before["errored"], before["skipped"]) == (1, 2, 1)
    submit(journal, job, "b2", [cid(2)], position=1)  # the retry
    journal.store_results("b2", [(cid(2), "succeeded", line(cid(2), "succeeded"))])
    journal.set_job_status(job, "ended")
    after = journal.list_jobs().iloc[0]
    assert (after["succeeded"], after["errored"], after["skipped"]) == (3, 0, 1)
    assert (after["cached"], after["processing"], after["missing"]) == (0, 0, 0)


def test_a_job_served_from_the_cache_counts_its_rows(journal: Journal) -> None:
    paid = make_job(journal)
    _add(journal, paid, [cid(1), cid(2)])
    submit(journal, paid, "b1", [cid(1), cid(2)])
    journal.store_results("b1", [(c, "succeeded", line(c, "succeeded")) for c in (cid(1), cid(2))])
    cached = make_job(journal, fingerprint="fp2")
    _add(journal, cached, [cid(2), cid(1), cid(3)])
    row = journal.list_jobs().set_index("job_id").loc[cached]
    assert row["batches"] == 0
    assert (row["succeeded"], row["cached"], row["processing"]) == (2, 2, 1)
    journal.set_job_status(cached, "ended")
    assert journal.row_counts(cached)[cached]["missing"] == 1
    other = make_job(journal, fingerprint="fp3", endpoint="http://127.0.0.1:9")
    _add(journal, other, [cid(1)])
    assert journal.row_counts(other)[other]["succeeded"] == 0  # another endpoint's results


def test_bulk_100k(journal: Journal) -> None:
    # Sanity for scale, not a benchmark: 100k rows, requests and results in single calls.
    n = 100_000
    ids = [cid(i) for i in range(n)]
    job_id = make_job(journal, row_count=n, request_count=n)
    journal.add_rows(job_id, range(n), ids)
    journal.add_requests(job_id, ids, [b'{"max_tokens":16}'] * n)
    submit(journal, job_id, "big", ids)
    journal.store_results("big", ((c, "succeeded", line(c, "succeeded")) for c in ids))
    labels, row_ids = journal.get_rows(job_id)
    assert len(labels) == n and row_ids[-1] == ids[-1]
    assert len(journal.cached_results(ids, ENDPOINT)) == n
    assert len(journal.job_results(job_id)) == n


def test_threads_share_one_journal(journal: Journal) -> None:
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(20):
                job_id = make_job(journal)
                journal.add_rows(job_id, [0, 1], [cid(1), cid(2)])
                journal.get_job(job_id)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(journal.list_jobs()) == 80


WRITER = """
import sys, time
from pathlib import Path
from claude_lab._ledger import Journal

path, tag, go = sys.argv[1], sys.argv[2], Path(sys.argv[3])
while not go.exists():
    time.sleep(0.005)
with Journal(path) as j:
    for i in range(40):
        ids = [f"r{tag}{i:04d}{k:027d}" for k in range(50)]
        job = j.create_job(fingerprint=f"{tag}{i}", endpoint="http://x", model="m",
            templates="t", params={}, name="claude", row_count=50, request_count=50,
            package_version="0", meta={})
        j.add_rows(job, range(50), ids)
        j.add_requests(job, ids, [b"{}"] * 50)
        sub = j.begin_submission(job, 0, 50, 100)
        j.finish_submission(sub, f"b_{tag}_{i}", None, None, ids)
        j.store_results(f"b_{tag}_{i}", [(c, "succeeded", b"{}") for c in ids])
        print(job, flush=True)
"""


def test_two_processes_write_concurrently(tmp_path: Path) -> None:
    path, go = tmp_path / "shared.sqlite3", tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), tag, str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for tag in ("a", "b")
    ]
    go.touch()  # both start on a file neither has created yet
    outputs = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err.decode()
    written = {job for out, _ in outputs for job in out.decode().split()}
    assert len(written) == 80
    with Journal(path) as j:
        jobs = j.list_jobs()
        assert set(jobs["job_id"]) == written
        assert all(len(j.job_results(job)) == 50 for job in written)
    with raw(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT count(*) FROM result_index").fetchone()[0] == 80 * 50


def test_migrates_from_v1(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    # A file exactly as the first schema version left it, written without current code.
    with raw(path) as conn:
        for statement in jmod.MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
        conn.execute(
            "INSERT INTO jobs VALUES ('job_0123456789ab', 'fp', 'http://x', 'm', '\"t\"',"
            " '{}', 'claude', 1, 1, '0.0.1', 'ended', '2025-01-01T00:00:00+00:00',"
            " '2025-01-01T00:00:00+00:00', '{}')"
        )
        conn.execute(
            "INSERT INTO batches (batch_id, job_id, position, request_count,"
            " processing_status, updated_at) VALUES ('b1', 'job_0123456789ab', 0, 1, 'ended', '')"
        )
        conn.execute("INSERT INTO requests VALUES (?, x'7b7d', '')", (cid(1),))
        conn.execute("INSERT INTO job_requests VALUES ('job_0123456789ab', ?, 'b1')", (cid(1),))
        conn.execute("INSERT INTO results VALUES (?, 'b1', 'succeeded', x'7b7d', '')", (cid(1),))
        conn.commit()
    with Journal(path) as j:
        assert j.schema_version == jmod.SCHEMA_VERSION >= 2
        job = j.find_job("fp", "http://x")
        assert job is not None and job.job_id == "job_0123456789ab"
        assert j.get_job("b1").templates == "t"
        assert j.job_results(job.job_id) == {cid(1): b"{}"}
    with raw(path) as conn:
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert "jobs_fingerprint" in indexes


def test_refuses_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite3"
    with raw(path) as conn:
        conn.execute(f"PRAGMA user_version = {jmod.SCHEMA_VERSION + 1}")
    with pytest.raises(ConfigError, match="newer"):
        Journal(path)


def test_default_location_and_permissions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "lab" / "home"
    monkeypatch.setenv("CLAUDE_LAB_HOME", str(home))
    old = os.umask(0o022)
    try:
        j = open_journal()
        assert open_journal() is j and open_journal(home / "journal.sqlite3") is j
        make_job(j)
        assert j.path == (home / "journal.sqlite3").resolve()
        assert jmod.default_home() == home
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        files = [j.path, *(Path(f"{j.path}{s}") for s in ("-wal", "-shm"))]
        for f in files:
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
        with raw(j.path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        j.close()
        again = open_journal()  # a closed journal is reopened, not handed out
        assert again is not j and not again.closed
        again.close()
    finally:
        os.umask(old)
    monkeypatch.delenv("CLAUDE_LAB_HOME")
    assert jmod.default_home() == Path("~/.claude_lab").expanduser()


def test_api_key_never_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = "sk-ant-api03-" + secrets.token_hex(24)
    monkeypatch.setenv("ANTHROPIC_API_KEY", key)
    path = tmp_path / "journal.sqlite3"
    with Journal(path) as j:
        job_id = make_job(j, meta={"env": "notebook"})
        ids = [cid(1), cid(2)]
        j.add_rows(job_id, ["a", "b"], ids)
        j.add_requests(job_id, ids, [b'{"model":"m"}', b'{"model":"n"}'])
        submit(j, job_id, "msgbatch_1", ids)
        j.update_batch("msgbatch_1", "ended", {"succeeded": 2})
        j.store_results("msgbatch_1", [(c, "succeeded", line(c, "succeeded")) for c in ids])
        j.mark_fetched("msgbatch_1")
        files = [path, Path(f"{path}-wal")]
        assert all(key.encode() not in f.read_bytes() for f in files)
    assert key.encode() not in path.read_bytes()
