"""Request validation: the API's status codes, error types and error body shape."""

from __future__ import annotations

import socket
from typing import Any

import anthropic
import orjson
import pytest

from claude_lab.emulator import Emulator, serve
from claude_lab.emulator._validation import MAX_BATCH_BYTES

HEADERS = {"x-api-key": "k", "anthropic-version": "2023-06-01", "content-type": "application/json"}


def call(
    emu: Emulator,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    with emu.http_client(timeout=10) as http:
        data = body if isinstance(body, bytes) or body is None else orjson.dumps(body)
        headers = HEADERS if headers is None else headers
        response = http.request(method, path, content=data, headers=headers)
        return response.status_code, dict(response.headers), orjson.loads(response.content)


def params(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": "claude-haiku-4-5",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "hi"}],
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def batch(n: int = 3, **overrides: Any) -> dict[str, Any]:
    return {"requests": [{"custom_id": f"r{i}", "params": params(**overrides)} for i in range(n)]}


def assert_error(result: tuple[int, dict[str, str], Any], status: int, kind: str) -> str:
    code, headers, body = result
    assert code == status, body
    assert headers["content-type"] == "application/json"
    assert headers["request-id"].startswith("req_")
    assert body["type"] == "error"
    assert body["error"]["type"] == kind
    assert body["request_id"] == headers["request-id"]
    return str(body["error"]["message"])


def test_both_auth_styles_and_both_versions(emu: Emulator) -> None:
    for auth in ({"x-api-key": "k1"}, {"authorization": "Bearer k2"}):
        for version in ("2023-06-01", "2026-10-21"):
            headers = {**auth, "anthropic-version": version}
            status, _, body = call(emu, "POST", "/v1/messages/batches", batch(1), headers)
            assert status == 200 and body["type"] == "message_batch"


def test_sdk_x_api_key_style_works(emu: Emulator) -> None:
    client = emu.client(
        api_key=None,
        auth_token=None,
        default_headers={"X-Api-Key": "legacy", "anthropic-version": "2023-06-01"},
        _strict_response_validation=True,
    )
    assert client.messages.batches.create(requests=batch(1)["requests"]).id


@pytest.mark.parametrize(
    "headers",
    [
        {"anthropic-version": "2023-06-01"},
        {"anthropic-version": "2023-06-01", "x-api-key": ""},
        {"anthropic-version": "2023-06-01", "authorization": "Bearer "},
        {"anthropic-version": "2023-06-01", "authorization": "Basic abc"},
    ],
)
def test_missing_or_empty_key_is_401(emu: Emulator, headers: dict[str, str]) -> None:
    message = assert_error(
        call(emu, "POST", "/v1/messages/batches", batch(1), headers), 401, "authentication_error"
    )
    assert "x-api-key" in message


def test_sdk_sees_401_as_authentication_error(emu: Emulator) -> None:
    client = emu.client(max_retries=0, default_headers={"Authorization": anthropic.Omit()})
    with pytest.raises(anthropic.AuthenticationError):
        client.messages.batches.list()


def test_missing_version_header_is_400(emu: Emulator) -> None:
    assert_error(
        call(emu, "GET", "/v1/messages/batches", headers={"x-api-key": "k"}),
        400,
        "invalid_request_error",
    )


def test_malformed_json_is_400(emu: Emulator) -> None:
    message = assert_error(
        call(emu, "POST", "/v1/messages/batches", b'{"requests": ['), 400, "invalid_request_error"
    )
    assert "parsing the body" in message


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({}, "requests: Field required"),
        ({"requests": {}}, "requests: Input should be a valid list"),
        ({"requests": []}, "at least 1 item"),
        ({"requests": [1]}, "requests.0: Input should be a valid dictionary"),
        ({"requests": [{"custom_id": "a"}]}, "requests.0.params: Field required"),
        ({"requests": [{"custom_id": "a", "params": {}, "x": 1}]}, "requests.0.x: Extra inputs"),
    ],
)
def test_bad_batch_shape_is_400(emu: Emulator, body: Any, needle: str) -> None:
    message = assert_error(
        call(emu, "POST", "/v1/messages/batches", body), 400, "invalid_request_error"
    )
    assert needle in message


def test_more_than_100000_requests_is_400(emu: Emulator) -> None:
    body = b'{"requests":[' + b",".join([b"{}"] * 100_001) + b"]}"  # counted before items
    message = assert_error(
        call(emu, "POST", "/v1/messages/batches", body), 400, "invalid_request_error"
    )
    assert "at most 100000" in message


@pytest.mark.parametrize("custom_id", ["", "has space", "x" * 65, "ünïcode", 7, None])
def test_bad_custom_id_names_the_index(emu: Emulator, custom_id: Any) -> None:
    body = batch(5)
    body["requests"][3]["custom_id"] = custom_id
    message = assert_error(
        call(emu, "POST", "/v1/messages/batches", body), 400, "invalid_request_error"
    )
    assert message.startswith("requests.3.custom_id")
    assert "^[a-zA-Z0-9_-]{1,64}$" in message


