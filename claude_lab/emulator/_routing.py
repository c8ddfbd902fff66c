"""The dispatcher: (method, target, headers, body) -> Response, with no sockets.

Owns the routes (method + path -> the batch store, Messages, the Models API, or
the ``/_emulator/`` control routes), what every API call checks first (size
from the headers, API key, ``anthropic-version``, latency, endpoint faults,
other users' batches), the error body with a ``request-id`` for anything
unrouted or broken, and the request log (method, path, time, status: never a
header or a body, so never the key). Both transports call :meth:`Core.handle`.
"""

from __future__ import annotations

import fnmatch
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import orjson

from claude_lab.emulator import _batches as batches
from claude_lab.emulator._batches import Batches, Options
from claude_lab.emulator._catalogue import Catalogue
from claude_lab.emulator._clock import Clock, rfc3339
from claude_lab.emulator._faults import Faults, endpoint_fault
from claude_lab.emulator._messages import Messages
from claude_lab.emulator._responder import PromptCache, Responder
from claude_lab.emulator._validation import MAX_BATCH_BYTES
from claude_lab.emulator._wire import Response, error, json_response, new_request_id

__all__ = ["Core", "RequestRecord"]


@dataclass(frozen=True)
class RequestRecord:
    """One logged API request. Deliberately has no headers and no body: never the key."""

    method: str
    path: str
    time: float
    status: int

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "path": self.path, "time": self.time, "status": self.status}


