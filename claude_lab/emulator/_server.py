"""The ``Emulator`` handle and ``serve()``, and the loopback HTTP server for the socket transport.

An emulator's clients reach its dispatcher in-process by default
(:mod:`claude_lab.emulator._transport`); with ``transport="socket"`` the server
here binds 127.0.0.1 only, serves on a daemon thread, HTTP/1.1 with keep-alive;
bodies of known length are length-delimited, event streams are chunked. It
logs nothing itself: the core's request log holds method, path, time, status.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from claude_lab.emulator._clock import Clock
from claude_lab.emulator._faults import Faults
from claude_lab.emulator._responder import Responder
from claude_lab.emulator._routing import Core, RequestRecord
from claude_lab.emulator._transport import InProcessTransport
from claude_lab.emulator._wire import ConnectionDropped, Response

if TYPE_CHECKING:
    import anthropic
    import httpx2

__all__ = ["HOST", "Emulator", "Transport", "serve"]

HOST = "127.0.0.1"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # keep-alive connections must not hold up stop()
    allow_reuse_address = True

    def __init__(self, port: int, core: Core) -> None:
        self.core = core
        super().__init__((HOST, port), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-request is normal (timeouts, interrupts): no traceback.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn), which can stall.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = HOST, self.server_address[1]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the stdlib's per-request stderr log."""

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def _serve(self) -> None:
        core = self.server.core
        headers = dict(self.headers.items())
        early = core.precheck(self.command, self.path, headers)
        if early is not None:
            # The body is left unread, so this connection cannot be reused.
            self.close_connection = True
            self._send(early)
            return
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        self._send(core.handle(self.command, self.path, headers, body))

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        chunked = response.chunked
        try:
            self.send_header(*response.framing())
            self.end_headers()
            if response.stall > 0:
                self.wfile.flush()
                time.sleep(response.stall)  # the headers are out; the body is late
            for chunk in response.pieces():
                if not chunked:
                    self.wfile.write(chunk)
                elif chunk:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except ConnectionDropped:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


Transport = Literal["inprocess", "socket"]


