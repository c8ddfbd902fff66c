"""POST /v1/messages (plain and streamed), count_tokens, and what the responders put in a reply."""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic
import orjson
import pytest
from anthropic.types import Message

from claude_lab.emulator import Emulator, RowError, serve
from claude_lab.emulator._responder import arithmetic_answer, schema_example

MODEL = "claude-haiku-4-5"


def ask(client: anthropic.Anthropic, prompt: str, **params: Any) -> Message:
    params.setdefault("max_tokens", 256)
    return client.messages.create(
        model=MODEL, messages=[{"role": "user", "content": prompt}], **params
    )


def strict(emu: Emulator) -> anthropic.Anthropic:
    return emu.client(_strict_response_validation=True, max_retries=0)


def text_of(message: Message) -> str:
    return "".join(b.text for b in message.content if b.type == "text")


@pytest.mark.parametrize(
    ("prompt", "answer"),
    [
        ("What is 17 + 25?", "42"),
        ("Compute 6 * 7", "42"),
        ("12 - 5", "7"),
        ("What is 84 / 4?", "21"),
        ("What is 17 // 5?", "3"),
        ("What is 10 / 4?", "2.5"),
        ("What is 6 times 7?", "42"),
        ("What is (2 + 3) * 4?", "20"),
        ("What is -8 + 3?", "-5"),
    ],
)
def test_arithmetic_is_answered_correctly(prompt: str, answer: str) -> None:
    assert arithmetic_answer(prompt) == answer


def test_no_arithmetic_in_plain_text_or_dates() -> None:
    assert arithmetic_answer("Summarise this paragraph please.") is None
    assert arithmetic_answer("Meeting on 2024-01-05 at noon") is None


def test_reply_is_just_the_number_when_asked_for_one(emu: Emulator) -> None:
    client = strict(emu)
    assert text_of(ask(client, "Question: What is 17 + 25?\nAnswer with a single number.")) == "42"
    assert text_of(ask(client, "What is 17 + 25?")) == "The answer is 42."
    system_says = ask(client, "What is 9 * 9?", system="Reply with the number only.")
    assert text_of(system_says) == "81"


def test_plain_reply_is_deterministic_and_valid(emu: Emulator) -> None:
    client = strict(emu)
    first, second = ask(client, "Tell me about otters."), ask(client, "Tell me about otters.")
    assert text_of(first) == text_of(second)
    assert "otters" in text_of(first)
    assert first.id != second.id and first.id.startswith("msg_")
    assert first.stop_reason == "end_turn" and first.role == "assistant" and first.model == MODEL
    assert first.usage.service_tier == "standard"
    assert first.usage == second.usage


def test_max_tokens_truncates(emu: Emulator) -> None:
    message = ask(strict(emu), "Tell me a long story about a lighthouse keeper.", max_tokens=3)
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 3
    assert len(text_of(message)) <= 12


def test_stop_sequences(emu: Emulator) -> None:
    message = ask(strict(emu), "Say alpha STOP beta", stop_sequences=["STOP", "beta"])
    assert message.stop_reason == "stop_sequence"
    assert message.stop_sequence == "STOP"
    assert "STOP" not in text_of(message) and "beta" not in text_of(message)


SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "answer": {"type": "integer"},
        "label": {"type": "string", "enum": ["pos", "neg"]},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "ok": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
        "when": {"type": "string", "format": "date"},
        "nested": {"$ref": "#/$defs/Inner"},
        "maybe": {"anyOf": [{"type": "string"}, {"type": "null"}]},
    },
    "required": ["answer", "label", "confidence", "ok", "tags", "nested"],
    "additionalProperties": False,
    "$defs": {
        "Inner": {
            "type": "object",
            "properties": {"name": {"type": "string", "minLength": 20}},
            "required": ["name"],
            "additionalProperties": False,
        }
    },
}


def test_schema_examples_validate() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    example = schema_example(SCHEMA, number=42)
    jsonschema.validate(example, SCHEMA)
    assert example["answer"] == 42


