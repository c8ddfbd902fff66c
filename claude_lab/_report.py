"""Reports of an evaluation: LaTeX tables, and one self-contained HTML / Markdown page.

``to_latex(frame)`` turns a summary or comparison table into a booktabs
``tabular`` (no jinja2 needed). ``report(table, path)`` writes the summary and
comparison tables with their intervals, the plots (inline base64 PNG), cost
and provenance (models, templates, API version, dates, batch ids) into
``path`` (.html) and the same content as Markdown next to it.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from claude_lab._compare import compare, scored_names
from claude_lab._errors import ConfigError, InputError
from claude_lab._plan import now_iso
from claude_lab._stats import summarize
from claude_lab._version import __version__

__all__ = ["provenance", "report", "summary_table", "to_latex"]

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


_SUMMARY_COLUMNS = [
    "n",
    "mean",
    "ci_low",
    "ci_high",
    "method",
    "rows",
    "succeeded",
    "errored",
    "skipped",
    "cost_usd",
    "input_tokens",
    "output_tokens",
]


def summary_table(
    table: pd.DataFrame,
    names: Sequence[str],
    by: str | None = None,
    cluster: str | None = None,
) -> pd.DataFrame:
    """``summarize()`` of every model, stacked: index (model[, group])."""
    parts = []
    for name in names:
        s = summarize(table, by=by, name=name, cluster=cluster)
        cols = [c for c in _SUMMARY_COLUMNS if c in s.columns]
        s = s[cols].copy()
        s.insert(0, "model", name)
        parts.append(s.reset_index(drop=by is None))
    out = pd.concat(parts, ignore_index=True)
    return out.set_index(["model", by] if by else ["model"])


def _digits(column: Any) -> int:
    return 6 if "cost" in str(column) else 4


def _html_table(frame: pd.DataFrame, table_id: str) -> str:
    flat = frame.reset_index()
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in flat.columns)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{html.escape(fmt(v, _digits(c)))}</td>" for c, v in zip(flat.columns, row))
        + "</tr>"
        for row in flat.itertuples(index=False)
    )
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _md_table(frame: pd.DataFrame) -> str:
    flat = frame.reset_index()
    lines = [
        "| " + " | ".join(str(c) for c in flat.columns) + " |",
        "|" + "|".join("---" for _ in flat.columns) + "|",
    ]
    for row in flat.itertuples(index=False):
        cells = (fmt(v, _digits(c)).replace("|", "\\|") for c, v in zip(flat.columns, row))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return base64.b64encode(buf.getvalue()).decode()


def provenance(table: pd.DataFrame) -> dict[str, Any]:
    """What produced the table: its run's attrs, the judges', the SDK and API version."""
    import anthropic

    # What the SDK sends as anthropic-version (a future SDK may move the constant).
    api_version: str | None = getattr(
        getattr(anthropic, "_constants", None), "ANTHROPIC_API_VERSION", None
    )

    run = dict(table.attrs.get("claude_lab") or {})
    prov: dict[str, Any] = {
        "models": run.get("model"),
        "templates": run.get("templates"),
        "params": run.get("params"),
        "api_version": api_version,
        "sdk": f"anthropic {anthropic.__version__}",
        "package": run.get("package", f"claude-lab {__version__}"),
        "job_id": run.get("job_id"),
        "batch_ids": run.get("batch_ids"),
        "endpoint": run.get("endpoint"),
        "created_at": run.get("created_at"),
        "finished_at": run.get("finished_at"),
        "report_written_at": now_iso(),
    }
    judges = table.attrs.get("claude_lab_judges") or {}
    if judges:
        prov["judges"] = {
            name: {k: (j or {}).get(k) for k in ("model", "templates", "job_id", "batch_ids")}
            for name, j in judges.items()
        }
    return prov


def _costs(table: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for col in table.columns:
        if isinstance(col, str) and col.endswith("_cost_usd"):
            prefix = col[: -len("_cost_usd")]
            rows.append(
                {
                    "run": prefix,
                    "cost_usd": float(pd.to_numeric(table[col], errors="coerce").sum()),
                    "rows": int(table[col].notna().sum()),
                }
            )
    out = pd.DataFrame(rows, columns=["run", "cost_usd", "rows"]).set_index("run")
    if len(out):
        out.loc["total"] = [out["cost_usd"].sum(), out["rows"].sum()]
    return out


def report(
    table: pd.DataFrame,
    path: str | os.PathLike[str],
    *,
    names: Sequence[str] | None = None,
    by: str | None = None,
    cluster: str | None = None,
    title: str = "Evaluation report",
    note: str | None = None,
    plots: bool = True,
    latex: bool = False,
) -> Path:
    """Write ``path`` (.html, self-contained: plots inline) and the same page as Markdown
    (``.md`` beside it; ``.tex`` with the tables too if ``latex=True``); return the HTML path.

    Sections: summary per model (and ``by`` group) with 95% intervals, the paired
    comparison (two or more models), plots (needs matplotlib; skipped with a note
    otherwise), cost per run (judges included) and provenance. ``note`` is a
    paragraph placed under the title (say there, for instance, that numbers are emulated).
    """
    target = Path(path)
    if target.suffix.lower() not in (".html", ".htm"):
        target = target.with_suffix(".html")
    chosen = list(names) if names is not None else scored_names(table)
    if not chosen:
        raise InputError("No scored runs in the table: score it first with claude_lab.score().")
    overall = summary_table(table, chosen, None, cluster)
    grouped = summary_table(table, chosen, by, cluster) if by else None
    comparison = compare(table, chosen, cluster=cluster) if len(chosen) > 1 else None
    figures: list[tuple[str, str]] = []
    plot_note = ""
    if plots:
        try:
            from claude_lab import _plots as plots_mod

            figs = [
                ("Score by " + by if by else "Score", plots_mod.plot_accuracy(table, by, chosen)),
                ("Cost vs score", plots_mod.plot_cost_vs_score(table, chosen)),
                ("Tokens per reply", plots_mod.plot_tokens(table, chosen)),
                ("Latency", plots_mod.plot_latency(table, chosen)),
            ]
            figures = [(caption, _png(fig)) for caption, fig in figs]
        except ConfigError as exc:
            plot_note = str(exc)
    costs = _costs(table)
    prov = provenance(table)
    tables: list[tuple[str, str, pd.DataFrame]] = [("Summary", "summary", overall)]
    if grouped is not None:
        tables.append((f"Summary by {by}", "summary-by", grouped))
    if comparison is not None:
        tables.append(("Models", "comparison-models", comparison.models))
        tables.append(("Paired differences", "comparison", comparison.differences))
    tables.append(("Cost", "cost", costs))

    h = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    md = [f"# {title}", ""]
    if note:
        h.append(f"<p class='note'>{html.escape(note)}</p>")
        md += [note, ""]
    h.append(f"<p>{_INTERVALS}</p>")
    md += [_INTERVALS, ""]
    for caption, table_id, frame in tables:
        h += [f"<h2>{html.escape(caption)}</h2>", _html_table(frame, table_id)]
        md += [f"## {caption}", "", _md_table(frame), ""]
    if figures or plot_note:
        h.append("<h2>Plots</h2>")
        md += ["## Plots", ""]
    for caption, b64 in figures:
        h.append(
            f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{b64}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
        md += [f"![{caption}](data:image/png;base64,{b64})", ""]
    if plot_note:
        h.append(f"<p>{html.escape(plot_note)}</p>")
        md += [plot_note, ""]
    prov_json = orjson.dumps(prov, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
    h += ["<h2>Provenance</h2>", f"<pre id='provenance'>{html.escape(prov_json)}</pre>"]
    md += ["## Provenance", "", "```json", prov_json, "```", ""]
    h.append("</body></html>")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(h), encoding="utf-8")
    target.with_suffix(".md").write_text("\n".join(md), encoding="utf-8")
    if latex:
        tex = [to_latex(frame, caption=caption) for caption, _, frame in tables]
        target.with_suffix(".tex").write_text("\n".join(tex), encoding="utf-8")
    return target


_INTERVALS = (
    "Intervals are 95%: Wilson for 0/1 scores, a seeded percentile bootstrap otherwise, "
    "cluster-robust when rows share a source (epochs or cluster=). Paired differences use a "
    "paired bootstrap; p-values are McNemar's exact test on the discordant pairs."
)

_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em}"
    "th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}"
    "th{background:#f3f3f3}.note{background:#fff6d6;padding:.6em;border-left:4px solid #e0b000}"
    "img{max-width:100%}pre{background:#f7f7f7;padding:1em;overflow:auto}"
)
