"""Plots of a scored run: one call each, each returning a matplotlib Figure.

``plot_accuracy`` (mean score by group with 95% error bars, one bar per model),
``plot_cost_vs_score`` (each model's total cost against its mean score),
``plot_tokens`` (output and input token distributions) and ``plot_latency``
(per row, the time from its batch's creation to its end, read from the journal).
matplotlib is an optional extra: ``pip install "claude-lab[plot]"``. Figures are
closed in pyplot before they are returned, so a notebook shows each once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from claude_lab._compare import scored_names
from claude_lab._errors import ConfigError, InputError, JobNotFoundError
from claude_lab._stats import summarize

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["batch_latency", "plot_accuracy", "plot_cost_vs_score", "plot_latency", "plot_tokens"]


def _figure(ncols: int = 1, width: float = 6.4) -> tuple[Figure, list[Axes]]:
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError(
            'Plots need matplotlib: pip install "claude-lab[plot]" (or pip install matplotlib).'
        ) from None
    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols if ncols > 1 else width, 4))
    # Returned, not left open: pyplot's notebook hook would show the figure a second time.
    plt.close(fig)
    return fig, list(np.atleast_1d(axes))


def _models(table: pd.DataFrame, names: Sequence[str] | None, need_score: bool) -> list[str]:
    if names is not None:
        return list(names)
    found = scored_names(table)
    if found or need_score:
        if not found:
            raise InputError("No <name>_score column: score the table first (claude_lab.score).")
        return found
    found = [
        c[: -len("_text")] for c in table.columns if isinstance(c, str) and c.endswith("_text")
    ]
    if not found:
        raise InputError("No reply columns (<name>_text) in the table.")
    return found


def plot_accuracy(
    table: pd.DataFrame,
    by: str | None = None,
    names: Sequence[str] | None = None,
    *,
    cluster: str | None = None,
    title: str | None = None,
) -> Figure:
    """Mean score by group (``by``, or overall) with 95% intervals, one bar per model."""
    models = _models(table, names, True)
    fig, (ax,) = _figure(width=max(6.4, 1.2 * (table[by].nunique() if by else 1) + 3))
    width = 0.8 / len(models)
    groups: list[Any] = []
    for k, name in enumerate(models):
        s = summarize(table, by=by, name=name, cluster=cluster)
        if not groups:
            groups = list(s.index)
        s = s.reindex(groups)
        x = np.arange(len(groups)) + (k - (len(models) - 1) / 2) * width
        mean = s["mean"].to_numpy(dtype=float)
        err = np.vstack(
            [mean - s["ci_low"].to_numpy(dtype=float), s["ci_high"].to_numpy(dtype=float) - mean]
        )
        ax.bar(x, mean, width, yerr=np.clip(np.nan_to_num(err), 0, None), capsize=3, label=name)
    ax.set_xticks(np.arange(len(groups)), [str(g) for g in groups])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("mean score (95% CI)")
    ax.set_title(title or (f"Score by {by}" if by else "Score"))
    if len(models) > 1:
        ax.legend()
    fig.tight_layout()
    return fig


def plot_cost_vs_score(
    table: pd.DataFrame, names: Sequence[str] | None = None, *, title: str | None = None
) -> Figure:
    """Each model's total cost (USD, batch prices) against its mean score with 95% interval."""
    models = _models(table, names, True)
    fig, (ax,) = _figure()
    for name in models:
        s = summarize(table, name=name).iloc[0]
        cost = float(s["cost_usd"]) if not math.isnan(s["cost_usd"]) else 0.0
        err = [[max(0.0, s["mean"] - s["ci_low"])], [max(0.0, s["ci_high"] - s["mean"])]]
        ax.errorbar([cost], [s["mean"]], yerr=err, fmt="o", capsize=4, label=name)
        ax.annotate(name, (cost, s["mean"]), textcoords="offset points", xytext=(6, 6))
    ax.set_xlabel("cost (USD)")
    ax.set_ylabel("mean score (95% CI)")
    ax.set_ylim(0, 1.05)
    ax.margins(x=0.3)  # room for the labels
    ax.set_xlim(left=0)
    ax.set_title(title or "Cost vs score")
    fig.tight_layout()
    return fig


def plot_tokens(
    table: pd.DataFrame, names: Sequence[str] | None = None, *, title: str | None = None
) -> Figure:
    """Distributions of output and input tokens per reply, one histogram per model."""
    models = _models(table, names, False)
    fig, axes = _figure(ncols=2, width=4.8)
    for ax, kind in zip(axes, ("output", "input")):
        for name in models:
            col = f"{name}_{kind}_tokens"
            if col in table.columns:
                values = pd.to_numeric(table[col], errors="coerce").dropna().to_numpy(dtype=float)
                if values.size:
                    ax.hist(values, bins=min(30, max(5, values.size // 5)), alpha=0.6, label=name)
        ax.set_xlabel(f"{kind} tokens")
        ax.set_ylabel("replies")
    if len(models) > 1:
        axes[0].legend()
    fig.suptitle(title or "Tokens per reply")
    fig.tight_layout()
    return fig


def _seconds(start: str | None, end: str | None) -> float:
    if not start or not end:
        return math.nan
    parse = datetime.fromisoformat
    return (parse(end.replace("Z", "+00:00")) - parse(start.replace("Z", "+00:00"))).total_seconds()


def batch_latency(table: pd.DataFrame, name: str) -> pd.Series:
    """Per row, seconds from its batch's creation to its end (journal records); NA if unknown."""
    from claude_lab._ledger import open_journal

    col = f"{name}_batch_id"
    if col not in table.columns:
        return pd.Series(np.nan, index=table.index, dtype=float)
    jnl = open_journal()
    seconds: dict[str, float] = {}
    for bid in table[col].dropna().unique():
        try:
            rec = jnl.get_job(str(bid))
        except JobNotFoundError:
            continue
        for b in jnl.batches(rec.job_id):
            seconds[b.batch_id] = _seconds(b.created_at, b.ended_at)
    return table[col].map(seconds).astype(float)


def plot_latency(
    table: pd.DataFrame, names: Sequence[str] | None = None, *, title: str | None = None
) -> Figure:
    """Distribution of batch turnaround per row (creation to end of its batch), per model."""
    models = _models(table, names, False)
    fig, (ax,) = _figure()
    for name in models:
        values = batch_latency(table, name).dropna().to_numpy()
        if values.size:
            ax.hist(values, bins=min(30, max(5, values.size // 5)), alpha=0.6, label=name)
    ax.set_xlabel("batch turnaround (s)")
    ax.set_ylabel("rows")
    ax.set_title(title or "Latency (batch created to ended)")
    if len(models) > 1:
        ax.legend()
    fig.tight_layout()
    return fig
