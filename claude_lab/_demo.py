"""The README's main job: an evaluation run over the shipped arithmetic set.

With no API key (or without ``--real``) it runs against the offline emulator,
so it works on a fresh machine and spends nothing.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import anthropic
import pandas as pd

from claude_lab import _job as job_mod
from claude_lab._errors import ConfigError, InputError
from claude_lab._export import export

__all__ = ["load_sample", "run_demo"]

PROMPT = "Question: {question}\nAnswer with a single number."
SYSTEM = "You are a careful math tutor."


def load_sample() -> pd.DataFrame:
    """The shipped evaluation set: 300 arithmetic questions with reference answers."""
    with resources.files("claude_lab").joinpath("data/arithmetic.csv").open("rb") as fh:
        return pd.read_csv(fh, dtype={"id": "string", "question": "string", "kind": "string"})


@contextlib.contextmanager
def _client(real: bool) -> Iterator[tuple[anthropic.Anthropic, str]]:
    if real:
        if not os.environ.get("ANTHROPIC_API_KEY"):
            raise ConfigError(
                "--real needs an API key - set ANTHROPIC_API_KEY, or drop --real to run on "
                "the offline emulator."
            )
        yield anthropic.Anthropic(), "the Anthropic API"
        return
    from claude_lab.emulator import serve

    with serve(counts="incremental") as emu:
        yield emu.client(), "the offline emulator (in this process)"


def run_demo(
    *,
    real: bool = False,
    rows: int | None = None,
    model: str = "claude-haiku-4-5",
    out: str | Path = "claude_lab_results/demo_results.csv",
    progress: str | None = "auto",
) -> pd.DataFrame:
    """Run the evaluation, print the table and the accuracy, write the table to ``out``."""
    if rows is not None and (isinstance(rows, bool) or not isinstance(rows, int) or rows < 1):
        raise InputError(f"rows={rows!r}: pass a whole number of questions, 1 or more.")
    df = load_sample()
    if rows is not None:
        df = df.head(rows)
    with _client(real) as (client, where):
        print(f"Evaluating {model} on {len(df)} arithmetic questions via {where}.", flush=True)
        result: Any = job_mod.run(
            df,
            PROMPT,
            system=SYSTEM,
            model=model,
            max_tokens=32,
            parse=r"(-?\d+)",
            client=client,
            progress=progress,
            poll_interval=(0.25, 5.0) if not real else (5.0, 60.0),
        )
    assert isinstance(result, pd.DataFrame)
    parsed = pd.to_numeric(result["claude_parsed"], errors="coerce")
    result["correct"] = (parsed == result["answer"]).fillna(False).astype(bool)
    shown = result[
        [
            "id",
            "question",
            "answer",
            "claude_text",
            "correct",
            "claude_status",
            "claude_output_tokens",
            "claude_cost_usd",
        ]
    ]
    with pd.option_context("display.width", 120, "display.max_colwidth", 48):
        print(shown.head(15).to_string(index=False))
        print(f"... {len(shown)} rows in all\n")
        print(result.groupby("kind")["correct"].mean().map("{:.0%}".format).to_string())
    status = result["claude_status"].value_counts().to_dict()
    cost = float(result["claude_cost_usd"].sum())
    accuracy = float(result["correct"].mean()) if len(result) else 0.0
    print(
        f"\nAccuracy: {accuracy:.1%} ({int(result['correct'].sum())}/{len(result)})  "
        f"status: {status}  cost at batch prices: ${cost:.4f}"
    )
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    export(result, path)
    print(f"Results table written to {path.resolve()}")
    return result
