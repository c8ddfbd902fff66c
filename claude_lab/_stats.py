"""Summaries with honest uncertainty: means and 95% intervals of scores, per group.

Three intervals, picked by the data: Wilson's score interval for 0/1 scores,
a seeded percentile bootstrap for other scores in [0, 1], and a cluster-robust
(CR1) normal interval when rows share a source (``cluster=``, and always over
input rows for a run with ``epochs`` > 1, whose repeats of one row are not
independent). Everything is vectorised over rows; only bootstrap resamples
loop, in blocks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from claude_lab._errors import InputError

__all__ = [
    "Z95",
    "bootstrap_ci",
    "cluster_ci",
    "is_binary",
    "summarize",
    "wilson_ci",
]

Z95 = 1.959963984540054  # the 97.5% quantile of the standard normal
_BOOT = 2000
_BLOCK = 4_000_000  # resampled values held at once


def wilson_ci(successes: Any, n: Any, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for ``successes`` out of ``n`` (arrays or scalars)."""
    k = np.asarray(successes, dtype=float)
    m = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / m
        denom = 1 + z * z / m
        centre = (p + z * z / (2 * m)) / denom
        half = z * np.sqrt(p * (1 - p) / m + z * z / (4 * m * m)) / denom
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


def bootstrap_ci(
    values: Any, *, resamples: int = _BOOT, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (seeded: same data, same CI)."""
    x = np.asarray(values, dtype=float)
    n = x.size
    if n == 0:
        return math.nan, math.nan
    if n == 1 or np.all(x == x[0]):
        return float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    step = max(1, _BLOCK // n)
    for start in range(0, resamples, step):
        stop = min(resamples, start + step)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = x[idx].mean(axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return float(lo), float(hi)


def cluster_ci(values: Any, clusters: Any, z: float = Z95) -> tuple[float, float, int]:
    """Mean ± z·SE with a cluster-robust (CR1) standard error -> (low, high, clusters)."""
    x = np.asarray(values, dtype=float)
    codes, _ = pd.factorize(pd.Series(clusters), use_na_sentinel=False)
    g = int(codes.max()) + 1 if codes.size else 0
    if x.size == 0:
        return math.nan, math.nan, 0
    mean = x.mean()
    if g < 2:
        return math.nan, math.nan, g
    resid = np.bincount(codes, weights=x - mean, minlength=g)
    var = g / (g - 1) * float(np.sum(resid**2)) / x.size**2
    half = z * math.sqrt(var)
    return max(0.0, mean - half), min(1.0, mean + half), g


def is_binary(values: Any) -> bool:
    """True if every value is 0 or 1."""
    x = np.asarray(values, dtype=float)
    return bool(np.all((x == 0) | (x == 1)))


def interval(
    values: np.ndarray, clusters: np.ndarray | None, *, seed: int = 0
) -> tuple[float, float, str]:
    """(low, high, method) for the mean of ``values``."""
    if values.size == 0:
        return math.nan, math.nan, ""
    if clusters is not None:
        lo, hi, _ = cluster_ci(values, clusters)
        return lo, hi, "cluster"
    if is_binary(values):
        lo_a, hi_a = wilson_ci(values.sum(), values.size)
        return float(lo_a), float(hi_a), "wilson"
    lo, hi = bootstrap_ci(values, seed=seed)
    return lo, hi, "bootstrap"


def _col(table: pd.DataFrame, name: str, suffix: str) -> pd.Series | None:
    col = f"{name}_{suffix}"
    return table[col] if col in table.columns else None


def clusters_of(table: pd.DataFrame, cluster: str | None) -> np.ndarray | None:
    """The cluster of each row: the ``cluster`` column, else the input row for epochs."""
    if cluster is not None:
        if cluster not in table.columns:
            raise InputError(
                f"cluster={cluster!r} is not a column of the table; columns: "
                f"{', '.join(map(str, table.columns))}."
            )
        return table[cluster].to_numpy()
    if "epoch" in table.columns and table["epoch"].nunique() > 1:
        # Repeats of one input row share its index label (see the README on epochs).
        return np.asarray(pd.factorize(table.index)[0])
    return None


def summarize(
    table: pd.DataFrame,
    by: str | Sequence[str] | None = None,
    name: str = "claude",
    cluster: str | None = None,
    *,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per group of ``by`` (or one row overall) for the scores of run ``name``.

    Columns: ``n`` (scored rows), ``mean``, ``ci_low``, ``ci_high`` (95%: Wilson
    for 0/1 scores, a seeded bootstrap otherwise, cluster-robust with ``cluster=``
    or over input rows when the run had epochs), ``method``, ``rows``,
    ``succeeded``, ``errored``, ``skipped``, ``other`` (canceled, expired,
    missing, parse_error), ``cost_usd``, ``input_tokens``, ``output_tokens``.
    Call :func:`claude_lab.score` first.
    """
    score_col = f"{name}_score"
    if score_col not in table.columns:
        raise InputError(
            f"The table has no {score_col!r} column: score it first, e.g. "
            f"claude_lab.score(table, 'numeric', reference='answer', name={name!r})."
        )
    keys = [by] if isinstance(by, str) else list(by or [])
    missing = [k for k in keys if k not in table.columns]
    if missing:
        raise InputError(f"by= names {missing}, which are not columns of the table.")
    clusters = clusters_of(table, cluster)
    scores = pd.to_numeric(table[score_col], errors="coerce").astype(float).to_numpy()
    status = _col(table, name, "status")
    status_arr = (
        status.astype("string").fillna("missing").to_numpy(dtype=object)
        if status is not None
        else np.full(len(table), "succeeded", dtype=object)
    )
    numbers = {
        s: pd.to_numeric(c, errors="coerce").astype(float).to_numpy()
        for s in ("cost_usd", "input_tokens", "output_tokens")
        if (c := _col(table, name, s)) is not None
    }
    if keys:
        # Rows with a missing group value form their own group rather than vanishing.
        codes, uniques = pd.MultiIndex.from_frame(
            table[keys].astype(object).where(table[keys].notna(), "<NA>")
        ).factorize(sort=True)
        groups = [(tuple(u) if len(keys) > 1 else u[0], codes == k) for k, u in enumerate(uniques)]
    else:
        groups = [("all", np.ones(len(table), dtype=bool))]
    rows: list[dict[str, Any]] = []
    for _label, mask in groups:
        sel = mask & ~np.isnan(scores)
        vals = scores[sel]
        lo, hi, method = interval(vals, clusters[sel] if clusters is not None else None, seed=seed)
        st = status_arr[mask]
        row: dict[str, Any] = {
            "n": int(vals.size),
            "mean": float(vals.mean()) if vals.size else math.nan,
            "ci_low": lo,
            "ci_high": hi,
            "method": method,
            "rows": int(mask.sum()),
            "succeeded": int((st == "succeeded").sum()),
            "errored": int((st == "errored").sum()),
            "skipped": int((st == "skipped").sum()),
        }
        row["other"] = row["rows"] - row["succeeded"] - row["errored"] - row["skipped"]
        for s in ("cost_usd", "input_tokens", "output_tokens"):
            arr = numbers.get(s)
            total = float(np.nansum(arr[mask])) if arr is not None else math.nan
            row[s] = total if s == "cost_usd" else int(total) if arr is not None else pd.NA
        if clusters is not None:
            row["clusters"] = int(pd.Series(clusters[sel]).nunique())
        rows.append(row)
    index = (
        pd.MultiIndex.from_tuples([r for r, _ in groups], names=keys)
        if len(keys) > 1
        else pd.Index([r for r, _ in groups], name=keys[0] if keys else None)
    )
    out = pd.DataFrame(rows, index=index)
    out.attrs["claude_lab_summary"] = {"name": name, "by": keys, "cluster": cluster}
    return out
