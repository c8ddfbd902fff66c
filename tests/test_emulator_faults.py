"""Fault injection: errored and expired rows, endpoint errors, dropped streams, latency."""

from __future__ import annotations

import time
from typing import Any

import anthropic
import httpx2
import orjson
import pytest
from anthropic.types.messages import MessageBatchIndividualResponse
from emulator_helpers import DAY, item_requests
from emulator_helpers import strict_client as raw_client

from claude_lab.emulator import Emulator, Faults, serve


def requests(n: int) -> list[dict[str, Any]]:
    return item_requests(n, max_tokens=16)


def errored_ids(seed: int, batches: int = 1) -> list[list[str]]:
    out = []
    with serve(
        speed=0, seed=seed, faults={"error_rate": 0.3, "error_types": ["overloaded_error"]}
    ) as emu:
        client = raw_client(emu)
        for _ in range(batches):
            batch = client.messages.batches.create(requests=requests(100))
            emu.clock.advance(60)
            counts = client.messages.batches.retrieve(batch.id).request_counts
            rows = list(client.messages.batches.results(batch.id))
            bad = sorted(r.custom_id for r in rows if r.result.type == "errored")
            assert counts.errored == len(bad) and counts.succeeded == 100 - len(bad)
            for r in rows:
                if r.result.type == "errored":
                    assert r.result.error.error.type == "overloaded_error"
            out.append(bad)
    return out


def test_errored_rows_are_deterministic_by_seed_and_differ_between_batches() -> None:
    first, second = errored_ids(seed=7, batches=2)
    assert 15 < len(first) < 45
    assert errored_ids(seed=7) == [first]
    assert first != second  # a retried batch does not fail on the same rows again
    assert errored_ids(seed=8) != [first]


def test_errored_lines_validate_as_sdk_models() -> None:
    with serve(
        speed=0, faults=Faults(error_rate=1.0, error_types=("api_error", "rate_limit_error"))
    ) as emu:
        client = raw_client(emu)
        batch = client.messages.batches.create(requests=requests(20))
        emu.clock.advance(60)
        body = client.get(f"/v1/messages/batches/{batch.id}/results", cast_to=bytes)
        kinds = set()
        for line in body.splitlines():
            row = MessageBatchIndividualResponse.model_validate(orjson.loads(line))
            assert row.result.type == "errored"
            assert row.result.error.type == "error"
            kinds.add(row.result.error.error.type)
        assert kinds <= {"api_error", "rate_limit_error"}


def test_expired_rows_end_the_batch_at_24_hours() -> None:
    with serve(speed=0, faults={"expire_rate": 0.25}) as emu:
        client = raw_client(emu)
        batch = client.messages.batches.create(requests=requests(40))
        emu.clock.advance(3600)
        assert client.messages.batches.retrieve(batch.id).processing_status == "in_progress"
        emu.clock.advance(DAY)
        ended = client.messages.batches.retrieve(batch.id)
        assert ended.processing_status == "ended" and ended.ended_at == ended.expires_at
        assert 0 < ended.request_counts.expired < 40
        assert ended.request_counts.expired + ended.request_counts.succeeded == 40
        kinds = [r.result.type for r in client.messages.batches.results(batch.id)]
        assert kinds.count("expired") == ended.request_counts.expired


@pytest.mark.parametrize(
    ("field", "status", "kind", "error"),
    [
        ("rate_limit", 429, "rate_limit_error", anthropic.RateLimitError),
        ("server_error", 500, "api_error", anthropic.InternalServerError),
        ("overloaded", 529, "overloaded_error", anthropic.InternalServerError),
    ],
)
def test_endpoint_faults_answer_the_next_n_calls(
    emu: Emulator, field: str, status: int, kind: str, error: type[Exception]
) -> None:
    setattr(emu.faults, field, 2)  # switched on at run time
    client = raw_client(emu)
    for _ in range(2):
        with pytest.raises(error) as err:
            client.messages.batches.list()
        assert err.value.status_code == status  # type: ignore[attr-defined]
        assert err.value.body["error"]["type"] == kind  # type: ignore[attr-defined]
        headers = err.value.response.headers  # type: ignore[attr-defined]
        assert int(headers["retry-after-ms"]) <= 100
    assert client.messages.batches.list().data == []
    assert getattr(emu.faults, field) == 0


def test_sdk_retries_through_endpoint_faults_with_retry_after_ms(emu: Emulator) -> None:
    emu.faults.rate_limit = 1
    emu.faults.overloaded = 1
    client = emu.client(_strict_response_validation=True)  # default: two retries
    batch = client.messages.batches.create(requests=requests(2))
    assert batch.processing_status == "in_progress"
    assert [r.status for r in emu.requests] == [429, 529, 200]
    assert emu.count("POST", "/v1/messages/batches") == 3
    assert len(client.messages.batches.list().data) == 1  # retried creates made one batch


def test_endpoint_faults_can_target_one_route() -> None:
    with serve(speed=0, faults={"server_error": {"retrieve": 1}}) as emu:
        client = raw_client(emu)
        batch = client.messages.batches.create(requests=requests(1))
        client.messages.batches.list()
        with pytest.raises(anthropic.InternalServerError):
            client.messages.batches.retrieve(batch.id)
        assert client.messages.batches.retrieve(batch.id).id == batch.id


def test_transient_404_right_after_create() -> None:
    with serve(speed=0, faults={"not_found_after_create": 2}) as emu:
        client = raw_client(emu)
        batch = client.messages.batches.create(requests=requests(1))
        for _ in range(2):
            with pytest.raises(anthropic.NotFoundError):
                client.messages.batches.retrieve(batch.id)
        assert client.messages.batches.retrieve(batch.id).id == batch.id


def test_results_stream_dropped_halfway_then_whole() -> None:
    with serve(speed=0, faults={"drop_results": 1}) as emu:
        client = raw_client(emu)
        batch = client.messages.batches.create(requests=requests(3000))
        emu.clock.advance(3600)
        got = []
        with pytest.raises(httpx2.RemoteProtocolError):
            for row in client.messages.batches.results(batch.id):
                got.append(row.custom_id)
        assert 0 < len(got) < 3000
        assert len(list(client.messages.batches.results(batch.id))) == 3000
        assert emu.faults.drop_results == 0


def test_latency_slows_every_response(emu: Emulator) -> None:
    emu.faults.latency = 0.2
    client = raw_client(emu)
    started = time.monotonic()
    client.messages.batches.list()
    assert time.monotonic() - started >= 0.2


def test_faults_accept_a_dict_and_can_be_replaced(emu: Emulator) -> None:
    emu.faults = {"rate_limit": 1}
    assert isinstance(emu.faults, Faults) and emu.faults.rate_limit == 1
    with pytest.raises(TypeError, match="unknown fault option"):
        serve(faults={"explode": True})
    with pytest.raises(ValueError):
        Faults(error_rate=2)
    with pytest.raises(ValueError):
        Faults(error_types=("request_too_large",))
    with pytest.raises(ValueError):
        Faults(rate_limit={"nowhere": 1})
