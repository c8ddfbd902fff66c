"""pricing.py: the dated price table, model id resolution, and vectorised cost."""

from __future__ import annotations

import datetime as dt
import typing

import numpy as np
import pytest
from anthropic.types.model import Model

from claude_lab._pricing import (
    PRICES,
    PRICES_AS_OF,
    Price,
    PricingWarning,
    cost,
    estimate_cost,
    known_models,
    resolve_price,
)

# Models whose list price was not published when the table was dated.
UNPRICED = {"claude-mythos-5-2", "claude-mythos-preview"}


def test_table_is_dated() -> None:
    assert dt.date.fromisoformat(PRICES_AS_OF) <= dt.date.today()


def test_every_sdk_model_literal_has_a_price() -> None:
    literal = typing.get_args(Model)[0]
    for name in typing.get_args(literal):
        if name in UNPRICED:
            continue
        assert resolve_price(name) is not None, name


@pytest.mark.parametrize(
    ("model", "inp", "out"),
    [
        ("claude-opus-4-6", 5.0, 25.0),
        ("claude-opus-4-5-20251101", 5.0, 25.0),
        ("claude-opus-4-1", 15.0, 75.0),
        ("claude-opus-4-20250514", 15.0, 75.0),
        ("claude-sonnet-4-5-20250929", 3.0, 15.0),
        ("claude-sonnet-4-6", 3.0, 15.0),
        ("claude-haiku-4-5", 1.0, 5.0),
        ("claude-haiku-4-5-20251001", 1.0, 5.0),
        ("claude-3-5-haiku-20241022", 0.8, 4.0),
        ("claude-3-5-haiku-latest", 0.8, 4.0),
        ("claude-3-haiku-20240307", 0.25, 1.25),
    ],
)
def test_list_prices(model: str, inp: float, out: float) -> None:
    p = resolve_price(model)
    assert p is not None
    assert (p.input, p.output) == (inp, out)


def test_default_cache_rates() -> None:
    p = PRICES["claude-haiku-4-5"]
    assert p.cache_write_rate == pytest.approx(1.25)
    assert p.cache_write_1h_rate == pytest.approx(2.0)
    assert p.cache_read_rate == pytest.approx(0.1)


def test_prefix_needs_a_snapshot_or_platform_suffix() -> None:
    # An unknown newer version must not silently take an older family's price.
    assert resolve_price("claude-opus-4-9") is None
    assert resolve_price("claude-haiku-4-55") is None
    assert resolve_price("gpt-4") is None
    assert resolve_price("claude-sonnet-4-5[1m]") is PRICES["claude-sonnet-4-5"]
    assert resolve_price("claude-opus-4-5@20251101") is PRICES["claude-opus-4-5"]


def test_cost_is_vectorised_batch_and_cache_rates() -> None:
    got = cost(
        np.array(
            ["claude-haiku-4-5", "claude-haiku-4-5-20251001", "claude-sonnet-4-6"], dtype=object
        ),
        [1_000_000, 0, 0],
        [1_000_000, 0, 0],
        [0, 1_000_000, 0],
        [0, 0, 1_000_000],
    )
    assert got == pytest.approx([3.0, 0.05, 3.75 / 2])
    assert cost("claude-haiku-4-5", [1_000_000], [0], batch=False) == pytest.approx([1.0])


def test_long_prompt_band() -> None:
    short, long_ = cost("claude-haiku-5-5", [100_000, 100_001], [1_000_000, 1_000_000], batch=False)
    assert short == pytest.approx(0.01 + 0.5)
    assert long_ == pytest.approx(100_001 * 0.5 / 1e6 + 2.5)


def test_unknown_model_nan_and_single_warning() -> None:
    with pytest.warns(PricingWarning, match=r"'claude-x-1'.*prices=") as rec:
        got = cost(
            np.array(["claude-x-1", "claude-x-1", None, "claude-haiku-4-5"], dtype=object),
            [1] * 4,
            [1] * 4,
        )
    assert len(rec) == 1
    assert np.isnan(got[:3]).all() and got[3] > 0


def test_price_override() -> None:
    got = cost("claude-x-1", [1_000_000], [0], prices={"claude-x-1": (4.0, 8.0)})
    assert got == pytest.approx([2.0])
    got = cost("claude-haiku-4-5", [1_000_000], [0], prices={"claude-haiku-4-5": Price(2.0, 8.0)})
    assert got == pytest.approx([1.0])
    with pytest.raises(TypeError):
        cost("m", [1], [1], prices={"m": "cheap"})  # type: ignore[dict-item]


def test_estimate_cost_upper_bound() -> None:
    assert estimate_cost("claude-haiku-4-5", 1_000_000, 1_000_000) == pytest.approx(3.0)
    per_request = estimate_cost("claude-haiku-4-5", [500_000, 500_000], 500_000)
    assert per_request == pytest.approx(3.0)
    assert estimate_cost("claude-haiku-4-5", [], 10) == 0.0
    # Totals for 100 requests of 10k prompt tokens each: stays in Haiku 5.5's low band.
    assert estimate_cost(
        "claude-haiku-5-5", 1_000_000, 0, requests=100, batch=False
    ) == pytest.approx(0.1)
    with pytest.warns(PricingWarning):
        assert np.isnan(estimate_cost("claude-x-1", 10, 10))


def test_known_models_sorted() -> None:
    names = known_models()
    assert names == sorted(names) and "claude-haiku-4-5" in names
