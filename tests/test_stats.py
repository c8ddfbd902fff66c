"""Intervals checked against independent computations, and their coverage."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

import claude_lab
from claude_lab._errors import InputError
from claude_lab._stats import bootstrap_ci, cluster_ci, wilson_ci


def test_wilson_matches_closed_form_and_edges() -> None:
    # Worked example (Wilson 1927 / Newcombe 1998, case 1): 81 of 263 -> 0.2553 .. 0.3662.
    lo, hi = wilson_ci(81, 263)
    assert (round(float(lo), 4), round(float(hi), 4)) == (0.2553, 0.3662)
    # 0 of n: the lower bound is 0 and the upper is z^2 / (n + z^2).
    z = sps.norm.ppf(0.975)
    lo, hi = wilson_ci(0, 10)
    assert float(lo) == 0.0 and float(hi) == pytest.approx(z * z / (10 + z * z))


def test_bootstrap_agrees_with_scipy_and_is_seeded() -> None:
    x = np.random.default_rng(7).beta(2, 5, size=200)
    ours = bootstrap_ci(x, resamples=4000, seed=1)
    ref = sps.bootstrap((x,), np.mean, n_resamples=4000, method="percentile", random_state=2)
    assert ours[0] == pytest.approx(ref.confidence_interval.low, abs=0.004)
    assert ours[1] == pytest.approx(ref.confidence_interval.high, abs=0.004)
    assert bootstrap_ci(x, seed=3) == bootstrap_ci(x, seed=3)


def test_cluster_se_matches_hand_computation() -> None:
    x = np.array([1.0, 1, 0, 1, 1, 0, 1, 1, 0, 1, 1, 1, 0, 0, 1, 1])
    g = np.repeat(np.arange(4), 4)
    lo, hi, k = cluster_ci(x, g)
    mean = 11 / 16
    # CR1: G/(G-1) * sum over clusters of (sum of residuals)^2 / N^2.
    sums = [sum(x[i] - mean for i in range(16) if g[i] == c) for c in range(4)]
    se = math.sqrt(4 / 3 * sum(s * s for s in sums) / 16**2)
    z = sps.norm.ppf(0.975)
    assert k == 4
    assert lo == pytest.approx(mean - z * se) and hi == pytest.approx(mean + z * se)


def test_cluster_interval_is_clipped_to_scores_range() -> None:
    lo, hi, _ = cluster_ci(np.array([1.0, 1, 0, 0, 1, 0]), np.array([0, 0, 1, 1, 2, 2]))
    assert (lo, hi) == (0.0, 1.0)


def test_wilson_coverage_is_near_95_percent() -> None:
    # Wilson's coverage oscillates with p at a fixed n; averaged over p it is near 95%.
    rng = np.random.default_rng(11)
    n, reps = 80, 4000
    p = rng.uniform(0.1, 0.9, size=reps)
    k = rng.binomial(n, p)
    lo, hi = wilson_ci(k, n)
    coverage = np.mean((lo <= p) & (p <= hi))
    assert 0.93 <= coverage <= 0.97


def test_bootstrap_coverage_is_near_95_percent() -> None:
    rng = np.random.default_rng(5)
    true_mean = 2 / 7  # Beta(2, 5)
    hits = [
        lo <= true_mean <= hi
        for lo, hi in (
            bootstrap_ci(rng.beta(2, 5, size=100), resamples=500, seed=s) for s in range(600)
        )
    ]
    assert 0.93 <= np.mean(hits) <= 0.97


def _scored(scores: list[float | None], **cols: list[object]) -> pd.DataFrame:
    status = ["succeeded" if s is not None else "errored" for s in scores]
    tokens = [10 if s is not None else None for s in scores]
    return pd.DataFrame(
        {
            "claude_score": pd.array(scores, dtype="Float64"),
            "claude_status": status,
            "claude_cost_usd": [0.001 if s is not None else 0.0 for s in scores],
            "claude_input_tokens": pd.array(tokens, "Int64"),
            "claude_output_tokens": pd.array([t and 2 for t in tokens], "Int64"),
            **cols,
        }
    )


def test_summarize_overall_and_by_group() -> None:
    t = _scored([1, 1, 0, None, 1, 0.5], kind=["a", "a", "a", "a", "b", "b"])
    s = claude_lab.summarize(t)
    row = s.loc["all"]
    assert row["n"] == 5 and row["mean"] == pytest.approx(3.5 / 5) and row["errored"] == 1
    assert row["method"] == "bootstrap" and row["rows"] == 6
    assert row["cost_usd"] == pytest.approx(0.005) and row["input_tokens"] == 50
    g = claude_lab.summarize(t, by="kind")
    assert list(g.index) == ["a", "b"] and g.loc["a", "n"] == 3 and g.loc["a", "errored"] == 1
    assert g.loc["a", "method"] == "wilson"
    lo, hi = wilson_ci(2, 3)
    assert (g.loc["a", "ci_low"], g.loc["a", "ci_high"]) == (float(lo), float(hi))
    t.loc[5, "kind"] = None  # a row with no group is counted in a group of its own
    g = claude_lab.summarize(t, by="kind")
    assert g["rows"].sum() == 6 and g.loc["<NA>", "rows"] == 1


def test_summarize_clusters_and_errors() -> None:
    t = _scored([1, 1, 0, 0, 1, 0], src=[0, 0, 1, 1, 2, 2])
    s = claude_lab.summarize(t, cluster="src")
    lo, hi, _ = cluster_ci(np.array([1, 1, 0, 0, 1, 0.0]), np.array([0, 0, 1, 1, 2, 2]))
    assert s.loc["all", "method"] == "cluster" and s.loc["all", "clusters"] == 3
    assert (s.loc["all", "ci_low"], s.loc["all", "ci_high"]) == (lo, hi)
    with pytest.raises(InputError, match="score it first"):
        claude_lab.summarize(t.drop(columns="claude_score"))
    with pytest.raises(InputError, match="cluster='nope'"):
        claude_lab.summarize(t, cluster="nope")


def test_clustered_coverage_with_repeated_samples_is_near_95_percent() -> None:
    # 80 questions, each with its own difficulty, sampled 3 times (epochs): repeats of a
    # question are correlated, and the cluster-robust interval still covers the mean.
    rng = np.random.default_rng(2)
    groups, epochs, reps, true_mean = 80, 3, 1000, 2 / 7
    clusters = np.repeat(np.arange(groups), epochs)
    hits = 0
    for _ in range(reps):
        p = np.repeat(rng.beta(2, 5, size=groups), epochs)
        x = (rng.random(groups * epochs) < p).astype(float)
        lo, hi, _ = cluster_ci(x, clusters)
        hits += lo <= true_mean <= hi
    assert 0.93 <= hits / reps <= 0.97
