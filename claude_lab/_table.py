"""The table stage: the collector's columns laid over the input rows, with provenance.

One function for every run: a plain run is one column block under ``name``; a run of
several models or epochs (``_variants.py``) is one block per prefix and, with epochs,
a long table whose rows repeat each input row ``k`` times next to an ``epoch`` column.
The table's ``attrs["claude_lab"]`` says what produced it (models, templates, params,
batches, counts, cost) and travels into exports.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from claude_lab import _table_html as table_html
from claude_lab._collector import ResultAccumulator
from claude_lab._plan import RunConfig, now_iso
from claude_lab._variants import EPOCH_COLUMN
from claude_lab._version import __version__

__all__ = ["Rows", "build"]

_COPY_ON_WRITE = int(pd.__version__.split(".")[0]) >= 3 or bool(
    pd.get_option("mode.copy_on_write") is True
)


@dataclass(frozen=True)
class Rows:
    """Which request answers each output row, and the input rows they line up with.

    ``row_uid`` holds, per variant in turn, one entry per input row: the index of its
    request in ``custom_ids``, or -1 for a skipped row.
    """

    job_id: str
    custom_ids: list[str]
    row_uid: np.ndarray
    frame: pd.DataFrame | None
    index: pd.Index


def build(
    rows: Rows,
    config: RunConfig,
    acc: ResultAccumulator,
    *,
    batch_ids: Sequence[str],
    spent: float,
) -> pd.DataFrame:
    """The result table: the input's columns, then each prefix's result columns."""
    vs = config.variants or [{"name": config.name, "model": config.model, "epoch": 0}]
    epochs = max(v["epoch"] for v in vs) + 1
    n = len(rows.row_uid) // len(vs)
    frame = rows.frame if rows.frame is not None else pd.DataFrame(index=rows.index)
    if epochs > 1:
        out = frame.iloc[np.repeat(np.arange(n), epochs)].copy()
        out[EPOCH_COLUMN] = np.tile(np.arange(epochs), n)
    else:
        # Under copy-on-write a shallow copy is safe and free; before it (pandas 2 by
        # default), editing the result could write through to the input frame.
        out = frame.copy(deep=not _COPY_ON_WRITE)
    prefixes = list(dict.fromkeys(v["name"] for v in vs))
    runs: dict[str, Any] = {}
    new: dict[str, Any] = {}
    for prefix in prefixes:
        ks = [k for k, v in enumerate(vs) if v["name"] == prefix]
        # Row-major: input row i's epochs are consecutive rows of the long table.
        uid = np.stack([rows.row_uid[k * n : (k + 1) * n] for k in ks], axis=1).ravel()
        cols = acc.columns(
            uid,
            prefix=prefix,
            output=config.output,
            parse=config.parse,
            prices=config.prices,
            features=config.features,
        )
        new.update(cols)
        status = pd.Series(cols[f"{prefix}_status"])
        runs[prefix] = {
            "model": vs[ks[0]]["model"],
            "status_counts": {str(k): int(c) for k, c in status.value_counts().items()},
            "cost_usd": float(pd.Series(cols[f"{prefix}_cost_usd"]).sum()),
        }
    # One concat, not a column assignment each: assigning copies every numeric column
    # while the new one is still held, a fifth more at the table's peak.
    attrs = copy.deepcopy(out.attrs)
    out = pd.concat(
        [
            out.drop(columns=[c for c in new if c in out.columns]),
            pd.DataFrame(new, index=out.index, copy=False),
        ],
        axis=1,
    )
    out.attrs = attrs
    del new
    provenance: dict[str, Any] = {
        "job_id": rows.job_id,
        "package": f"claude-lab {__version__}",
        "model": config.model,
        "templates": config.templates,
        "params": config.params,
        "name": prefixes[0],
        "batch_ids": list(batch_ids),
        "endpoint": config.endpoint,
        "created_at": config.created_at,
        "finished_at": now_iso(),
        "rows": len(out),
        "requests": len(rows.custom_ids),
        "status_counts": _sum_counts([r["status_counts"] for r in runs.values()]),
        "cost_usd": sum(r["cost_usd"] for r in runs.values()),
        "spent_usd": spent,
    }
    if config.variants:
        provenance.update(
            model=[runs[p]["model"] for p in prefixes], names=prefixes, epochs=epochs, runs=runs
        )
    out.attrs["claude_lab"] = provenance
    table_html.register()  # in a notebook: blank error cells rather than <NA>
    return out


def _sum_counts(counts: Sequence[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for c in counts:
        for k, v in c.items():
            total[k] = total.get(k, 0) + v
    return total
