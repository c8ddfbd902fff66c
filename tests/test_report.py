"""The report: self-contained HTML (opened in headless Chromium) and Markdown, tables equal
to summarize(), LaTeX export, and plots returning figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from notebook_helpers import headless_chromium

import claude_lab
from claude_lab._demo import load_sample
from claude_lab._report import fmt
from claude_lab.emulator import serve, stand_in_models

MODELS = ["claude-haiku-4-5", "claude-sonnet-4-5"]


@pytest.fixture
def scored() -> pd.DataFrame:
    df = load_sample().head(120)
    with serve(request_seconds=0, concurrency=10_000, responder=stand_in_models()) as emu:
        out = df.claude.batch(
            "Question: {question}\nAnswer with a single number.",
            model=MODELS,
            max_tokens=16,
            client=emu.client(),
            progress=None,
        )
    for name in ("haiku_4_5", "sonnet_4_5"):
        out = claude_lab.score(out, "numeric", reference="answer", name=name)
    return out


def test_plots_return_figures(scored: pd.DataFrame) -> None:
    from matplotlib.figure import Figure

    for fig in (
        claude_lab.plot_accuracy(scored, by="kind"),
        claude_lab.plot_cost_vs_score(scored),
        claude_lab.plot_tokens(scored),
        claude_lab.plot_latency(scored),
    ):
        assert isinstance(fig, Figure) and fig.axes
    bars = claude_lab.plot_accuracy(scored, by="kind").axes[0]
    # One bar per (model, group), heights equal to the summary means.
    heights = sorted(round(p.get_height(), 6) for p in bars.patches)
    means = pd.concat(
        [
            claude_lab.summarize(scored, by="kind", name=n)["mean"]
            for n in ("haiku_4_5", "sonnet_4_5")
        ]
    )
    assert heights == sorted(round(m, 6) for m in means)


def test_report_html_markdown_latex_match_summarize(scored: pd.DataFrame, tmp_path: Path) -> None:
    path = claude_lab.report(
        scored, tmp_path / "eval.html", by="kind", note="Numbers are emulated.", latex=True
    )
    html_text = path.read_text()
    md = path.with_suffix(".md").read_text()
    tex = path.with_suffix(".tex").read_text()
    assert "data:image/png;base64," in html_text and "http" not in html_text.split("<pre")[0]
    assert "Numbers are emulated." in md and "| model |" in md
    assert "\\begin{tabular}" in tex and "haiku\\_4\\_5" in tex
    assert '"api_version": "2026-10-21"' in html_text.replace("&quot;", '"')
    for bid in scored.attrs["claude_lab"]["batch_ids"]:
        assert bid in html_text and bid in md

    with headless_chromium() as browser:
        page = browser.new_page()
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(path.as_uri())
        cells: Any = page.eval_on_selector_all(
            "#summary tbody tr, #summary-by tbody tr",
            "rows => rows.map(r => Array.from(r.cells, c => c.textContent))",
        )
        images = page.eval_on_selector_all(
            "img", "imgs => imgs.map(i => i.complete && i.naturalWidth > 0)"
        )
    # Self-contained: the page loads nothing but itself, and every plot decodes.
    assert requests == [path.as_uri()]
    assert images and all(images)
    # The tables show exactly what summarize() computes.
    expected = []
    for name in ("haiku_4_5", "sonnet_4_5"):
        s = claude_lab.summarize(scored, name=name).iloc[0]
        expected.append([name, *(fmt(s[c]) for c in ("n", "mean", "ci_low", "ci_high"))])
    for name in ("haiku_4_5", "sonnet_4_5"):
        g = claude_lab.summarize(scored, by="kind", name=name)
        for kind, s in g.iterrows():
            expected.append([name, kind, *(fmt(s[c]) for c in ("n", "mean", "ci_low", "ci_high"))])
    got = [row[: len(e)] for row, e in zip(cells, expected)]
    assert got == expected and len(cells) == len(expected)
