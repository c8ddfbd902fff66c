"""A lost create in a shared workspace: other users' batches of the same size, made
before, during or after the create whose response was lost, are never adopted, canceled
or deleted, and the job's own requests are paid exactly once."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from emulator_helpers import until as _until

from claude_lab.emulator import Emulator, serve

SUM = "What is {a} + {b}? Answer with a single number."
FAST: dict[str, Any] = {"progress": None, "poll_interval": 0.02, "model": "claude-haiku-4-5"}
ROWS = 6
CREATE = ("POST", "/v1/messages/batches")

# How the create's response is lost. "500" makes no batch; the others make one.
LOSSES: dict[str, dict[str, Any]] = {
    "500": {"server_error": {"create": 1}},
    "500-after-create": {"error_after_create": 1},
    "dropped": {"drop_after_create": 1},
    "timeout": {"timeout_after_create": 1, "stall_seconds": 3.0},
}


def _frame(n: int = ROWS, start: int = 0) -> pd.DataFrame:
    a = list(range(start, start + n))
    return pd.DataFrame({"a": a, "b": [x * 2 for x in a]})


@pytest.fixture
def quick() -> Iterator[Emulator]:
    """Batches end as soon as they are made (so the evidence is there at once)."""
    with serve(request_seconds=0, concurrency=100_000) as emulator:
        yield emulator


def _client(emu: Emulator, loss: str) -> Any:
    # A timeout shorter than the emulator's stall, so the lost create times out.
    return emu.client(timeout=0.5) if loss == "timeout" else emu.client()


def _foreign_when_made(emu: Emulator) -> str:
    _until(lambda: any(b["foreign"] for b in emu.core.batch_report()))
    return next(b["id"] for b in emu.core.batch_report() if b["foreign"])


def _check(emu: Emulator, out: pd.DataFrame, foreign_count: int) -> None:
    """Every row back and right; each request paid once; foreign batches untouched."""
    assert (out["claude_status"] == "succeeded").all()
    assert (out["claude_text"] == (out["a"] + out["b"]).astype(str)).all()
    report = emu.core.batch_report()
    foreign = [b for b in report if b["foreign"]]
    assert len(foreign) == foreign_count
    assert not any(b["canceled"] or b["deleted"] for b in foreign)
    assert emu.count("POST", "/v1/messages/batches/*/cancel") == 0
    assert emu.count("DELETE", "/v1/messages/batches/*") == 0
    carried = Counter(c for b in report if not b["foreign"] for c in b["custom_ids"])
    assert len(carried) == ROWS and set(carried.values()) == {1}  # each request paid once
    foreign_ids = {b["id"] for b in foreign}
    assert foreign_ids.isdisjoint(out.attrs["claude_lab"]["batch_ids"])
    assert foreign_ids.isdisjoint(set(out["claude_batch_id"]))


@pytest.mark.parametrize("when", ["before", "during", "after"])
@pytest.mark.parametrize("loss", list(LOSSES))
def test_foreign_same_size_batch_around_a_lost_create(
    quick: Emulator, loss: str, when: str
) -> None:
    quick.faults = {**LOSSES[loss], "others": [(when, ROWS)]}
    out = _frame().claude.batch(SUM, client=_client(quick, loss), **FAST)
    _check(quick, out, foreign_count=1)


@pytest.mark.parametrize("loss", list(LOSSES))
def test_foreign_batches_before_during_and_after_at_once(quick: Emulator, loss: str) -> None:
    others = [("before", ROWS), ("during", ROWS), ("after", ROWS), ("during", ROWS + 1)]
    quick.faults = {**LOSSES[loss], "others": others}
    out = _frame().claude.batch(SUM, client=_client(quick, loss), **FAST)
    _check(quick, out, foreign_count=4)


def test_two_running_candidates_are_waited_for_never_resent(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Both the job's own batch and a foreign one are running: only their results can
    tell them apart, so the job waits for them to end, sending nothing meanwhile, and
    says so."""
    emu.faults = {"drop_after_create": 1, "others": [("during", ROWS)]}
    with caplog.at_level(logging.WARNING, logger="claude_lab"):
        job = _frame().claude.batch(SUM, client=emu.client(), wait=False, **FAST)
        _until(lambda: emu.count("GET", "/v1/messages/batches") >= 5)  # it keeps looking
    assert emu.count(*CREATE) == 1  # ... and has not resent
    assert job.batch_ids == [] and not job.done() and job.status == "submitting"
    assert "nothing is sent again until they end" in caplog.text
    emu.clock.advance(3600)
    out = job.result(timeout=30)
    assert emu.count(*CREATE) == 1
    _check(emu, out, foreign_count=1)


def test_a_lone_foreign_candidate_is_adopted_provisionally_then_released(emu: Emulator) -> None:
    """The create made nothing (500) and one foreign batch of the same size is running:
    it is held provisionally, never canceled (even by job.cancel()), and released when
    its results show other requests; the job's requests are then sent once."""
    emu.faults = {"server_error": {"create": 1}, "others": [("before", ROWS)]}
    job = _frame().claude.batch(SUM, client=emu.client(), wait=False, **FAST)
    foreign = _foreign_when_made(emu)
    _until(lambda: job.batch_ids == [foreign])
    assert emu.count(*CREATE) == 1  # the failed one only
    emu.clock.advance(3600)
    _until(lambda: emu.count(*CREATE) == 2)  # released: the job's own batch, once
    assert foreign not in job.batch_ids
    emu.clock.advance(3600)
    out = job.result(timeout=30)
    assert emu.count(*CREATE) == 2
    _check(emu, out, foreign_count=1)


def test_cancel_never_cancels_a_provisional_batch(emu: Emulator) -> None:
    emu.faults = {"server_error": {"create": 1}, "others": [("before", ROWS)]}
    job = _frame().claude.batch(SUM, client=emu.client(), wait=False, **FAST)
    foreign = _foreign_when_made(emu)
    _until(lambda: job.batch_ids == [foreign])
    job.cancel()
    emu.clock.advance(3600)
    job.result(timeout=30)
    assert emu.count("POST", "/v1/messages/batches/*/cancel") == 0
    assert not any(b["canceled"] for b in emu.core.batch_report())


def test_a_released_batch_is_never_considered_again(quick: Emulator) -> None:
    from claude_lab._ledger import open_journal

    quick.faults = {"server_error": {"create": 1}, "others": [("before", ROWS)]}
    out = _frame().claude.batch(SUM, client=quick.client(), **FAST)
    job_id = out.attrs["claude_lab"]["job_id"]
    foreign = {b["id"] for b in quick.core.batch_report() if b["foreign"]}
    # Remembered as foreign to this job (never adopted, downloaded or looked at again).
    assert open_journal().foreign_batches(job_id) == foreign
    assert (out["claude_status"] == "succeeded").all()


def test_a_failing_batch_list_while_settling_delays_never_resends(quick: Emulator) -> None:
    """The list is the evidence; while it answers 500 the job waits and looks again."""
    quick.faults = {"drop_after_create": 1, "server_error": {"list": 4}, "others": [("after", 6)]}
    out = _frame().claude.batch(SUM, client=quick.client(max_retries=0), **FAST)
    assert quick.count(*CREATE) == 1
    _check(quick, out, foreign_count=1)
