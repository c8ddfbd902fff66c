"""Scoring replies: built-in scorers by name, any callable, and a model judge.

``score(table, scorer, reference=..., name=...)`` adds ``<name>_score`` (a float
in [0, 1], NA where the row has no reply: errored, skipped, canceled, expired,
missing or parse_error) and ``<name>_score_note`` (what the scorer saw, e.g. the
number it extracted). Built-in scorers work on whole columns with pandas string
methods; only a user's callable runs once per row. Nothing here calls the API
except ``"judge"``, which grades replies with a second batch through the same
job machinery (journal, cache, display) and so costs nothing when re-run.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pandas as pd

from claude_lab._errors import InputError

__all__ = ["JUDGE_RUBRIC", "SCORERS", "Verdict", "answered", "score"]

#: The default rubric of ``score(table, "judge")``: ``{reply}`` and ``{reference}``
#: are filled from the table; any other ``{column}`` of the table may be used too.
JUDGE_RUBRIC = (
    "You are grading an answer against a reference.\n"
    "Reference answer: {reference}\n"
    "Response: {reply}\n"
    "Give a score between 0 and 1 (1 = the response states the reference answer) "
    "and a one-sentence reason."
)

#: The structured verdict a judge returns (JSON schema): a score in [0, 1] and a reason.
Verdict: dict[str, Any] = {
    "type": "object",
    "properties": {"score": {"type": "number"}, "reason": {"type": "string"}},
    "required": ["score", "reason"],
    "additionalProperties": False,
}

_NUMBER = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+]?\.\d+"
_PUNCT = re.compile(r"[^\w\s]")
_CHOICE = re.compile(
    r"(?:answer|option|choice)\s*(?:is|:)?\s*\(?([A-J])\)?\b|^\s*\(?([A-J])(?:[.):]|\)?\s*$)",
    re.IGNORECASE | re.MULTILINE,
)

ScorerFn = Callable[[Any, Any], "bool | float | None"]


def _normalize(s: pd.Series) -> pd.Series:
    s = s.astype("string").str.lower().str.replace(_PUNCT, " ", regex=True)
    return s.str.split().str.join(" ")


def _first_number(s: pd.Series) -> pd.Series:
    found = s.astype("string").str.extract(f"({_NUMBER})", expand=False)
    return pd.to_numeric(found.str.replace(",", "", regex=False), errors="coerce")


def _as_number(ref: pd.Series) -> pd.Series:
    if pd.api.types.is_numeric_dtype(ref):
        return ref.astype("Float64")
    return _first_number(ref.astype("string")).astype("Float64")


def _needs_reference(kind: str, reference: pd.Series | None) -> pd.Series:
    if reference is None:
        raise InputError(
            f'scorer "{kind}" compares each reply with a reference: pass reference="COLUMN" '
            "(a column of the table) or a Series aligned with it."
        )
    return reference


def _exact(reply: pd.Series, ref: pd.Series | None, **_: Any) -> tuple[pd.Series, pd.Series]:
    ref = _needs_reference("exact", ref).astype("string")
    got = reply.astype("string").str.strip()
    return (got == ref.str.strip()).astype("Float64"), got


def _normalized(reply: pd.Series, ref: pd.Series | None, **_: Any) -> tuple[pd.Series, pd.Series]:
    ref = _needs_reference("normalized", ref)
    got = _normalize(reply)
    return (got == _normalize(ref)).astype("Float64"), got


def _numeric(
    reply: pd.Series, ref: pd.Series | None, *, tolerance: float = 0.0, **_: Any
) -> tuple[pd.Series, pd.Series]:
    ref = _needs_reference("numeric", ref)
    if not isinstance(tolerance, (int, float)) or tolerance < 0:
        raise InputError(f"tolerance must be a number >= 0, got {tolerance!r}.")
    got = _first_number(reply).astype("Float64")
    want = _as_number(ref)
    ok = ((got - want).abs() <= tolerance).astype("Float64")
    # A reply with no number at all is wrong, not unscored.
    ok = ok.mask(got.isna() & want.notna(), 0.0)
    # "1018", not "1018.0": the number as a reader would write it.
    note = got.astype(object).map(lambda v: format(v, ".15g"), na_action="ignore")
    return ok, note.astype("string").fillna("no number")


def _contains(reply: pd.Series, ref: pd.Series | None, **_: Any) -> tuple[pd.Series, pd.Series]:
    ref = _needs_reference("contains", ref)
    text = _normalize(reply)
    want = _normalize(ref)
    # Whole words after normalising: "4" is not in "14", "paris" is in "it is paris france".
    hits = [
        (f" {w} " in f" {t} ") if isinstance(t, str) and isinstance(w, str) else None
        for t, w in zip(text.tolist(), want.tolist())
    ]
    ok = pd.array([np.nan if h is None else float(h) for h in hits], dtype="Float64")
    return pd.Series(ok, index=reply.index), pd.Series(
        pd.array([None] * len(reply), dtype="string"), index=reply.index
    )


def _choice(reply: pd.Series, ref: pd.Series | None, **_: Any) -> tuple[pd.Series, pd.Series]:
    ref = _needs_reference("choice", ref)
    found = reply.astype("string").str.extract(_CHOICE)
    got = found[0].fillna(found[1]).str.upper()
    want = ref.astype("string").str.strip().str.strip("().").str.upper()
    ok = (got == want).astype("Float64").mask(got.isna() & want.notna(), 0.0)
    return ok, got.fillna("no choice")


def _regex(
    reply: pd.Series, ref: pd.Series | None, *, pattern: str | None = None, **_: Any
) -> tuple[pd.Series, pd.Series]:
    if not isinstance(pattern, str):
        raise InputError('scorer "regex" needs pattern=r"..." (a regular expression).')
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise InputError(f"pattern={pattern!r} is not a valid regular expression: {exc}.") from None
    text = reply.astype("string")
    wrapped = compiled.pattern if compiled.groups else f"({compiled.pattern})"
    got = text.str.extract(re.compile(wrapped, compiled.flags), expand=True)[0]
    got = got.astype("string").str.strip()
    if ref is None:  # no reference: a match is a pass
        ok = got.notna().astype("Float64").where(text.notna(), pd.NA)
    else:
        ok = (got == ref.astype("string").str.strip()).astype("Float64")
        ok = ok.mask(got.isna() & ref.notna(), 0.0)
    return ok, got.fillna("no match")


def _json_field(
    reply: pd.Series, ref: pd.Series | None, *, field: str | None = None, **_: Any
) -> tuple[pd.Series, pd.Series]:
    ref = _needs_reference("json", ref)
    if not isinstance(field, str) or not field:
        raise InputError('scorer "json" needs field="NAME" (a top-level field of the JSON reply).')
    values: list[Any] = []
    for t in reply.tolist():
        if not isinstance(t, str):
            values.append(None)
            continue
        try:
            data = orjson.loads(t.strip().removeprefix("```json").strip("`\n "))
        except orjson.JSONDecodeError:
            values.append(None)
            continue
        values.append(data.get(field) if isinstance(data, dict) else None)
    got = pd.Series(values, index=reply.index, dtype=object)
    ok = [
        np.nan if w is None or (isinstance(w, float) and np.isnan(w)) else float(_same(g, w))
        for g, w in zip(got.tolist(), ref.tolist())
    ]
    note = pd.Series([None if g is None else str(g) for g in got], index=reply.index)
    return pd.Series(pd.array(ok, dtype="Float64"), index=reply.index), note.astype("string")


def _same(got: Any, want: Any) -> bool:
    if got is None:
        return False
    if isinstance(got, (int, float)) and not isinstance(got, bool):
        try:
            return bool(abs(float(got) - float(want)) <= 1e-9)
        except (TypeError, ValueError):
            return False
    return str(got).strip().lower() == str(want).strip().lower()


#: The built-in scorers by name (the model judge, ``"judge"``, is separate).
SCORERS: dict[str, Callable[..., tuple[pd.Series, pd.Series]]] = {
    "choice": _choice,
    "contains": _contains,
    "exact": _exact,
    "json": _json_field,
    "normalized": _normalized,
    "numeric": _numeric,
    "regex": _regex,
}


def _callable(fn: ScorerFn, reply: pd.Series, ref: pd.Series | None) -> tuple[pd.Series, pd.Series]:
    refs = ref.tolist() if ref is not None else [None] * len(reply)
    scores: list[float] = []
    notes: list[str | None] = []
    for r, w in zip(reply.tolist(), refs):
        if not isinstance(r, str):
            scores.append(np.nan)
            notes.append(None)
            continue
        try:
            out = fn(r, w)
        except Exception as exc:  # a user's scorer failing on one row is data
            scores.append(np.nan)
            notes.append(f"scorer failed: {type(exc).__name__}: {exc}"[:200])
            continue
        if out is None:
            scores.append(np.nan)
        else:
            scores.append(float(out))
        notes.append(None)
    s = pd.Series(pd.array(scores, dtype="Float64"), index=reply.index)
    bad = s.notna() & ((s < 0) | (s > 1))
    if bad.any():
        raise InputError(
            f"the scorer returned {int(bad.sum())} value(s) outside [0, 1] (e.g. "
            f"{s[bad].iloc[0]}); return a bool or a float between 0 and 1."
        )
    return s, pd.Series(pd.array(notes, dtype="string"), index=reply.index)


def _reference(table: pd.DataFrame, reference: Any) -> pd.Series | None:
    if reference is None:
        return None
    if isinstance(reference, str):
        if reference not in table.columns:
            raise InputError(
                f"reference={reference!r} is not a column of the table; columns: "
                f"{', '.join(map(str, table.columns))}."
            )
        return table[reference]
    if isinstance(reference, pd.Series):
        if len(reference) != len(table):
            raise InputError(
                f"reference has {len(reference)} values but the table has {len(table)} rows."
            )
        return pd.Series(reference.to_numpy(), index=table.index)
    raise InputError("reference= must be a column name or a Series aligned with the table.")


def answered(table: pd.DataFrame, name: str) -> pd.Series:
    """Per row: True where ``<name>`` produced a reply that scorers may read."""
    status_col = f"{name}_status"
    if status_col in table.columns:
        return table[status_col].astype("string").eq("succeeded").fillna(False).astype(bool)
    return table[f"{name}_text"].notna()


def score(
    table: pd.DataFrame,
    scorer: str | ScorerFn,
    *,
    reference: str | pd.Series | None = None,
    name: str = "claude",
    **options: Any,
) -> pd.DataFrame:
    """The table with ``<name>_score`` (Float64 in [0, 1], NA where there is no reply) and
    ``<name>_score_note``.

    ``scorer``: ``"exact"``, ``"normalized"`` (case, whitespace and punctuation
    ignored), ``"numeric"`` (first number, ``tolerance=``), ``"contains"`` (the
    reference appears in the reply as whole words, after normalizing), ``"choice"``
    (A/B/C/D-style answers),
    ``"regex"`` (``pattern=``; its first group, or the match, is compared with the
    reference, or without a reference a match passes), ``"json"`` (``field=`` of a
    JSON reply), ``"judge"`` (a model grades each reply: see :func:`judge`), or any
    callable ``(reply, reference) -> bool | float | None``.

    Scoring reads ``<name>_text`` and ``<name>_status`` only, never calls the API
    (except ``"judge"``) and can be re-run at no cost; the input is not modified.
    """
    text_col = f"{name}_text"
    if not isinstance(table, pd.DataFrame):
        raise InputError(f"Expected a pandas DataFrame, got {type(table).__name__}.")
    if text_col not in table.columns:
        have = sorted(c[:-5] for c in table.columns if isinstance(c, str) and c.endswith("_text"))
        raise InputError(
            f"The table has no reply column {text_col!r}. Pass name= the prefix of the run "
            f"({', '.join(repr(h) for h in have) or 'none found'})."
        )
    ref = _reference(table, reference)
    if scorer == "judge":
        from claude_lab._judge import judge

        return judge(table, reference=ref, name=name, **options)
    ok_rows = answered(table, name)
    reply = table[text_col].astype("string").where(ok_rows)
    if isinstance(scorer, str):
        fn = SCORERS.get(scorer)
        if fn is None:
            raise InputError(
                f"Unknown scorer {scorer!r}; use one of {', '.join(sorted(SCORERS))}, "
                '"judge", or a callable (reply, reference) -> bool | float.'
            )
        values, notes = fn(reply, ref, **options)
    elif callable(scorer):
        if options:
            raise InputError(f"options {sorted(options)} are only for built-in scorers.")
        values, notes = _callable(scorer, reply, ref)
    else:
        raise InputError(f"scorer must be a name or a callable, got {type(scorer).__name__}.")
    values = pd.Series(values, index=table.index).astype("Float64").where(ok_rows, pd.NA)
    # A row whose reference is missing cannot be scored.
    if ref is not None:
        values = values.where(ref.notna().to_numpy(), pd.NA)
    notes = pd.Series(notes, index=table.index).astype("string").where(ok_rows, pd.NA)
    if f"{name}_status" in table.columns:
        status = table[f"{name}_status"].astype("string")
        notes = notes.where(ok_rows, "no reply: " + status.fillna("missing"))
    out = table.copy()
    out[f"{name}_score"] = values.array
    out[f"{name}_score_note"] = notes.array
    return out
