"""The command line answers from the journal offline: jobs, show (refreshing from the API
when it can, else saying how old its figures are), results (the full table), --version."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from emulator_helpers import until as _until

import claude_lab
from claude_lab._cli import main
from claude_lab.emulator import Emulator, serve

FAST: dict[str, Any] = {"progress": None, "poll_interval": 0.02, "model": "claude-haiku-4-5"}


@pytest.fixture
def emu() -> Iterator[Emulator]:
    """On a socket: the CLI builds its own client from the journal's endpoint (base_url)."""
    with serve(speed=0, transport="socket") as emulator:
        yield emulator


def _finished_job(fast: Emulator) -> pd.DataFrame:
    df = pd.DataFrame({"a": [1, 2, 3], "b": [10, 20, 30]}, index=["x", "y", "z"])
    out = df.claude.batch("What is {a} + {b}?", client=fast.client(), **FAST)
    assert isinstance(out, pd.DataFrame)
    return out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"claude-lab {claude_lab.__version__}"


def test_results_exports_the_full_table_offline(
    fast: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _finished_job(fast)
    job_id = out.attrs["claude_lab"]["job_id"]
    fast.stop()  # nothing to talk to, and no API key in the environment either
    path = tmp_path / "full.csv"
    assert main(["results", job_id, "--out", str(path)]) == 0
    table = pd.read_csv(path, index_col=0)
    assert list(table.columns[:2]) == ["a", "b"]
    assert table.index.tolist() == ["x", "y", "z"]
    assert table["a"].tolist() == [1, 2, 3]
    assert table["claude_text"].astype(str).tolist() == out["claude_text"].tolist()
    assert (table["claude_status"] == "succeeded").all()
    slim = tmp_path / "slim.csv"
    assert main(["results", job_id[:10], "--out", str(slim), "--results-only"]) == 0
    assert "a" not in pd.read_csv(slim).columns
    assert "Wrote 3 rows" in capsys.readouterr().out


def test_jobs_and_show_work_offline_and_say_how_old_they_are(
    emu: Emulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    df = pd.DataFrame({"q": ["one", "two"]})
    job = df.claude.batch("{q}", client=emu.client(), wait=False, **FAST)
    assert isinstance(job, claude_lab.BatchJob)
    try:
        job_id = job.id
        assert main(["jobs"]) == 0
        assert job_id in capsys.readouterr().out
        _until(lambda: bool(job.batch_ids))  # a condition, not a duration
        assert main(["show", job_id]) == 0
        shown = capsys.readouterr().out
        assert "as of 20" in shown and "no API key" in shown
        assert "rows: processing=2" in shown
        emu.clock.advance(3600)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "emulator")
        assert main(["show", job_id]) == 0
        shown = capsys.readouterr().out
        assert "refreshed from the API" in shown and " ended " in shown
    finally:
        job.cancel()


def test_an_unknown_job_exits_1_with_a_hint(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "job_doesnotexist"]) == 1
    assert "claude-lab jobs" in capsys.readouterr().err
