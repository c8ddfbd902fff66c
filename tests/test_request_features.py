"""Tools, thinking, prompt caching, extended output and prefill, end to end through the emulator."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pydantic
import pytest
from emulator_helpers import Recorder

import claude_lab
from claude_lab import _pricing as pricing
from claude_lab._errors import InputError
from claude_lab.emulator import Emulator, serve
from claude_lab.emulator._features import REDACTED_THINKING_TRIGGER

CREATE = ("POST", "/v1/messages/batches")
FAST: dict[str, Any] = {"progress": None, "poll_interval": 0.02}


class Label(pydantic.BaseModel):
    """Record the label of one item."""

    label: str
    confidence: float


def lookup(city: str, year: int = 2024) -> dict[str, Any]:
    """Look up a city's population in a given year."""
    return {}


def _items(n: int = 3) -> pd.DataFrame:
    return pd.DataFrame({"item": [f"item {k}" for k in range(n)]})


# --- tools ----------------------------------------------------------------------------------


def test_a_forced_pydantic_tool_gives_one_column_per_field(fast: Emulator) -> None:
    out = _items().claude.batch(
        "Label {item}.",
        tools=[Label],
        tool_choice="Label",
        model="claude-haiku-4-5",
        client=fast.client(),
        **FAST,
    )
    assert (out["claude_status"] == "succeeded").all()
    assert (out["claude_stop_reason"] == "tool_use").all()
    calls = out["claude_tool_calls"].tolist()
    assert all(len(c) == 1 and c[0]["name"] == "Label" for c in calls)
    assert out["claude_label"].tolist() == [c[0]["input"]["label"] for c in calls]
    assert str(out["claude_confidence"].dtype) == "Float64"


def test_a_function_is_a_tool_from_its_signature_and_docstring() -> None:
    rec = Recorder()
    with serve(request_seconds=0, concurrency=100_000, responder=rec) as emu:
        out = _items(1).claude.batch(
            "Population of {item}?",
            tools=[lookup],
            model="claude-haiku-4-5",
            client=emu.client(),
            **FAST,
        )
    tool = rec.seen[0]["tools"][0]
    assert tool["name"] == "lookup"
    assert tool["description"] == "Look up a city's population in a given year."
    assert tool["input_schema"]["required"] == ["city"]
    assert tool["input_schema"]["properties"]["year"]["type"] == "integer"
    # tool_choice auto: a list of calls, no per-field columns.
    assert out["claude_tool_calls"][0][0]["input"]["city"]
    assert "claude_city" not in out


def test_tool_calls_column_is_there_even_when_no_row_called_a_tool(fast: Emulator) -> None:
    out = _items(2).claude.batch(
        "Say hi to {item}.",
        tools=[lookup],
        tool_choice="none",
        model="claude-haiku-4-5",
        client=fast.client(),
        **FAST,
    )
    assert out["claude_tool_calls"].isna().all()


def test_bad_tool_arguments_fail_before_sending(fast: Emulator) -> None:
    for kwargs, match in (
        ({"tools": [Label], "tool_choice": "Nope"}, "neither 'auto'"),
        ({"tools": [42]}, "must be a tool dict"),
        ({"tools": [Label, Label]}, "more than one tool named"),
        ({"tools": [Label], "tool_choice": "Label", "output": Label}, "pass one of them"),
        ({"tools": [Label], "tool_choice": "any", "thinking": 1024, "max_tokens": 4096}, "forced"),
    ):
        with pytest.raises(InputError, match=match):
            _items().claude.batch(
                "x {item}", model="claude-haiku-4-5", client=fast.client(), **kwargs, **FAST
            )
    assert fast.count(*CREATE) == 0


# --- thinking -------------------------------------------------------------------------------


def test_thinking_budget_lands_in_its_columns(fast: Emulator) -> None:
    df = pd.DataFrame({"q": ["What is 2 + 3?", REDACTED_THINKING_TRIGGER]})
    out = df.claude.batch(
        "{q}",
        thinking=2048,
        max_tokens=4096,
        model="claude-haiku-4-5",
        client=fast.client(),
        **FAST,
    )
    assert (out["claude_status"] == "succeeded").all()
    assert "2 + 3" in out["claude_thinking"][0]
    assert out["claude_thinking"][1] == "[redacted thinking]"
    tokens = out["claude_thinking_tokens"]
    assert tokens[0] > 0 and (tokens <= out["claude_output_tokens"]).all()


def test_thinking_options_are_checked_against_the_model(fast: Emulator) -> None:
    with pytest.raises(InputError, match="below max_tokens"):
        _items().claude.batch("x {item}", thinking=2048, max_tokens=1024, model="claude-haiku-4-5")
    with pytest.raises(InputError, match="does not take thinking of type 'adaptive'"):
        _items().claude.batch("x {item}", thinking="adaptive", model="claude-haiku-4-5")
    out = _items(1).claude.batch(
        "x {item}", thinking="adaptive", model="claude-opus-4-6", client=fast.client(), **FAST
    )
    assert out["claude_status"][0] == "succeeded" and out["claude_thinking"][0]


def test_no_thinking_asked_means_empty_thinking_columns_are_absent(fast: Emulator) -> None:
    out = _items(1).claude.batch("x {item}", model="claude-haiku-4-5", client=fast.client(), **FAST)
    assert "claude_thinking" not in out and "claude_thinking_tokens" not in out


# --- prompt caching -------------------------------------------------------------------------

LONG_SYSTEM = "You label items carefully. " * 200


