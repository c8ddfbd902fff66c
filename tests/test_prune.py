"""Housekeeping: forget a job, prune by age or by job, keep the cache or not, sizes shown."""

from __future__ import annotations

import sqlite3
from typing import Any

import pandas as pd
import pytest

import claude_lab
from claude_lab import _cli as cli
from claude_lab._ledger import open_journal
from claude_lab.emulator import Emulator

SUM = "What is {a} + {b}? Answer with a single number."
FAST: dict[str, Any] = {"progress": None, "poll_interval": 0.02, "model": "claude-haiku-4-5"}
CREATE = ("POST", "/v1/messages/batches")


def _frame(n: int, start: int = 0) -> pd.DataFrame:
    a = list(range(start, start + n))
    return pd.DataFrame({"a": a, "b": [x * 3 for x in a]})


def _age(job_id: str, days: int) -> None:
    """Make a job look last updated ``days`` ago (as if the run were that old)."""
    with sqlite3.connect(open_journal().path) as conn:
        conn.execute(
            "UPDATE jobs SET updated_at = datetime('now', ?) || '+00:00' WHERE job_id = ?",
            (f"-{days} days", job_id),
        )


def test_forget_drops_the_job_and_its_results(fast: Emulator) -> None:
    df = _frame(200)
    out = df.claude.batch(SUM, client=fast.client(), **FAST)
    job_id = out.attrs["claude_lab"]["job_id"]
    listing = claude_lab.jobs()
    assert listing["stored_mb"].item() > 0
    assert listing.attrs["journal"]["bytes"] > 0
    assert listing.attrs["journal"]["path"] == str(open_journal().path)

    claude_lab.forget(job_id)
    assert claude_lab.jobs().empty
    with pytest.raises(claude_lab.JobNotFoundError):
        claude_lab.attach(job_id, client=fast.client())
    # Nothing is left to answer from: the same call is sent again.
    df.claude.batch(SUM, client=fast.client(), **FAST)
    assert fast.count(*CREATE) == 2


def test_forget_keep_cache_still_answers_identical_requests(fast: Emulator) -> None:
    df = _frame(20)
    job = df.claude.batch(SUM, client=fast.client(), wait=False, **FAST)
    first = job.result()
    claude_lab.forget(job, keep_cache=True)
    assert claude_lab.jobs().empty
    again = df.claude.batch(SUM, client=fast.client(), **FAST)
    assert fast.count(*CREATE) == 1  # every row came from the kept results
    assert again["claude_text"].tolist() == first["claude_text"].tolist()


def test_a_running_job_cannot_be_forgotten(emu: Emulator) -> None:
    job = _frame(5).claude.batch(SUM, client=emu.client(), wait=False, **FAST)
    with pytest.raises(claude_lab.InputError, match=r"may be running.*Wait for it"):
        claude_lab.forget(job.id)
    assert open_journal().prune(older_than=pd.Timedelta(0).to_pytimedelta())["jobs"] == 0
    assert list(claude_lab.jobs()["job_id"]) == [job.id]
    # The create goes out on the job's thread: move the clock only once the batch exists,
    # or it is created after the jump and never ends on the stopped clock.
    emu.wait_count("POST", "/v1/messages/batches")
    emu.clock.advance(3600)
    job.result()
    claude_lab.forget(job)
    assert claude_lab.jobs().empty


def test_cli_prune_by_age_and_by_job(fast: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    old = _frame(50).claude.batch(SUM, client=fast.client(), **FAST).attrs["claude_lab"]["job_id"]
    new = _frame(50, 100).claude.batch(SUM, client=fast.client(), **FAST)
    new_id = new.attrs["claude_lab"]["job_id"]
    _age(old, 40)

    assert cli.main(["jobs"]) == 0
    assert f"journal: {open_journal().path}" in capsys.readouterr().out

    assert cli.main(["prune", "--older-than", "30d"]) == 0
    said = capsys.readouterr().out
    assert "Deleted 1 job(s) and 50 result line(s)" in said
    assert list(claude_lab.jobs()["job_id"]) == [new_id]

    assert cli.main(["show", new_id]) == 0
    assert "stored:" in capsys.readouterr().out
    assert cli.main(["prune", "--job", new_id[:10], "--keep-cache"]) == 0
    assert "Deleted 1 job(s) and 0 result line(s)" in capsys.readouterr().out
    assert claude_lab.jobs().empty

    assert cli.main(["prune", "--older-than", "soon"]) == 1
    assert "30d" in capsys.readouterr().err
    assert cli.main(["prune"]) == 1
    assert "--older-than" in capsys.readouterr().err


def test_prune_gives_the_space_back(fast: Emulator) -> None:
    out = _frame(2000).claude.batch(SUM, client=fast.client(), **FAST)
    done = open_journal().prune(job_ids=[out.attrs["claude_lab"]["job_id"]])
    assert done["jobs"] == 1 and done["result_lines"] == 2000
    assert done["bytes_after"] < done["bytes_before"] / 2
