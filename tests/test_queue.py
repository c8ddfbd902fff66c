"""Queue-aware submission: waves under max_queued, and a full organisation queue (429)."""

from __future__ import annotations

from typing import Any

import anthropic
import pandas as pd
import pytest
from emulator_helpers import until as _until

import claude_lab
from claude_lab.emulator import Emulator

SUM = "What is {a} + {b}? Answer with a single number."
FAST: dict[str, Any] = {"progress": None, "poll_interval": 0.02, "model": "claude-haiku-4-5"}
CREATES = "/v1/messages/batches"


def _frame(n: int) -> pd.DataFrame:
    return pd.DataFrame({"a": range(n), "b": range(100, 100 + n)})


def _refused(emu: Emulator) -> int:
    return sum(r.status == 429 and r.path == CREATES for r in emu.requests)


def test_a_job_over_max_queued_goes_in_waves(emu: Emulator) -> None:
    emu.queue_limit = 10
    job = _frame(25).claude.batch(SUM, client=emu.client(), wait=False, max_queued=10, **FAST)
    for wave in (1, 2, 3):
        _until(lambda wave=wave: len(job.batch_ids) == wave)  # type: ignore[misc]
        # The next wave waits for this one: nothing more is created meanwhile.
        assert emu.count("POST", CREATES) == wave
        emu.clock.advance(3600)
    out = job.result()
    assert (out["claude_status"] == "succeeded").all() and len(out) == 25
    sizes = [
        emu.client().messages.batches.retrieve(b).request_counts.succeeded for b in job.batch_ids
    ]
    assert sizes == [10, 10, 5]
    assert _refused(emu) == 0  # never over the organisation's queue


def test_a_full_queue_waits_and_retries_the_wave(emu: Emulator) -> None:
    emu.queue_limit = 10
    client = emu.client()
    other = [
        {"custom_id": f"other-{i}", "params": {"model": "claude-haiku-4-5", "max_tokens": 8,
         "messages": [{"role": "user", "content": "hi"}]}}
        for i in range(8)
    ]  # fmt: skip
    client.messages.batches.create(requests=other)  # another job of the organisation
    with pytest.raises(anthropic.RateLimitError, match="queue is full"):
        client.with_options(max_retries=0).messages.batches.create(requests=other)

    job = _frame(5).claude.batch(SUM, client=client, wait=False, **FAST)
    # Ours: a create refused three times (the SDK-style retries), then the wave again.
    _until(lambda: _refused(emu) >= 1 + 3 + 1)
    assert job.batch_ids == [] and not job.done()
    assert job.status == "submitting"

    emu.clock.advance(3600)  # the other job's batch ends: room in the queue
    _until(lambda: len(job.batch_ids) == 1)
    emu.clock.advance(3600)
    with pytest.warns(RuntimeWarning, match=r"queue is probably full.*max_queued="):
        out = job.result()
    assert (out["claude_status"] == "succeeded").all()
    assert claude_lab.jobs()["succeeded"].item() == 5


def test_max_queued_is_checked_before_sending(emu: Emulator) -> None:
    for bad in (0, -5, 2.5, True, "10"):
        with pytest.raises(claude_lab.InputError, match="max_queued"):
            _frame(3).claude.batch(SUM, client=emu.client(), max_queued=bad, **FAST)
    assert emu.requests == []
