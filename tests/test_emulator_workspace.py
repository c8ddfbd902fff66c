"""The emulator's other workspace users and the create faults that lose a response after
the batch exists: what a client sees through the real SDK."""

from __future__ import annotations

import anthropic
import pytest
from emulator_helpers import item_requests, strict_client

from claude_lab.emulator import Faults, serve


def test_other_users_batches_before_during_and_after_a_create() -> None:
    with serve(speed=0) as emu:
        emu.faults = {"others": [("before", 3), ("during", 4), ("after", 5)]}
        client = strict_client(emu)
        ours = client.messages.batches.create(requests=item_requests(2))
        listed = [b.id for b in client.messages.batches.list(limit=20)]  # fires "after"
        report = emu.core.batch_report()
        sizes = [(len(b["custom_ids"]), b["foreign"]) for b in report]
        assert sizes == [(3, True), (2, False), (4, True), (5, True)]
        assert set(listed) == {b["id"] for b in report} and ours.id in listed
        assert emu.count("POST", "/v1/messages/batches") == 1  # theirs are not logged
        emu.clock.advance(3600)
        foreign = report[0]["id"]
        assert client.messages.batches.retrieve(foreign).processing_status == "ended"
        ids = {r.custom_id for r in client.messages.batches.results(foreign)}
        assert ids.isdisjoint(f"r{i}" for i in range(2))
        emu.faults = {"others": [("during", 1)]}
        assert emu.faults.others == (("during", 1),)  # armed until the next create


def test_error_after_create_answers_500_yet_the_batch_exists() -> None:
    with serve(speed=0, faults={"error_after_create": 1}) as emu:
        client = strict_client(emu)
        with pytest.raises(anthropic.InternalServerError):
            client.messages.batches.create(requests=item_requests(3))
        assert [b.request_counts.processing for b in client.messages.batches.list()] == [3]


def test_timeout_after_create_times_out_yet_the_batch_exists() -> None:
    with serve(speed=0, faults={"timeout_after_create": 1, "stall_seconds": 2.0}) as emu:
        client = emu.client(max_retries=0, timeout=0.3)
        with pytest.raises(anthropic.APITimeoutError):
            client.messages.batches.create(requests=item_requests(3))
        assert [b.request_counts.processing for b in client.messages.batches.list()] == [3]


@pytest.mark.parametrize("bad", [[("soon", 3)], [("before", 0)]])
def test_others_are_checked(bad: list[tuple[str, int]]) -> None:
    with pytest.raises(ValueError, match="others"):
        Faults(others=bad)  # type: ignore[arg-type]
