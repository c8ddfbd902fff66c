"""The batches routes through the real SDK, with its strict response validation on."""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic
import orjson
import pytest
from anthropic.types.messages import MessageBatch, MessageBatchIndividualResponse

from claude_lab.emulator import Emulator, serve


def requests(n: int, prompt: str = "What is {i} + 25?", **params: Any) -> list[dict[str, Any]]:
    base = {"model": "claude-haiku-4-5", "max_tokens": 64, **params}
    return [
        {
            "custom_id": f"row-{i}",
            "params": {**base, "messages": [{"role": "user", "content": prompt.format(i=i)}]},
        }
        for i in range(n)
    ]


def strict(emu: Emulator) -> anthropic.Anthropic:
    return emu.client(_strict_response_validation=True, max_retries=0)


def test_create_retrieve_results_round_trip(emu: Emulator) -> None:
    client = strict(emu)
    batch = client.messages.batches.create(requests=requests(30))
    assert batch.id.startswith("msgbatch_")
    assert batch.processing_status == "in_progress"
    assert batch.request_counts.processing == 30
    assert batch.results_url is None
    assert batch.expires_at.timestamp() - batch.created_at.timestamp() == pytest.approx(86_400)

    emu.clock.advance(60)
    done = client.messages.batches.retrieve(batch.id)
    assert done.processing_status == "ended"
    assert done.request_counts.succeeded == 30
    assert done.results_url == f"{emu.base_url}/v1/messages/batches/{batch.id}/results"

    results = list(client.messages.batches.results(batch.id))
    assert sorted(r.custom_id for r in results) == sorted(f"row-{i}" for i in range(30))
    by_id = {r.custom_id: r for r in results}
    row = by_id["row-17"].result
    assert row.type == "succeeded"
    assert row.message.content[0].type == "text"
    assert row.message.content[0].text == "The answer is 42."
    assert row.message.usage.service_tier == "batch"


def test_results_file_is_clean_jsonl_and_every_line_validates(emu: Emulator) -> None:
    client = strict(emu)
    batch = client.messages.batches.create(requests=requests(40))
    emu.clock.advance(60)
    raw = client.messages.batches.with_raw_response.retrieve(batch.id)
    assert raw.headers["request-id"].startswith("req_")
    response = client.get(
        f"/v1/messages/batches/{batch.id}/results",
        cast_to=bytes,
        options={"headers": {"Accept": "application/binary"}},
    )
    assert isinstance(response, bytes)
    assert response.endswith(b"\n")
    lines = response.split(b"\n")[:-1]
    assert len(lines) == 40
    assert all(line for line in lines)  # no blank lines
    for line in lines:
        MessageBatchIndividualResponse.model_validate(orjson.loads(line))


def test_results_order_is_shuffled_deterministically_by_seed() -> None:
    def order(seed: int) -> list[str]:
        with serve(speed=0, seed=seed) as emu:
            client = emu.client()
            batch = client.messages.batches.create(requests=requests(50))
            emu.clock.advance(60)
            return [r.custom_id for r in client.messages.batches.results(batch.id)]

    first, again, other = order(1), order(1), order(2)
    assert first == again
    assert first != other
    assert first != [f"row-{i}" for i in range(50)]


def test_list_is_newest_first_and_auto_paging_terminates(emu: Emulator) -> None:
    client = strict(emu)
    ids = []
    for _ in range(7):
        ids.append(client.messages.batches.create(requests=requests(1)).id)
        emu.clock.advance(1)
    page = client.messages.batches.list(limit=3)
    assert [b.id for b in page.data] == ids[::-1][:3]
    assert page.has_more is True
    assert page.first_id == ids[-1] and page.last_id == ids[-3]
    assert [b.id for b in client.messages.batches.list(limit=3)] == ids[::-1]  # auto-paging
    assert [b.id for b in client.messages.batches.list()] == ids[::-1]

    after = client.messages.batches.list(limit=2, after_id=ids[3])
    assert [b.id for b in after.data] == [ids[2], ids[1]]
    assert after.has_more is True
    before = client.messages.batches.list(limit=2, before_id=ids[3])
    assert [b.id for b in before.data] == [ids[5], ids[4]]
    assert before.has_more is True
    assert [b.id for b in client.messages.batches.list(limit=2, before_id=ids[3])] == [
        ids[5],
        ids[4],
        ids[6],
    ]
    last = client.messages.batches.list(limit=5, after_id=ids[0])
    assert last.data == [] and last.has_more is False
    assert last.first_id is None and last.last_id is None