def test_structured_output_is_json_that_fits_the_schema(emu: Emulator) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    message = ask(
        strict(emu),
        "What is 40 + 2?",
        output_config={"format": {"type": "json_schema", "schema": SCHEMA}},
    )
    data = orjson.loads(text_of(message))
    jsonschema.validate(data, SCHEMA)
    assert data["answer"] == 42


def test_tool_use_input_fits_the_tool_schema(emu: Emulator) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    tools: Any = [
        {"name": "noop", "description": "x", "input_schema": {"type": "object", "properties": {}}},
        {"name": "record", "description": "Record an answer", "input_schema": SCHEMA},
    ]
    message = ask(
        strict(emu), "What is 2 + 2?", tools=tools, tool_choice={"type": "tool", "name": "record"}
    )
    assert message.stop_reason == "tool_use"
    block = message.content[-1]
    assert block.type == "tool_use" and block.name == "record" and block.id.startswith("toolu_")
    jsonschema.validate(block.input, SCHEMA)
    none = ask(strict(emu), "hi", tools=tools, tool_choice={"type": "none"})
    assert none.stop_reason == "end_turn"


def test_thinking_block_with_signature_comes_first(emu: Emulator) -> None:
    message = ask(
        strict(emu),
        "What is 3 + 4?",
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
    )
    assert [b.type for b in message.content] == ["thinking", "text"]
    thinking = message.content[0]
    assert thinking.type == "thinking" and thinking.signature and thinking.thinking
    assert text_of(message) == "The answer is 7."


def test_count_tokens_matches_message_input_tokens(emu: Emulator) -> None:
    client = strict(emu)
    kwargs: Any = {
        "model": MODEL,
        "system": "You are terse.",
        "messages": [
            {"role": "user", "content": "Hello there, how are you?"},
            {"role": "assistant", "content": "Fine."},
            {"role": "user", "content": [{"type": "text", "text": "And now?"}]},
        ],
    }
    counted = client.messages.count_tokens(**kwargs)
    message = client.messages.create(max_tokens=50, **kwargs)
    assert counted.input_tokens == message.usage.input_tokens > 0


def test_prompt_cache_writes_once_then_reads(emu: Emulator) -> None:
    client = strict(emu)
    system: Any = [
        {
            "type": "text",
            "text": "A long shared context. " * 50,
            "cache_control": {"type": "ephemeral"},
        }
    ]
    first = ask(client, "Question one", system=system)
    second = ask(client, "Question two", system=system)
    total = client.messages.count_tokens(
        model=MODEL, system=system, messages=[{"role": "user", "content": "Question two"}]
    ).input_tokens
    assert first.usage.cache_creation_input_tokens and first.usage.cache_creation_input_tokens > 0
    assert first.usage.cache_read_input_tokens == 0
    assert second.usage.cache_creation_input_tokens == 0
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert second.usage.input_tokens + second.usage.cache_read_input_tokens == total
    emu.clock.advance(301)  # the 5-minute cache has gone cold
    third = ask(client, "Question three", system=system)
    assert third.usage.cache_creation_input_tokens == first.usage.cache_creation_input_tokens


