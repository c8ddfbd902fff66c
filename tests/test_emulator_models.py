"""The emulated Models API and the limits its records enforce."""

from __future__ import annotations

import typing
from typing import Any

import anthropic
import pytest
from anthropic.types.model import Model

from claude_lab.emulator import Emulator
from tests.emulator_helpers import strict_client


def _sdk_ids() -> list[str]:
    return [a for arg in typing.get_args(Model) for a in typing.get_args(arg)]


def test_list_auto_pages_and_validates_strictly(emu: Emulator) -> None:
    client = strict_client(emu)
    models = list(client.models.list(limit=3))
    assert emu.count("GET", "/v1/models") == -(-len(models) // 3)
    ids = [m.id for m in models]
    assert len(ids) == len(set(ids))
    created = [m.created_at for m in models]
    assert created == sorted(created, reverse=True)  # newest first
    assert all(m.lifecycle != "retired" for m in models)
    assert any(m.lifecycle == "deprecated" for m in models)
    for m in models:
        assert m.max_input_tokens and m.max_tokens and m.capabilities is not None
    # Every model of the installed SDK's literal is known, by id or alias.
    for mid in _sdk_ids():
        assert client.models.retrieve(mid).id.startswith(mid)


def test_retired_models_listed_only_when_asked(emu: Emulator) -> None:
    client = strict_client(emu)
    retired = list(client.models.list(lifecycle=["retired"]))
    assert retired and {m.lifecycle for m in retired} == {"retired"}
    everything = list(client.models.list(lifecycle=["active", "deprecated", "retired"], limit=5))
    assert {m.id for m in retired} <= {m.id for m in everything}


def test_before_id_pages_backwards(emu: Emulator) -> None:
    client = strict_client(emu)
    first = client.models.list(limit=4)
    second = client.models.list(limit=4, after_id=first.last_id)  # type: ignore[arg-type]
    back = client.models.list(limit=4, before_id=second.first_id)  # type: ignore[arg-type]
    assert [m.id for m in back.data] == [m.id for m in first.data]
    assert not back.has_more


def test_alias_resolves_and_unknown_is_404(emu: Emulator) -> None:
    client = strict_client(emu)
    assert client.models.retrieve("claude-haiku-4-5").id == "claude-haiku-4-5-20251001"
    with pytest.raises(anthropic.NotFoundError):
        client.models.retrieve("claude-hiaku-4-5")


def _p(**extra: Any) -> dict[str, Any]:
    return {
        "model": "claude-haiku-4-5",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "hi"}],
        **extra,
    }


@pytest.mark.parametrize(
    ("params", "status", "kind", "needle"),
    [
        (_p(model="claude-hiaku-4-5"), 404, "not_found_error", "claude-hiaku-4-5"),
        (_p(model="claude-3-5-haiku-20241022"), 404, "not_found_error", "retired"),
        (_p(max_tokens=1_000_000), 400, "invalid_request_error", "64000"),
        (
            _p(messages=[{"role": "user", "content": "x" * 4 * 200_001}]),
            400,
            "invalid_request_error",
            "prompt is too long",
        ),
    ],
)
@pytest.mark.filterwarnings("ignore:The model:DeprecationWarning")  # the SDK's own warning
def test_catalogue_limits_enforced(
    emu: Emulator, params: dict[str, Any], status: int, kind: str, needle: str
) -> None:
    client = strict_client(emu)
    with pytest.raises(anthropic.APIStatusError) as err:
        client.messages.create(**params, timeout=30)
    assert err.value.status_code == status
    body: Any = err.value.body
    assert body["error"]["type"] == kind and needle in body["error"]["message"]
    created = client.messages.batches.create(
        requests=[{"custom_id": "ok", "params": _p()}, {"custom_id": "bad", "params": params}]  # type: ignore[list-item]
    )
    emu.clock.advance(60)
    rows = {r.custom_id: r.result for r in client.messages.batches.results(created.id)}
    assert rows["ok"].type == "succeeded"
    assert rows["bad"].type == "errored"
    assert rows["bad"].error.error.type == kind and needle in rows["bad"].error.error.message
