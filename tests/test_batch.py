"""df.claude.batch end to end, through the real SDK over HTTP against the emulator."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pydantic
import pytest

import claude_lab  # registers df.claude
from claude_lab._errors import (
    ConfigError,
    InputError,
    RequestTooLargeError,
    TemplateError,
)
from claude_lab.emulator import Emulator, RowError, serve

CREATE = ("POST", "/v1/messages/batches")
SUM = "What is {a} + {b}? Answer with a single number."
FAST: dict[str, Any] = {"progress": None, "poll_interval": 0.02, "model": "claude-haiku-4-5"}


def _sums(n: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a, b = rng.integers(1, 999, n), rng.integers(1, 999, n)
    return pd.DataFrame({"a": a, "b": b, "expected": (a + b).astype(str)})


def test_shuffled_results_land_on_their_rows(fast: Emulator) -> None:
    df = _sums(300)
    out = df.claude.batch(SUM, client=fast.client(), **FAST)
    assert out.index.equals(df.index) and len(out) == len(df)
    assert (out["claude_status"] == "succeeded").all()
    assert (out["claude_text"] == out["expected"]).all()
    assert out["claude_custom_id"].is_unique
    assert fast.count(*CREATE) == 1


def test_replies_are_claude_text_and_out_claude_stays_the_accessor(fast: Emulator) -> None:
    out = _sums(3).claude.batch(SUM, client=fast.client(), **FAST)
    assert out.claude_text.tolist() == out["expected"].tolist()
    assert out.claude_text.iloc[0] == out["expected"].iloc[0]
    assert "claude" not in out.columns
    assert callable(out.claude.batch)  # a next step can chain on the result


def test_input_frame_is_untouched(fast: Emulator) -> None:
    df = _sums(20)
    before = df.copy(deep=True)
    out = df.claude.batch(SUM, client=fast.client(), **FAST)
    pd.testing.assert_frame_equal(df, before)
    assert list(out.columns[: len(df.columns)]) == list(df.columns)
    assert "claude_text" not in df.columns


@pytest.mark.parametrize(
    "index",
    [
        pd.Index(["x", "x", "y", "x"]),
        pd.MultiIndex.from_tuples([("a", 1), ("a", 2), ("b", 1), ("a", 1)], names=["g", "n"]),
        pd.Index([10, 3, 10, 7]),
    ],
    ids=["duplicate-strings", "multiindex", "duplicate-ints"],
)
def test_any_index_keeps_order_and_alignment(fast: Emulator, index: pd.Index) -> None:
    df = pd.DataFrame({"a": [1, 2, 3, 4], "b": [10, 20, 30, 40]}, index=index)
    out = df.claude.batch(SUM, client=fast.client(), **FAST)
    assert out.index.equals(index)
    assert out["claude_text"].tolist() == ["11", "22", "33", "44"]


def test_identical_rows_are_sent_once_and_fanned_out(fast: Emulator) -> None:
    df = pd.DataFrame({"a": [1, 1, 2, 1], "b": [1, 1, 2, 1]})
    out = df.claude.batch(SUM, client=fast.client(), **FAST)
    batch = fast.client().messages.batches.retrieve(out["claude_batch_id"].iloc[0])
    assert batch.request_counts.succeeded == 2
    assert out["claude_text"].tolist() == ["2", "2", "4", "2"]
    # Paid once: the cost of the shared request sits on its first row only.
    cost = out["claude_cost_usd"]
    assert cost.iloc[0] > 0 and cost.iloc[1] == 0 and cost.iloc[3] == 0


def test_errored_rows_carry_the_nested_error(fast: Emulator) -> None:
    def responder(params: dict[str, Any]) -> Any:
        text = params["messages"][0]["content"]
        if "13" in text:
            return RowError("overloaded_error", "Overloaded, try later")
        return None  # the default reply

    df = pd.DataFrame(
        {
            "q": [
                "What is 1 + 1? Answer with a single number.",
                "What is 13 + 1?",
                "What is 2 + 2? Answer with a single number.",
            ]
        }
    )
    with serve(request_seconds=0, responder=responder) as emu:
        out = df.claude.batch("{q}", client=emu.client(), **FAST)
    assert out["claude_status"].tolist() == ["succeeded", "errored", "succeeded"]
    assert out["claude_error"].iloc[1] == "overloaded_error: Overloaded, try later"
    assert pd.isna(out["claude_text"].iloc[1]) and pd.isna(out["claude_output_tokens"].iloc[1])
    assert out["claude_text"].iloc[2] == "4"


def test_unknown_model_is_an_errored_row_not_an_exception(fast: Emulator) -> None:
    # A misspelt model is refused before sending (test_preflight); one the API stops
    # serving after the catalogue was read comes back as row data, not an exception.
    from claude_lab._models import catalogue

    df = pd.DataFrame({"q": ["hi"]})
    client = fast.client()
    catalogue(client)  # read once per client, then cached
    fast.core.catalogue.models["claude-haiku-4-5-20251001"]["lifecycle"] = "retired"
    out = df.claude.batch("{q}", client=client, **FAST)
    assert out["claude_status"].iloc[0] == "errored"
    assert out["claude_error"].iloc[0].startswith("not_found_error:")


def test_skipped_rows_are_not_sent_and_keep_their_place(fast: Emulator) -> None:
    df = pd.DataFrame(
        {"q": ["What is 1 + 2? One number.", None, np.nan, "What is 3 + 4? One number."]}
    )
    out = df.claude.batch("{q}", client=fast.client(), **FAST)
    assert out["claude_status"].tolist() == ["succeeded", "skipped", "skipped", "succeeded"]
    assert out["claude_text"].tolist()[::3] == ["3", "7"]
    batch = fast.client().messages.batches.retrieve(out["claude_batch_id"].iloc[0])
    assert batch.request_counts.succeeded == 2


def test_expired_rows(emu: Emulator) -> None:
    df = _sums(40)
    emu.faults.expire_rate = 0.25
    job = df.claude.batch(SUM, client=emu.client(), wait=False, **FAST)
    emu.wait_count(*CREATE)
    emu.clock.advance(25 * 3600)  # past the 24 h expiry: unprocessed rows expire
    out = job.result(timeout=30)
    status = out["claude_status"].value_counts().to_dict()
    assert set(status) == {"succeeded", "expired"} and status["expired"] >= 1
    assert out.loc[out.claude_status == "expired", "claude_error"].str.startswith("expired").all()


def test_cancel_ends_unfinished_rows_as_canceled() -> None:
    with serve(speed=0, request_seconds=3600, cancel_seconds=1) as emu:
        job = _sums(30).claude.batch(SUM, client=emu.client(), wait=False, **FAST)
        emu.wait_count(*CREATE)
        job.cancel()  # the job may not have heard of its batch yet: it cancels it when it does
        emu.wait_count("POST", "/v1/messages/batches/*/cancel")
        emu.clock.advance(600)
        out = job.result(timeout=30)
    assert (out["claude_status"] == "canceled").all()
    assert out["claude_error"].str.startswith("canceled").all()
    assert job.status == "canceled"
    assert job.request_counts["canceled"] == 30


def test_known_reply_gives_exact_tokens_stop_reason_and_cost(fast: Emulator) -> None:
    usage = {
        "input_tokens": 1000,
        "output_tokens": 200,
        "cache_creation_input_tokens": 400,
        "cache_read_input_tokens": 2000,
    }

    def responder(params: dict[str, Any]) -> dict[str, Any]:
        return {
            "content": [{"type": "text", "text": "a long answer"}],
            "stop_reason": "max_tokens",
            "usage": usage,
        }

    with serve(request_seconds=0, responder=responder) as emu:
        out = pd.DataFrame({"q": ["x"]}).claude.batch(
            "{q}", client=emu.client(), **{**FAST, "model": "claude-sonnet-4-5"}
        )
    row = out.iloc[0]
    assert row["claude_text"] == "a long answer" and row["claude_stop_reason"] == "max_tokens"
    assert row["claude_input_tokens"] == 1000 and row["claude_output_tokens"] == 200
    assert row["claude_cache_write_tokens"] == 400 and row["claude_cache_read_tokens"] == 2000
    # Sonnet 4.5 list: $3 in / $15 out per MTok; batch halves it; cache write 1.25x, read 0.1x.
    expected = (1000 * 3 + 200 * 15 + 400 * 3 * 1.25 + 2000 * 3 * 0.1) * 0.5 / 1e6
    assert row["claude_cost_usd"] == pytest.approx(expected)
    assert out.attrs["claude_lab"]["cost_usd"] == pytest.approx(expected)


def test_structured_output_and_parse(fast: Emulator) -> None:
    class Grade(pydantic.BaseModel):
        score: int
        verdict: str

    df = pd.DataFrame({"q": ["What is 2 + 2?", "What is 5 + 5?"]})
    out = df.claude.batch("Grade: {q}", client=fast.client(), output=Grade, **FAST)
    assert {"claude_score", "claude_verdict"} <= set(out.columns)
    assert (out["claude_status"] == "succeeded").all()
    assert out["claude_error"].isna().all()

    out = df.claude.batch("{q}", client=fast.client(), parse=r"(\d+)", name="p", **FAST)
    assert out["p_parsed"].tolist() == ["4", "10"]


def test_transient_404_and_dropped_results_stream_lose_nothing(fast: Emulator) -> None:
    fast.faults.not_found_after_create = 2
    fast.faults.drop_results = 1
    df = _sums(500, seed=3)
    out = df.claude.batch(SUM, client=fast.client(), **FAST)
    assert (out["claude_status"] == "succeeded").all()
    assert (out["claude_text"] == out["expected"]).all()
    assert fast.count("GET", "*") >= 2  # downloaded twice
    assert fast.count(*CREATE) == 1
    # The journal holds each reply once: the resumed download stored only what was new.
    db = claude_lab._ledger.open_journal()._db
    count, distinct = db.execute(
        "SELECT count(*), count(DISTINCT custom_id) FROM result_index"
    ).fetchone()
    assert count == distinct == out["claude_custom_id"].nunique()


def test_rate_limited_create_is_retried_once_not_duplicated(fast: Emulator) -> None:
    fast.faults.rate_limit = {"create": 1}
    out = _sums(5).claude.batch(SUM, client=fast.client(), **FAST)
    assert (out["claude_status"] == "succeeded").all()
    batches = list(fast.client().messages.batches.list())
    assert len(batches) == 1


def test_150001_rows_are_split_into_two_batches(fast: Emulator) -> None:
    n = 150_001
    df = pd.DataFrame({"i": np.arange(n)})
    out = df.claude.batch("Say {i}", client=fast.client(), max_tokens=4, **FAST)
    assert len(out) == n
    assert out["claude_batch_id"].nunique() == 2
    sizes = sorted(out["claude_batch_id"].value_counts().tolist())
    assert sizes == [50_001, 100_000]
    assert (out["claude_status"] == "succeeded").all()
    assert fast.count(*CREATE) == 2


def test_oversized_request_is_rejected_by_row_before_any_create(fast: Emulator) -> None:
    big = "x" * (256 * 1024 * 1024 + 10)
    df = pd.DataFrame({"q": ["small", big]}, index=["ok-row", "huge-row"])
    with pytest.raises(RequestTooLargeError, match="'huge-row'"):
        df.claude.batch("{q}", client=fast.client(), **FAST)
    assert fast.count() == 0


def test_bad_input_is_refused_before_anything_is_sent(fast: Emulator) -> None:
    df = pd.DataFrame({"question": ["q"]})
    client = fast.client()
    with pytest.raises(TemplateError, match="'question'"):
        df.claude.batch("{questoin}", client=client, **FAST)
    with pytest.raises(TemplateError, match="plain column names"):
        df.claude.batch("{question.upper}", client=client, **FAST)
    with pytest.raises(InputError, match="on_missing"):
        df.claude.batch("{question}", client=client, on_missing="drop", **FAST)
    with pytest.raises(InputError, match="progress"):
        df.claude.batch("{question}", client=client, **{**FAST, "progress": "bar"})
    with pytest.raises(InputError, match="max_tokens"):
        df.claude.batch("{question}", client=client, max_tokens=0, **FAST)
    with pytest.raises(InputError, match="model="):
        df.claude.batch("{question}", client=client, **{**FAST, "model": None})
    with pytest.raises(InputError, match="params="):
        df.claude.batch("{question}", client=client, params={"messages": []}, **FAST)
    assert fast.count() == 0


def test_no_key_and_no_client_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("ANTHROPIC_CONFIG_DIR", raising=False)
    monkeypatch.setenv("HOME", "/nonexistent-claude-lab-test")
    with pytest.raises(ConfigError, match=r"ANTHROPIC_API_KEY.*emulator"):
        pd.DataFrame({"q": ["x"]}).claude.batch("{q}", **FAST)


def test_empty_frame_returns_empty_columns_without_calling(fast: Emulator) -> None:
    df = pd.DataFrame({"q": pd.Series([], dtype="string")})
    out = df.claude.batch("{q}", client=fast.client(), **FAST)
    assert len(out) == 0
    assert {"claude_text", "claude_status", "claude_cost_usd"} <= set(out.columns)
    assert fast.count() == 0


def test_estimate_sends_nothing(fast: Emulator) -> None:
    df = _sums(10)
    est = df.claude.estimate(SUM, model="claude-haiku-4-5", max_tokens=100)
    assert est["requests"] == 10 and est["batches"] == 1
    # haiku 4.5 batch output price is $2.50/MTok: 10 rows x 100 tokens bound the output cost.
    assert est["max_cost_usd"] >= 10 * 100 * 2.5 / 1e6
    assert fast.count() == 0


@pytest.mark.parametrize("fault", ["drop_after_create", "server_error"])
def test_a_create_whose_response_is_lost_is_adopted_not_paid_twice(
    fast: Emulator, fault: str
) -> None:
    # The batch exists but the client never hears so; a blind SDK retry would make a second.
    setattr(fast.faults, fault, {"create": 1} if fault == "server_error" else 1)
    out = _sums(12).claude.batch(SUM, client=fast.client(), **FAST)
    assert (out["claude_status"] == "succeeded").all()
    assert (out["claude_text"] == out["expected"]).all()
    assert len(list(fast.client().messages.batches.list())) == 1
    # Lost response: adopted, never resent. Refused with a 500 before creating: resent once.
    assert fast.count(*CREATE) == (1 if fault == "drop_after_create" else 2)


def test_console_progress_shows_counts_and_totals(
    fast: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    _sums(50).claude.batch(SUM, client=fast.client(), **{**FAST, "progress": "console"})
    err = capsys.readouterr().err
    assert "succeeded=50" in err or "succeeded 50" in err
    assert "50/50" in err


def test_lines_the_api_never_sent_leave_rows_missing_not_dropped(fast: Emulator) -> None:
    fast.faults.omit_rate = 0.2
    df = _sums(60)
    out = df.claude.batch(SUM, client=fast.client(), **FAST)
    assert len(out) == 60 and out.index.equals(df.index)
    missing = out["claude_status"] == "missing"
    assert 0 < missing.sum() < 60
    assert out.loc[missing, "claude_error"].notna().all()
    assert (out.loc[~missing, "claude_text"] == out.loc[~missing, "expected"]).all()


def test_unknown_and_repeated_result_lines_are_warned_about_and_ignored(fast: Emulator) -> None:
    fast.faults.stray_lines = True
    df = _sums(10)
    with pytest.warns(RuntimeWarning, match="1 result line.*unknown custom_id and 1 duplicate"):
        out = df.claude.batch(SUM, client=fast.client(), **FAST)
    assert (out["claude_status"] == "succeeded").all()
    assert (out["claude_text"] == out["expected"]).all()


def test_an_output_validator_that_raises_fails_the_row_not_the_job(fast: Emulator) -> None:
    class Strict(pydantic.BaseModel):
        score: int

        @pydantic.field_validator("score")
        @classmethod
        def lookup(cls, value: int) -> int:
            return {1: 1}[value]  # KeyError for anything else: a user's bug, one row's problem

    df = pd.DataFrame({"q": ["a", "b"]})
    out = df.claude.batch("{q}", client=fast.client(), output=Strict, **FAST)
    assert out["claude_text"].tolist() == ['{"score":0}'] * 2  # the emulator's reply
    assert len(out) == 2 and (out["claude_status"] == "parse_error").all()
    assert out["claude_error"].str.contains("KeyError").fillna(False).all()
