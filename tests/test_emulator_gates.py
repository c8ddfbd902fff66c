"""Gates and request waits: tests act at exact moments of a call, with no sleeps."""

from __future__ import annotations

import threading

import pytest
from emulator_helpers import item_requests
from emulator_helpers import strict_client as raw_client

from claude_lab.emulator import Emulator

CREATE = ("POST", "/v1/messages/batches")


def _create_in_thread(emu: Emulator, out: list[str]) -> threading.Thread:
    client = raw_client(emu)
    thread = threading.Thread(
        target=lambda: out.append(client.messages.batches.create(requests=item_requests(2)).id)
    )
    thread.start()
    return thread


def test_a_held_create_makes_no_batch_until_released(emu: Emulator) -> None:
    made: list[str] = []
    with emu.faults.hold_creates() as gate:
        thread = _create_in_thread(emu, made)
        gate.wait_arrived()
        # In flight: it reached the API, but there is no batch and no answer yet.
        assert gate.arrivals == 1 and not gate.released
        assert raw_client(emu).messages.batches.list().data == []
        assert made == [] and emu.count(*CREATE) == 0
    thread.join(timeout=30)
    assert len(made) == 1 and emu.count(*CREATE) == 1


def test_a_gate_holds_only_as_many_creates_as_asked(emu: Emulator) -> None:
    gate = emu.faults.hold_creates(count=1)
    made: list[str] = []
    first = _create_in_thread(emu, made)
    gate.wait_arrived()
    second = _create_in_thread(emu, made)
    emu.wait_count(*CREATE, n=1)  # the second went straight through ...
    assert gate.arrivals == 2 and emu.count(*CREATE) == 1  # ... while the first is held
    gate.release()
    first.join(timeout=30)
    second.join(timeout=30)
    assert len(made) == 2 and emu.count(*CREATE) == 2


def test_waits_that_cannot_happen_say_so(emu: Emulator) -> None:
    gate = emu.faults.hold_creates()
    with pytest.raises(TimeoutError, match="0 of 1 call"):
        gate.wait_arrived(timeout=0.01)
    with pytest.raises(TimeoutError, match="0 of 1 POST"):
        emu.wait_count(*CREATE, timeout=0.01)
    gate.release()
    with pytest.raises(ValueError):
        emu.faults.hold_creates(count=0)
