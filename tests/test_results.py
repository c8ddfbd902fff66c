"""The collector: JSONL lines -> per-request fields -> columns (synthetic lines of the
real shape)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from anthropic.types.messages import MessageBatchIndividualResponse
from pydantic import BaseModel

from claude_lab._collector import (
    CANCELED_MESSAGE,
    EXPIRED_MESSAGE,
    MISSING_MESSAGE,
    ResultAccumulator,
    iter_lines,
    output_columns,
)
from claude_lab._pricing import PricingWarning

HAIKU = "claude-haiku-4-5-20251001"


def _line(obj: dict[str, Any]) -> bytes:
    # Every fixture must be a shape the SDK itself accepts.
    MessageBatchIndividualResponse.model_validate(obj)
    return orjson.dumps(obj)


def succeeded(
    cid: str,
    text: str | list[dict[str, Any]] = "hello",
    *,
    model: str = HAIKU,
    stop: str = "end_turn",
    usage: dict[str, Any] | None = None,
) -> bytes:
    content = [{"type": "text", "text": text}] if isinstance(text, str) else text
    return _line(
        {
            "custom_id": cid,
            "result": {
                "type": "succeeded",
                "message": {
                    "id": "msg_01" + cid,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": content,
                    "stop_reason": stop,
                    "stop_sequence": None,
                    "usage": usage
                    or {
                        "input_tokens": 100,
                        "output_tokens": 20,
                        "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 0,
                        "service_tier": "batch",
                    },
                },
            },
        }
    )


def errored(cid: str, etype: str = "invalid_request_error", message: str = "bad") -> bytes:
    return _line(
        {
            "custom_id": cid,
            "result": {
                "type": "errored",
                "error": {
                    "type": "error",
                    "error": {"type": etype, "message": message},
                    "request_id": "req_01",
                },
            },
        }
    )


def ended(cid: str, kind: str) -> bytes:
    return _line({"custom_id": cid, "result": {"type": kind}})


def ids(n: int) -> list[str]:
    return [f"r{i:032x}" for i in range(n)]


def cols_for(acc: ResultAccumulator, row_uid: list[int] | None = None, **kw: Any) -> pd.DataFrame:
    uid = np.arange(len(acc)) if row_uid is None else np.array(row_uid, dtype=np.int64)
    return pd.DataFrame(acc.columns(uid, **kw))


# ---------------------------------------------------------------- iter_lines


def test_iter_lines_splits_chunks_anywhere() -> None:
    body = b'{"a":1}\n{"b":2}\n\n{"c":3}\r\n{"d":4}'
    for size in (1, 2, 3, 5, 7, 64):
        chunks = [body[i : i + size] for i in range(0, len(body), size)]
        got = [orjson.loads(x) for x in iter_lines(iter(chunks))]
        assert got == [{"a": 1}, {"b": 2}, {"c": 3}, {"d": 4}], size


def test_iter_lines_blank_and_empty() -> None:
    assert list(iter_lines([])) == []
    assert list(iter_lines([b"", b"\n\n", b"  \n"])) == []
    assert list(iter_lines([b"x\n"])) == [b"x"]


def test_iter_lines_is_lazy() -> None:
    def chunks() -> Any:
        yield b'{"a":1}\n{"b"'
        raise RuntimeError("stream dropped")

    it = iter_lines(chunks())
    assert next(it) == b'{"a":1}'
    with pytest.raises(RuntimeError):
        next(it)


# ---------------------------------------------------------------- matching


def test_shuffled_results_land_on_their_rows() -> None:
    cids = ids(50)
    lines = [succeeded(c, f"answer {i}") for i, c in enumerate(cids)]
    random.Random(3).shuffle(lines)
    acc = ResultAccumulator(cids)
    acc.begin_pass("msgbatch_1")
    for line in lines:
        assert acc.feed(line) >= 0
    df = cols_for(acc)
    assert list(df["claude_text"]) == [f"answer {i}" for i in range(50)]
    assert list(df["claude_custom_id"]) == cids
    assert (df["claude_status"] == "succeeded").all()
    assert (df["claude_batch_id"] == "msgbatch_1").all()
    assert acc.filled.all()


def test_all_statuses_and_errors() -> None:
    cids = ids(6)
    acc = ResultAccumulator(cids)
    acc.feed(succeeded(cids[0]))
    acc.feed(errored(cids[1], "overloaded_error", "Overloaded"))
    acc.feed(ended(cids[2], "canceled"))
    acc.feed(ended(cids[3], "expired"))
    # cids[4]: no result line -> missing; one row skipped (-1)
    df = cols_for(acc, [0, 1, 2, 3, 4, -1])
    assert list(df["claude_status"]) == [
        "succeeded",
        "errored",
        "canceled",
        "expired",
        "missing",
        "skipped",
    ]
    err = df["claude_error"]
    assert err.isna()[0] and err.isna()[5]
    assert err[1] == "overloaded_error: Overloaded"
    assert err[2] == CANCELED_MESSAGE
    assert err[3] == EXPIRED_MESSAGE
    assert err[4] == MISSING_MESSAGE
    assert df["claude_text"].isna().tolist() == [False, True, True, True, True, True]
    assert df["claude_custom_id"].isna().tolist() == [False] * 5 + [True]
    assert acc.status_of(1) == "errored" and acc.error_type_of(1) == "overloaded_error"
    assert acc.filled.tolist() == [True, True, True, True, False, False]


def test_unnested_error_shape_is_tolerated() -> None:
    acc = ResultAccumulator(["a"])
    line = orjson.dumps(
        {
            "custom_id": "a",
            "result": {"type": "errored", "error": {"type": "api_error", "message": "boom"}},
        }
    )
    acc.feed(line)
    assert cols_for(acc)["claude_error"][0] == "api_error: boom"


def test_dtypes_are_nullable() -> None:
    cids = ids(2)
    acc = ResultAccumulator(cids)
    acc.feed(succeeded(cids[0]))
    df = cols_for(acc, [0, 1, -1])
    text_cols = ["claude_text", "claude_status", "claude_error", "claude_stop_reason"]
    text_cols.append("claude_model")
    for col in text_cols:
        assert df[col].dtype == "string", col
    for col in (
        "claude_input_tokens",
        "claude_output_tokens",
        "claude_cache_read_tokens",
        "claude_cache_write_tokens",
    ):
        assert df[col].dtype == "Int64", col
    assert df["claude_cost_usd"].dtype == "Float64"
    assert df["claude_cached"].dtype == "boolean"
    assert df["claude_input_tokens"].tolist()[0] == 100
    assert df["claude_input_tokens"].isna().tolist() == [False, True, True]


def test_unknown_duplicate_blank_and_malformed_lines() -> None:
    cids = ids(2)
    acc = ResultAccumulator(cids)
    acc.begin_pass()
    assert acc.feed(succeeded(cids[0], "first")) == 0
    assert acc.feed(succeeded(cids[0], "second")) == -1
    assert acc.feed(succeeded("r_not_in_this_job")) == -1
    assert acc.feed(b"") == -1
    assert acc.feed(b"   ") == -1
    assert acc.feed(b'{"custom_id": "trunc') == -1
    assert (acc.unknown, acc.duplicates, acc.malformed) == (1, 1, 1)
    assert cols_for(acc)["claude_text"][0] == "first"


def test_resumed_pass_skips_earlier_ids_silently() -> None:
    cids = ids(4)
    lines = [succeeded(c, str(i)) for i, c in enumerate(cids)]
    acc = ResultAccumulator(cids)
    acc.begin_pass("msgbatch_1")
    for line in lines[:2]:  # the stream dropped after two lines
        acc.feed(line)
    acc.begin_pass("msgbatch_1")
    assert [acc.feed(line) for line in lines] == [-1, -1, 2, 3]
    assert acc.duplicates == 0
    assert list(cols_for(acc)["claude_text"]) == ["0", "1", "2", "3"]


def test_batch_id_per_pass() -> None:
    cids = ids(3)
    acc = ResultAccumulator(cids)
    acc.begin_pass("msgbatch_a")
    acc.feed(succeeded(cids[0]))
    acc.begin_pass("msgbatch_b")
    acc.feed(succeeded(cids[1]))
    df = cols_for(acc)
    assert df["claude_batch_id"].tolist()[:2] == ["msgbatch_a", "msgbatch_b"]
    assert df["claude_batch_id"].isna()[2]


def test_batch_met_again_keeps_its_one_slot() -> None:
    # A re-attach reads result files in storage order, which may switch between batches
    # many times: the per-batch bookkeeping must not grow with each switch.
    cids = ids(6)
    acc = ResultAccumulator(cids)
    for k, batch in enumerate(["msgbatch_a", "msgbatch_b"] * 3):
        acc.begin_pass(batch)
        acc.feed(succeeded(cids[k]))
    assert len(acc._batch_ids) == 3  # the no-batch slot, a and b
    assert cols_for(acc)["claude_batch_id"].tolist() == ["msgbatch_a", "msgbatch_b"] * 3


def test_no_batch_id_column_without_batch_ids() -> None:
    acc = ResultAccumulator(["a"])
    acc.feed(succeeded("a"))
    assert "claude_batch_id" not in cols_for(acc)


# ---------------------------------------------------------------- content


def test_text_blocks_joined_thinking_and_tool_calls() -> None:
    content: list[dict[str, Any]] = [
        {"type": "thinking", "thinking": "let me think", "signature": "sig"},
        {"type": "text", "text": "Hello, "},
        {"type": "text", "text": "world"},
        {"type": "tool_use", "id": "toolu_01", "name": "lookup", "input": {"q": "x"}},
    ]
    acc = ResultAccumulator(["a", "b"])
    acc.feed(succeeded("a", content, stop="tool_use"))
    acc.feed(succeeded("b", "plain"))
    df = cols_for(acc)
    assert df["claude_text"].tolist() == ["Hello, world", "plain"]
    assert df["claude_thinking"][0] == "let me think" and pd.isna(df["claude_thinking"][1])
    assert df["claude_tool_calls"][0] == [{"id": "toolu_01", "name": "lookup", "input": {"q": "x"}}]
    assert df["claude_tool_calls"][1] is None
    assert df["claude_stop_reason"].tolist() == ["tool_use", "end_turn"]


def test_no_thinking_or_tool_columns_when_absent() -> None:
    acc = ResultAccumulator(["a"])
    acc.feed(succeeded("a"))
    df = cols_for(acc)
    assert "claude_thinking" not in df and "claude_tool_calls" not in df


def test_prefix() -> None:
    acc = ResultAccumulator(["a"])
    acc.feed(succeeded("a", "x"))
    df = cols_for(acc, prefix="grade")
    assert df["grade_text"][0] == "x" and "grade_status" in df and "claude" not in df


# ---------------------------------------------------------------- fan-out and cost


def test_shared_request_fans_out_and_is_charged_once() -> None:
    usage = {
        "input_tokens": 1_000_000,
        "output_tokens": 1_000_000,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }
    acc = ResultAccumulator(["a", "b"])
    acc.feed(succeeded("a", "shared", usage=usage))
    acc.feed(succeeded("b", "own", usage=usage))
    df = cols_for(acc, [0, 1, 0, -1, 0])
    assert df["claude_text"].tolist()[:3] == ["shared", "own", "shared"]
    # Haiku 4.5 at batch prices: (1 + 5) / 2 = 3.00 USD per 1M in + 1M out.
    cost = df["claude_cost_usd"]
    assert cost[0] == pytest.approx(3.0) and cost[1] == pytest.approx(3.0)
    assert cost[2] == 0.0 and cost[4] == 0.0 and pd.isna(cost[3])
    assert cost.sum() == pytest.approx(6.0)
    assert df["claude_input_tokens"].tolist()[2] == 1_000_000
    assert acc.cost() == pytest.approx(6.0)


def test_cost_with_cache_rates() -> None:
    usage = {
        "input_tokens": 1_000_000,
        "output_tokens": 0,
        "cache_creation_input_tokens": 2_000_000,
        "cache_read_input_tokens": 10_000_000,
        "cache_creation": {
            "ephemeral_5m_input_tokens": 1_000_000,
            "ephemeral_1h_input_tokens": 1_000_000,
        },
    }
    acc = ResultAccumulator(["a"])
    acc.feed(succeeded("a", usage=usage, model="claude-sonnet-4-6"))
    df = cols_for(acc)
    # $3 input, 5m write 3.75, 1h write 6, read 0.30 x 10 -> 15.75, halved.
    assert df["claude_cost_usd"][0] == pytest.approx((3 + 3.75 + 6 + 3) / 2)
    assert df["claude_cache_write_tokens"][0] == 2_000_000
    assert df["claude_cache_read_tokens"][0] == 10_000_000


def test_failed_requests_cost_nothing_missing_is_unknown() -> None:
    acc = ResultAccumulator(["a", "b", "c"])
    acc.feed(errored("a"))
    acc.feed(ended("b", "expired"))
    cost = cols_for(acc)["claude_cost_usd"]
    assert cost[0] == 0.0 and cost[1] == 0.0 and pd.isna(cost[2])


def test_cached_rows_keep_their_price_but_are_not_spent_again() -> None:
    acc = ResultAccumulator(["a", "b"])
    assert acc.feed_many([succeeded("a", "from cache")], uids=[0], cached=True) == [0]
    acc.begin_pass("msgbatch_1")
    acc.feed(succeeded("b", "fresh"))
    # The cached id reappearing in a download is a re-sent line, not a duplicate.
    assert acc.feed(succeeded("a", "again")) == -1 and acc.duplicates == 0
    df = cols_for(acc)
    assert df["claude_text"].tolist() == ["from cache", "fresh"]
    assert df["claude_cached"].tolist() == [True, False]
    assert df["claude_cost_usd"][0] == df["claude_cost_usd"][1] > 0  # the reply's price
    assert acc.cost() == pytest.approx(df["claude_cost_usd"][1])  # only "b" was paid now
    assert acc.cost(cached=True) == pytest.approx(df["claude_cost_usd"].sum())
    assert pd.isna(df["claude_batch_id"][0]) and df["claude_batch_id"][1] == "msgbatch_1"
    assert acc.cached.tolist() == [True, False]


def test_unknown_model_cost_is_na_with_one_warning() -> None:
    acc = ResultAccumulator(["a", "b"])
    acc.feed(succeeded("a", model="claude-imaginary-9"))
    acc.feed(succeeded("b", model="claude-imaginary-9"))
    with pytest.warns(PricingWarning, match=r"claude-imaginary-9.*prices=") as rec:
        df = cols_for(acc)
    assert len(rec) == 1
    assert df["claude_cost_usd"].isna().all()
    assert acc.cost() == 0.0  # no warning while polling
    df = cols_for(acc, prices={"claude-imaginary-9": (2.0, 10.0)})
    assert df["claude_cost_usd"][0] == pytest.approx((100 * 2 + 20 * 10) / 1e6 / 2)


def test_cost_column_prices_every_slice_and_warns_for_a_model_seen_late() -> None:
    """The column is priced a few thousand requests at a time: every slice is priced, and
    a model without a price that only the last request used is still named, once."""
    n = 10_000
    ids = [f"r{i}" for i in range(n)]
    acc = ResultAccumulator(ids)
    acc.feed_many([succeeded(c) for c in ids[:-1]] + [succeeded(ids[-1], model="claude-x-9")])
    with pytest.warns(PricingWarning, match=r"claude-x-9") as rec:
        df = cols_for(acc)
    assert len(rec) == 1
    cost = df["claude_cost_usd"]
    assert cost[: n - 1].notna().all() and (cost[: n - 1] > 0).all() and pd.isna(cost[n - 1])
    assert cost.sum() == pytest.approx(acc.cost())


# ---------------------------------------------------------------- output= / parse=


class Grade(BaseModel):
    score: int
    reason: str


def test_output_pydantic_columns_and_parse_errors() -> None:
    acc = ResultAccumulator(["a", "b", "c", "d"])
    acc.feed(succeeded("a", '{"score": 3, "reason": "ok"}'))
    acc.feed(succeeded("b", '{"score": "high", "reason": "x"}'))
    acc.feed(succeeded("c", "not json at all"))
    acc.feed(errored("d"))
    df = cols_for(acc, output=Grade)
    assert df["claude_score"].dtype == "Int64"
    assert df["claude_score"].tolist()[0] == 3 and df["claude_score"].isna()[1:].all()
    assert df["claude_reason"].dtype == "string"
    # The reply arrived but did not fit the schema: its own status, text and cost kept.
    assert df["claude_status"].tolist() == ["succeeded", "parse_error", "parse_error", "errored"]
    assert df["claude_cost_usd"][1] > 0 and df["claude_input_tokens"][1] > 0
    assert df["claude_text"][2] == "not json at all"
    assert df["claude_error"][1].startswith("parse_error: score")
    assert df["claude_error"][2].startswith("parse_error:")
    assert df["claude_error"][3] == "invalid_request_error: bad"
    assert pd.isna(df["claude_error"][0])


def test_output_json_schema_dict() -> None:
    schema = {
        "type": "object",
        "properties": {
            "label": {"type": "string"},
            "confidence": {"type": "number"},
            "status": {"type": "string"},
        },
        "required": ["label", "confidence"],
    }
    acc = ResultAccumulator(["a", "b", "c", "d"])
    acc.feed(succeeded("a", '{"label": "spam", "confidence": 0.9, "status": "new"}'))
    acc.feed(succeeded("b", '{"label": "ham"}'))
    acc.feed(succeeded("c", '{"label": 5, "confidence": 1}'))
    acc.feed(succeeded("d", '```json\n{"label": "ham", "confidence": 1}\n```'))
    df = cols_for(acc, output=schema)
    assert df["claude_label"].tolist()[0] == "spam"
    assert df["claude_confidence"].tolist()[0] == pytest.approx(0.9)
    # A field named like a built-in column gets an "output_" infix instead of clobbering it.
    assert df["claude_output_status"][0] == "new" and df["claude_status"][0] == "succeeded"
    assert "confidence" in df["claude_error"][1]
    assert "label" in df["claude_error"][2]
    assert df["claude_label"][3] == "ham"
    assert output_columns(schema) == {
        "label": "claude_label",
        "confidence": "claude_confidence",
        "status": "claude_output_status",
    }


def test_parse_json_regex_and_callable() -> None:
    acc = ResultAccumulator(["a", "b"])
    acc.feed(succeeded("a", "The answer is 42."))
    acc.feed(succeeded("b", "No idea."))
    regex = cols_for(acc, parse=r"answer is (\d+)")
    assert regex["claude_parsed"].tolist()[0] == "42" and regex["claude_parsed"].isna()[1]
    assert regex["claude_error"].isna().all()

    whole = cols_for(acc, parse=r"\d+")
    assert whole["claude_parsed"][0] == "42"

    def number(text: str) -> int:
        return int(text.split()[-1].rstrip("."))

    called = cols_for(acc, parse=number)
    assert called["claude_parsed"].tolist()[0] == 42
    assert called["claude_parsed"].dtype == "Int64"
    assert called["claude_error"][1].startswith("parse_error: ValueError")

    acc2 = ResultAccumulator(["a"])
    acc2.feed(succeeded("a", '{"x": [1, 2]}'))
    assert cols_for(acc2, parse="json")["claude_parsed"][0] == {"x": [1, 2]}


def test_bad_parse_argument() -> None:
    acc = ResultAccumulator(["a"])
    acc.feed(succeeded("a"))
    with pytest.raises(TypeError):
        acc.columns(np.array([0]), parse=3)  # type: ignore[arg-type]


# ---------------------------------------------------------------- retry support


def test_retry_candidates_and_forget() -> None:
    cids = ids(6)
    acc = ResultAccumulator(cids)
    acc.feed(succeeded(cids[0]))
    acc.feed(errored(cids[1], "overloaded_error"))
    acc.feed(errored(cids[2], "invalid_request_error"))
    acc.feed(ended(cids[3], "expired"))
    acc.feed(ended(cids[4], "canceled"))
    # cids[5] missing
    assert acc.retry_candidates(errors=("overloaded_error",)).tolist() == [1, 3, 5]
    assert acc.retry_candidates(errors=None, canceled=True).tolist() == [1, 2, 3, 4, 5]
    assert acc.retry_candidates(errors=(), expired=False, missing=False).tolist() == []
    acc.forget([1, 3])
    assert acc.filled.tolist() == [True, False, True, False, True, False]
    acc.begin_pass("msgbatch_retry")
    assert acc.feed(succeeded(cids[1], "second try")) == 1
    df = cols_for(acc)
    assert df["claude_text"][1] == "second try" and df["claude_status"][3] == "missing"


def test_a_packed_accumulator_gives_the_same_table_and_still_takes_a_retry() -> None:
    cids = ids(6)
    acc = ResultAccumulator(cids)
    acc.begin_pass("msgbatch_1")
    acc.feed(succeeded(cids[0], "zero", usage={"input_tokens": 7, "output_tokens": 3}))
    acc.feed(errored(cids[1], "overloaded_error"))
    acc.feed(ended(cids[2], "expired"))
    acc.feed(succeeded(cids[3], "three", stop="max_tokens"))
    uid = [0, 1, 2, 3, 4, 3, -1]
    before = cols_for(acc, uid)
    acc.pack()  # what the worker does once every result is in
    pd.testing.assert_frame_equal(cols_for(acc, uid), before)
    assert acc.cost() == pytest.approx(before["claude_cost_usd"].sum())
    # A retry after packing: forget, then feed the new round's lines by custom_id.
    acc.forget([1, 2])
    acc.begin_pass("msgbatch_2")
    assert acc.feed(succeeded(cids[1], "one, again")) == 1
    assert acc.feed(succeeded(cids[1], "a duplicate")) == -1
    assert acc.retry_candidates().tolist() == [2, 4, 5]
    after = cols_for(acc, uid)
    assert after["claude_text"].tolist()[:2] == ["zero", "one, again"]
    assert after["claude_status"].tolist() == [
        "succeeded", "succeeded", "missing", "succeeded", "missing", "succeeded", "skipped"
    ]  # fmt: skip
    assert after["claude_batch_id"].tolist()[:4] == [
        "msgbatch_1", "msgbatch_2", pd.NA, "msgbatch_1"
    ]  # fmt: skip
    assert after["claude_input_tokens"][0] == 7 and after["claude_stop_reason"][3] == "max_tokens"


def test_row_uid_out_of_range() -> None:
    acc = ResultAccumulator(["a"])
    with pytest.raises(ValueError):
        acc.columns(np.array([1]))


def test_empty_job() -> None:
    acc = ResultAccumulator([])
    cols = acc.columns(np.array([], dtype=np.int64))
    assert all(len(v) == 0 for v in cols.values())
    assert "claude_status" in cols


def test_duplicate_custom_ids_rejected() -> None:
    with pytest.raises(ValueError):
        ResultAccumulator(["a", "a"])


# ---------------------------------------------------------------- typing follows the schema


class Typed(BaseModel):
    ratio: float
    count: int
    ok: bool
    label: str
    maybe: int | None = None
    tags: list[str] = []


def test_output_columns_take_their_dtype_from_the_schema_not_the_values() -> None:
    acc = ResultAccumulator(["a", "b", "c"])
    acc.feed(succeeded("a", '{"ratio": 1, "count": 2, "ok": true, "label": "x", "tags": ["t"]}'))
    acc.feed(succeeded("b", '{"ratio": 3.0, "count": 4.0, "ok": false, "label": "7"}'))
    acc.feed(errored("c"))
    df = cols_for(acc, output=Typed)
    # A float field stays Float64 even when every value looks integral.
    assert str(df["claude_ratio"].dtype) == "Float64"
    assert str(df["claude_count"].dtype) == "Int64"
    assert str(df["claude_ok"].dtype) == "boolean"
    assert str(df["claude_label"].dtype) == "string"
    assert str(df["claude_maybe"].dtype) == "Int64" and df["claude_maybe"].isna().all()
    assert df["claude_tags"].dtype == object and df["claude_tags"][0] == ["t"]
    assert df["claude_ratio"].tolist()[:2] == [1.0, 3.0] and pd.isna(df["claude_ratio"][2])


def test_the_same_schema_as_a_json_dict_gives_the_same_dtypes() -> None:
    schema = {
        "type": "object",
        "properties": {
            "ratio": {"type": "number"},
            "count": {"type": ["integer", "null"]},
            "ok": {"anyOf": [{"type": "boolean"}, {"type": "null"}]},
            "label": {"type": "string", "enum": ["x", "y"]},
        },
    }
    acc = ResultAccumulator(["a"])
    acc.feed(succeeded("a", '{"ratio": 2, "count": 1, "ok": true, "label": "x"}'))
    df = cols_for(acc, output=schema)
    dtypes = [str(df[f"claude_{f}"].dtype) for f in ("ratio", "count", "ok", "label")]
    assert dtypes == ["Float64", "Int64", "boolean", "string"]


def test_parsed_has_one_missing_value_marker() -> None:
    acc = ResultAccumulator(["a", "b", "c", "d"])
    acc.feed(succeeded("a", '{"x": 1}'))
    acc.feed(succeeded("b", "NaN"))  # orjson refuses it: a parse_error row
    acc.feed(succeeded("c", "[1, 2]"))
    acc.feed(errored("d"))
    boxed = cols_for(acc, [0, 1, 2, 3, -1], parse=lambda t: {"t": t} if "x" in t else float("nan"))
    missing = [v for v in boxed["claude_parsed"] if not isinstance(v, dict)]
    assert missing == [None] * 4  # NaN twice, the errored row and the skipped row: all None
    texts = cols_for(acc, [0, 1, 2, 3, -1], parse=lambda t: float("nan") if t == "[1, 2]" else t)
    assert str(texts["claude_parsed"].dtype) == "string"  # a typed column: <NA> only
    mixed = cols_for(acc, parse="json")["claude_parsed"]
    assert mixed[0] == {"x": 1} and mixed[2] == [1, 2]
    assert [v for v in mixed if not isinstance(v, (dict, list))] == [None, None]
    assert cols_for(acc, parse="json")["claude_status"].tolist() == [
        "succeeded",
        "parse_error",
        "succeeded",
        "errored",
    ]
    floats = ResultAccumulator(["a", "b"])
    floats.feed(succeeded("a", "1.0"))
    floats.feed(succeeded("b", "2.5"))
    assert str(cols_for(floats, parse="json")["claude_parsed"].dtype) == "Float64"


def test_token_counts_that_are_not_whole_numbers_are_unknown_not_a_crash() -> None:
    cids = ids(3)
    acc = ResultAccumulator(cids)
    acc.begin_pass("msgbatch_1")
    acc.feed(succeeded(cids[0], "fine", usage={"input_tokens": 7, "output_tokens": 3}))
    for cid, text, usage in (
        (cids[1], "odd", {"input_tokens": "lots", "output_tokens": 2.5}),
        (cids[2], "huge", {"input_tokens": 2**40, "output_tokens": 1}),
    ):
        # Not what the SDK's types allow, so written by hand: the wire may still carry it.
        obj = orjson.loads(succeeded(cid, text))
        obj["result"]["message"]["usage"] = usage
        acc.feed(orjson.dumps(obj))
    df = cols_for(acc)
    assert df["claude_status"].tolist() == ["succeeded"] * 3
    assert df["claude_text"].tolist() == ["fine", "odd", "huge"]
    assert df["claude_input_tokens"].tolist()[0] == 7
    assert df["claude_input_tokens"][1:].isna().all()
    assert df["claude_output_tokens"][1:].isna().all()


def test_reply_texts_survive_the_compact_store_unicode_empty_and_retried() -> None:
    cids = ids(4)
    acc = ResultAccumulator(cids)
    acc.begin_pass("msgbatch_1")
    acc.feed_many([succeeded(cids[0], "naïve café ☕"), succeeded(cids[1], "")])
    acc.feed_many([succeeded(cids[2], "日本語 🎌"), errored(cids[3], "overloaded_error")])
    uid = [2, 0, -1, 1, 3, 2]
    df = cols_for(acc, uid)
    assert df["claude_text"].tolist()[:2] == ["日本語 🎌", "naïve café ☕"]
    assert pd.isna(df["claude_text"][2]) and df["claude_text"][3] == ""
    assert pd.isna(df["claude_text"][4]) and df["claude_text"][5] == "日本語 🎌"
    # A retry after the table was built replaces one reply and keeps the others.
    acc.forget([0])
    acc.begin_pass("msgbatch_2")
    acc.feed(succeeded(cids[0], "second: ümlaut"))
    again = cols_for(acc, uid, parse=r"(\w+):")
    assert again["claude_text"].tolist()[1] == "second: ümlaut"
    assert again["claude_parsed"].tolist()[1] == "second"
    assert again["claude_text"].tolist()[0] == "日本語 🎌"
