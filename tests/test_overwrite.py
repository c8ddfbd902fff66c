"""Result columns never overwrite the input's columns unless asked to (overwrite=True)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

import claude_lab
from claude_lab._errors import InputError
from claude_lab.emulator import Emulator

CREATE = ("POST", "/v1/messages/batches")
FAST: dict[str, Any] = {"progress": None, "poll_interval": 0.02, "model": "claude-haiku-4-5"}


def _first_run(fast: Emulator) -> pd.DataFrame:
    df = pd.DataFrame({"a": [1, 2, 3], "b": [10, 20, 30]})
    out = df.claude.batch("What is {a} + {b}?", client=fast.client(), **FAST)
    assert isinstance(out, pd.DataFrame)
    return out


def test_a_second_run_with_the_same_name_is_refused_before_anything_is_sent(
    fast: Emulator,
) -> None:
    out = _first_run(fast)
    creates, jobs = fast.count(*CREATE), len(claude_lab.jobs())
    with pytest.raises(InputError) as info:
        out.claude.batch("Check: {claude_text}", client=fast.client(), **FAST)
    message = str(info.value)
    assert "'claude_text'" in message and "'claude_status'" in message
    assert "name='claude2'" in message and "overwrite=True" in message
    assert fast.count(*CREATE) == creates  # nothing sent
    assert len(claude_lab.jobs()) == jobs  # the journal was not touched


def test_a_refine_step_under_another_name_keeps_both_runs(fast: Emulator) -> None:
    out = _first_run(fast)
    client = fast.client()
    refined = out.claude.batch("Improve: {claude_text}", name="refine", client=client, **FAST)
    assert isinstance(refined, pd.DataFrame)
    pd.testing.assert_frame_equal(refined[out.columns], out)  # the first run is intact
    assert (refined["refine_status"] == "succeeded").all()
    assert refined["refine_text"].str.contains("Improve: ").all()
    assert refined["refine_text"].tolist() != out["claude_text"].tolist()


def test_overwrite_true_replaces_the_earlier_results(fast: Emulator) -> None:
    out = _first_run(fast)
    again = out.claude.batch("Check: {claude_text}", client=fast.client(), overwrite=True, **FAST)
    assert isinstance(again, pd.DataFrame)
    assert list(again.columns).count("claude_text") == 1
    assert again["claude_text"].str.contains("Check: ").all()
    assert again[["a", "b"]].equals(out[["a", "b"]])


def test_output_field_columns_count_as_result_columns(fast: Emulator) -> None:
    df = pd.DataFrame({"q": ["x"], "claude_score": [5]})
    schema = {"type": "object", "properties": {"score": {"type": "integer"}}}
    with pytest.raises(InputError, match="claude_score"):
        df.claude.batch("{q}", output=schema, client=fast.client(), **FAST)
    assert fast.count(*CREATE) == 0


def test_overwrite_must_be_a_bool(fast: Emulator) -> None:
    with pytest.raises(InputError, match="overwrite must be True or False"):
        pd.DataFrame({"q": ["x"]}).claude.batch("{q}", overwrite="1", client=fast.client(), **FAST)


def test_attach_refuses_a_frame_that_already_holds_the_results(fast: Emulator) -> None:
    out = _first_run(fast)
    job_id = out.attrs["claude_lab"]["job_id"]
    with pytest.raises(InputError, match="original input"):
        claude_lab.attach(job_id, frame=out, client=fast.client(), progress=None)
    again = claude_lab.attach(job_id, frame=out[["a", "b"]], client=fast.client(), progress=None)
    assert again.result()["claude_text"].tolist() == out["claude_text"].tolist()
