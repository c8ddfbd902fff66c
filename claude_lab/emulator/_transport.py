"""The in-process transport: the SDK's HTTP client talks to the dispatcher with no socket.

Owns :class:`InProcessTransport`, an ``httpx2`` transport (the HTTP library the
``anthropic`` SDK is built on) for both the sync and the async client. Each
request goes straight to :meth:`Core.handle <claude_lab.emulator._routing.Core.handle>`
and comes back as the response the socket server would have sent: the same
status, headers (``server``, ``date``, ``content-length`` or chunked), bytes and
streaming, the same transport errors where a fault cuts a body
(``RemoteProtocolError`` with httpcore's message), and ``ReadTimeout`` where a
held, slow or late answer outlasts the request's read timeout. The SDK above it
runs for real: request building, retries, parsing.
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING

import anyio
import httpx2

from claude_lab.emulator._wire import ConnectionDropped, Response

if TYPE_CHECKING:
    from claude_lab.emulator._routing import Core

__all__ = ["InProcessTransport"]

_SERVER = f"{BaseHTTPRequestHandler.server_version} {BaseHTTPRequestHandler.sys_version}"
_CUT = "peer closed connection without sending complete message body"


class InProcessTransport(httpx2.BaseTransport, httpx2.AsyncBaseTransport):
    """Serves ``origin`` (scheme://host) from ``core`` while ``is_open()``; nothing else."""

    def __init__(self, core: Core, origin: str, is_open: Callable[[], bool]) -> None:
        self._core = core
        url = httpx2.URL(origin)
        self._origin = (url.scheme, url.host, url.port)
        self._is_open = is_open

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        self._reachable(request)
        body = request.read()
        timeout = _read_timeout(request)

        def call() -> Response:
            return self._core.handle(request.method, _target(request), request.headers, body)

        if timeout is None or not self._core.may_hold():
            answer = call()
        else:
            answer = _within(call, timeout, request)
        return _response(answer, request, timeout)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        self._reachable(request)
        body = await request.aread()
        timeout = _read_timeout(request)

        def call() -> Response:
            return self._core.handle(request.method, _target(request), request.headers, body)

        # On a worker thread, as a server would be: the event loop keeps running while a
        # call is answered or held (a gate released by another task, latency).
        try:
            with anyio.fail_after(timeout):
                answer = await anyio.to_thread.run_sync(call, abandon_on_cancel=True)
        except TimeoutError:
            raise httpx2.ReadTimeout("timed out", request=request) from None
        return _response(answer, request, timeout)

    def _reachable(self, request: httpx2.Request) -> None:
        url = request.url
        if not self._is_open():
            raise httpx2.ConnectError("[Errno 111] Connection refused", request=request)
        if (url.scheme, url.host, url.port) != self._origin:
            raise httpx2.ConnectError(
                f"the in-process emulator serves only its own base_url, not {url.host}",
                request=request,
            )


def _target(request: httpx2.Request) -> str:
    return request.url.raw_path.decode("ascii")


def _read_timeout(request: httpx2.Request) -> float | None:
    timeout = request.extensions.get("timeout") or {}
    value = timeout.get("read")
    return None if value is None else float(value)


def _within(call: Callable[[], Response], timeout: float, request: httpx2.Request) -> Response:
    """``call()`` on its own thread, given up on after ``timeout`` s as a client would be;
    the emulator still finishes it (a batch whose create timed out exists)."""
    done = threading.Event()
    out: list[Response | BaseException] = []

    def run() -> None:
        try:
            out.append(call())
        except BaseException as exc:  # pragma: no cover - Core.handle answers every error
            out.append(exc)
        done.set()

    threading.Thread(target=run, name="claude_lab-emulator-call", daemon=True).start()
    if not done.wait(timeout):
        raise httpx2.ReadTimeout("timed out", request=request)
    result = out[0]
    if isinstance(result, BaseException):  # pragma: no cover
        raise result
    return result


def _response(answer: Response, request: httpx2.Request, timeout: float | None) -> httpx2.Response:
    """The httpx2 response the socket would have produced for ``answer``."""
    status = answer.status
    headers = [
        ("server", _SERVER),
        ("date", email.utils.formatdate(usegmt=True)),
        *answer.headers,
        answer.framing(),
    ]
    reason = BaseHTTPRequestHandler.responses.get(status, ("",))[0]
    return httpx2.Response(
        status,
        headers=headers,
        stream=_Body(answer, request, timeout),
        request=request,
        extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason.encode("ascii")},
    )


class _Body(httpx2.SyncByteStream, httpx2.AsyncByteStream):
    """A Response's body as the client reads it: late by ``stall``, cut where a fault cuts it."""

    def __init__(self, answer: Response, request: httpx2.Request, timeout: float | None) -> None:
        self._answer = answer
        self._request = request
        self._timeout = timeout

    def _late(self) -> tuple[float, bool]:
        """How long the body is late, and whether the client gives up first (ReadTimeout)."""
        stall, timeout = self._answer.stall, self._timeout
        if timeout is not None and stall > timeout:
            return timeout, True
        return stall, False

    def __iter__(self) -> Iterator[bytes]:
        wait, gives_up = self._late()
        if wait > 0:
            time.sleep(wait)
        if gives_up:
            raise httpx2.ReadTimeout("timed out", request=self._request)
        yield from self._chunks()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        wait, gives_up = self._late()
        if wait > 0:
            await anyio.sleep(wait)
        if gives_up:
            raise httpx2.ReadTimeout("timed out", request=self._request)
        for chunk in self._chunks():
            yield chunk

    def _chunks(self) -> Iterator[bytes]:
        received = 0
        try:
            for chunk in self._answer.pieces():
                if chunk:
                    received += len(chunk)
                    yield chunk
        except ConnectionDropped:
            length = self._answer.length
            why = (
                "incomplete chunked read"
                if length is None
                else f"received {received} bytes, expected {length}"
            )
            raise httpx2.RemoteProtocolError(f"{_CUT} ({why})", request=self._request) from None
