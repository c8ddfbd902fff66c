"""Model-graded scoring: a second batch with its own columns, answered by the cache on re-runs."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

import claude_lab
from claude_lab._errors import InputError
from claude_lab.emulator import Emulator, serve, stand_in_models

CREATE = ("POST", "/v1/messages/batches")
FAST: dict[str, Any] = {"progress": None, "poll_interval": 0.02}


def test_judge_grades_through_batches_with_own_columns_and_cache() -> None:
    df = pd.DataFrame(
        {"q": ["What is 2 + 3?", "What is 7 * 6?", None, "What is 9 - 3?"], "answer": [5, 42, 1, 6]}
    )
    with serve(request_seconds=0, concurrency=10_000, responder=stand_in_models()) as emu:
        client = emu.client()
        out = df.claude.batch(
            "{q} Answer with a single number.",
            model="claude-haiku-4-5",
            client=client,
            max_tokens=16,
            **FAST,
        )
        creates = emu.count(*CREATE)
        judged = claude_lab.score(
            out, "judge", reference="answer", model="claude-sonnet-4-5", client=client, **FAST
        )
        assert emu.count(*CREATE) == creates + 1  # one more batch: the judge's
        # The judge's own status, tokens and cost, beside the graded run's.
        for col in ("claude_judge_status", "claude_judge_cost_usd", "claude_judge_input_tokens"):
            assert col in judged.columns
        assert judged["claude_cost_usd"].equals(out["claude_cost_usd"])
        status = judged["claude_judge_status"].tolist()
        assert status == ["succeeded", "succeeded", "skipped", "succeeded"]
        assert judged["claude_judge_cost_usd"].iloc[[0, 1, 3]].gt(0).all()
        assert judged["claude_judge_model"].iloc[0] == "claude-sonnet-4-5"
        # The verdict: score and reason; the row with no reply has no score.
        numeric = claude_lab.score(out, "numeric", reference="answer")
        assert judged["claude_score"].iloc[[0, 1, 3]].tolist() == (
            numeric["claude_score"].iloc[[0, 1, 3]].tolist()
        )
        assert pd.isna(judged["claude_score"].iloc[2])
        assert judged["claude_score_note"].iloc[2] == "no reply: skipped"
        assert "reference answer" in judged["claude_score_note"].iloc[0]
        # Re-scoring (even the scored table) is answered by the journal: nothing is sent.
        before = len(emu.requests)
        again = claude_lab.score(
            judged, "judge", reference="answer", model="claude-sonnet-4-5", client=client, **FAST
        )
        assert [r for r in emu.requests[before:] if r.method == "POST"] == []
        assert emu.count(*CREATE) == creates + 1
        assert again["claude_score"].equals(judged["claude_score"])
        assert again["claude_judge_cached"].iloc[[0, 1, 3]].all()


def test_judge_needs_a_model_and_a_reply_slot(fast: Emulator) -> None:
    t = pd.DataFrame({"claude_text": ["1"], "claude_status": ["succeeded"], "answer": ["1"]})
    with pytest.raises(InputError, match="needs model="):
        claude_lab.score(t, "judge", reference="answer", client=fast.client())
    with pytest.raises(InputError, match="pass reference="):
        claude_lab.score(t, "judge", model="claude-haiku-4-5", client=fast.client())
    with pytest.raises(InputError, match="reply"):
        claude_lab.score(t, "judge", rubric="Grade {answer}", model="claude-haiku-4-5")
    assert fast.count(*CREATE) == 0
