"""One JobStatus, changed in one locked place: a late cancel() cannot undo "ended"."""

from __future__ import annotations

import gc
import threading
import weakref
from typing import Any

import pandas as pd
from emulator_helpers import until as _until

from claude_lab._ledger import JobStatus, open_journal
from claude_lab._progress import Snapshot
from claude_lab.emulator import Emulator

SUM = "What is {a} + {b}? Answer with a single number."
FAST: dict[str, Any] = {"progress": None, "poll_interval": 0.02, "model": "claude-haiku-4-5"}


class _HeldClose:
    """A display whose final render waits on a gate: the worker has set the final status
    and not yet resolved the job's future, the window a cancel() once raced into."""

    def __init__(self) -> None:
        self.closing = threading.Event()
        self.gate = threading.Event()

    def update(self, snap: Snapshot) -> None:
        pass

    def close(self, snap: Snapshot) -> None:
        self.closing.set()
        assert self.gate.wait(30)


def test_cancel_right_after_the_worker_ends_keeps_ended(emu: Emulator) -> None:
    df = pd.DataFrame({"a": [1, 2, 3], "b": [4, 5, 6]})
    job = df.claude.batch(SUM, client=emu.client(), wait=False, **FAST)
    held = _HeldClose()
    job._display = held  # the batch cannot end before the clock moves, so this is in time
    _until(lambda: len(job.batch_ids) == 1)  # created at the emulator's current time
    emu.clock.advance(3600)
    assert held.closing.wait(30)
    assert job.status == JobStatus.ENDED and not job.done()

    job.cancel()  # between "ended" and the future resolving
    assert job.status == "ended"
    held.gate.set()
    out = job.result()
    assert job.status is JobStatus.ENDED
    assert (out["claude_status"] == "succeeded").all()
    assert open_journal().get_job(job.id).status == "ended"  # a re-run re-attaches


def test_status_is_a_str_shared_with_the_journal(emu: Emulator) -> None:
    job = pd.DataFrame({"a": [1], "b": [2]}).claude.batch(
        SUM, client=emu.client(), wait=False, **FAST
    )
    emu.wait_count("POST", "/v1/messages/batches")  # cancel a batch that exists, not a race
    job.cancel()
    # On the stopped clock the batch stays "canceling" until time moves.
    emu.wait_count("POST", "/v1/messages/batches/*/cancel")
    emu.clock.advance(3600)
    job.result()
    assert job.status is JobStatus.CANCELED
    assert f"{job.status}" == str(job.status) == "canceled"
    assert open_journal().get_job(job.id).status == JobStatus.CANCELED


def test_a_create_the_api_rejects_fails_the_job_and_a_rerun_sends_it(fast: Emulator) -> None:
    """A 403 on create made no batch: the job is "failed" (nothing at the API to wait
    for), not "interrupted", and the same call re-run sends the requests once."""
    import anthropic
    import pytest

    df = pd.DataFrame({"a": [1, 2, 3], "b": [4, 5, 6]})
    fast.faults.forbidden = {"create": 1}
    job = df.claude.batch(SUM, client=fast.client(), wait=False, **FAST)
    with pytest.raises(anthropic.PermissionDeniedError):
        job.result(timeout=60)
    assert job.status == JobStatus.FAILED
    assert open_journal().get_job(job.id).status == JobStatus.FAILED
    assert open_journal().pending_submissions(job.id) == []

    out = df.claude.batch(SUM, client=fast.client(), **FAST)
    assert out["claude_text"].tolist() == ["5", "7", "9"]
    assert fast.count("POST", "/v1/messages/batches") == 2  # the refused one, then one batch


def test_a_finished_job_is_freed_as_soon_as_its_handle_is_dropped(fast: Emulator) -> None:
    """Job and worker make no reference cycle: a run's results (16 MB per 100k rows) are
    freed when the last handle goes, not at the garbage collector's next full pass."""
    df = pd.DataFrame({"a": [1, 2, 3], "b": [4, 5, 6]})
    gc.collect()
    gc.disable()  # what only a full collection would free stays alive
    try:
        job = df.claude.batch(SUM, client=fast.client(), wait=False, **FAST)
        assert (job.result()["claude_status"] == "succeeded").all()
        for thread in threading.enumerate():
            if thread.name == f"claude_lab-{job.id}":
                thread.join(30)
        results = weakref.ref(job._worker.acc)
        again = job.retry()  # nothing failed: the table again, and still no cycle
        assert (again["claude_status"] == "succeeded").all()
        del job, again
        assert results() is None
    finally:
        gc.enable()
