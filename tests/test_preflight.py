"""Checks made against the model catalogue before anything is sent, and the spend guard."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

import claude_lab
from claude_lab._errors import InputError
from claude_lab._models import ModelsWarning, catalogue
from claude_lab.emulator import Emulator

FAST: dict[str, Any] = {"progress": None, "poll_interval": 0.02}
DF = pd.DataFrame({"q": ["What is 1 + 1?", "What is 2 + 2?", "What is 3 + 3?"]}, index=[10, 11, 12])


def _sent_nothing(emu: Emulator) -> None:
    """Only the catalogue was read: no message, batch or count request, no journal entry."""
    assert [r.path for r in emu.requests if r.path != "/v1/models"] == []
    assert emu.count("GET", "/v1/models") <= 1
    assert len(claude_lab.jobs()) == 0


def test_sampling_options_are_refused_with_why_and_what_to_do(fast: Emulator) -> None:
    for option in ({"temperature": 0}, {"top_p": 0.5}, {"top_k": 3}):
        with pytest.raises(InputError) as info:
            DF.claude.batch("{q}", model="claude-haiku-4-5", client=fast.client(), **option, **FAST)
        message = str(info.value)
        assert next(iter(option)) in message and "2026-10-21" in message
        assert "Remove it" in message and "2023-06-01" in message and "params=" in message
    assert fast.requests == [] and len(claude_lab.jobs()) == 0


def test_sampling_in_params_refused_under_2026_but_allowed_on_the_older_version(
    fast: Emulator,
) -> None:
    with pytest.raises(InputError, match="not accepted in params="):
        DF.claude.batch(
            "{q}", model="claude-haiku-4-5", params={"temperature": 0}, client=fast.client(), **FAST
        )
    _sent_nothing(fast)
    old = fast.client(default_headers={"anthropic-version": "2023-06-01"})
    out = DF.claude.batch(
        "{q}", model="claude-haiku-4-5", params={"temperature": 0}, client=old, **FAST
    )
    assert (out["claude_status"] == "succeeded").all()


def test_misspelt_model_says_did_you_mean(fast: Emulator) -> None:
    with pytest.raises(InputError) as info:
        DF.claude.batch("{q}", model="claude-hiaku-4-5", client=fast.client(), **FAST)
    message = str(info.value)
    assert "'claude-hiaku-4-5' does not exist" in message
    assert "Did you mean 'claude-haiku-4-5'" in message
    _sent_nothing(fast)


def test_retired_model_is_refused(fast: Emulator) -> None:
    with pytest.raises(InputError, match="'claude-mythos-preview' is retired"):
        DF.claude.batch("{q}", model="claude-mythos-preview", client=fast.client(), **FAST)
    _sent_nothing(fast)


def test_max_tokens_over_the_limit_names_the_limit(fast: Emulator) -> None:
    limit = "max_tokens=1000000000 is over claude-haiku-4-5's limit of 64000"
    with pytest.raises(InputError, match=limit):
        DF.claude.batch(
            "{q}", model="claude-haiku-4-5", max_tokens=10**9, client=fast.client(), **FAST
        )
    _sent_nothing(fast)


def test_over_long_prompt_names_the_rows(fast: Emulator) -> None:
    df = DF.copy()
    df.loc[11, "q"] = "word " * 1_000_000  # ~5 MB: about 1.25M tokens
    with pytest.raises(InputError) as info:
        df.claude.batch("{q}", model="claude-haiku-4-5", client=fast.client(), **FAST)
    message = str(info.value)
    assert "context window of 200000" in message and "rows 11" in message
    assert "bytes of request per token" in message  # says how it estimated
    _sent_nothing(fast)


def test_all_problems_in_one_error(fast: Emulator) -> None:
    fast.core.catalogue.models["claude-haiku-4-5-20251001"]["capabilities"]["structured_outputs"][
        "supported"
    ] = False
    df = DF.copy()
    df.loc[12, "q"] = "x" * 900_000
    with pytest.raises(InputError) as info:
        df.claude.batch(
            "{q}",
            model="claude-haiku-4-5",
            max_tokens=100_000,
            output={"type": "object", "properties": {"n": {"type": "integer"}}},
            params={"top_k": 5},
            client=fast.client(),
            **FAST,
        )
    message = str(info.value)
    assert message.startswith("Nothing was sent: 4 problems")
    for needle in ("top_k", "limit of 64000", "structured outputs", "rows 12"):
        assert needle in message
    _sent_nothing(fast)


def test_catalogue_is_read_once_per_client(fast: Emulator) -> None:
    client = fast.client()
    for _ in range(3):
        DF.claude.batch("{q}", model="claude-haiku-4-5", client=client, **FAST)
    assert fast.count("GET", "/v1/models") == 1


def test_a_gateway_without_the_models_route_falls_back_to_the_sdk_list(fast: Emulator) -> None:
    client = fast.client()
    # A gateway that lacks the route answers 404 to it; simulate with a path prefix it rewrites.
    gateway = client.with_options(base_url=fast.base_url + "/gateway")
    with pytest.warns(ModelsWarning, match="has no Models API"):
        cat = catalogue(gateway)
    assert cat.source == "sdk" and cat.find("claude-haiku-4-5") is not None
    with pytest.raises(InputError, match="Did you mean 'claude-haiku-4-5'"):
        DF.claude.estimate("{q}", model="claude-hiaku-4-5", client=gateway)


def test_estimate_checks_models_only_with_a_client(fast: Emulator) -> None:
    assert DF.claude.estimate("{q}", model="claude-hiaku-4-5")["requests"] == 3
    assert fast.requests == []
    with pytest.raises(InputError, match="does not exist"):
        DF.claude.estimate("{q}", model="claude-hiaku-4-5", client=fast.client())


def test_max_cost_below_the_estimate_sends_nothing_above_it_runs(fast: Emulator) -> None:
    ceiling = DF.claude.estimate("{q}", model="claude-haiku-4-5", max_tokens=64)["max_cost_usd"]
    with pytest.raises(InputError) as info:
        DF.claude.batch(
            "{q}",
            model="claude-haiku-4-5",
            max_tokens=64,
            max_cost=ceiling / 2,
            client=fast.client(),
            **FAST,
        )
    message = str(info.value)
    assert f"${ceiling:,.4f}" in message and "nothing was sent" in message
    assert "4 bytes of request JSON per token" in message and "max_tokens=64" in message
    _sent_nothing(fast)
    out = DF.claude.batch(
        "{q}",
        model="claude-haiku-4-5",
        max_tokens=64,
        max_cost=ceiling * 1.01,
        client=fast.client(),
        **FAST,
    )
    assert (out["claude_status"] == "succeeded").all()
    assert fast.count("POST", "/v1/messages/batches") == 1


def test_max_cost_is_checked_as_a_number() -> None:
    with pytest.raises(InputError, match="max_cost"):
        DF.claude.batch("{q}", model="claude-haiku-4-5", max_cost="10", **FAST)
    assert len(claude_lab.jobs()) == 0


def test_a_rerun_is_estimated_and_budgeted_at_what_it_would_send(fast: Emulator) -> None:
    opts: dict[str, Any] = {"model": "claude-haiku-4-5", "max_tokens": 64}
    fresh = DF.claude.estimate("{q}", client=fast.client(), **opts)
    assert fresh["cached_requests"] == 0 and fresh["max_cost_usd"] > 0
    first = DF.claude.batch("{q}", client=fast.client(), **opts, **FAST)
    assert (first["claude_status"] == "succeeded").all()
    creates = fast.count("POST", "/v1/messages/batches")

    # Every reply is in the journal: a re-run sends nothing, so it costs nothing now.
    again = DF.claude.estimate("{q}", client=fast.client(), **opts)
    assert again["cached_requests"] == 3 and again["batches"] == 0
    assert again["max_cost_usd"] == 0 and again["requests"] == 3
    # ...and a budget far below the first run's ceiling lets it through.
    out = DF.claude.batch("{q}", client=fast.client(), max_cost=fresh["max_cost_usd"] / 100,
                          **opts, **FAST)  # fmt: skip
    assert out["claude_text"].tolist() == first["claude_text"].tolist()
    assert fast.count("POST", "/v1/messages/batches") == creates

    # With one new row, only that row counts; without the cache, every row does.
    grown = pd.concat([DF, pd.DataFrame({"q": ["What is 4 + 4?"]}, index=[13])])
    one_new = grown.claude.estimate("{q}", client=fast.client(), **opts)
    assert one_new["cached_requests"] == 3 and one_new["batches"] == 1
    assert 0 < one_new["max_cost_usd"] < fresh["max_cost_usd"]
    uncached = DF.claude.estimate("{q}", client=fast.client(), cache=False, **opts)
    assert uncached["cached_requests"] == 0
    assert uncached["max_cost_usd"] == pytest.approx(fresh["max_cost_usd"])
    with pytest.raises(InputError, match="3 request\\(s\\) already sent or cached are not"):
        grown.claude.batch("{q}", client=fast.client(), max_cost=one_new["max_cost_usd"] / 2,
                           **opts, **FAST)  # fmt: skip
    assert fast.count("POST", "/v1/messages/batches") == creates
