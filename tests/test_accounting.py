"""One accounting model: a row's cost is the price of its reply; job.spent is what this call
spent; <name>_cached marks rows this call did not pay for; jobs() counts final row statuses."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pandas as pd
import pytest

import claude_lab
from claude_lab.emulator import Emulator, RowError, serve

CREATE = ("POST", "/v1/messages/batches")
FAST: dict[str, Any] = {"progress": None, "poll_interval": 0.02, "model": "claude-haiku-4-5"}
SUM = "What is {a} + {b}?"


def _frame(n: int, start: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"a": range(start, start + n), "b": range(100, 100 + n)})


def _run(df: pd.DataFrame, emu: Emulator, **kw: Any) -> claude_lab.BatchJob:
    job = df.claude.batch(SUM, client=emu.client(), wait=False, **FAST, **kw)
    assert isinstance(job, claude_lab.BatchJob)
    job.result(timeout=30)
    return job


def test_an_identical_rerun_pays_nothing_and_says_so(fast: Emulator) -> None:
    df = _frame(5)
    first = _run(df, fast)
    out1 = first.result()
    assert not out1["claude_cached"].any()
    assert first.spent == pytest.approx(out1["claude_cost_usd"].sum()) and first.spent > 0
    again = _run(df, fast)
    out2 = again.result()
    assert fast.count(*CREATE) == 1  # the re-run re-attached; nothing was sent
    assert out2["claude_cached"].all()
    assert out2["claude_cost_usd"].tolist() == out1["claude_cost_usd"].tolist()
    assert again.spent == 0.0
    assert again.cost == pytest.approx(first.cost)
    assert out2.attrs["claude_lab"]["spent_usd"] == 0.0
    assert out2.attrs["claude_lab"]["cost_usd"] == pytest.approx(first.spent)


def test_attaching_to_a_finished_job_spends_nothing(fast: Emulator) -> None:
    first = _run(_frame(3), fast)
    attached = claude_lab.attach(first.id, client=fast.client(), progress=None)
    out = attached.result(timeout=30)
    assert attached.spent == 0.0 and out["claude_cached"].all()
    assert out["claude_cost_usd"].tolist() == first.result()["claude_cost_usd"].tolist()


def test_a_partial_rerun_pays_only_for_the_new_rows(fast: Emulator) -> None:
    first = _run(_frame(4), fast).result()
    bigger = _frame(6)  # rows 0-3 as before, rows 4-5 new
    job = _run(bigger, fast)
    out = job.result()
    assert out["claude_cached"].tolist() == [True] * 4 + [False] * 2
    assert out["claude_cost_usd"].iloc[:4].tolist() == first["claude_cost_usd"].tolist()
    assert (out["claude_cost_usd"] > 0).all()
    assert job.spent == pytest.approx(out["claude_cost_usd"].iloc[4:].sum())
    assert job.cost == pytest.approx(out["claude_cost_usd"].sum())


def test_jobs_counts_reflect_each_rows_final_status_after_a_retry() -> None:
    attempts: Counter[str] = Counter()

    def flaky_once(params: dict[str, Any]) -> Any:
        text = params["messages"][0]["content"]
        attempts[text] += 1
        if attempts[text] == 1 and "+ 10" in text:  # rows whose b ends in 0: fail once
            return RowError("overloaded_error", "Overloaded")
        return None

    df = pd.DataFrame({"a": range(20), "b": [10 if i % 4 == 0 else 7 for i in range(20)]})
    with serve(request_seconds=0, responder=flaky_once) as emu:
        job = _run(df, emu)
        assert (job.result()["claude_status"] == "errored").sum() == 5
        out = job.retry()
        assert isinstance(out, pd.DataFrame) and (out["claude_status"] == "succeeded").all()
    row = claude_lab.jobs().set_index("job_id").loc[job.id]
    assert (row["succeeded"], row["errored"], row["batches"]) == (20, 0, 2)
    assert row["cached"] == 0


def test_a_job_served_entirely_from_the_cache_counts_its_rows(fast: Emulator) -> None:
    df = _frame(4)
    _run(df, fast)
    # A subset of those requests, with a repeat, is another job, answered from the cache.
    subset = df.iloc[[2, 1, 2]].set_axis(list("xyz"))
    job = _run(subset, fast)
    assert fast.count(*CREATE) == 1 and job.spent == 0.0
    assert job.result()["claude_cached"].all()
    row = claude_lab.jobs().set_index("job_id").loc[job.id]
    assert (row["batches"], row["succeeded"], row["cached"], row["rows"]) == (0, 3, 3, 3)
