"""Identical calls started at the same moment by several processes sharing one journal
(two notebooks re-running a cell, a job array) pay once: one creates, the rest attach.
The same holds for a retry started by all of them at once."""

from __future__ import annotations

import contextlib
import multiprocessing
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from claude_lab._ledger import SCHEMA_VERSION, Journal
from claude_lab.emulator import Emulator
from claude_lab.emulator._process import spawned

PROCESSES = 3
TRIALS = 6
SUM = "What is {a} + {b}? Answer with a single number."


def _worker(base_url: str, trials: int, retry: bool, barrier: Any, reports: Any, seed: int) -> None:
    """One process: every trial, wait at the barrier, then make the trial's call."""
    import anthropic
    import pandas as pd

    import claude_lab  # noqa: F401  (registers df.claude)

    client = anthropic.Anthropic(base_url=base_url, api_key="emulator")
    opts: dict[str, Any] = {"progress": None, "poll_interval": 0.02, "model": "claude-haiku-4-5"}
    # Warm up (imports, journal, connections) on a call of this process's own, so the
    # barrier releases every process straight into the racing part.
    warm = pd.DataFrame({"a": [10_000 + seed], "b": [0]})
    warm.claude.batch(SUM, client=client, **opts)
    for trial in range(trials):
        a = [trial * 100 + i for i in range(8)]
        df = pd.DataFrame({"a": a, "b": [x * 2 for x in a]})
        barrier.wait(timeout=120)
        job = df.claude.batch(SUM, client=client, wait=False, **opts)
        out = job.result(timeout=120)
        first = dict(Counter(out["claude_status"]))
        if retry:
            barrier.wait(timeout=120)
            out = job.retry(errors=None, wait=True)
        ok = out["claude_status"] == "succeeded"
        correct = bool(
            (out.loc[ok, "claude_text"] == (out.loc[ok, "a"] + out.loc[ok, "b"]).astype(str)).all()
        )
        reports.put(
            {
                "seed": seed,
                "trial": trial,
                "job": job.id,
                "rows": len(out),
                "first": first,
                "statuses": dict(Counter(out["claude_status"])),
                "correct": correct,
            }
        )


@pytest.fixture
def emulator_process(request: pytest.FixtureRequest) -> Iterator[str]:
    """ONE standalone emulator process whose batches end as soon as they are made."""
    faults = getattr(request, "param", "{}")
    args = ["--request-seconds", "0", "--concurrency", "100000", "--faults", faults]
    with spawned(*args) as base_url:
        yield base_url


def _creates(base_url: str) -> int:
    with urllib.request.urlopen(f"{base_url}/_emulator/requests") as resp:
        log = orjson.loads(resp.read())
    return sum(1 for r in log if r["method"] == "POST" and r["path"] == "/v1/messages/batches")


def _run(base_url: str, retry: bool) -> list[dict[str, Any]]:
    ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads
    barrier = ctx.Barrier(PROCESSES)
    reports = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(base_url, TRIALS, retry, barrier, reports, k))
        for k in range(PROCESSES)
    ]
    with _running(procs):
        return _collect(reports, procs, PROCESSES * TRIALS)


@contextlib.contextmanager
def _running(procs: list[Any]) -> Iterator[None]:
    """Start the worker processes; whatever happens, none outlives the block."""
    for p in procs:
        p.start()
    try:
        yield
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()


def _collect(reports: Any, procs: list[Any], n: int, bound: float = 240) -> list[Any]:
    """``n`` reports, then every worker's clean exit; failing at once (not after the
    bound) when a worker has died: its traceback is on stderr, and the survivors would
    only wait at a broken barrier."""
    import queue
    import time

    got: list[Any] = []
    deadline = time.monotonic() + bound
    while len(got) < n:
        try:
            got.append(reports.get(timeout=0.5))
        except queue.Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            assert not dead, f"a worker process died (exit codes {dead}); see its stderr"
            assert time.monotonic() < deadline, f"only {len(got)} of {n} reports in {bound} s"
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return got


def test_simultaneous_identical_calls_create_once(emulator_process: str) -> None:
    reports = _run(emulator_process, retry=False)
    # Exactly one create per call (plus each process's own warm-up call).
    assert _creates(emulator_process) == TRIALS + PROCESSES
    for trial in range(TRIALS):
        mine = [r for r in reports if r["trial"] == trial]
        assert len(mine) == PROCESSES and len({r["job"] for r in mine}) == 1
        for r in mine:  # every process gets every row, right
            assert r["rows"] == 8 and r["statuses"] == {"succeeded": 8} and r["correct"]


@pytest.mark.parametrize("emulator_process", ['{"error_rate": 0.5}'], indirect=True)
def test_a_retry_started_by_every_process_at_once_creates_once(emulator_process: str) -> None:
    reports = _run(emulator_process, retry=True)
    waves = 0
    for trial in range(TRIALS):
        mine = [r for r in reports if r["trial"] == trial]
        assert len({r["job"] for r in mine}) == 1
        firsts = {orjson.dumps(r["first"], option=orjson.OPT_SORT_KEYS) for r in mine}
        assert len(firsts) == 1  # every process saw the same first round
        waves += 1 + bool(mine[0]["first"].get("errored"))
        # After the shared retry, every process holds the same rows.
        assert len({orjson.dumps(r["statuses"], option=orjson.OPT_SORT_KEYS) for r in mine}) == 1
        assert all(r["rows"] == 8 and r["correct"] for r in mine)
    assert waves > TRIALS  # the faults made at least one retry wave
    # One create per call and per retry wave (plus each process's own warm-up call).
    assert _creates(emulator_process) == waves + PROCESSES