class Emulator:
    """A running (or ready to run) offline Messages + Message Batches API.

    Use ``with serve(...) as emu:`` or ``emu = serve(...).start()`` ... ``emu.stop()``.
    ``transport="inprocess"`` (the default) serves :meth:`client` and
    :meth:`async_client` with no socket; ``"socket"`` also listens on 127.0.0.1 for
    other processes, other HTTP clients and ``python -m claude_lab.emulator``.
    """

    def __init__(self, core: Core, *, port: int = 0, transport: Transport = "inprocess") -> None:
        if transport not in ("inprocess", "socket"):
            raise ValueError(f"transport must be 'inprocess' or 'socket', got {transport!r}")
        if port and transport != "socket":
            raise ValueError(f"port={port} needs transport='socket'")
        self.core = core
        self.clock = core.clock
        self.transport: Transport = transport
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._running = False
        # A name no resolver answers (RFC 6761), unique per emulator: a journal tells
        # emulators apart by base_url, as it tells ports apart.
        self._origin = f"http://emulator-{secrets.token_hex(4)}.invalid"
        self._clients: list[anthropic.Anthropic | httpx2.Client] = []

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> Emulator:
        if self._running:
            return self
        if self.transport == "socket":
            server = _Server(self._port, self.core)
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"claude_lab-emulator-{server.server_port}",
                daemon=True,
            )
            self._thread.start()
        self._running = True
        self.core.base_url = self.base_url
        return self

    def stop(self) -> None:
        self._running = False
        for client in self._clients:
            client.close()
        self._clients.clear()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- where it is and how to talk to it ------------------------------------------------

    @property
    def port(self) -> int:
        """The 127.0.0.1 port (``transport="socket"`` only)."""
        self._require_running()
        if self._server is None:
            raise RuntimeError(
                "this emulator has no socket (transport='inprocess'); use "
                "serve(transport='socket') to listen on 127.0.0.1"
            )
        return int(self._server.server_port)

    @property
    def base_url(self) -> str:
        """What the SDK's ``base_url`` is: ``http://127.0.0.1:PORT`` with a socket, else a
        name only this emulator's clients reach."""
        self._require_running()
        return f"http://{HOST}:{self.port}" if self.transport == "socket" else self._origin

    def _require_running(self) -> None:
        if not self._running:
            raise RuntimeError(
                "the emulator is not running; use `with serve() as emu:` or .start()"
            )

    def client(self, **kwargs: Any) -> anthropic.Anthropic:
        """An ``anthropic.Anthropic`` pointed here (closed when the emulator stops)."""
        import anthropic

        _default_key(kwargs)
        if self.transport == "inprocess" and kwargs.get("http_client") is None:
            kwargs["http_client"] = anthropic.DefaultHttpxClient(transport=self._transport())
        client = anthropic.Anthropic(base_url=self.base_url, **kwargs)
        self._clients.append(client)
        return client

    def async_client(self, **kwargs: Any) -> anthropic.AsyncAnthropic:
        """An ``anthropic.AsyncAnthropic`` pointed here; close it (``async with``) when done."""
        import anthropic

        _default_key(kwargs)
        if self.transport == "inprocess" and kwargs.get("http_client") is None:
            kwargs["http_client"] = anthropic.DefaultAsyncHttpxClient(transport=self._transport())
        return anthropic.AsyncAnthropic(base_url=self.base_url, **kwargs)

    def http_client(self, **kwargs: Any) -> httpx2.Client:
        """A plain ``httpx2.Client`` (the SDK's HTTP library) for raw calls, no SDK: its
        base_url is this emulator's, over the same transport as :meth:`client`."""
        import httpx2

        if self.transport == "inprocess":
            kwargs.setdefault("transport", self._transport())
        client = httpx2.Client(base_url=self.base_url, **kwargs)
        self._clients.append(client)
        return client

    def _transport(self) -> InProcessTransport:
        return InProcessTransport(self.core, self.base_url, lambda: self._running)

    # --- what happened --------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """Every API request received so far: method, path, time (emulator clock), status."""
        return self.core.requests

    def count(self, method: str = "*", path: str = "*") -> int:
        """How many requests matched, e.g. ``emu.count("POST", "/v1/messages/batches")``."""
        return self.core.count(method, path)

    def wait_count(
        self, method: str = "*", path: str = "*", n: int = 1, timeout: float = 30.0
    ) -> int:
        """Block until ``n`` requests matched and were answered, e.g.
        ``emu.wait_count("POST", "/v1/messages/batches")``: a test's way to wait for the
        client without sleeping. TimeoutError after ``timeout`` s."""
        return self.core.wait_count(method, path, n, timeout)

    @property
    def queue_limit(self) -> int | None:
        """The organisation's batch queue limit in requests (None = unlimited): a create
        that would queue more is refused with 429 ``rate_limit_error``, as the API does."""
        return self.core.queue_limit

    @queue_limit.setter
    def queue_limit(self, value: int | None) -> None:
        self.core.queue_limit = None if value is None else int(value)

    @property
    def faults(self) -> Faults:
        return self.core.faults

    @faults.setter
    def faults(self, value: Faults | Mapping[str, Any] | None) -> None:
        self.core.faults = Faults.coerce(value)

    def __repr__(self) -> str:
        where = self.base_url if self._running else "stopped"
        return f"<Emulator {where} {self.clock!r}>"


def _default_key(kwargs: dict[str, Any]) -> None:
    # Any non-empty key works; an explicit one keeps ANTHROPIC_API_KEY from the environment out.
    credentials = ("api_key", "auth_token", "credentials", "config", "profile")
    if not any(kwargs.get(name) is not None for name in credentials):
        kwargs["api_key"] = "emulator"


def serve(
    port: int = 0,
    speed: float = 1.0,
    request_seconds: float = 0.05,
    seed: int = 0,
    counts: Literal["end", "incremental"] = "end",
    responder: Responder | None = None,
    faults: Faults | Mapping[str, Any] | None = None,
    concurrency: int = 16,
    *,
    transport: Transport = "inprocess",
    jitter: float = 0.5,
    cancel_seconds: float | None = None,
    clock: Clock | None = None,
) -> Emulator:
    """An emulator ready to start: ``with serve() as emu: client = emu.client()``.

    Defaults suit demos and tests: a batch of a few hundred requests ends within
    about a second of real time. ``speed=0`` freezes the clock (drive it with
    ``emu.clock.advance``); ``request_seconds=0`` with a large ``concurrency``
    ends every batch at once. ``transport="inprocess"`` (default): ``emu.client()``
    reaches it with no socket; ``"socket"``: it listens on 127.0.0.1:``port`` (0 =
    any free port) as well, for other processes and HTTP clients. Further options:
    ``jitter`` (0.5: each request takes request_seconds * (1 ± jitter)),
    ``cancel_seconds``, ``clock``.
    """
    core = Core(
        clock=clock if clock is not None else Clock(speed),
        request_seconds=request_seconds,
        jitter=jitter,
        concurrency=concurrency,
        seed=seed,
        counts=counts,
        responder=responder,
        faults=faults,
        cancel_seconds=cancel_seconds,
    )
    return Emulator(core, port=port, transport=transport)
