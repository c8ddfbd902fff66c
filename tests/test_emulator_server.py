"""The server itself: loopback only, no key kept, keep-alive, scale, the control routes and CLI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import orjson
import pytest

import claude_lab.emulator
from claude_lab.emulator import Emulator, serve

SECRET = "sk-ant-" + "emulator-test-SECRET-5f3a9c"  # split: not a key to scanners


def small_batch(n: int) -> list[dict[str, Any]]:
    return [
        {
            "custom_id": f"r{i}",
            "params": {
                "model": "claude-haiku-4-5",
                "max_tokens": 8,
                "messages": [{"role": "user", "content": "hi"}],
            },
        }
        for i in range(n)
    ]


@pytest.fixture
def emu() -> Iterator[Emulator]:
    """These tests are about the socket server, so their emulator listens on one."""
    with serve(speed=0, transport="socket") as emulator:
        yield emulator


def test_binds_loopback_only(emu: Emulator) -> None:
    assert emu.base_url == f"http://127.0.0.1:{emu.port}"
    server = emu._server
    assert server is not None
    assert server.socket.getsockname()[0] == "127.0.0.1"
    try:  # an address of this machine that is not loopback, if it has one
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent for UDP connect
        outside = probe.getsockname()[0]
        probe.close()
    except OSError:
        outside = ""
    if outside and not outside.startswith("127."):
        with pytest.raises(OSError):
            socket.create_connection((outside, emu.port), timeout=1).close()


def _strings(obj: Any, seen: set[int]) -> list[str]:
    """Every str/bytes reachable from ``obj`` through containers and object attributes."""
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, bytes | bytearray):
        return [bytes(obj).decode("utf-8", "replace")]
    out: list[str] = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            out += _strings(key, seen) + _strings(value, seen)
    elif isinstance(obj, list | tuple | set | frozenset):
        for item in obj:
            out += _strings(item, seen)
    elif type(obj).__module__.startswith("claude_lab"):  # the emulator's own objects
        attrs = dict(getattr(obj, "__dict__", {}))
        for slot in getattr(type(obj), "__slots__", ()):
            attrs[slot] = getattr(obj, slot, None)
        out += _strings(attrs, seen)
    return out


def test_the_key_is_never_logged_or_stored(capfd: pytest.CaptureFixture[str]) -> None:
    with serve(speed=0, transport="socket") as emu:
        for style in ({"api_key": SECRET}, {"auth_token": SECRET}):
            client = emu.client(**style)  # type: ignore[arg-type]
            batch = client.messages.batches.create(requests=small_batch(3))
            client.messages.batches.retrieve(batch.id)
            client.messages.create(
                model="claude-haiku-4-5", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
            )
            emu.clock.advance(60)
            list(client.messages.batches.results(batch.id))
        emu.faults.rate_limit = 1
        with pytest.raises(anthropic.RateLimitError):
            emu.client(api_key=SECRET, max_retries=0).messages.batches.list()
        with urllib.request.urlopen(f"{emu.base_url}/_emulator/requests") as response:
            log = response.read().decode()
        state = _strings(emu.core, set())
    assert SECRET not in log
    assert not [s for s in state if SECRET in s]
    assert SECRET not in repr(emu.requests)
    out, err = capfd.readouterr()
    assert SECRET not in out + err


def test_request_log_has_method_path_time_status_only(emu: Emulator) -> None:
    client = emu.client(max_retries=0)
    batch = client.messages.batches.create(requests=small_batch(1))
    emu.clock.advance(5)
    client.messages.batches.retrieve(batch.id)
    first, second = emu.requests
    assert (first.method, first.path, first.status) == ("POST", "/v1/messages/batches", 200)
    assert second.path == f"/v1/messages/batches/{batch.id}"
    assert second.time - first.time == pytest.approx(5)
    assert set(first.as_dict()) == {"method", "path", "time", "status"}
    assert emu.count("GET", "/v1/messages/batches/*") == 1
    assert emu.count() == 2


def test_control_routes_expose_log_and_clock_and_are_not_logged(emu: Emulator) -> None:
    emu.client().messages.batches.list()
    before = emu.clock.now()
    request = urllib.request.Request(f"{emu.base_url}/_emulator/advance?seconds=90", method="POST")
    with urllib.request.urlopen(request) as response:
        assert orjson.loads(response.read())["time"] == pytest.approx(before + 90)
    with urllib.request.urlopen(f"{emu.base_url}/_emulator/requests") as response:
        log = orjson.loads(response.read())
    assert log == [{"method": "GET", "path": "/v1/messages/batches", "time": before, "status": 200}]
    assert emu.clock.now() == pytest.approx(before + 90)
    assert emu.count() == 1


def test_keep_alive_reuses_one_connection(emu: Emulator) -> None:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
    headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
    for _ in range(3):
        conn.request("GET", "/v1/messages/batches", headers=headers)
        response = conn.getresponse()
        assert response.status == 200
        response.read()
    conn.close()


def test_start_stop_and_repr() -> None:
    emu = serve(speed=0, transport="socket").start()
    try:
        assert emu.client().messages.batches.list().data == []
        assert "127.0.0.1" in repr(emu)
    finally:
        emu.stop()
    assert "stopped" in repr(emu)
    with pytest.raises(RuntimeError):
        _ = emu.base_url


def test_100k_request_batch_is_accepted_and_served() -> None:
    # How fast lives in benchmarks/, not in a timed assertion here.
    item = orjson.dumps(small_batch(1)[0]["params"])
    body = (
        b'{"requests":['
        + b",".join(b'{"custom_id":"r%d","params":%s}' % (i, item) for i in range(100_000))
        + b"]}"
    )
    with serve(speed=0, request_seconds=0, concurrency=100_000, transport="socket") as emu:
        client = emu.client(max_retries=0, timeout=60)
        created = client.post("/v1/messages/batches", content=body, cast_to=dict[str, Any])
        assert created["request_counts"]["processing"] == 100_000
        ended = client.messages.batches.retrieve(created["id"])
        assert ended.request_counts.succeeded == 100_000
        data = client.get(ended.results_url or "", cast_to=bytes)
    assert data.count(b"\n") == 100_000


def test_cli_prints_the_url_and_serves_until_stopped() -> None:
    package_root = Path(claude_lab.emulator.__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(package_root)}
    env.pop("ANTHROPIC_API_KEY", None)
    argv = ["--port", "0", "--speed", "0", "--seed", "3", "--faults", '{"error_rate": 1.0}']
    proc = subprocess.Popen(
        [sys.executable, "-m", "claude_lab.emulator", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=package_root,
        env=env,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in first, first + (
            proc.stderr.read() if proc.stderr else ""
        )
        url = first.split()[-1]
        rest = [proc.stdout.readline() for _ in range(3)]
        assert f"export ANTHROPIC_BASE_URL={url}\n" in "".join(rest)
        with anthropic.Anthropic(base_url=url, api_key="emulator", max_retries=0) as client:
            batch = client.messages.batches.create(requests=small_batch(2))  # type: ignore[arg-type]
            advance = urllib.request.Request(f"{url}/_emulator/advance?seconds=60", method="POST")
            urllib.request.urlopen(advance).close()
            ended = client.messages.batches.retrieve(batch.id)
            assert ended.processing_status == "ended" and ended.request_counts.errored == 2
            switch = urllib.request.Request(
                f"{url}/_emulator/faults", data=b'{"rate_limit": 1}', method="POST"
            )
            with urllib.request.urlopen(switch) as response:
                assert orjson.loads(response.read())["rate_limit"] == 1
            with pytest.raises(anthropic.RateLimitError):
                client.messages.batches.list()
        with urllib.request.urlopen(f"{url}/_emulator/requests") as response:
            log = orjson.loads(response.read())
        assert [(r["method"], r["status"]) for r in log] == [
            ("POST", 200),
            ("GET", 200),
            ("GET", 429),
        ]
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "emulator stopped" in out