def test_simultaneous_identical_calls_in_threads_create_once(fast: Emulator) -> None:
    import threading

    import pandas as pd

    opts: dict[str, Any] = {"progress": None, "poll_interval": 0.02, "model": "claude-haiku-4-5"}
    for trial in range(TRIALS):
        a = [trial * 100 + i for i in range(8)]
        df = pd.DataFrame({"a": a, "b": [x * 2 for x in a]})
        gate = threading.Barrier(4)
        outs: list[Any] = []

        def call(
            df: pd.DataFrame = df, gate: threading.Barrier = gate, outs: list[Any] = outs
        ) -> None:
            gate.wait(timeout=60)
            outs.append(df.claude.batch(SUM, client=fast.client(), wait=False, **opts))

        threads = [threading.Thread(target=call) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert len({job.id for job in outs}) == 1
        for job in outs:
            assert (job.result(timeout=60)["claude_status"] == "succeeded").all()
        assert fast.count("POST", "/v1/messages/batches") == trial + 1


def _own_call_worker(base_url: str, ready: Any, go: Any, reports: Any, seed: int) -> None:
    """One process, its own call (rows of its own), all of the same size."""
    import anthropic
    import pandas as pd

    import claude_lab  # noqa: F401  (registers df.claude)

    client = anthropic.Anthropic(base_url=base_url, api_key="emulator")
    opts: dict[str, Any] = {"progress": None, "poll_interval": 0.02, "model": "claude-haiku-4-5"}
    pd.DataFrame({"a": [10_000 + seed], "b": [0]}).claude.batch(SUM, client=client, **opts)
    a = [seed * 1000 + i for i in range(8)]
    df = pd.DataFrame({"a": a, "b": [x * 2 for x in a]})
    ready.wait(timeout=120)  # warmed up; the parent now arms the faults
    go.wait(timeout=120)
    out = df.claude.batch(SUM, client=client, **opts)
    ok = bool((out["claude_text"] == (out["a"] + out["b"]).astype(str)).all())
    reports.put({"seed": seed, "statuses": dict(Counter(out["claude_status"])), "correct": ok})


def test_processes_whose_same_size_creates_are_all_lost_each_keep_their_own(
    emulator_process: str,
) -> None:
    """Every process's create is answered with a dropped connection, and each sees the
    others' batches of its size (and a foreign one): each adopts only the batch its
    custom_ids prove, and pays once."""
    ctx = multiprocessing.get_context("spawn")
    ready, go = ctx.Barrier(PROCESSES + 1), ctx.Barrier(PROCESSES + 1)
    reports = ctx.Queue()
    procs = [
        ctx.Process(target=_own_call_worker, args=(emulator_process, ready, go, reports, k))
        for k in range(PROCESSES)
    ]
    with _running(procs):
        ready.wait(timeout=120)
        arm = urllib.request.Request(
            f"{emulator_process}/_emulator/faults",
            data=orjson.dumps({"drop_after_create": PROCESSES, "others": [("during", 8)]}),
            method="POST",
        )
        urllib.request.urlopen(arm).read()
        go.wait(timeout=120)
        got = _collect(reports, procs, PROCESSES)
    assert all(r["statuses"] == {"succeeded": 8} and r["correct"] for r in got)
    with urllib.request.urlopen(f"{emulator_process}/_emulator/batches") as resp:
        report = orjson.loads(resp.read())
    mine = [b for b in report if not b["foreign"] and len(b["custom_ids"]) == 8]
    assert len(mine) == PROCESSES  # each process's requests paid once
    assert sum(b["foreign"] for b in report) == 1
    assert not any(b["canceled"] or b["deleted"] for b in report)


def _opener(paths: list[str], barrier: Any, reports: Any) -> None:
    """One process: for each fresh path, wait at the barrier, then open it."""
    from claude_lab._ledger import Journal

    for path in paths:
        barrier.wait(timeout=120)
        try:
            Journal(path).close()
            reports.put(None)
        except Exception as exc:  # reported, so the parent names the failure
            reports.put(f"{path}: {exc!r}")


def test_processes_opening_a_fresh_journal_at_once_all_get_a_journal(tmp_path: Path) -> None:
    """The first opener migrates while the others check the file is not someone else's
    database; read as two statements, that check could see the migration's tables but
    not its version, and refuse our own journal as foreign (11 of 40 trials did)."""
    ctx = multiprocessing.get_context("spawn")
    paths = [str(tmp_path / f"journal{t}.sqlite3") for t in range(40)]
    barrier, reports = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_opener, args=(paths, barrier, reports)) for _ in range(4)]
    with _running(procs):
        failures = [r for r in _collect(reports, procs, 4 * len(paths)) if r is not None]
    assert failures == []
    for path in paths:  # and each is one whole journal, at the current schema
        with Journal(path) as j:
            assert j.schema_version == SCHEMA_VERSION
