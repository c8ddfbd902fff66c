"""The emulator follows ``anthropic-version``: 2026-10-21 refuses what that version removed."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from claude_lab.emulator import Emulator
from tests.emulator_helpers import strict_client

OLD = {"anthropic-version": "2023-06-01"}


def _params(**extra: Any) -> dict[str, Any]:
    return {
        "model": "claude-haiku-4-5",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "What is 2 + 2?"}],
        **extra,
    }


def _batch_rows(emu: Emulator, client: anthropic.Anthropic, bad: dict[str, Any]) -> dict[str, Any]:
    requests = [
        {"custom_id": "good", "params": _params()},
        {"custom_id": "bad", "params": {**_params(), **bad}},
    ]
    created = client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
    emu.clock.advance(60)
    assert client.messages.batches.retrieve(created.id).request_counts.errored == 1
    return {r.custom_id: r.result for r in client.messages.batches.results(created.id)}


@pytest.mark.parametrize(("field", "value"), [("temperature", 0), ("top_p", 0.9), ("top_k", 5)])
def test_sampling_params_refused_under_2026_10_21(emu: Emulator, field: str, value: float) -> None:
    client = strict_client(emu)
    assert client._custom_headers.get("anthropic-version") is None  # the SDK's own version
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.create(**_params(), extra_body={field: value})
    body: Any = err.value.body
    assert body["error"]["type"] == "invalid_request_error"
    assert field in body["error"]["message"] and "2026-10-21" in body["error"]["message"]

    rows = _batch_rows(emu, client, {field: value})
    assert rows["good"].type == "succeeded"
    assert rows["bad"].type == "errored"
    assert rows["bad"].error.error.type == "invalid_request_error"
    assert f"requests.1.params.{field}" in rows["bad"].error.error.message


@pytest.mark.parametrize(("field", "value"), [("temperature", 0), ("top_p", 0.9), ("top_k", 5)])
def test_sampling_params_accepted_under_2023_06_01_for_older_models(
    emu: Emulator, field: str, value: float
) -> None:
    client = emu.client(_strict_response_validation=True, max_retries=0, default_headers=OLD)
    message = client.messages.create(**_params(), extra_body={field: value})
    assert message.content[0].type == "text"
    rows = _batch_rows(emu, client, {"max_tokens": None})  # still validated, as before
    assert rows["good"].type == "succeeded"
    created = client.messages.batches.create(
        requests=[{"custom_id": "t", "params": {**_params(), field: value}}]  # type: ignore[typeddict-unknown-key]
    )
    emu.clock.advance(60)
    assert client.messages.batches.retrieve(created.id).request_counts.succeeded == 1


def test_old_version_still_refuses_sampling_for_models_that_never_used_it(emu: Emulator) -> None:
    client = emu.client(max_retries=0, default_headers=OLD)
    with pytest.raises(anthropic.BadRequestError, match="not supported by claude-opus-5"):
        client.messages.create(**{**_params(), "model": "claude-opus-5"}, extra_body={"top_k": 3})


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        ({"frequency_penalty": 0.1}, "frequency_penalty: Extra inputs are not permitted"),
        ({"output_format": {"type": "json_schema", "schema": {}}}, "output_config"),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]},
            "text content blocks must be non-empty",
        ),
        ({"messages": [{"role": "user", "content": ""}]}, "non-empty content"),
    ],
)
def test_other_shapes_2026_10_21_refuses(emu: Emulator, bad: dict[str, Any], needle: str) -> None:
    client = strict_client(emu)
    with pytest.raises(anthropic.BadRequestError, match=needle):
        client.messages.create(**_params(), extra_body=bad)
    rows = _batch_rows(emu, client, bad)
    assert rows["bad"].type == "errored" and needle in rows["bad"].error.error.message
    # The permissive older version accepts all of them.
    old = emu.client(max_retries=0, default_headers=OLD)
    old.messages.create(**_params(), extra_body=bad)


def test_max_tokens_0_prewarms_on_messages_but_is_refused_in_a_batch(emu: Emulator) -> None:
    client = strict_client(emu)
    cached = {
        "system": [
            {
                "type": "text",
                "text": "A long shared preamble. " * 200,
                "cache_control": {"type": "ephemeral"},
            }
        ],
    }
    warm = client.messages.create(**{**_params(max_tokens=0), **cached})  # type: ignore[arg-type]
    assert warm.content == [] and warm.stop_reason == "max_tokens"
    assert warm.usage.output_tokens == 0 and warm.usage.cache_creation_input_tokens
    hit = client.messages.create(**{**_params(), **cached})  # type: ignore[arg-type]
    assert hit.usage.cache_read_input_tokens == warm.usage.cache_creation_input_tokens
    rows = _batch_rows(emu, client, {"max_tokens": 0})
    assert "only accepted on /v1/messages" in rows["bad"].error.error.message


@pytest.mark.parametrize(
    ("bad", "needle"), [({"stream": True}, "stream"), ({"speed": "fast"}, "fast mode")]
)
def test_stream_and_speed_are_errored_lines_in_a_batch(
    emu: Emulator, bad: dict[str, Any], needle: str
) -> None:
    client = strict_client(emu)
    rows = _batch_rows(emu, client, bad)
    assert rows["bad"].error.error.type == "invalid_request_error"
    assert needle in rows["bad"].error.error.message
    assert rows["good"].type == "succeeded"


def test_malformed_batch_structure_still_fails_the_create(emu: Emulator) -> None:
    client = strict_client(emu)
    good = {"custom_id": "a", "params": _params()}
    for requests in ([good, good], [{"custom_id": "b"}], [{"params": _params()}]):
        with pytest.raises(anthropic.BadRequestError):
            client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
    assert emu.count("POST", "/v1/messages/batches") == 3
    assert all(r.status == 400 for r in emu.requests)
