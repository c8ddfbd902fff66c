"""Scorers on hand-made result tables, including rows with no reply."""

from __future__ import annotations

import pandas as pd
import pytest

import claude_lab
from claude_lab._errors import InputError


def _table(replies: list[str | None], refs: list[object], status: list[str] | None = None):
    status = status or ["succeeded" if r is not None else "errored" for r in replies]
    return pd.DataFrame(
        {
            "answer": refs,
            "claude_text": pd.array(replies, dtype="string"),
            "claude_status": pd.array(status, dtype="string"),
        },
        index=[f"q{i}" for i in range(len(replies))],
    )


def _scores(out: pd.DataFrame, name: str = "claude") -> list[float | None]:
    return [None if pd.isna(v) else float(v) for v in out[f"{name}_score"]]


def test_exact_and_normalized() -> None:
    t = _table(["Paris", " paris.", "Lyon", None], ["Paris", "Paris", "Paris", "Paris"])
    assert _scores(claude_lab.score(t, "exact", reference="answer")) == [1.0, 0.0, 0.0, None]
    assert _scores(claude_lab.score(t, "normalized", reference="answer")) == [1, 1, 0, None]


def test_numeric_first_number_with_tolerance_and_notes() -> None:
    t = _table(
        ["The answer is 1,018.", "42", "about 3.14", "no idea", None, "7"],
        [1018, 41, 3.1416, 5, 1, 7],
        ["succeeded"] * 4 + ["errored", "skipped"],
    )
    out = claude_lab.score(t, "numeric", reference="answer")
    assert _scores(out) == [1.0, 0.0, 0.0, 0.0, None, None]
    assert out["claude_score_note"].tolist()[:4] == ["1018", "42", "3.14", "no number"]
    assert out["claude_score_note"].iloc[4] == "no reply: errored"
    assert out["claude_score_note"].iloc[5] == "no reply: skipped"
    loose = claude_lab.score(t, "numeric", reference="answer", tolerance=1.0)
    assert _scores(loose)[:3] == [1.0, 1.0, 1.0]
    assert out["claude_score"].dtype == "Float64"
    # The input is untouched and the index kept.
    assert "claude_score" not in t.columns and list(out.index) == list(t.index)


def test_contains_choice_regex_json() -> None:
    t = _table(["It is Paris, France", "Rome", "It is 14.", None], ["paris", "Paris", 4, "x"])
    assert _scores(claude_lab.score(t, "contains", reference="answer")) == [1, 0, 0, None]

    c = _table(["The answer is (B).", "C) because...", "I think answer: d", "none"], list("BCDA"))
    out = claude_lab.score(c, "choice", reference="answer")
    assert _scores(out) == [1.0, 1.0, 1.0, 0.0]
    assert out["claude_score_note"].tolist() == ["B", "C", "D", "no choice"]

    r = _table(["label=pos", "label=neg", "nothing"], ["pos", "pos", "pos"])
    assert _scores(claude_lab.score(r, "regex", pattern=r"label=(\w+)", reference="answer")) == [
        1.0,
        0.0,
        0.0,
    ]
    assert _scores(claude_lab.score(r, "regex", pattern=r"label=pos")) == [1.0, 0.0, 0.0]

    j = _table(['{"answer": 42}', '```json\n{"answer": "41"}\n```', "not json", None], [42] * 4)
    out = claude_lab.score(j, "json", field="answer", reference="answer")
    assert _scores(out) == [1.0, 0.0, 0.0, None]


def test_callable_scorer_and_partial_credit() -> None:
    t = _table(["abc", "abcd", "boom", None], ["abc"] * 4)

    def overlap(reply: str, ref: str) -> float:
        if reply == "boom":
            raise ValueError("cannot score")
        return len(set(reply) & set(ref)) / len(set(reply) | set(ref))

    out = claude_lab.score(t, overlap, reference="answer")
    assert _scores(out) == [1.0, 0.75, None, None]
    assert "ValueError: cannot score" in out["claude_score_note"].iloc[2]
    out = claude_lab.score(t, lambda r, _: r.startswith("abc"), name="claude")
    assert _scores(out) == [1.0, 1.0, 0.0, None]


def test_parse_error_rows_and_missing_reference_are_unscored() -> None:
    t = _table(["5", "5", "5"], [5, None, 5], ["succeeded", "succeeded", "parse_error"])
    assert _scores(claude_lab.score(t, "numeric", reference="answer")) == [1.0, None, None]


def test_named_prefix_and_clear_errors() -> None:
    t = _table(["1"], [1]).rename(columns={"claude_text": "m_text", "claude_status": "m_status"})
    assert _scores(claude_lab.score(t, "numeric", reference="answer", name="m"), "m") == [1.0]
    with pytest.raises(InputError, match=r"name= the prefix.*'m'"):
        claude_lab.score(t, "numeric", reference="answer")
    with pytest.raises(InputError, match="reference="):
        claude_lab.score(t, "exact", name="m")
    with pytest.raises(InputError, match="Unknown scorer 'fuzzy'"):
        claude_lab.score(t, "fuzzy", reference="answer", name="m")
    with pytest.raises(InputError, match="outside"):
        claude_lab.score(t, lambda r, w: 2.0, name="m")
