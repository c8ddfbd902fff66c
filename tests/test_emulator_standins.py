"""The emulator's stand-in models: documented, seeded per-model error rates; a judge."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import claude_lab
from claude_lab._demo import load_sample
from claude_lab.emulator import serve, stand_in_models
from claude_lab.emulator._standins import ERROR_RATES

PROMPT = "Question: {question}\nAnswer with a single number."
MODELS = ["claude-haiku-4-5", "claude-sonnet-4-5"]


def _run(seed: int, epochs: int = 1) -> pd.DataFrame:
    df = load_sample()
    df = df[df["kind"] != "word problem"]
    with serve(request_seconds=0, concurrency=10_000, responder=stand_in_models(seed)) as emu:
        out = df.claude.batch(
            PROMPT, model=MODELS, epochs=epochs, max_tokens=16, client=emu.client(), progress=None
        )
    for name in ("haiku_4_5", "sonnet_4_5"):
        out = claude_lab.score(out, "numeric", reference="answer", name=name)
    return out


def test_each_model_errs_at_its_documented_rate_seeded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    out = _run(seed=0)
    for name, model in zip(("haiku_4_5", "sonnet_4_5"), MODELS):
        s = claude_lab.summarize(out, name=name).loc["all"]
        # The interval covers the documented accuracy, and the models differ.
        assert s["ci_low"] <= 1 - ERROR_RATES[model] <= s["ci_high"]
    c = claude_lab.compare(out).differences.iloc[0]
    assert c["diff"] < 0 and c["p_value"] < 0.05
    # Seeded: the same seed gives the same replies (in a fresh journal: a new run).
    monkeypatch.setenv("CLAUDE_LAB_HOME", str(tmp_path))
    again = _run(seed=0)
    assert again["haiku_4_5_text"].equals(out["haiku_4_5_text"])


def test_epochs_draw_independently() -> None:
    out = _run(seed=1, epochs=2)
    wide = out.pivot_table(index=out.index, columns="epoch", values="haiku_4_5_score")
    assert (wide[0] != wide[1]).sum() > 0  # repeats of a row are separate samples