def test_duplicate_custom_id_names_both_indexes(emu: Emulator) -> None:
    body = batch(5)
    body["requests"][4]["custom_id"] = "r1"
    message = assert_error(
        call(emu, "POST", "/v1/messages/batches", body), 400, "invalid_request_error"
    )
    assert message.startswith("requests.4.custom_id") and "requests.1.custom_id" in message


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"model": None}, "requests.1.params.model: Field required"),
        ({"max_tokens": None}, "requests.1.params.max_tokens: Field required"),
        ({"messages": None}, "requests.1.params.messages: Field required"),
        (
            {"max_tokens": 0},
            "requests.1.params.max_tokens: Input should be greater than or equal to 1",
        ),
        ({"max_tokens": "10"}, "max_tokens: Input should be a valid integer"),
        ({"messages": []}, "messages: at least one message"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages.0.role"),
        ({"messages": [{"role": "user"}]}, "messages.0.content: Field required"),
        ({"stream": True}, "requests.1.params.stream"),
        ({"temperature": 3}, "temperature"),
        ({"thinking": {"type": "enabled", "budget_tokens": 100}}, "budget_tokens"),
    ],
)
def test_bad_params_are_an_errored_row_not_a_failed_create(
    emu: Emulator, overrides: dict[str, Any], needle: str
) -> None:
    # The API validates batch params asynchronously: the batch is accepted, the bad
    # request comes back errored with the API's message, the others succeed.
    body = batch(3)
    body["requests"][1]["params"] = params(**overrides)
    status, _, created = call(emu, "POST", "/v1/messages/batches", body)
    assert status == 200 and created["type"] == "message_batch"
    emu.clock.advance(60)
    client = emu.client(_strict_response_validation=True)
    rows = {r.custom_id: r.result for r in client.messages.batches.results(created["id"])}
    assert rows["r0"].type == rows["r2"].type == "succeeded"
    bad = rows["r1"]
    assert bad.type == "errored"
    assert bad.error.error.type == "invalid_request_error"
    assert needle in bad.error.error.message


def test_sdk_raises_bad_request_for_validation_errors(emu: Emulator) -> None:
    client = emu.client(max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.batches.create(requests=[{"custom_id": "bad id", "params": params()}])  # type: ignore[typeddict-item]
    assert err.value.status_code == 400
    assert err.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]


def test_unknown_model_is_an_errored_row_not_a_failed_create(emu: Emulator) -> None:
    client = emu.client(_strict_response_validation=True)
    body = batch(3)
    body["requests"][1]["params"]["model"] = "gpt-4o"
    created = client.messages.batches.create(requests=body["requests"])
    emu.clock.advance(60)
    assert client.messages.batches.retrieve(created.id).request_counts.errored == 1
    rows = {r.custom_id: r.result for r in client.messages.batches.results(created.id)}
    bad = rows["r1"]
    assert bad.type == "errored"
    assert bad.error.error.type == "not_found_error"
    assert "gpt-4o" in bad.error.error.message
    assert rows["r0"].type == "succeeded"


def test_unknown_batch_is_404(emu: Emulator) -> None:
    for method, path in [
        ("GET", "/v1/messages/batches/msgbatch_nope"),
        ("POST", "/v1/messages/batches/msgbatch_nope/cancel"),
        ("DELETE", "/v1/messages/batches/msgbatch_nope"),
        ("GET", "/v1/messages/batches/msgbatch_nope/results"),
    ]:
        assert "msgbatch_nope" in assert_error(call(emu, method, path), 404, "not_found_error")
    client = emu.client(max_retries=0)
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve("msgbatch_nope")


def test_unknown_route_is_404(emu: Emulator) -> None:
    assert_error(call(emu, "GET", "/v1/nothing"), 404, "not_found_error")


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=x", "after_id=msgbatch_nope"])
def test_bad_list_query_is_400(emu: Emulator, query: str) -> None:
    assert_error(call(emu, "GET", f"/v1/messages/batches?{query}"), 400, "invalid_request_error")


def test_body_over_the_size_limit_is_413_before_the_body_is_read() -> None:
    # A real socket: the headers alone are sent, and the answer comes before any body.
    with (
        serve(speed=0, transport="socket") as emu,
        socket.create_connection(("127.0.0.1", emu.port), timeout=10) as sock,
    ):
        head = (
            "POST /v1/messages/batches HTTP/1.1\r\nHost: x\r\nx-api-key: k\r\n"
            "anthropic-version: 2023-06-01\r\ncontent-type: application/json\r\n"
            f"content-length: {MAX_BATCH_BYTES + 1}\r\n\r\n"
        )
        sock.sendall(head.encode())  # and never send the 256 MB
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        status_line, _, rest = data.partition(b"\r\n")
        assert b" 413 " in status_line
        body = orjson.loads(rest.partition(b"\r\n\r\n")[2])
        assert body["error"]["type"] == "request_too_large"
        assert emu.count("POST", "/v1/messages/batches") == 1
        assert emu.requests[-1].status == 413


def test_messages_validation_is_400(emu: Emulator) -> None:
    message = assert_error(
        call(emu, "POST", "/v1/messages", params(max_tokens=None)), 400, "invalid_request_error"
    )
    assert message == "max_tokens: Field required"
    assert_error(call(emu, "POST", "/v1/messages", b"nope"), 400, "invalid_request_error")
    assert_error(
        call(emu, "POST", "/v1/messages/count_tokens", {"model": "claude-x"}),
        400,
        "invalid_request_error",
    )


def test_messages_unknown_model_is_404(emu: Emulator) -> None:
    client = emu.client(max_retries=0)
    with pytest.raises(anthropic.NotFoundError) as err:
        client.messages.create(
            model="not-a-model", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )
    assert "not-a-model" in str(err.value)
