"""pilot() and messages(): rows straight through the Messages API."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

import claude_lab
from claude_lab.emulator import Emulator, RowError, serve

FAST: dict[str, Any] = {"progress": None, "poll_interval": 0.02, "model": "claude-haiku-4-5"}
PROMPT = "Question: what is {a} + {b}? Explain briefly, then give the number."


def _frame(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    return pd.DataFrame(
        {"a": rng.integers(1, 10**6, n), "b": rng.integers(1, 10**3, n)},
        index=pd.Index([f"row{i}" for i in range(n)], name="id"),
    )


def test_pilot_sends_n_messages_no_batch_and_projects_the_batch_cost(
    fast: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    df = _frame(120)
    client = fast.client()
    pilot = df.claude.pilot(PROMPT, n=5, seed=3, client=client, max_tokens=128, **FAST)
    assert fast.count("POST", "/v1/messages") == 5
    assert fast.count("POST", "/v1/messages/batches") == 0
    assert len(claude_lab.jobs()) == 0  # nothing journaled
    assert len(pilot) == 5 and set(pilot.index) <= set(df.index)
    assert (pilot["claude_status"] == "succeeded").all()
    assert pilot["claude_request"].str.contains('"model":"claude-haiku-4-5"').all()
    printed = capsys.readouterr().out
    assert "Projected full batch: 120 request(s)" in printed
    projected = pilot.attrs["claude_lab"]["projection"]["projected_batch_cost_usd"]

    out = df.claude.batch(PROMPT, client=client, max_tokens=128, **FAST)
    reported = out.attrs["claude_lab"]["cost_usd"]
    assert abs(projected - reported) <= 0.10 * reported
    # Standard prices: twice the batch price of the same request.
    same = out.loc[pilot.index, "claude_cost_usd"].to_numpy()
    assert np.allclose(pilot["claude_cost_usd"].to_numpy(), 2 * same)


def test_pilot_is_seeded_and_rows_picks_them(fast: Emulator) -> None:
    df = _frame(30)
    client = fast.client()
    first = df.claude.pilot(PROMPT, n=4, seed=1, client=client, **FAST)
    again = df.claude.pilot(PROMPT, n=4, seed=1, client=client, **FAST)
    assert list(first.index) == list(again.index)
    picked = df.claude.pilot(PROMPT, rows=["row2", "row9"], client=client, **FAST)
    assert list(picked.index) == ["row2", "row9"]
    with pytest.raises(claude_lab.InputError, match="row99"):
        df.claude.pilot(PROMPT, rows=["row99"], client=client, **FAST)


def test_pilot_refuses_what_batch_refuses_before_sending(fast: Emulator) -> None:
    with pytest.raises(claude_lab.InputError, match="Did you mean"):
        _frame(3).claude.pilot(
            PROMPT, client=fast.client(), **{**FAST, "model": "claude-hiaku-4-5"}
        )
    assert fast.count("POST", "/v1/messages") == 0


def test_messages_on_200_rows_with_429s_returns_every_row_in_order(fast: Emulator) -> None:
    df = _frame(200)
    fast.faults.rate_limit = {"messages": 40}
    fast.faults.retry_after_ms = 1
    out = df.claude.messages(PROMPT, client=fast.client(), concurrency=8, **FAST)
    assert list(out.index) == list(df.index)
    assert (out["claude_status"] == "succeeded").all()
    expected = (df["a"] + df["b"]).astype(str)
    assert out["claude_text"].str.contains("The answer is").all()
    assert [t.split()[-1].rstrip(".") for t in out["claude_text"]] == expected.tolist()
    assert fast.count("POST", "/v1/messages") == 240  # 40 refusals, each retried
    assert fast.count("POST", "/v1/messages/batches") == 0


def test_messages_is_journaled_and_cached(fast: Emulator) -> None:
    df = _frame(12)
    client = fast.client()
    first = df.claude.messages(PROMPT, client=client, **FAST)
    assert fast.count("POST", "/v1/messages") == 12
    jobs = claude_lab.jobs()
    assert len(jobs) == 1
    again = df.claude.messages(PROMPT, client=client, **FAST)
    assert fast.count("POST", "/v1/messages") == 12  # answered by the journal
    assert again["claude_cached"].all()
    pd.testing.assert_series_equal(first["claude_text"], again["claude_text"])


def test_messages_row_errors_are_data() -> None:
    def responder(params: dict[str, Any]) -> Any:
        if "13 +" in params["messages"][0]["content"]:
            return RowError("invalid_request_error", "this one is refused")
        return None

    df = pd.DataFrame({"a": [12, 13, 14], "b": [1, 1, 1]})
    with serve(request_seconds=0, responder=responder) as emu:
        out = df.claude.messages(PROMPT, client=emu.client(), **FAST)
    assert out["claude_status"].tolist() == ["succeeded", "errored", "succeeded"]
    assert out["claude_error"].iloc[1] == "invalid_request_error: this one is refused"


def test_one_row_refused_many_times_in_a_row_still_succeeds(fast: Emulator) -> None:
    # A busy organisation can refuse the same request more often than the retry budget
    # for real failures; refusals cost nothing and say when to come back.
    fast.faults.rate_limit = {"messages": 20}
    fast.faults.retry_after_ms = 1
    out = _frame(1).claude.messages(PROMPT, client=fast.client(), concurrency=1, **FAST)
    assert out["claude_status"].tolist() == ["succeeded"]
    assert fast.count("POST", "/v1/messages") == 21
