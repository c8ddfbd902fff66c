"""Comparing scored models: per-model intervals, paired differences, McNemar, disagreements."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

import claude_lab
from claude_lab._compare import mcnemar
from claude_lab._errors import InputError


def _two(a: list[float | None], b: list[float | None]) -> pd.DataFrame:
    def block(p: str, s: list[float | None]) -> dict[str, object]:
        return {
            f"{p}_text": [None if v is None else f"reply {v}" for v in s],
            f"{p}_status": ["succeeded" if v is not None else "errored" for v in s],
            f"{p}_score": pd.array(s, dtype="Float64"),
        }

    return pd.DataFrame({"q": range(len(a)), **block("h", a), **block("s", b)})


def test_mcnemar_matches_scipy_binomial_test() -> None:
    for a_only, b_only in [(3, 12), (0, 5), (7, 7), (40, 25)]:
        want = sps.binomtest(a_only, a_only + b_only, 0.5).pvalue
        assert mcnemar(a_only, b_only) == pytest.approx(want)
    assert mcnemar(0, 0) == 1.0


def test_compare_binary_models() -> None:
    rng = np.random.default_rng(3)
    h = (rng.random(200) < 0.6).astype(float)
    s = (rng.random(200) < 0.8).astype(float)
    t = _two([*h, None], [*s, 1.0])
    c = claude_lab.compare(t, names=["h", "s"])
    assert list(c.models.index) == ["h", "s"]
    assert c.models.loc["h", "n"] == 200 and c.models.loc["h", "errored"] == 1
    d = c.differences.loc[("h", "s")]
    assert d["n"] == 200 and d["diff"] == pytest.approx(h.mean() - s.mean())
    assert d["ci_low"] < d["diff"] < d["ci_high"] < 0
    assert d["a_only"] == int(((h == 1) & (s == 0)).sum())
    want = sps.binomtest(int(d["a_only"]), int(d["a_only"] + d["b_only"]), 0.5).pvalue
    assert d["p_value"] == pytest.approx(want) and d["test"] == "McNemar exact"
    # The paired bootstrap interval agrees with scipy's (resampling the paired differences).
    ref = sps.bootstrap((h - s,), np.mean, n_resamples=4000, method="percentile", random_state=1)
    assert d["ci_low"] == pytest.approx(ref.confidence_interval.low, abs=0.015)
    assert d["ci_high"] == pytest.approx(ref.confidence_interval.high, abs=0.015)
    assert "Paired differences" in c._repr_html_() and "\\begin{tabular}" in c.to_latex()


def test_defaults_to_every_scored_model_and_disagreements() -> None:
    t = _two([1, 0, 1, None, 0.5], [1, 1, 0, 1, 0.5])
    assert list(claude_lab.compare(t).models.index) == ["h", "s"]
    dis = claude_lab.disagreements(t, columns=["q"])
    assert dis["q"].tolist() == [1, 2]
    assert list(dis.columns) == ["q", "h_text", "h_score", "s_text", "s_score"]
    with pytest.raises(InputError, match="at least 2"):
        claude_lab.compare(t, names=["h"])
    with pytest.raises(InputError, match="score each model first"):
        claude_lab.compare(t, names=["h", "x"])