def test_stream_helper_and_final_message(emu: Emulator) -> None:
    client = strict(emu)
    with client.messages.stream(
        model=MODEL,
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "What is 5 * 5?"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "The answer is 25."
    assert final.content[0].type == "thinking" and final.content[0].signature
    assert text_of(final) == text
    assert final.stop_reason == "end_turn"
    plain = ask(
        client,
        "What is 5 * 5?",
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
    )
    assert final.usage.output_tokens == plain.usage.output_tokens


def test_streamed_tool_use_is_reassembled(emu: Emulator) -> None:
    tools: Any = [{"name": "record", "input_schema": SCHEMA}]
    with strict(emu).messages.stream(
        model=MODEL, max_tokens=100, tools=tools, messages=[{"role": "user", "content": "2+2"}]
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    block = final.content[0]
    assert block.type == "tool_use" and block.input["answer"] == 4


def test_raw_event_stream_has_an_event_line_per_event(emu: Emulator) -> None:
    body = {
        "model": MODEL,
        "max_tokens": 20,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    with emu.http_client(timeout=10) as http:
        response = http.post(
            "/v1/messages",
            content=orjson.dumps(body),
            headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
        )
    assert response.headers["content-type"] == "text/event-stream"
    raw = response.text
    events = [chunk for chunk in raw.split("\n\n") if chunk]
    names = [e.splitlines()[0].removeprefix("event: ") for e in events]
    assert all(e.startswith("event: ") for e in events)
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert {"content_block_start", "content_block_delta", "content_block_stop"} <= set(names)


def test_async_messages_create_stream_and_count(emu: Emulator) -> None:
    async def main() -> None:
        async with emu.async_client(_strict_response_validation=True, max_retries=0) as client:
            message = await client.messages.create(
                model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "What is 1 + 1?"}]
            )
            assert text_of(message) == "The answer is 2."
            async with client.messages.stream(
                model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "What is 1 + 1?"}]
            ) as stream:
                final = await stream.get_final_message()
            assert text_of(final) == "The answer is 2."
            counted = await client.messages.count_tokens(
                model=MODEL, messages=[{"role": "user", "content": "What is 1 + 1?"}]
            )
            assert counted.input_tokens == message.usage.input_tokens

    asyncio.run(main())


# --- user responders --------------------------------------------------------------------------


def responder(params: dict[str, Any]) -> str | dict[str, Any] | Exception:
    prompt = params["messages"][-1]["content"]
    if prompt == "text":
        return "custom reply"
    if prompt == "dict":
        return {"content": [{"type": "text", "text": "from dict"}], "stop_reason": "refusal"}
    if prompt == "overloaded":
        return RowError("overloaded_error", "Overloaded")
    if prompt == "raise":
        raise RuntimeError("responder bug")
    return {"usage": {"output_tokens": 999}}


def test_user_responder_on_messages() -> None:
    with serve(speed=0, responder=responder) as emu:
        client = strict(emu)
        assert text_of(ask(client, "text")) == "custom reply"
        refused = ask(client, "dict")
        assert text_of(refused) == "from dict" and refused.stop_reason == "refusal"
        assert ask(client, "other").usage.output_tokens == 999
        with pytest.raises(anthropic.InternalServerError) as err:
            ask(client, "overloaded")
        assert err.value.status_code == 529
        with pytest.raises(anthropic.InternalServerError) as err:
            ask(client, "raise")
        assert err.value.status_code == 500


def test_user_responder_in_a_batch() -> None:
    with serve(speed=0, responder=responder) as emu:
        client = strict(emu)
        prompts = ["text", "dict", "overloaded", "raise", "other"]
        batch = client.messages.batches.create(
            requests=[
                {
                    "custom_id": p,
                    "params": {
                        "model": MODEL,
                        "max_tokens": 10,
                        "messages": [{"role": "user", "content": p}],
                    },
                }
                for p in prompts
            ]
        )
        emu.clock.advance(60)
        ended = client.messages.batches.retrieve(batch.id)
        assert ended.request_counts.succeeded == 3 and ended.request_counts.errored == 2
        rows = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
        text = rows["text"]
        assert text.type == "succeeded" and text_of(text.message) == "custom reply"
        assert text.message.usage.service_tier == "batch"
        overloaded = rows["overloaded"]
        assert overloaded.type == "errored" and overloaded.error.error.type == "overloaded_error"
        raised = rows["raise"]
        assert raised.type == "errored" and raised.error.error.type == "api_error"


def test_row_error_refuses_types_the_sdk_cannot_parse() -> None:
    with pytest.raises(ValueError, match="unknown error type"):
        RowError("teapot_error", "no")
