"""Several models and epochs in one job, through the SDK against the emulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import claude_lab
from claude_lab._errors import InputError
from claude_lab.emulator import Emulator

CREATE = ("POST", "/v1/messages/batches")
SUM = "What is {a} + {b}? Answer with a single number."
FAST: dict[str, Any] = {"progress": None, "poll_interval": 0.02}
MODELS = ["claude-haiku-4-5", "claude-sonnet-4-5"]


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {"a": [1, 2, None, 4], "b": [10, 20, 30, 40]}, index=pd.Index([7, 3, 9, 1], name="id")
    )


def test_two_models_one_job_shared_batches_aligned(fast: Emulator) -> None:
    seen: list[str] = []

    def record(params: dict[str, Any]) -> None:
        seen.append(params["model"])

    fast.core.responder = record
    df = _frame()
    out = df.claude.batch(SUM, model=MODELS, client=fast.client(), **FAST)
    assert fast.count(*CREATE) == 1  # one batch carries both models' requests
    assert sorted(seen) == sorted(MODELS * 3)  # the skipped row is sent for neither
    assert out.index.equals(df.index) and len(out) == len(df)
    for prefix, model in (("haiku_4_5", MODELS[0]), ("sonnet_4_5", MODELS[1])):
        assert out[f"{prefix}_status"].tolist() == ["succeeded"] * 2 + ["skipped", "succeeded"]
        assert out[f"{prefix}_text"].tolist()[:2] == ["11", "22"]
        assert set(out[f"{prefix}_model"].dropna()) == {model}
    assert set(out["haiku_4_5_batch_id"].dropna()) == set(out["sonnet_4_5_batch_id"].dropna())
    assert len(claude_lab.jobs()) == 1
    assert out.attrs["claude_lab"]["names"] == ["haiku_4_5", "sonnet_4_5"]
    # Re-running the cell re-attaches: nothing is sent again.
    again = df.claude.batch(SUM, model=MODELS, client=fast.client(), **FAST)
    assert fast.count(*CREATE) == 1
    same = [c for c in out.columns if c.endswith(("_text", "_status", "_custom_id"))]
    pd.testing.assert_frame_equal(again[same], out[same])
    assert again["haiku_4_5_cached"].sum() == 3  # served from the journal, not paid again


def test_names_and_single_model_unchanged(fast: Emulator) -> None:
    df = _frame()
    out = df.claude.batch(SUM, model=MODELS, names=["h", "s"], client=fast.client(), **FAST)
    assert {"h_text", "s_text", "h_cost_usd", "s_cost_usd"} <= set(out.columns)
    plain = df.claude.batch(SUM, model=MODELS[0], client=fast.client(), **FAST)
    assert "claude_text" in plain.columns and "epoch" not in plain.columns
    # A plain run's requests are the first model's epoch 0: same ids, so the cache answers.
    assert plain["claude_custom_id"].tolist() == out["h_custom_id"].tolist()
    assert plain["claude_cached"].fillna(False).sum() == 3


def test_epochs_long_table_distinct_deterministic_ids(fast: Emulator) -> None:
    df = _frame()
    out = df.claude.batch(SUM, model=MODELS, epochs=3, client=fast.client(), **FAST)
    assert len(out) == 12 and out["epoch"].tolist() == [0, 1, 2] * 4
    assert out.index.tolist() == [7, 7, 7, 3, 3, 3, 9, 9, 9, 1, 1, 1]
    ids = out["haiku_4_5_custom_id"].dropna()
    assert ids.is_unique and len(ids) == 9
    assert fast.count(*CREATE) == 1
    # Deterministic: the same call elsewhere gives the same ids (and the journal's cache).
    plan = claude_lab._plan.plan(df, SUM, model=MODELS, epochs=3)
    assert sorted(plan.encoded.custom_ids) == sorted(
        set(out["haiku_4_5_custom_id"].dropna()) | set(out["sonnet_4_5_custom_id"].dropna())
    )
    scored = claude_lab.score(out, "numeric", reference=out["a"] + out["b"], name="haiku_4_5")
    s = claude_lab.summarize(scored, name="haiku_4_5")  # epochs: clustered by input row
    assert s.loc["all", "method"] == "cluster" and s.loc["all", "clusters"] == 3


def test_bad_multi_model_arguments_fail_before_sending(fast: Emulator) -> None:
    df = _frame()
    with pytest.raises(InputError, match="names= has 1 names for 2 models"):
        df.claude.batch(SUM, model=MODELS, names=["x"], client=fast.client(), **FAST)
    with pytest.raises(InputError, match="epochs must be"):
        df.claude.batch(SUM, model=MODELS, epochs=0, client=fast.client(), **FAST)
    with pytest.raises(InputError, match="distinct prefix"):
        df.claude.batch(SUM, model=MODELS, names=["x", "x"], client=fast.client(), **FAST)
    with pytest.raises(InputError, match=r"Pass names=\[...\]"):
        df.assign(sonnet_4_5_text="x").claude.batch(SUM, model=MODELS, client=fast.client())
    with pytest.raises(InputError, match="epoch"):
        df.assign(epoch=1).claude.batch(SUM, model=MODELS, epochs=2, client=fast.client(), **FAST)
    assert fast.count(*CREATE) == 0


def test_estimate_prices_each_model() -> None:
    df = _frame()
    both = df.claude.estimate(SUM, model=MODELS, epochs=2)
    one = [df.claude.estimate(SUM, model=m) for m in MODELS]
    assert both["rows"] == 4 and both["skipped"] == 1 and both["requests"] == 12
    # Each model at its own price (input tokens are rounded per model: rel=1e-3).
    assert both["max_cost_usd"] == pytest.approx(2 * sum(e["max_cost_usd"] for e in one), rel=1e-3)


def test_attach_rebuilds_the_model_blocks(fast: Emulator) -> None:
    df = _frame()
    out = df.claude.batch(SUM, model=MODELS, epochs=2, client=fast.client(), **FAST)
    job = claude_lab.attach(out.attrs["claude_lab"]["job_id"], client=fast.client(), frame=df)
    again = job.result()
    cols = [c for c in out.columns if c.endswith(("_text", "_status", "_custom_id"))]
    pd.testing.assert_frame_equal(again[cols], out[cols])
    assert again["epoch"].tolist() == out["epoch"].tolist()
    assert fast.count(*CREATE) == 1
    with pytest.raises(InputError, match=r"frame has 3 rows but job .* was run on 4"):
        claude_lab.attach(out.attrs["claude_lab"]["job_id"], client=fast.client(), frame=df[:3])


def test_cli_results_exports_every_model_offline(
    fast: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from claude_lab._cli import main

    out = _frame().claude.batch(SUM, model=MODELS, client=fast.client(), **FAST)
    path = tmp_path / "both.csv"
    assert main(["results", out.attrs["claude_lab"]["job_id"], "--out", str(path)]) == 0
    assert "{'succeeded': 6, 'skipped': 2}" in capsys.readouterr().out
    table = pd.read_csv(path)
    assert len(table) == 4 and {"a", "haiku_4_5_text", "sonnet_4_5_text"} <= set(table.columns)