@pytest.mark.parametrize(("ttl", "write_factor"), [("1h", 2.0), ("5m", 1.25)])
def test_prompt_cache_writes_once_then_reads_priced_accordingly(
    ttl: str, write_factor: float
) -> None:
    rec = Recorder()
    with serve(request_seconds=0.01, jitter=0, concurrency=1, responder=rec) as emu:
        out = _items(4).claude.batch(
            "Label {item}.",
            system=LONG_SYSTEM,
            prompt_cache=ttl,
            model="claude-haiku-4-5",
            client=emu.client(),
            progress=None,
            poll_interval=0.02,
        )
    writes = out["claude_cache_write_tokens"].to_numpy()
    reads = out["claude_cache_read_tokens"].to_numpy()
    assert (writes > 0).sum() == 1 and (reads > 0).sum() == 3
    prefix = int(writes.max())
    assert set(reads[reads > 0]) == {prefix}
    # The marker sits on the shared system prompt, with the asked TTL.
    assert all(
        p["system"][-1]["cache_control"] == {"type": "ephemeral", "ttl": ttl} for p in rec.seen
    )
    price = pricing.resolve_price("claude-haiku-4-5")
    assert price is not None
    expected = (
        (
            out["claude_input_tokens"].to_numpy() * price.input
            + writes * price.input * write_factor
            + reads * price.input * 0.1
            + out["claude_output_tokens"].to_numpy() * price.output
        )
        / 1e6
        * pricing.BATCH_DISCOUNT
    )
    np.testing.assert_allclose(out["claude_cost_usd"].to_numpy(dtype=float), expected)


def test_prompt_cache_marks_the_last_shared_turn_of_a_few_shot_template() -> None:
    rec = Recorder()
    prompt = [
        {"role": "user", "content": "Label: apple"},
        {"role": "assistant", "content": "fruit"},
        {"role": "user", "content": "Label: {item}"},
    ]
    with serve(request_seconds=0, concurrency=100_000, responder=rec) as emu:
        _items(2).claude.batch(
            prompt, prompt_cache="1h", model="claude-haiku-4-5", client=emu.client(), **FAST
        )
    for params in rec.seen:
        assert params["messages"][1]["content"][-1]["cache_control"]["ttl"] == "1h"
        assert isinstance(params["messages"][2]["content"], str)


def test_prompt_cache_needs_a_shared_prefix_and_raises_the_ceiling() -> None:
    with pytest.raises(InputError, match="shares nothing"):
        _items().claude.estimate("Label {item}.", prompt_cache="1h", model="claude-haiku-4-5")
    plain = _items().claude.estimate("Label {item}.", system=LONG_SYSTEM, model="claude-haiku-4-5")
    cached = _items().claude.estimate(
        "Label {item}.", system=LONG_SYSTEM, prompt_cache="1h", model="claude-haiku-4-5"
    )
    # Worst case every row writes the cache at 2x: the ceiling must cover it.
    assert cached["max_cost_usd"] > plain["max_cost_usd"]


# --- extended output ------------------------------------------------------------------------


def test_long_output_sends_the_beta_header_on_the_create_call(fast: Emulator) -> None:
    out = _items(2).claude.batch(
        "Write about {item}.",
        long_output=True,
        max_tokens=200_000,
        model="claude-sonnet-4-6",
        client=fast.client(),
        **FAST,
    )
    assert (out["claude_status"] == "succeeded").all()
    # Without the header max_tokens over the model's limit is refused before sending
    # (the emulator would refuse it per row).
    with pytest.raises(InputError, match="limit of 64000"):
        _items(2).claude.batch(
            "Write more about {item}.",
            max_tokens=200_000,
            model="claude-sonnet-4-6",
            client=fast.client(),
            **FAST,
        )


def test_long_output_is_checked_against_the_model(fast: Emulator) -> None:
    with pytest.raises(InputError, match="not claude-haiku-4-5"):
        _items().claude.batch(
            "x {item}", long_output=True, max_tokens=200_000, model="claude-haiku-4-5"
        )
    with pytest.raises(InputError, match="over the extended-output limit"):
        _items().claude.batch(
            "x {item}", long_output=True, max_tokens=400_000, model="claude-opus-4-6"
        )


# --- prefill --------------------------------------------------------------------------------

PREFILL = [{"role": "user", "content": "Name {item}."}, {"role": "assistant", "content": "Name:"}]


def test_prefill_from_a_template_where_the_model_takes_it() -> None:
    rec = Recorder()
    with serve(request_seconds=0, concurrency=100_000, responder=rec) as emu:
        out = _items(2).claude.batch(PREFILL, model="claude-haiku-4-5", client=emu.client(), **FAST)
    assert (out["claude_status"] == "succeeded").all()
    assert all(p["messages"][-1] == {"role": "assistant", "content": "Name:"} for p in rec.seen)


def test_prefill_is_refused_before_sending_where_the_model_does_not(fast: Emulator) -> None:
    with pytest.raises(InputError, match="does not support"):
        _items().claude.batch(PREFILL, model="claude-sonnet-4-6", client=fast.client(), **FAST)
    assert fast.count(*CREATE) == 0


def test_attach_rebuilds_forced_tool_and_thinking_columns(fast: Emulator) -> None:
    out = _items(2).claude.batch(
        "Label {item}.",
        tools=[Label],
        tool_choice="Label",
        model="claude-haiku-4-5",
        client=fast.client(),
        **FAST,
    )
    job_id = out.attrs["claude_lab"]["job_id"]
    again = claude_lab.attach(job_id, client=fast.client(), progress=None).result()
    assert again["claude_label"].tolist() == out["claude_label"].tolist()
    assert again["claude_tool_calls"].tolist() == out["claude_tool_calls"].tolist()