def test_cancel_then_delete(emu: Emulator) -> None:
    client = strict(emu)
    batch = client.messages.batches.create(requests=requests(200))
    canceling = client.messages.batches.cancel(batch.id)
    assert canceling.processing_status == "canceling"
    assert canceling.cancel_initiated_at is not None
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.batches.delete(batch.id)
    assert err.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert "cannot be deleted" in str(err.value)

    emu.clock.advance(5)
    ended = client.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended"
    counts = ended.request_counts
    # Requests in flight while canceling may still finish, as the API documents.
    assert counts.canceled > 0 and counts.canceled + counts.succeeded == 200
    kinds = [r.result.type for r in client.messages.batches.results(batch.id)]
    assert kinds.count("canceled") == counts.canceled

    deleted = client.messages.batches.delete(batch.id)
    assert deleted.id == batch.id and deleted.type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve(batch.id)
    assert batch.id not in [b.id for b in client.messages.batches.list()]


def test_cancel_after_end_changes_nothing(emu: Emulator) -> None:
    client = strict(emu)
    batch = client.messages.batches.create(requests=requests(3))
    emu.clock.advance(60)
    after = client.messages.batches.cancel(batch.id)
    assert after.processing_status == "ended"
    assert after.cancel_initiated_at is None
    assert after.request_counts.succeeded == 3


def test_beta_query_and_header_are_accepted_and_ignored(emu: Emulator) -> None:
    client = strict(emu)
    batch = client.post(
        "/v1/messages/batches?beta=true",
        body={"requests": requests(2)},
        cast_to=MessageBatch,
        options={"headers": {"anthropic-beta": "message-batches-2024-09-24"}},
    )
    again = client.get(
        f"/v1/messages/batches/{batch.id}?beta=true",
        cast_to=MessageBatch,
        options={"headers": {"anthropic-beta": "message-batches-2024-09-24"}},
    )
    assert again.id == batch.id


def test_relative_results_path_works_too(emu: Emulator) -> None:
    client = strict(emu)
    batch = client.messages.batches.create(requests=requests(2))
    emu.clock.advance(60)
    body = client.get(f"/v1/messages/batches/{batch.id}/results", cast_to=bytes)
    assert body.count(b"\n") == 2


def test_async_client_every_batch_route(emu: Emulator) -> None:
    async def main() -> None:
        async with emu.async_client(_strict_response_validation=True, max_retries=0) as client:
            batch = await client.messages.batches.create(requests=requests(5))
            assert (await client.messages.batches.retrieve(batch.id)).processing_status == (
                "in_progress"
            )
            other = await client.messages.batches.create(requests=requests(5))
            await client.messages.batches.cancel(other.id)
            emu.clock.advance(60)
            listed = [b.id async for b in client.messages.batches.list(limit=1)]
            assert listed == [other.id, batch.id]
            results = [r async for r in await client.messages.batches.results(batch.id)]
            assert len(results) == 5
            deleted = await client.messages.batches.delete(other.id)
            assert deleted.type == "message_batch_deleted"

    asyncio.run(main())


def test_duplicate_create_is_a_new_batch(emu: Emulator) -> None:
    """No idempotency key exists: a retried create is just another batch."""
    client = strict(emu)
    first = client.messages.batches.create(requests=requests(2))
    second = client.messages.batches.create(requests=requests(2))
    assert first.id != second.id
    assert emu.count("POST", "/v1/messages/batches") == 2
