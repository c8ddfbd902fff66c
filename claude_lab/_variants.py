"""Several models and repeated samples (epochs) in one run.

``df.claude.batch(prompt, model=[...], epochs=k)`` renders every row once per
model and sends every (model, epoch) copy in the same job: one journal entry,
shared batches, one display. A *variant* is one (column prefix, model, epoch);
the job's per-row request index ``row_uid`` holds the variants one after the
other, ``n`` rows each. Epoch ``e > 0`` salts the request hash (never the
request itself), so every copy has its own deterministic custom_id and its own
cache entry, while epoch 0 shares the id, and the cache, of a plain run.

The result table has one column block per prefix (``haiku_4_5_text``, ...),
aligned with the input. With ``epochs > 1`` it is long: each input row appears
``k`` times in a row (same index label) with an ``epoch`` column 0..k-1.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from claude_lab._errors import InputError

if TYPE_CHECKING:
    from claude_lab._plan import RunConfig

__all__ = ["EPOCH_COLUMN", "ceiling", "prefix_for", "variants"]

EPOCH_COLUMN = "epoch"


def prefix_for(model: str) -> str:
    """The column prefix of a model: ``claude-haiku-4-5`` -> ``haiku_4_5``."""
    base = re.sub(r"[^0-9a-zA-Z]+", "_", model).strip("_").lower()
    short = base.removeprefix("claude_")
    return short if short.isidentifier() else f"claude_{short}" if short else "claude"


def variants(
    model: Any, names: Sequence[str] | None, epochs: Any, name: str
) -> list[dict[str, Any]] | None:
    """The run's variants in request order (model-major, then epoch), or None for a plain run."""
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise InputError(f"epochs must be a whole number >= 1, got {epochs!r}.")
    many = isinstance(model, (list, tuple))
    if not many and epochs == 1:
        if names is not None:
            raise InputError("names= goes with a list of models; for one model use name=.")
        return None
    models = list(model) if many else [model]
    if not models or not all(isinstance(m, str) and m for m in models):
        raise InputError(
            f"model= must be a model id or a list of them, e.g. ['claude-haiku-4-5', "
            f"'claude-sonnet-4-5']; got {model!r}."
        )
    if names is None:
        prefixes = [prefix_for(m) for m in models] if many else [name]
    else:
        prefixes = [names] if isinstance(names, str) else list(names)
        if len(prefixes) != len(models):
            raise InputError(f"names= has {len(prefixes)} names for {len(models)} models.")
    bad = [p for p in prefixes if not isinstance(p, str) or not p.isidentifier()]
    if bad:
        raise InputError(f"names {bad} must be valid identifiers such as 'haiku'.")
    if len(set(prefixes)) != len(prefixes):
        raise InputError(
            f"The models would write the same columns ({prefixes}); pass names=[...] "
            "with one distinct prefix per model."
        )
    return [
        {"name": p, "model": m, "epoch": e} for p, m in zip(prefixes, models) for e in range(epochs)
    ]


def ceiling(
    config: RunConfig, params: Sequence[bytes], row_uid: np.ndarray, uids: Any
) -> float | None:
    """Upper-bound cost of sending requests ``uids``, priced per model (None if any model
    has no known price)."""
    from claude_lab._media import prompt_tokens_many
    from claude_lab._plan import cost_ceiling

    uids = np.asarray(uids, dtype=np.int64)
    tokens = prompt_tokens_many(params)
    vs = config.variants
    if not vs:
        return cost_ceiling(config, int(tokens[uids].sum()), len(uids))
    n = len(row_uid) // len(vs)
    wanted = np.zeros(len(params), dtype=bool)
    wanted[uids] = True
    total = 0.0
    for model in dict.fromkeys(v["model"] for v in vs):
        ks = [k for k, v in enumerate(vs) if v["model"] == model]
        mine = np.unique(np.concatenate([row_uid[k * n : (k + 1) * n] for k in ks]))
        mine = mine[mine >= 0]
        mine = mine[wanted[mine]]
        if not len(mine):
            continue
        cost = cost_ceiling(config.replace(model=model), int(tokens[mine].sum()), len(mine))
        if cost is None:
            return None
        total += cost
    return total
