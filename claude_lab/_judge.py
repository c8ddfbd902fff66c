"""Model-graded scoring: a second batch in which a model grades every reply.

``score(table, "judge", rubric=TEMPLATE, model=...)`` renders the rubric per
row (``{reply}`` is the reply being graded, ``{reference}`` the reference, and
any ``{column}`` of the table) and runs it through the same machinery as
``df.claude.batch``: journal, result cache, display, batch prices. The judge's
columns are prefixed ``<name>_judge_`` (``_status``, ``_cost_usd``, tokens, ...)
so they never clash with the graded run's. It asks for a structured verdict
(``output=`` a schema with ``score`` and ``reason``; :data:`Verdict` by
default); ``<name>_score`` is the verdict's score clipped to [0, 1] and
``<name>_score_note`` its reason. Re-scoring sends the same requests, so the
journal answers them and nothing is sent or paid again.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from claude_lab._errors import InputError
from claude_lab._scoring import JUDGE_RUBRIC, Verdict, answered

__all__ = ["judge"]


def judge(
    table: pd.DataFrame,
    *,
    reference: pd.Series | None = None,
    name: str = "claude",
    rubric: str = JUDGE_RUBRIC,
    model: str | None = None,
    output: Any = Verdict,
    max_tokens: int = 512,
    **options: Any,
) -> pd.DataFrame:
    """Grade every reply of run ``name`` with ``model``; see the module docstring.

    The rubric reads the table's columns, except ``reply`` and ``reference``, which
    are the graded reply and the reference. Further options go to the judge's batch
    (``system``, ``client``, ``progress``, ``cache``, ``poll_interval``, ``prices``,
    ...). Rows with no reply are not sent (their judge status is ``skipped``) and
    their score is NA.
    """
    from claude_lab import _job as job_mod

    if not isinstance(model, str) or not model:
        raise InputError(
            'score(table, "judge", ...) needs model=, the grading model, e.g. '
            "model='claude-sonnet-4-5'."
        )
    if not isinstance(rubric, str) or "{reply}" not in rubric:
        raise InputError(
            "rubric= must be a template with {reply} (the reply being graded); "
            "see claude_lab.JUDGE_RUBRIC."
        )
    if reference is None and "{reference}" in rubric:
        raise InputError(
            "The rubric uses {reference}: pass reference='COLUMN' (the reference answers), "
            "or a rubric without {reference}."
        )
    if options.get("wait") is False:
        raise InputError('score(table, "judge") waits for its verdicts; drop wait=False.')
    options.pop("wait", None)
    prefix = f"{name}_judge"
    ok = answered(table, name)
    frame = table.assign(reply=table[f"{name}_text"].astype("string").where(ok, pd.NA))
    if reference is not None:
        frame["reference"] = reference.to_numpy()
    graded = job_mod.run(
        frame,
        rubric,
        model=model,
        output=output,
        max_tokens=max_tokens,
        name=prefix,
        overwrite=True,  # re-scoring replaces this judge's own columns
        on_missing="skip",
        **options,
    )
    assert isinstance(graded, pd.DataFrame)
    score_col, reason_col = f"{prefix}_score", f"{prefix}_reason"
    if score_col not in graded.columns:
        raise InputError(
            "output= must have a 'score' field (a number in [0, 1] or a bool), e.g. "
            "claude_lab.Verdict."
        )
    out = table.copy()
    for col in graded.columns:
        if isinstance(col, str) and col.startswith(prefix + "_"):
            out[col] = graded[col].to_numpy()
    judged = graded[f"{prefix}_status"].astype("string").eq("succeeded").fillna(False)
    values = pd.to_numeric(graded[score_col], errors="coerce").astype("Float64").clip(0, 1)
    values = values.where((judged & ok).to_numpy(), pd.NA)
    if reference is not None:
        values = values.where(reference.notna().to_numpy(), pd.NA)
    if reason_col in graded.columns:
        notes = graded[reason_col].astype("string")
    else:
        notes = pd.Series(pd.NA, index=graded.index, dtype="string")
    notes = notes.where(
        judged.to_numpy(), "no verdict: " + graded[f"{prefix}_status"].astype("string")
    )
    if f"{name}_status" in table.columns:
        status = table[f"{name}_status"].astype("string").fillna("missing")
        notes = notes.where(ok.to_numpy(), ("no reply: " + status).to_numpy())
    out[f"{name}_score"] = values.to_numpy()
    out[f"{name}_score"] = out[f"{name}_score"].astype("Float64")
    out[f"{name}_score_note"] = pd.array(notes.to_numpy(), dtype="string")
    judges = dict(table.attrs.get("claude_lab_judges") or {})
    judges[name] = graded.attrs.get("claude_lab")
    out.attrs = {**table.attrs, "claude_lab_judges": judges}
    return out
