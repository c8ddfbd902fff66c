"""Reports of an evaluation: LaTeX tables, and one self-contained HTML / Markdown page.

``to_latex(frame)`` turns a summary or comparison table into a booktabs
``tabular`` (no jinja2 needed). ``report(table, path)`` writes the summary and
comparison tables with their intervals, the plots (inline base64 PNG), cost
and provenance (models, templates, API version, dates, batch ids) into
``path`` (.html) and the same content as Markdown next to it.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

__all__ = ["to_latex"]

_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def _tex(value: Any) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(value))


def fmt(value: Any, digits: int = 4) -> str:
    """A table cell as text: floats to ``digits`` places, NA as an empty cell."""
    if value is None or value is pd.NA:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.{digits}f}"
    return str(value)


def to_latex(frame: pd.DataFrame, *, caption: str | None = None, digits: int = 4) -> str:
    """A booktabs LaTeX table of ``frame`` (its index as leading column(s))."""
    flat = frame.reset_index()
    cols = [_tex(c) for c in flat.columns]
    numeric = [pd.api.types.is_numeric_dtype(flat[c]) for c in flat.columns]
    align = "".join("r" if n else "l" for n in numeric)
    lines = [r"\begin{table}[ht]", r"\centering"]
    if caption:
        lines.append(rf"\caption{{{_tex(caption)}}}")
    lines += [rf"\begin{{tabular}}{{{align}}}", r"\toprule", " & ".join(cols) + r" \\", r"\midrule"]
    for row in flat.itertuples(index=False):
        lines.append(" & ".join(_tex(fmt(v, digits)) for v in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"
