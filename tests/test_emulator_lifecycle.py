"""Batch lifecycle on the emulator's clock: every transition, driven by clock.advance."""

from __future__ import annotations

import time
from typing import Any

import anthropic
import pytest
from emulator_helpers import DAY, item_requests
from emulator_helpers import strict_client as client

from claude_lab.emulator import Clock, Emulator, serve


def requests(n: int) -> list[dict[str, Any]]:
    return item_requests(n, max_tokens=32)


def test_clock_stands_still_at_speed_zero_and_moves_when_advanced() -> None:
    clock = Clock(speed=0, start=1_000.0)
    assert clock.now() == 1_000.0
    assert clock.advance(5) == 1_005.0
    assert clock.now() == 1_005.0
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_clock_runs_scaled_by_speed_plus_advances() -> None:
    clock = Clock(speed=1000, start=0.0)
    clock.advance(10)
    first = clock.now()
    time.sleep(0.01)  # the only sleep: this test is about real time itself
    assert clock.now() - first >= 5  # 10 ms x 1000
    assert first >= 10


def test_counts_stay_processing_until_the_end_by_default(emu: Emulator) -> None:
    c = client(emu)
    batch = c.messages.batches.create(requests=requests(64))  # 16 at a time, ~0.05 s each
    emu.clock.advance(0.1)
    mid = c.messages.batches.retrieve(batch.id)
    assert mid.processing_status == "in_progress"
    assert mid.request_counts.processing == 64
    assert mid.request_counts.succeeded == 0
    assert mid.ended_at is None and mid.results_url is None
    emu.clock.advance(10)
    end = c.messages.batches.retrieve(batch.id)
    assert end.processing_status == "ended"
    assert end.request_counts.processing == 0 and end.request_counts.succeeded == 64
    assert end.ended_at is not None
    assert 0 < (end.ended_at - end.created_at).total_seconds() < 1


def test_incremental_counts_move_as_requests_finish() -> None:
    with serve(speed=0, counts="incremental") as emu:
        c = client(emu)
        batch = c.messages.batches.create(requests=requests(64))
        seen = []
        for _ in range(8):
            emu.clock.advance(0.05)
            counts = c.messages.batches.retrieve(batch.id).request_counts
            assert counts.processing + counts.succeeded == 64
            seen.append(counts.succeeded)
        assert seen == sorted(seen)
        assert 0 < seen[1] < 64
        assert seen[-1] == 64


def test_create_response_is_never_already_ended() -> None:
    with serve(speed=0, request_seconds=0, concurrency=1000) as emu:
        c = client(emu)
        batch = c.messages.batches.create(requests=requests(10))
        assert batch.processing_status == "in_progress"
        assert c.messages.batches.retrieve(batch.id).processing_status == "ended"


def test_concurrency_limit_spreads_the_work() -> None:
    with serve(speed=0, request_seconds=1.0, concurrency=2, jitter=0) as emu:
        c = client(emu)
        batch = c.messages.batches.create(requests=requests(10))
        emu.clock.advance(4.5)
        assert c.messages.batches.retrieve(batch.id).processing_status == "in_progress"
        emu.clock.advance(0.5)
        end = c.messages.batches.retrieve(batch.id)
        assert end.processing_status == "ended"
        assert end.ended_at is not None
        assert (end.ended_at - end.created_at).total_seconds() == pytest.approx(5.0)


def test_cancel_goes_through_canceling_to_ended() -> None:
    with serve(speed=0, request_seconds=10, concurrency=2, cancel_seconds=3) as emu:
        c = client(emu)
        batch = c.messages.batches.create(requests=requests(20))
        emu.clock.advance(1)
        canceling = c.messages.batches.cancel(batch.id)
        assert canceling.processing_status == "canceling"
        assert canceling.cancel_initiated_at is not None
        assert canceling.results_url is None
        emu.clock.advance(1)
        assert c.messages.batches.retrieve(batch.id).processing_status == "canceling"
        emu.clock.advance(60)
        ended = c.messages.batches.retrieve(batch.id)
        assert ended.processing_status == "ended"
        assert ended.cancel_initiated_at == canceling.cancel_initiated_at
        assert ended.ended_at is not None
        assert (ended.ended_at - ended.cancel_initiated_at).total_seconds() == pytest.approx(3)
        assert ended.request_counts.canceled == 20  # nothing finished within 4 s
        assert {r.result.type for r in c.messages.batches.results(batch.id)} == {"canceled"}


def test_unfinished_requests_expire_24_hours_after_creation() -> None:
    with serve(speed=0, request_seconds=3_600, concurrency=4, jitter=0) as emu:
        c = client(emu)
        batch = c.messages.batches.create(requests=requests(100))  # needs 25 h
        emu.clock.advance(DAY - 1)
        assert c.messages.batches.retrieve(batch.id).processing_status == "in_progress"
        emu.clock.advance(1)
        ended = c.messages.batches.retrieve(batch.id)
        assert ended.processing_status == "ended"
        assert ended.ended_at == ended.expires_at
        assert ended.request_counts.succeeded == 96
        assert ended.request_counts.expired == 4
        kinds = [r.result.type for r in c.messages.batches.results(batch.id)]
        assert kinds.count("expired") == 4 and kinds.count("succeeded") == 96


def test_results_are_archived_after_29_days(emu: Emulator) -> None:
    c = client(emu)
    batch = c.messages.batches.create(requests=requests(3))
    emu.clock.advance(29 * DAY - 1)
    assert c.messages.batches.retrieve(batch.id).results_url is not None
    emu.clock.advance(1)
    archived = c.messages.batches.retrieve(batch.id)
    assert archived.archived_at is not None
    assert (archived.archived_at - archived.created_at).total_seconds() == 29 * DAY
    assert archived.results_url is None
    assert archived.processing_status == "ended"
    with pytest.raises(anthropic.AnthropicError, match="results_url"):
        c.messages.batches.results(batch.id)
    with pytest.raises(anthropic.NotFoundError):
        c.get(f"/v1/messages/batches/{batch.id}/results", cast_to=bytes)


def test_results_before_the_end_are_refused(emu: Emulator) -> None:
    c = client(emu)
    batch = c.messages.batches.create(requests=requests(3))
    with pytest.raises(anthropic.AnthropicError, match="results_url"):
        c.messages.batches.results(batch.id)
    with pytest.raises(anthropic.BadRequestError) as err:
        c.get(f"/v1/messages/batches/{batch.id}/results", cast_to=bytes)
    assert "has not finished processing" in str(err.value)


def test_timestamps_are_rfc3339_utc_with_z(emu: Emulator) -> None:
    c = client(emu)
    batch = c.messages.batches.create(requests=requests(1))
    raw = c.messages.batches.with_raw_response.retrieve(batch.id).http_response.json()
    for key in ("created_at", "expires_at"):
        assert raw[key].endswith("Z") and "T" in raw[key]


def test_default_options_end_a_few_hundred_requests_within_two_seconds() -> None:
    with serve() as emu:  # speed=1: simulated time runs with real time
        c = client(emu)
        batch = c.messages.batches.create(requests=requests(300))
        emu.clock.advance(2)  # what two real seconds would do, without waiting for them
        assert c.messages.batches.retrieve(batch.id).processing_status == "ended"
