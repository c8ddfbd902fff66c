"""Comparing models scored on the same rows: means, paired differences, disagreements.

``compare(table, names=[...])`` gives each model's mean with its 95% interval
(as :func:`claude_lab.summarize`) and, for every pair, the paired difference
over the rows both models scored, with a seeded paired bootstrap interval
(resampling rows, or input rows as wholes for a run with epochs / ``cluster=``)
and, for 0/1 scores, McNemar's exact test on the discordant pairs.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from claude_lab._errors import InputError
from claude_lab._stats import clusters_of, is_binary, summarize

__all__ = ["Comparison", "compare", "disagreements", "mcnemar", "scored_names"]

_BOOT = 2000


def scored_names(table: pd.DataFrame) -> list[str]:
    """The prefixes of the table with a ``<prefix>_score`` column (judge runs excluded)."""
    found = [
        c[: -len("_score")]
        for c in table.columns
        if isinstance(c, str)
        and c.endswith("_score")
        and (f"{c[: -len('_score')]}_text" in table.columns)
    ]
    return [p for p in found if not (p.endswith("_judge") and p[: -len("_judge")] in found)]


def _names(table: pd.DataFrame, names: Sequence[str] | None, least: int) -> list[str]:
    chosen = list(names) if names is not None else scored_names(table)
    missing = [n for n in chosen if f"{n}_score" not in table.columns]
    if missing:
        raise InputError(
            f"No score column for {missing}: score each model first, e.g. "
            f"claude_lab.score(table, 'exact', reference='answer', name={missing[0]!r})."
        )
    if len(chosen) < least:
        raise InputError(
            f"Comparing needs at least {least} scored models; found {chosen}. Pass names=[...]."
        )
    return chosen


def mcnemar(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts (binomial, p = 1/2)."""
    n = a_only + b_only
    if n == 0:
        return 1.0
    k = min(a_only, b_only)
    if n <= 5000:
        tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    else:  # the continuity-corrected chi-square is exact enough at this size
        stat = (abs(a_only - b_only) - 1) ** 2 / n
        return float(math.erfc(math.sqrt(stat / 2)))
    return float(min(1.0, 2 * tail))


def _paired_bootstrap(
    diff: np.ndarray, clusters: np.ndarray | None, seed: int
) -> tuple[float, float]:
    if diff.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    codes = np.arange(diff.size) if clusters is None else pd.factorize(pd.Series(clusters))[0]
    g = int(codes.max()) + 1
    sums = np.bincount(codes, weights=diff, minlength=g)
    counts = np.bincount(codes, minlength=g).astype(float)
    if g == 1:
        return float(diff.mean()), float(diff.mean())
    means = np.empty(_BOOT)
    step = max(1, 4_000_000 // g)
    for start in range(0, _BOOT, step):
        stop = min(_BOOT, start + step)
        pick = rng.integers(0, g, size=(stop - start, g))
        means[start:stop] = sums[pick].sum(axis=1) / counts[pick].sum(axis=1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    return float(lo), float(hi)


class Comparison:
    """The result of :func:`compare`: ``models`` (one row per model) and ``differences``
    (one row per pair). Renders both in a notebook; ``to_latex()`` exports them."""

    def __init__(self, models: pd.DataFrame, differences: pd.DataFrame) -> None:
        self.models = models
        self.differences = differences

    def __repr__(self) -> str:
        return f"Models\n{self.models}\n\nPaired differences\n{self.differences}"

    def _repr_html_(self) -> str:
        return (
            "<h4>Models</h4>"
            + self.models.to_html(float_format=lambda x: f"{x:.4f}")
            + "<h4>Paired differences</h4>"
            + self.differences.to_html(float_format=lambda x: f"{x:.4f}")
        )

    def to_latex(self) -> str:
        from claude_lab._report import to_latex

        return (
            to_latex(self.models, caption="Models")
            + "\n"
            + to_latex(self.differences, caption="Paired differences")
        )


def compare(
    table: pd.DataFrame,
    names: Sequence[str] | None = None,
    *,
    cluster: str | None = None,
    seed: int = 0,
) -> Comparison:
    """Each model's mean score with a 95% interval, and paired differences between models.

    ``names``: the column prefixes of the scored runs (default: every prefix with a
    ``<prefix>_score`` column). Differences are ``a - b`` over rows both scored:
    ``mean_a``, ``mean_b``, ``diff`` with a paired bootstrap 95% interval, and for
    0/1 scores the discordant counts (``a_only``: a right and b wrong) and McNemar's
    exact p-value.
    """
    chosen = _names(table, names, 2)
    clusters = clusters_of(table, cluster)
    models = pd.concat(
        [summarize(table, name=n, cluster=cluster, seed=seed).assign(model=n) for n in chosen]
    ).set_index("model")
    scores = {
        n: pd.to_numeric(table[f"{n}_score"], errors="coerce").astype(float).to_numpy()
        for n in chosen
    }
    rows: list[dict[str, Any]] = []
    for a, b in itertools.combinations(chosen, 2):
        both = ~np.isnan(scores[a]) & ~np.isnan(scores[b])
        x, y = scores[a][both], scores[b][both]
        diff = x - y
        lo, hi = _paired_bootstrap(diff, clusters[both] if clusters is not None else None, seed)
        row: dict[str, Any] = {
            "a": a,
            "b": b,
            "n": int(both.sum()),
            "mean_a": float(x.mean()) if x.size else math.nan,
            "mean_b": float(y.mean()) if y.size else math.nan,
            "diff": float(diff.mean()) if diff.size else math.nan,
            "ci_low": lo,
            "ci_high": hi,
        }
        if x.size and is_binary(x) and is_binary(y):
            a_only, b_only = int(((x == 1) & (y == 0)).sum()), int(((x == 0) & (y == 1)).sum())
            row.update(a_only=a_only, b_only=b_only, p_value=mcnemar(a_only, b_only))
            row["test"] = "McNemar exact" if a_only + b_only <= 5000 else "McNemar chi2"
        rows.append(row)
    differences = pd.DataFrame(rows)
    if len(differences):
        differences = differences.set_index(["a", "b"])
    return Comparison(models, differences)


def disagreements(
    table: pd.DataFrame, names: Sequence[str] | None = None, *, columns: Sequence[str] = ()
) -> pd.DataFrame:
    """The rows where the models' scores differ (rows some model did not score are left out):
    ``columns`` of the input, then each model's reply and score."""
    chosen = _names(table, names, 2)
    scores = pd.DataFrame(
        {n: pd.to_numeric(table[f"{n}_score"], errors="coerce").astype(float) for n in chosen}
    )
    scored = scores.notna().all(axis=1)
    differ = scores.nunique(axis=1) > 1
    keep = [*columns]
    for n in chosen:
        keep += [f"{n}_text", f"{n}_score"]
    if "epoch" in table.columns:
        keep.insert(0, "epoch")
    return table.loc[(scored & differ).to_numpy(), keep]
