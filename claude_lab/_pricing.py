"""Per-model list prices (dated), batch and prompt-cache rates, and a vectorised cost function.

This module owns what a request costs: the price table, how a model id returned
by the API (``claude-haiku-4-5-20251001``) maps onto a row of it, and the
arithmetic over whole columns of token counts. Prices change; the table says
when it was read (:data:`PRICES_AS_OF`) and every function takes ``prices=``
to override or extend it without waiting for a release.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "BATCH_DISCOUNT",
    "PRICES",
    "PRICES_AS_OF",
    "Price",
    "PriceLike",
    "PricingWarning",
    "cost",
    "estimate_cost",
    "known_models",
    "resolve_price",
    "validate_prices",
    "warn_unpriced",
]

#: The day the table below was checked against Anthropic's published list prices.
PRICES_AS_OF = "2026-11-10"

#: Message Batches are billed at half the standard rate, cache rates included.
BATCH_DISCOUNT = 0.5

_MTOK = 1_000_000.0


class PricingWarning(UserWarning):
    """A cost could not be computed (unknown model); the cost cells are left empty."""


@dataclass(frozen=True)
class Price:
    """List prices of one model in USD per million tokens (standard, non-batch).

    Cache rates default to the usual multiples of the input price (5-minute
    write 1.25x, 1-hour write 2x, read 0.1x); a few models deviate, so they can
    be given explicitly. ``long_prompt_*`` describes a second price band used
    when a request's whole prompt (input + cache read + cache write tokens)
    exceeds ``long_prompt_threshold``: input-side rates are multiplied by
    ``long_prompt_input_factor`` and output by ``long_prompt_output_factor``.
    """

    input: float
    output: float
    cache_write: float | None = None
    cache_write_1h: float | None = None
    cache_read: float | None = None
    long_prompt_threshold: int | None = None
    long_prompt_input_factor: float = 1.0
    long_prompt_output_factor: float = 1.0

    @property
    def cache_write_rate(self) -> float:
        return self.input * 1.25 if self.cache_write is None else self.cache_write

    @property
    def cache_write_1h_rate(self) -> float:
        return self.input * 2.0 if self.cache_write_1h is None else self.cache_write_1h

    @property
    def cache_read_rate(self) -> float:
        return self.input * 0.1 if self.cache_read is None else self.cache_read


#: What ``prices=`` accepts per model: a :class:`Price` or ``(input, output)`` USD per MTok.
PriceLike = Price | Sequence[float]

_OPUS_4 = Price(15.0, 75.0)
_OPUS_45 = Price(5.0, 25.0)
# Sonnet 4 / 4.5 bill prompts over 200k tokens (1M-context beta) at 2x input, 1.5x output.
_SONNET_4 = Price(
    3.0,
    15.0,
    long_prompt_threshold=200_000,
    long_prompt_input_factor=2.0,
    long_prompt_output_factor=1.5,
)
_SONNET_46 = Price(3.0, 15.0)
_FABLE_5 = Price(10.0, 50.0)
_FABLE_51 = Price(10.0, 50.0, cache_read=0.25)

#: Model id (alias or family prefix) -> list price. Keys are matched by longest prefix.
PRICES: dict[str, Price] = {
    # Fable / Mythos (Mythos shares Fable's prices; Mythos 5.2 and the preview are unpublished).
    "claude-fable-5-2": Price(8.0, 40.0, cache_read=0.2),
    "claude-fable-5-1": _FABLE_51,
    "claude-mythos-5-1": _FABLE_51,
    "claude-fable-5": _FABLE_5,
    "claude-mythos-5": _FABLE_5,
    # Opus
    "claude-opus-5-5": Price(4.0, 20.0, cache_read=0.2),
    "claude-opus-5": _OPUS_45,
    "claude-opus-4-8": _OPUS_45,
    "claude-opus-4-7": _OPUS_45,
    "claude-opus-4-6": _OPUS_45,
    "claude-opus-4-5": _OPUS_45,
    "claude-opus-4-1": _OPUS_4,
    "claude-opus-4-0": _OPUS_4,
    "claude-opus-4": _OPUS_4,
    "claude-4-opus": _OPUS_4,
    "claude-3-opus": _OPUS_4,
    # Sonnet
    "claude-sonnet-5-5": Price(2.0, 10.0, cache_read=0.1),
    "claude-sonnet-5": Price(2.0, 10.0),
    "claude-sonnet-4-6": _SONNET_46,
    "claude-sonnet-4-5": _SONNET_4,
    "claude-sonnet-4-0": _SONNET_4,
    "claude-sonnet-4": _SONNET_4,
    "claude-4-sonnet": _SONNET_4,
    "claude-3-7-sonnet": _SONNET_46,
    "claude-3-5-sonnet": _SONNET_46,
    # Haiku (5.5 bills prompts over 100k tokens at 5x on every rate).
    "claude-haiku-5-5": Price(
        0.10,
        0.50,
        long_prompt_threshold=100_000,
        long_prompt_input_factor=5.0,
        long_prompt_output_factor=5.0,
    ),
    "claude-haiku-4-5": Price(1.0, 5.0),
    "claude-3-5-haiku": Price(0.80, 4.0),
    "claude-3-haiku": Price(0.25, 1.25, cache_write=0.30, cache_read=0.03),
}

# After a family key, only a snapshot date, "-latest", a platform suffix
# ("@2025...", "[1m]", "-v1:0") may follow: a bare prefix match would price an
# unknown "claude-opus-4-9" as Opus 4 ($15/$75), which is worse than no price.
_SUFFIX = re.compile(r"(?:-\d{8}|-latest)?(?:[@\[:].*|-v\d.*)?", re.DOTALL)


def _as_price(value: PriceLike) -> Price:
    if isinstance(value, Price):
        return value
    try:
        inp, out = value
        return Price(float(inp), float(out))
    except (TypeError, ValueError):
        raise TypeError(
            f"a price must be Price(...) or (input_usd_per_mtok, output_usd_per_mtok), "
            f"got {value!r}"
        ) from None


def validate_prices(prices: Any) -> None:
    """Raise ``ValueError`` naming the first bad entry of a ``prices=`` override."""
    if prices is None:
        return
    if not isinstance(prices, Mapping):
        raise ValueError(
            f"prices= must be a dict of model -> (input, output) USD per million tokens, "
            f"e.g. {{'claude-haiku-4-5': (1.0, 5.0)}}; got {type(prices).__name__}."
        )
    for model, value in prices.items():
        where = f"prices[{model!r}] = {value!r}"
        if not isinstance(model, str) or not model:
            raise ValueError(f"{where}: the key must be a model id such as 'claude-haiku-4-5'.")
        try:
            price = _as_price(value) if not isinstance(value, (str, bytes)) else None
        except TypeError:
            price = None
        if price is None:
            raise ValueError(
                f"{where}: pass (input, output) USD per million tokens, e.g. "
                f"prices={{{model!r}: (1.0, 5.0)}}, or a claude_lab.Price."
            )
        rates = (price.input, price.output, price.cache_write, price.cache_write_1h)
        if not all(r is None or (math.isfinite(r) and r >= 0) for r in (*rates, price.cache_read)):
            raise ValueError(f"{where}: prices must be finite numbers >= 0.")


def _table(prices: Mapping[str, PriceLike] | None) -> dict[str, Price]:
    if not prices:
        return PRICES
    merged = dict(PRICES)
    merged.update({k: _as_price(v) for k, v in prices.items()})
    return merged


def resolve_price(model: str, prices: Mapping[str, PriceLike] | None = None) -> Price | None:
    """The price row for ``model`` (exact id, alias or dated snapshot), or None if unknown."""
    table = _table(prices)
    hit = table.get(model)
    if hit is not None:
        return hit
    best: str | None = None
    for key in table:
        if (
            model.startswith(key)
            and (best is None or len(key) > len(best))
            and _SUFFIX.fullmatch(model, len(key))
        ):
            best = key
    return None if best is None else table[best]


def _warn_unknown(models: Iterable[str]) -> None:
    names = sorted(set(models))
    if not names:
        return
    listed = ", ".join(repr(m) for m in names)
    example = names[0]
    warnings.warn(
        f"No price known for model {listed} (price table as of {PRICES_AS_OF}); "
        f"its cost is left empty. Pass list prices in USD per million tokens, e.g. "
        f"prices={{{example!r}: (3.0, 15.0)}} (input, output).",
        PricingWarning,
        stacklevel=3,
    )


def warn_unpriced(
    models: Iterable[str | None], prices: Mapping[str, PriceLike] | None = None
) -> None:
    """One :class:`PricingWarning` naming each of ``models`` with no known price."""
    table = _table(prices)
    _warn_unknown(m for m in models if m is not None and resolve_price(m, table) is None)


_BLOCK = 65_536  # requests priced at once


def cost(
    model: str | Sequence[str | None] | np.ndarray,
    input_tokens: Any,
    output_tokens: Any,
    cache_read_tokens: Any = 0,
    cache_write_tokens: Any = 0,
    cache_write_1h_tokens: Any = 0,
    *,
    batch: bool = True,
    prices: Mapping[str, PriceLike] | None = None,
    warn: bool = True,
    model_index: np.ndarray | None = None,
) -> np.ndarray:
    """USD cost per request, vectorised over arrays of token counts.

    Token counts follow the API's ``usage``: ``input_tokens`` excludes cached
    tokens; ``cache_write_tokens`` is ``cache_creation_input_tokens`` (all TTLs),
    of which ``cache_write_1h_tokens`` were written with the 1-hour TTL. ``model``
    is one id or one per request (None = no model: NaN). Unknown models give NaN
    and one :class:`PricingWarning` naming them (``warn=False``: silently).
    ``batch=True`` applies the Message Batches discount.

    With ``model_index`` (one int per request, -1 = no model), ``model`` is the
    list of distinct model ids it indexes into: callers that already hold
    model codes skip hashing one string per request.
    """
    if model_index is not None:
        models = np.asarray(model_index, dtype=np.int64)
        scalar_shape = False
    elif isinstance(model, str):
        n = int(np.size(input_tokens))
        models = np.full(max(n, 1), model, dtype=object)
        scalar_shape = np.ndim(input_tokens) == 0
    else:
        models = np.asarray(model, dtype=object)
        scalar_shape = False
    n = models.shape[0]

    # Few distinct models per job: resolve each once, then broadcast rates with take().
    # Code -1 (no model) picks the extra all-NaN last row.
    if model_index is not None:
        codes = models
        uniq = np.asarray([model] if isinstance(model, str) else list(model), dtype=object)
    else:
        codes, uniq = pd.factorize(models, use_na_sentinel=True)
    table = _table(prices)
    rates = np.full((len(uniq) + 1, 8), np.nan)
    unknown: list[str] = []
    for i, name in enumerate(uniq):
        if name is None:
            continue
        p = resolve_price(str(name), table)
        if p is None:
            unknown.append(str(name))
            continue
        rates[i] = (
            p.input,
            p.output,
            p.cache_write_rate,
            p.cache_write_1h_rate,
            p.cache_read_rate,
            np.inf if p.long_prompt_threshold is None else p.long_prompt_threshold,
            p.long_prompt_input_factor,
            p.long_prompt_output_factor,
        )
    if warn:
        _warn_unknown(unknown)
    # One model for every request (the usual job): one row of rates, broadcast, rather
    # than an n x 8 copy of it.
    uniform = codes.size > 0 and bool((codes == codes[0]).all())
    tokens = [
        np.asarray(t)
        for t in (
            input_tokens,
            output_tokens,
            cache_read_tokens,
            cache_write_tokens,
            cache_write_1h_tokens,
        )
    ]
    total = np.empty(n)
    # In blocks: the arithmetic's temporaries stay small at a million requests.
    for start in range(0, n, _BLOCK):
        part = slice(start, start + _BLOCK)
        r = rates[codes[:1]] if uniform else rates[codes[part]]
        inp, out, c_read, c_write, c_1h = (
            t[part].astype(np.float64) if t.ndim else np.float64(t) for t in tokens
        )
        c_5m = np.maximum(c_write - c_1h, 0.0)
        input_side = inp * r[:, 0] + c_5m * r[:, 2] + c_1h * r[:, 3] + c_read * r[:, 4]
        output_side = out * r[:, 1]
        long_prompt = (inp + c_read + c_write) > r[:, 5]
        input_side = np.where(long_prompt, input_side * r[:, 6], input_side)
        output_side = np.where(long_prompt, output_side * r[:, 7], output_side)
        total[part] = (input_side + output_side) / _MTOK
    if batch:
        total *= BATCH_DISCOUNT
    if scalar_shape:
        return total[:1]
    return total


def known_models() -> list[str]:
    """The model ids and family prefixes the price table knows, sorted."""
    return sorted(PRICES)


def estimate_cost(
    model: str,
    input_tokens: int | Sequence[int] | np.ndarray,
    max_output_tokens: int | Sequence[int] | np.ndarray,
    *,
    requests: int = 1,
    batch: bool = True,
    prices: Mapping[str, PriceLike] | None = None,
) -> float:
    """Upper bound in USD before sending: every request uses its full ``max_tokens``.

    ``input_tokens`` and ``max_output_tokens`` are one number or one per request;
    the total over all requests is returned. When passing job totals as single
    numbers, give ``requests=`` too: long-prompt price bands depend on the
    prompt of each request, not of the whole job. No prompt-cache discount is
    assumed, so the real bill is at most this. Unknown model: NaN and a warning.
    """
    inp = np.atleast_1d(np.asarray(input_tokens, dtype=np.float64))
    out = np.atleast_1d(np.asarray(max_output_tokens, dtype=np.float64))
    inp, out = np.broadcast_arrays(inp, out)
    if inp.size == 0:
        return 0.0
    if requests < 1:
        raise ValueError(f"requests must be >= 1, got {requests}")
    # Spreading totals evenly is exact for flat prices and the best guess for bands.
    per_request = cost(model, inp / requests, out / requests, batch=batch, prices=prices)
    return float(per_request.sum() * requests)
