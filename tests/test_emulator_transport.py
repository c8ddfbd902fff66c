"""The in-process transport answers exactly as the socket does, through the real SDK.

Each scenario runs once against an emulator reached in-process and once against
one on a 127.0.0.1 socket, both with the same seed and the same frozen clock; what
the SDK hands back (typed objects, events, raised errors) must be the same.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import anthropic
import pytest
from emulator_helpers import item_requests

from claude_lab.emulator import Clock, Emulator, serve

START = 1_790_000_000.0  # one simulated start for both emulators, so timestamps agree
TRANSPORTS = ("inprocess", "socket")
MODEL = "claude-haiku-4-5"


def _emulator(transport: str, **options: Any) -> Emulator:
    return serve(clock=Clock(0, start=START), transport=transport, **options)  # type: ignore[arg-type]


def _both(scenario: Callable[[Emulator], Any], **options: Any) -> list[Any]:
    out = []
    for transport in TRANSPORTS:
        with _emulator(transport, **options) as emu:
            out.append(scenario(emu))
    return out


def _anonymous(value: Any, emu: Emulator) -> str:
    """``value`` without what differs by design: the batch ids and request ids (random per
    emulator) and the base_url (a socket's port, or the in-process name)."""
    text = repr(value).replace(emu.base_url, "<base>")
    for k, batch in enumerate(emu.core.batch_report()):
        text = text.replace(batch["id"][-20:], f"<batch{k}>")
    return re.sub(r"req_emu[0-9a-f]{24}", "<request-id>", text)


def test_a_batch_end_to_end_is_the_same() -> None:
    def scenario(emu: Emulator) -> Any:
        client = emu.client(_strict_response_validation=True, max_retries=0)
        requests = item_requests(40)
        requests[3]["params"]["model"] = "claude-nope"  # an errored row
        batch = client.messages.batches.create(requests=requests)
        pending = client.messages.batches.retrieve(batch.id)
        emu.clock.advance(3600)
        ended = client.messages.batches.retrieve(batch.id)
        listed = client.messages.batches.list(limit=5)
        rows = [r.model_dump() for r in client.messages.batches.results(batch.id)]
        seen = [batch.model_dump(), pending.model_dump(), ended.model_dump()]
        return _anonymous([seen, listed.model_dump(), rows], emu)

    inprocess, sock = _both(scenario)
    assert "<batch0>" in inprocess and "errored" in inprocess and "succeeded" in inprocess
    assert inprocess == sock


def test_a_streamed_message_is_the_same_events_and_bytes() -> None:
    params: dict[str, Any] = {
        "model": MODEL,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [{"role": "user", "content": "What is 6 * 7? Explain at length."}],
    }

    def scenario(emu: Emulator) -> Any:
        client = emu.client(_strict_response_validation=True, max_retries=0)
        with client.messages.create(**params, max_tokens=2000, stream=True) as stream:
            events = [event.model_dump() for event in stream]
            headers = dict(stream.response.headers)
        with client.messages.stream(**params, max_tokens=2000) as helper:
            final = helper.get_final_message().model_dump()
        for name in ("date", "request-id"):
            headers.pop(name)
        return events, final, headers

    (events, final, headers), other = _both(scenario)
    assert [e["type"] for e in events][-1] == "message_stop"
    assert headers["transfer-encoding"] == "chunked"
    assert headers["content-type"] == "text/event-stream"
    assert (events, final, headers) == other


@pytest.mark.parametrize(
    "fault",
    ["drop_results", "drop_after_create", "rate_limit", "timeout_after_create", "held_create"],
)
def test_a_fault_reaches_the_sdk_the_same_way(fault: str) -> None:
    def scenario(emu: Emulator) -> Any:
        client = emu.client(max_retries=0)
        seen: list[Any] = []

        def attempt(call: Callable[[], Any]) -> None:
            try:
                seen.append(repr(call()))
            except Exception as exc:  # what the SDK raised, and the HTTP error behind it
                cause = exc.__cause__ if isinstance(exc, anthropic.APIError) else None
                seen.append((type(exc).__name__, str(exc), type(cause).__name__, str(cause)))

        def create() -> str:
            return client.messages.batches.create(requests=item_requests(3000)).id

        if fault == "drop_results":
            batch_id = create()
            emu.clock.advance(3600)
            emu.faults.drop_results = 1
            got: list[str] = []

            def read() -> int:
                for row in client.messages.batches.results(batch_id):
                    got.append(row.custom_id)
                return len(got)

            attempt(read)
            seen.append(len(got))
            attempt(read)  # the next download is whole
        elif fault == "drop_after_create":
            emu.faults.drop_after_create = 1
            attempt(create)
        elif fault == "rate_limit":
            emu.faults.rate_limit = {"list": 2}
            attempt(lambda: client.messages.batches.list().data)
            attempt(lambda: emu.client(max_retries=1).messages.batches.list().data)
        elif fault == "timeout_after_create":
            emu.faults = {"timeout_after_create": 1, "stall_seconds": 2.0}
            attempt(
                lambda: client.with_options(timeout=0.3).messages.batches.create(
                    requests=item_requests(3)
                )
            )
        else:
            with emu.faults.hold_creates() as gate:
                attempt(
                    lambda: client.with_options(timeout=0.3).messages.batches.create(
                        requests=item_requests(3)
                    )
                )
                assert gate.arrivals == 1
            emu.wait_count("POST", "/v1/messages/batches")
        # A create that failed on the client's side still made its batch.
        seen.append([b["custom_ids"][:1] for b in emu.core.batch_report()])
        seen.append([(r.method, r.path.count("/"), r.status) for r in emu.requests])
        return _anonymous(seen, emu)

    inprocess, sock = _both(scenario)
    assert "Error" in inprocess
    assert inprocess == sock


def test_an_inprocess_emulator_has_no_socket_and_serves_only_its_own_clients() -> None:
    with serve(speed=0) as emu:
        assert emu.transport == "inprocess"
        with pytest.raises(RuntimeError, match="no socket"):
            _ = emu.port
        client = emu.client(max_retries=0)
        assert client.messages.batches.list().data == []
        elsewhere = client.with_options(base_url="http://127.0.0.1:9")
        with pytest.raises(anthropic.APIConnectionError):
            elsewhere.messages.batches.list()
    with pytest.raises(anthropic.APIConnectionError):  # stopped: nothing answers any more
        client.messages.batches.list()


def test_latency_holds_an_inprocess_call_past_the_clients_timeout() -> None:
    with serve(speed=0, faults={"latency": 1.0}) as emu:
        client = emu.client(max_retries=0, timeout=0.2)
        with pytest.raises(anthropic.APITimeoutError):
            client.messages.batches.create(requests=item_requests(2))
        # As behind a socket, the emulator still handles the call the client gave up on.
        emu.wait_count("POST", "/v1/messages/batches")
        emu.faults.latency = 0
        assert [b.request_counts.processing for b in client.messages.batches.list()] == [2]


def test_async_client_streams_and_times_out_inprocess() -> None:
    import asyncio

    async def main(emu: Emulator) -> list[str]:
        async with emu.async_client(max_retries=0) as client:
            stream = await client.messages.create(
                model=MODEL,
                max_tokens=50,
                stream=True,
                messages=[{"role": "user", "content": "What is 2 + 3?"}],
            )
            kinds = [event.type async for event in stream]
            emu.faults.latency = 1.0
            with pytest.raises(anthropic.APITimeoutError):
                await client.with_options(timeout=0.2).messages.batches.list()
            return kinds

    with serve(speed=0) as emu:
        kinds = asyncio.run(main(emu))
        assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