class Core:
    """The emulated API. Thread-safe: one lock for the registry and log, one per batch."""

    def __init__(
        self,
        *,
        clock: Clock,
        request_seconds: float = 0.05,
        jitter: float = 0.5,
        concurrency: int = 16,
        seed: int = 0,
        counts: Literal["end", "incremental"] = "end",
        responder: Responder | None = None,
        faults: Faults | Mapping[str, Any] | None = None,
        cancel_seconds: float | None = None,
        base_url: str = "http://127.0.0.1",
    ) -> None:
        if counts not in ("end", "incremental"):
            raise ValueError(f"counts must be 'end' or 'incremental', got {counts!r}")
        if request_seconds < 0 or not 0 <= jitter < 1 or concurrency < 1:
            raise ValueError("need request_seconds >= 0, 0 <= jitter < 1 and concurrency >= 1")
        self.clock = clock
        self.options = Options(
            request_seconds=float(request_seconds),
            jitter=float(jitter),
            concurrency=int(concurrency),
            seed=int(seed),
            counts=counts,
            # Canceling takes a moment, like the real API finishing in-flight work.
            cancel_seconds=(
                float(cancel_seconds) if cancel_seconds is not None else max(request_seconds, 0.2)
            ),
        )
        self.faults = Faults.coerce(faults)
        self.base_url = base_url.rstrip("/")
        self._lock = threading.RLock()
        self._answered = threading.Condition(self._lock)  # notified as each request is logged
        self._log: list[RequestRecord] = []
        self.messages = Messages(clock=clock, seed=self.options.seed, responder=responder)
        self.batches = Batches(self)
        # The organisation's batch queue limit (requests not yet processed, over all of
        # its batches); None = unlimited. Over it, a create is refused with 429.
        self.queue_limit: int | None = None

    @property
    def responder(self) -> Responder | None:
        return self.messages.responder

    @responder.setter
    def responder(self, value: Responder | None) -> None:
        self.messages.responder = value

    @property
    def catalogue(self) -> Catalogue:
        return self.messages.catalogue

    @property
    def prompt_cache(self) -> PromptCache:
        return self.messages.prompt_cache

    def may_hold(self) -> bool:
        """Could a call be held past a client's timeout now (latency, an armed create gate)?"""
        return self.faults.latency > 0 or bool(self.faults._create_gates())

    def batch_report(self) -> list[dict[str, Any]]:
        """Every batch made, oldest first (see :meth:`Batches.report`)."""
        return self.batches.report()

    # --- the request log ------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._log)

    def count(self, method: str = "*", path: str = "*") -> int:
        """How many logged requests match; ``path`` may be a glob (``/v1/messages/batches/*``)."""
        with self._lock:
            return sum(
                1
                for r in self._log
                if (method == "*" or r.method == method.upper())
                and fnmatch.fnmatchcase(r.path, path)
            )

    def wait_count(
        self, method: str = "*", path: str = "*", n: int = 1, timeout: float = 30.0
    ) -> int:
        """Block until ``n`` logged requests match (see :meth:`count`), each answered;
        return the count. TimeoutError if that does not happen within ``timeout`` s."""
        with self._answered:
            if not self._answered.wait_for(lambda: self.count(method, path) >= n, timeout):
                raise TimeoutError(
                    f"{self.count(method, path)} of {n} {method} {path} request(s) "
                    f"answered within {timeout} s"
                )
            return self.count(method, path)

    def _record(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self._log.append(RequestRecord(method, path, self.clock.now(), status))
            self._answered.notify_all()

    # --- entry points ---------------------------------------------------------------------

    def precheck(self, method: str, target: str, headers: Mapping[str, str]) -> Response | None:
        """Checks made from the headers alone, before the body is read (size limit)."""
        lower = {k.lower(): v for k, v in headers.items()}
        raw = lower.get("content-length")
        path = urlsplit(target).path
        if raw is None or not path.startswith("/v1/"):
            return None
        try:
            length = int(raw)
        except ValueError:
            response = error(400, "Invalid Content-Length header", new_request_id())
        else:
            if length <= MAX_BATCH_BYTES:
                return None
            response = error(
                413,
                f"Request exceeds the maximum allowed size of {MAX_BATCH_BYTES} bytes "
                f"(got {length}); split the batch into smaller ones.",
                new_request_id(),
            )
        self._record(method.upper(), path, response.status)
        return response

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes = b""
    ) -> Response:
        """Answer one HTTP request. ``target`` is the path with its query string."""
        method = method.upper()
        parts = urlsplit(target)
        path = parts.path
        # Repeated keys (``lifecycle[]=a&lifecycle[]=b``, the SDK's array form) are joined by ",".
        query = {k: ",".join(v) for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        lower = {k.lower(): v for k, v in headers.items()}
        if path.startswith("/_emulator/"):
            return self._control(method, path, query, body)
        early = self.precheck(method, target, headers)
        if early is not None:
            return early
        request_id = new_request_id()
        try:
            response = self._api(method, path, query, lower, body, request_id)
        except Exception as exc:  # a bug here must still answer like the API would
            response = error(500, f"Internal emulator error: {type(exc).__name__}", request_id)
        self._record(method, path, response.status)
        return response

    # --- routing --------------------------------------------------------------------------

    def _route(self, method: str, path: str) -> tuple[str, str | None] | None:
        parts = path.rstrip("/").split("/")[1:]
        if parts[:2] == ["v1", "models"] and method == "GET" and len(parts) <= 3:
            return ("models", None) if len(parts) == 2 else ("model", parts[2])
        if parts[:2] != ["v1", "messages"]:
            return None
        rest = parts[2:]
        if not rest:
            return ("messages", None) if method == "POST" else None
        if rest == ["count_tokens"]:
            return ("count_tokens", None) if method == "POST" else None
        if rest[0] != "batches":
            return None
        if len(rest) == 1:
            return {"POST": ("create", None), "GET": ("list", None)}.get(method)
        batch_id = rest[1]
        if len(rest) == 2:
            return {"GET": ("retrieve", batch_id), "DELETE": ("delete", batch_id)}.get(method)
        if len(rest) == 3 and rest[2] == "cancel" and method == "POST":
            return ("cancel", batch_id)
        if len(rest) == 3 and rest[2] == "results" and method == "GET":
            return ("results", batch_id)
        return None

    def _api(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        headers: dict[str, str],
        body: bytes,
        request_id: str,
    ) -> Response:
        if self.faults.latency > 0:
            time.sleep(self.faults.latency)
        route = self._route(method, path)
        if route is None:
            return error(404, f"Not found: {method} {path}", request_id)
        if not _api_key(headers):
            return error(
                401,
                "Missing API key: send it as `x-api-key: <key>` or `Authorization: Bearer <key>`.",
                request_id,
            )
        if not headers.get("anthropic-version"):
            return error(400, "anthropic-version: header is required", request_id)
        name, target = route
        self.batches.others_fire(name)
        with self._lock:
            fault = endpoint_fault(self.faults, name, request_id)
        if fault is not None:
            self.batches.others_fire(name, after_create=True)
            return fault
        version = headers.get("anthropic-version")
        betas = frozenset(b.strip() for b in headers.get("anthropic-beta", "").split(",") if b)
        if name in batches.ROUTES:
            return self.batches.handle(name, target, query, body, request_id, version, betas)
        if name == "messages":
            return self.messages.message(body, request_id, version, betas)
        if name == "count_tokens":
            return self.messages.count_tokens(body, request_id, version)
        if name == "models":
            return self.catalogue.list_response(query, request_id)
        assert target is not None
        return self.catalogue.get_response(target, request_id)

    # --- control routes (not logged, no key) ------------------------------------------------

    def _control(self, method: str, path: str, query: dict[str, str], body: bytes) -> Response:
        rid = new_request_id()
        if path == "/_emulator/faults" and method in ("GET", "POST"):
            # Lets another process (tests driving the CLI) switch faults at run time.
            if method == "POST":
                try:
                    changes = orjson.loads(body or b"{}")
                    with self._lock:
                        current = {f.name: getattr(self.faults, f.name) for f in fields(Faults)}
                        self.faults = Faults.coerce({**current, **changes})
                except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
                    return error(400, f"faults: {exc}", rid)
            settings = {f.name: getattr(self.faults, f.name) for f in fields(Faults)}
            return json_response(200, settings, rid)
        if path == "/_emulator/requests" and method == "GET":
            return json_response(200, [r.as_dict() for r in self.requests], rid)
        if path == "/_emulator/batches" and method == "GET":
            return json_response(200, self.batch_report(), rid)
        if path == "/_emulator/advance" and method == "POST":
            try:
                seconds = float(query.get("seconds", "0"))
                now = self.clock.advance(seconds)
            except ValueError as exc:
                return error(400, f"seconds: {exc}", rid)
            return json_response(200, {"now": rfc3339(now), "time": now}, rid)
        if path == "/_emulator/clock" and method == "GET":
            now = self.clock.now()
            return json_response(200, {"now": rfc3339(now), "time": now}, rid)
        return error(404, f"Not found: {method} {path}", rid)


def _api_key(headers: Mapping[str, str]) -> bool:
    if headers.get("x-api-key", "").strip():
        return True
    auth = headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip())
