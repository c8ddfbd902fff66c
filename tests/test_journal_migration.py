"""A journal written by the v3 schema (per-row tables) opens under the bulk schema:
its jobs re-attach without a call to the API, and its results answer the cache."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pandas as pd

import claude_lab
import claude_lab._job
from claude_lab import _ledger as jmod
from claude_lab import _plan as plan_mod
from claude_lab import _requests as requests
from claude_lab.emulator import Emulator

SUM = "What is {a} + {b}? Answer with a single number."
FAST = {"progress": None, "poll_interval": 0.02, "model": "claude-haiku-4-5"}
CREATE = ("POST", "/v1/messages/batches")
T0 = "2026-01-01T00:00:00+00:00"


def _line(custom_id: str, text: str) -> bytes:
    message = {
        "id": "msg_old",
        "type": "message",
        "role": "assistant",
        "model": "claude-haiku-4-5",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 7, "output_tokens": 2},
    }
    return orjson.dumps(
        {"custom_id": custom_id, "result": {"type": "succeeded", "message": message}}
    )


def _write_v3(path: Path, df: pd.DataFrame, endpoint: str) -> tuple[str, list[str]]:
    """The file the v3 code wrote for a finished run of ``SUM`` over ``df`` (one batch)."""
    p = plan_mod.plan(df, SUM, **FAST)
    ids, params = p.encoded.custom_ids, p.encoded.params
    job_id = "job_00000000abcd"
    conn = sqlite3.connect(path)
    for step in jmod.MIGRATIONS[:3]:
        for statement in step:
            assert isinstance(statement, str)
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 3")
    conn.execute(
        "INSERT INTO jobs VALUES (?, ?, ?, 'claude-haiku-4-5', ?, ?, 'claude', ?, ?, '0.1',"
        " 'ended', ?, ?, ?)",
        (
            job_id,
            requests.fingerprint(ids, endpoint),
            endpoint.rstrip("/"),
            orjson.dumps(p.config.templates).decode(),
            orjson.dumps(p.config.params).decode(),
            len(df),
            len(ids),
            T0,
            T0,
            '{"cache": true}',
        ),
    )
    conn.executemany(
        "INSERT INTO job_rows VALUES (?, ?, ?, ?)",
        [(job_id, i, orjson.dumps(label).decode(), ids[u]) for i, (label, u) in
         enumerate(zip(df.index, p.encoded.row_uid))],
    )  # fmt: skip
    conn.executemany(
        "INSERT INTO requests VALUES (?, ?, ?)", [(c, b, T0) for c, b in zip(ids, params)]
    )
    conn.execute(
        "INSERT INTO submissions (id, job_id, position, request_count, body_bytes, started_at,"
        " batch_id, owner) VALUES (1, ?, 0, ?, 100, ?, 'msgbatch_old', NULL)",
        (job_id, len(ids), T0),
    )
    conn.executemany(
        "INSERT INTO job_requests (job_id, custom_id, batch_id, submission_id)"
        " VALUES (?, ?, 'msgbatch_old', 1)",
        [(job_id, c) for c in ids],
    )
    counts = {"processing": 0, "succeeded": len(ids), "errored": 0, "canceled": 0, "expired": 0}
    conn.execute(
        "INSERT INTO batches VALUES ('msgbatch_old', ?, 0, ?, 'ended', ?, ?, ?, ?, 1, ?)",
        (job_id, len(ids), orjson.dumps(counts).decode(), T0, T0, T0, T0),
    )
    conn.executemany(
        "INSERT INTO results VALUES (?, 'msgbatch_old', 'succeeded', ?, ?)",
        [(c, _line(c, f"stored {k}"), T0) for k, c in enumerate(ids)],
    )
    conn.commit()
    conn.close()
    return job_id, ids


def test_v3_journal_reattaches_and_serves_its_cache(fast: Emulator) -> None:
    df = pd.DataFrame({"a": [1, 2, 3, 4], "b": [10, 20, 30, 40]}, index=[7, 3, 5, 9])
    client = fast.client()
    path = jmod.default_home() / "journal.sqlite3"
    path.parent.mkdir(parents=True, exist_ok=True)
    job_id, ids = _write_v3(path, df, str(client.base_url))

    job = claude_lab.attach(job_id, client=client)
    out = job.result()
    assert out.index.tolist() == [7, 3, 5, 9]
    assert out["claude_text"].tolist() == [f"stored {k}" for k in range(4)]
    assert (out["claude_status"] == "succeeded").all()
    assert fast.requests == []  # everything came from the migrated journal

    jnl = jmod.open_journal()
    assert jnl.schema_version == jmod.SCHEMA_VERSION
    assert jnl.carried_custom_ids(job_id) == set(ids)
    assert jnl.job_custom_ids(job_id, "msgbatch_old") == ids
    tables = {r[0] for r in jnl._read("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert not tables & {"results", "requests", "job_requests", "job_rows"}

    # The same call re-attaches to the migrated job and sends nothing.
    again = df.claude.batch(SUM, client=client, **FAST)
    assert again.attrs["claude_lab"]["job_id"] == job_id
    # Only the model catalogue is read (once per client, before anything could be sent).
    assert [r.path for r in fast.requests] == ["/v1/models"]

    # A new call sharing three rows: those come from the migrated results, one is sent.
    more = pd.concat([df.iloc[:3], pd.DataFrame({"a": [5], "b": [50]}, index=[11])])
    out = more.claude.batch(SUM, client=client, **FAST)
    assert out["claude_text"].tolist()[:3] == ["stored 0", "stored 1", "stored 2"]
    assert (out["claude_status"] == "succeeded").all()
    assert fast.count(*CREATE) == 1
    [batch_id] = {b for b in out["claude_batch_id"].dropna() if b != "msgbatch_old"}
    sent = client.messages.batches.retrieve(batch_id).request_counts
    assert sent.succeeded == 1


def test_a_journal_with_zlib_blobs_still_reads(fast: Emulator) -> None:
    """Blobs were zlib streams before they became zstd frames: a journal the previous
    release wrote re-attaches, serves its cache and exports offline, and a new call adds
    zstd blobs beside the old ones."""
    import zlib

    df = pd.DataFrame({"a": [1, 2, 3], "b": [10, 20, 30]})
    client = fast.client()
    first = df.claude.batch(SUM, client=client, **FAST)
    jnl = jmod.open_journal()
    blobs = {
        "row_sets": ("labels", "custom_ids"),
        "request_sets": ("custom_ids", "params"),
        "result_files": ("lines",),
        "input_sets": ("frame",),
    }
    with jnl._write() as conn:
        rewritten = 0
        for table, columns in blobs.items():
            for column in columns:
                for rowid, blob in conn.execute(f"SELECT rowid, {column} FROM {table}").fetchall():
                    old = zlib.compress(jmod._inflate(blob), 1)
                    assert (old[:1] == b"\x78" and old != blob) or blob[:1] == b"\x78"
                    conn.execute(f"UPDATE {table} SET {column} = ? WHERE rowid = ?", (old, rowid))
                    rewritten += 1
    assert rewritten >= 6
    jnl.close()

    again = df.claude.batch(SUM, client=client, **FAST)  # re-attaches, sends nothing
    assert fast.count(*CREATE) == 1
    assert again["claude_cached"].all()  # this call paid for nothing
    pd.testing.assert_frame_equal(
        again.drop(columns="claude_cached"), first.drop(columns="claude_cached")
    )
    out, _ = claude_lab._job.load_result(first.attrs["claude_lab"]["job_id"])
    assert out["claude_text"].tolist() == first["claude_text"].tolist()
    assert out["a"].tolist() == [1, 2, 3]  # the stored input columns, from a zlib blob

    more = pd.DataFrame({"a": [1, 2, 3, 4], "b": [10, 20, 30, 40]})
    out = more.claude.batch(SUM, client=client, **FAST)
    assert out["claude_text"].tolist() == ["11", "22", "33", "44"]
    assert out["claude_cached"].tolist() == [True, True, True, False]
    assert fast.count(*CREATE) == 2
