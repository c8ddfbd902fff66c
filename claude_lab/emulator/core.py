"""The handler core: (method, path, query, headers, body) -> response, with no sockets.

Owns the API surface the emulator serves — routes, request validation, error
bodies, batches and their clock-driven lifecycle, results files, the request
log and the fault switches. Batch state is derived from the clock on every
read; rows are answered lazily (in the order they finish) and cached as bytes.
"""

from __future__ import annotations

import bisect
import contextlib
import fnmatch
import hashlib
import heapq
import math
import random
import re
import secrets
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass, fields
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import orjson

from claude_lab.emulator import features, standins, versions
from claude_lab.emulator.catalogue import Catalogue
from claude_lab.emulator.clock import Clock, rfc3339
from claude_lab.emulator.gates import Gate
from claude_lab.emulator.responder import (
    ROW_ERROR_TYPES,
    PromptCache,
    Responder,
    RowError,
    build_message,
    content_output_tokens,
    count_input_tokens,
)

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_BATCH_REQUESTS",
    "ROUTES",
    "ConnectionDropped",
    "Core",
    "Faults",
    "RequestRecord",
    "Response",
]

MAX_BATCH_REQUESTS = 100_000
#: 256 MiB: the API says "256 MB"; the binary reading is the larger, so a client that
#: splits at 256_000_000 bytes is never refused here.
MAX_BATCH_BYTES = 256 * 1024 * 1024
DAY = 86_400.0
EXPIRES_AFTER = DAY
ARCHIVED_AFTER = 29 * DAY
CUSTOM_ID_PATTERN = "^[a-zA-Z0-9_-]{1,64}$"
_CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")

#: Route names, for per-route fault counts (``Faults(rate_limit={"create": 2})``).
ROUTES = (
    "create",
    "retrieve",
    "list",
    "cancel",
    "delete",
    "results",
    "messages",
    "count_tokens",
    "models",
    "model",
)

_STATUS_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_TYPE_STATUS = {v: k for k, v in _STATUS_TYPES.items()}


class ConnectionDropped(Exception):
    """Raised by a response body iterator: the server must cut the connection right there."""


@dataclass(frozen=True)
class RequestRecord:
    """One logged API request. Deliberately has no headers and no body: never the key."""

    method: str
    path: str
    time: float
    status: int

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "path": self.path, "time": self.time, "status": self.status}


@dataclass
class Response:
    """What the core answers; ``body`` is bytes or an iterator of chunks (streamed)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes | Iterable[bytes]
    length: int | None = None  # for an iterator body: known total length, else chunked


Counter = int | dict[str, int]
OTHERS_WHEN = ("before", "during", "after")


@dataclass
class Faults:
    """Fault switches, deterministic by the emulator's seed; change them at any time.

    Row faults apply to batches created while they are set; endpoint faults are
    counters that count down as they fire (an int = any route, or a dict keyed by
    route name: create, retrieve, list, cancel, delete, results, messages, count_tokens).
    """

    error_rate: float = 0.0
    """Fraction of batch rows that come back errored (types drawn from ``error_types``)."""
    error_types: tuple[str, ...] = ("api_error", "overloaded_error")
    expire_rate: float = 0.0
    """Fraction of batch rows never processed: they expire 24 h after creation."""
    rate_limit: Counter = 0
    """The next N calls answer 429 rate_limit_error with ``retry-after-ms``."""
    server_error: Counter = 0
    """The next N calls answer 500 api_error."""
    overloaded: Counter = 0
    """The next N calls answer 529 overloaded_error."""
    retry_after_ms: int = 20
    """Retry delay sent with 429/500/529 faults (the SDK obeys it exactly: keep it small)."""
    not_found_after_create: int = 0
    """Each batch created while set answers 404 to its first N retrieves."""
    drop_results: int = 0
    omit_rate: float = 0.0
    """Fraction of rows whose line is left out of the results file (a server-side loss)."""
    stray_lines: bool = False
    """Add a repeated line and a line with an unknown custom_id to each results file."""
    drop_after_create: int = 0
    """The next N batch creates succeed, then the connection is cut before the response
    is complete: the client cannot tell whether its batch exists (no idempotency key)."""
    """The next N results downloads stop halfway and the connection is cut."""
    latency: float = 0.0
    """Real seconds added before every API response."""
    error_after_create: int = 0
    """The next N batch creates make their batch, then answer 500 api_error: the client
    is told the create failed, yet the batch exists and runs."""
    timeout_after_create: int = 0
    """The next N batch creates make their batch, then hold the response back for
    ``stall_seconds`` real seconds: a client with a shorter timeout gives up first."""
    stall_seconds: float = 2.0
    others: tuple[tuple[str, int], ...] = ()
    """Other users of the workspace (same API key): ``(when, size)`` pairs armed for the
    next batch create. Each makes a batch of ``size`` requests that are not the
    client's: ``"before"`` just before that create is handled, ``"during"`` right after
    it (before its response is sent), ``"after"`` at the next API call that follows it
    (say, the client's look at the batch list). They go through the same batch
    machinery, so list() shows them, they end like any batch, and they are never in
    the request log."""

    def __post_init__(self) -> None:
        for name in ("error_rate", "expire_rate", "omit_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"Faults.{name} must be between 0 and 1, got {value!r}")
        if isinstance(self.error_types, str):
            self.error_types = (self.error_types,)
        self.error_types = tuple(self.error_types)
        unknown = [t for t in self.error_types if t not in ROW_ERROR_TYPES]
        if unknown or not self.error_types:
            raise ValueError(
                f"Faults.error_types must be non-empty and from {sorted(ROW_ERROR_TYPES)}; "
                f"got {list(self.error_types)}"
            )
        self.others = tuple((str(when), int(size)) for when, size in self.others)
        for when, size in self.others:
            if when not in OTHERS_WHEN or size < 1:
                raise ValueError(
                    f"Faults.others: ({when!r}, {size}) must be (one of {OTHERS_WHEN}, size >= 1)"
                )
        for name in ("rate_limit", "server_error", "overloaded"):
            value = getattr(self, name)
            if isinstance(value, dict):
                bad = [k for k in value if k not in ROUTES]
                if bad:
                    raise ValueError(f"Faults.{name}: unknown route(s) {bad}; use {list(ROUTES)}")

    @classmethod
    def coerce(cls, value: Faults | Mapping[str, Any] | None) -> Faults:
        if value is None:
            return cls()
        if isinstance(value, Faults):
            return value
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - names)
        if unknown:
            raise TypeError(f"unknown fault option(s) {unknown}; known: {sorted(names)}")
        return cls(**value)

    def hold_creates(self, count: int | None = 1) -> Gate:
        """Hold the next ``count`` batch creates (None: all) before the batch exists, until
        ``gate.release()``; ``gate.wait_arrived()`` returns once one has arrived. Use it
        as ``with emu.faults.hold_creates() as gate:`` (released on exit)."""
        gate = Gate(count)
        self._create_gates().append(gate)
        return gate

    def _create_gates(self) -> list[Gate]:
        # Not a dataclass field: gates are live objects, not settings to copy or serialise.
        gates: list[Gate] | None = self.__dict__.get("_gates")
        if gates is None:
            gates = self.__dict__["_gates"] = []
        return gates

    def _pass_create_gates(self) -> None:
        gates = self._create_gates()
        for gate in list(gates):
            if gate._pass():
                with suppress(ValueError):
                    gates.remove(gate)

    def _take(self, name: str, route: str) -> bool:
        value = getattr(self, name)
        if isinstance(value, dict):
            n = value.get(route, 0)
            if n > 0:
                value[route] = n - 1
                return True
            return False
        if value > 0:
            setattr(self, name, value - 1)
            return True
        return False


# --- validation -----------------------------------------------------------------------------


class _Invalid(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _at(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _check_content(content: Any, where: str) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _Invalid(f"{where}: Input should be a valid string or a list of content blocks")
    for k, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise _Invalid(f"{where}.{k}: Input should be a content block object with a `type`")
        if block["type"] == "text" and not isinstance(block.get("text"), str):
            raise _Invalid(f"{where}.{k}.text: Field required")


def validate_params(
    params: Any,
    prefix: str = "",
    *,
    batch: bool = False,
    count_tokens: bool = False,
    version: str | None = None,
) -> None:
    """Raise ``_Invalid`` with the API's kind of message when ``params`` cannot be accepted.

    ``version`` is the request's ``anthropic-version``; 2026-10-21 and later add the
    rules of :mod:`claude_lab.emulator.versions` (None: the permissive 2023-06-01 rules).
    """
    current = versions.is_current(version)
    if not isinstance(params, dict):
        raise _Invalid(f"{prefix or 'body'}: Input should be a valid dictionary")
    model = params.get("model")
    if "model" not in params:
        raise _Invalid(f"{_at(prefix, 'model')}: Field required")
    if not isinstance(model, str) or not model:
        raise _Invalid(f"{_at(prefix, 'model')}: Input should be a valid string")
    if not count_tokens:
        if "max_tokens" not in params:
            raise _Invalid(f"{_at(prefix, 'max_tokens')}: Field required")
        max_tokens = params["max_tokens"]
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
            raise _Invalid(f"{_at(prefix, 'max_tokens')}: Input should be a valid integer")
        # 2026-10-21: max_tokens 0 pre-warms the prompt cache (refused in a batch, below).
        if max_tokens < (0 if current else 1):
            raise _Invalid(
                f"{_at(prefix, 'max_tokens')}: Input should be greater than or equal to 1"
            )
    if "messages" not in params:
        raise _Invalid(f"{_at(prefix, 'messages')}: Field required")
    messages = params["messages"]
    if not isinstance(messages, list):
        raise _Invalid(f"{_at(prefix, 'messages')}: Input should be a valid list")
    if not messages:
        raise _Invalid(f"{_at(prefix, 'messages')}: at least one message is required")
    for j, message in enumerate(messages):
        where = _at(prefix, f"messages.{j}")
        if not isinstance(message, dict):
            raise _Invalid(f"{where}: Input should be a valid dictionary")
        if message.get("role") not in ("user", "assistant"):
            raise _Invalid(f"{where}.role: Input should be 'user' or 'assistant'")
        if "content" not in message:
            raise _Invalid(f"{where}.content: Field required")
        _check_content(message["content"], f"{where}.content")
    system = params.get("system")
    if system is not None:
        _check_content(system, _at(prefix, "system"))
    stream = params.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _Invalid(f"{_at(prefix, 'stream')}: Input should be a valid boolean")
    if batch and stream:
        raise _Invalid(
            f"{_at(prefix, 'stream')}: streaming is not supported for requests in a Message Batch"
        )
    if current:
        problem = versions.version_problem(params, prefix, version=str(version), batch=batch)
        if problem is not None:
            raise _Invalid(problem)
    _check_sampling(params, prefix)
    stops = params.get("stop_sequences")
    if stops is not None and (
        not isinstance(stops, list) or not all(isinstance(s, str) for s in stops)
    ):
        raise _Invalid(f"{_at(prefix, 'stop_sequences')}: Input should be a list of strings")
    tools = params.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _Invalid(f"{_at(prefix, 'tools')}: Input should be a valid list")
        for k, tool in enumerate(tools):
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                raise _Invalid(f"{_at(prefix, f'tools.{k}.name')}: Field required")
    thinking = params.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        where = _at(prefix, "thinking.budget_tokens")
        if not isinstance(budget, int) or isinstance(budget, bool):
            raise _Invalid(f"{where}: Field required")
        if budget < 1024:
            raise _Invalid(f"{where}: Input should be greater than or equal to 1024")
        if not count_tokens and budget >= params["max_tokens"]:
            raise _Invalid(
                f"{_at(prefix, 'max_tokens')}: must be greater than thinking.budget_tokens"
            )


def _check_sampling(params: dict[str, Any], prefix: str) -> None:
    """Ranges of the sampling parameters, where a version still accepts them."""
    temperature = params.get("temperature")
    if temperature is not None and (
        not isinstance(temperature, int | float) or not 0 <= temperature <= 1
    ):
        raise _Invalid(f"{_at(prefix, 'temperature')}: Input should be a number between 0 and 1")
    top_p = params.get("top_p")
    if top_p is not None and (not isinstance(top_p, int | float) or not 0 <= top_p <= 1):
        raise _Invalid(f"{_at(prefix, 'top_p')}: Input should be a number between 0 and 1")
    top_k = params.get("top_k")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 0):
        raise _Invalid(f"{_at(prefix, 'top_k')}: Input should be an integer >= 0")


# --- batches --------------------------------------------------------------------------------


class _Batch:
    """One batch: its requests, the simulated finish time of each, and the answers so far."""

    def __init__(
        self,
        *,
        seq: int,
        batch_id: str,
        created: float,
        custom_ids: list[str],
        params: list[dict[str, Any]],
        finish: list[float],
        fault_errors: dict[int, str],
        not_found_left: int,
    ) -> None:
        self.seq = seq
        self.id = batch_id
        self.created = created
        self.custom_ids = custom_ids
        self.params = params
        self.finish = finish  # offset from creation; inf = never processed
        self.order = sorted(range(len(finish)), key=finish.__getitem__)
        self.sorted_finish = [finish[i] for i in self.order]
        self.fault_errors = fault_errors
        self.not_found_left = not_found_left
        self.cancel_at: float | None = None
        self.cancel_end: float | None = None  # offset at which canceling completes
        self.deleted = False
        self.betas: frozenset[str] = frozenset()
        self.lock = threading.Lock()
        self.lines: list[bytes | None] = [None] * len(finish)
        self.err_cum = [0]  # errored rows among the first k finished, for every k evaluated
        self.results_blob: bytes | None = None
        self.invalid: dict[int, str] = {}  # row -> why its params were refused (errored line)
        self.version: str | None = None  # the create's anthropic-version

    @property
    def n(self) -> int:
        return len(self.finish)

    def end_offset(self) -> tuple[float, str]:
        """-> (offset at which processing ends, why: "done" | "canceled" | "expired")."""
        natural = self.sorted_finish[-1] if self.sorted_finish else 0.0
        end, why = (natural, "done") if natural <= EXPIRES_AFTER else (EXPIRES_AFTER, "expired")
        if self.cancel_end is not None and self.cancel_end < end:
            end, why = self.cancel_end, "canceled"
        return end, why


@dataclass
class _Options:
    request_seconds: float
    jitter: float
    concurrency: int
    seed: int
    counts: Literal["end", "incremental"]
    cancel_seconds: float


def _schedule(durations: list[float], skip: set[int], concurrency: int) -> list[float]:
    """Finish offsets for requests run in order on ``concurrency`` slots (FIFO)."""
    finish = [math.inf] * len(durations)
    if concurrency >= len(durations):
        for i, d in enumerate(durations):
            if i not in skip:
                finish[i] = d
        return finish
    slots = [0.0] * concurrency
    for i, d in enumerate(durations):
        if i in skip:
            continue
        start = heapq.heappop(slots)
        finish[i] = start + d
        heapq.heappush(slots, finish[i])
    return finish


def _json(
    status: int, payload: Any, request_id: str, extra: Iterable[tuple[str, str]] = ()
) -> Response:
    body = orjson.dumps(payload)
    headers = [("content-type", "application/json"), ("request-id", request_id), *extra]
    return Response(status, headers, body)


def _error(
    status: int,
    message: str,
    request_id: str,
    *,
    error_type: str | None = None,
    extra: Iterable[tuple[str, str]] = (),
) -> Response:
    kind = error_type or _STATUS_TYPES.get(status, "api_error")
    payload = {
        "type": "error",
        "error": {"type": kind, "message": message},
        "request_id": request_id,
    }
    return _json(status, payload, request_id, extra)


def _new_request_id() -> str:
    return "req_emu" + secrets.token_hex(12)


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
        self.options = _Options(
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
        self.responder = responder
        self.faults = Faults.coerce(faults)
        self.base_url = base_url.rstrip("/")
        self.prompt_cache = PromptCache()
        self.catalogue = Catalogue()
        self._lock = threading.RLock()
        self._answered = threading.Condition(self._lock)  # notified as each request is logged
        self._batches: dict[str, _Batch] = {}
        self._order: list[str] = []  # creation order, oldest first
        self._log: list[RequestRecord] = []
        self._seq = 0
        self._messages = 0
        self.foreign: set[str] = set()  # ids of batches made by simulated other users
        self._others_armed: list[tuple[str, int]] = []  # (when, size) of the create in hand
        # The organisation's batch queue limit (requests not yet processed, over all of
        # its batches); None = unlimited. Over it, a create is refused with 429.
        self.queue_limit: int | None = None

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
            response = _error(400, "Invalid Content-Length header", _new_request_id())
        else:
            if length <= MAX_BATCH_BYTES:
                return None
            response = _error(
                413,
                f"Request exceeds the maximum allowed size of {MAX_BATCH_BYTES} bytes "
                f"(got {length}); split the batch into smaller ones.",
                _new_request_id(),
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
        request_id = _new_request_id()
        try:
            response = self._api(method, path, query, lower, body, request_id)
        except Exception as exc:  # a bug here must still answer like the API would
            response = _error(500, f"Internal emulator error: {type(exc).__name__}", request_id)
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
            return _error(404, f"Not found: {method} {path}", request_id)
        if not _api_key(headers):
            return _error(
                401,
                "Missing API key: send it as `x-api-key: <key>` or `Authorization: Bearer <key>`.",
                request_id,
            )
        if not headers.get("anthropic-version"):
            return _error(400, "anthropic-version: header is required", request_id)
        name, batch_id = route
        self._others_fire(name)
        fault = self._endpoint_fault(name, request_id)
        if fault is not None:
            self._others_fire(name, after_create=True)
            return fault
        version = headers.get("anthropic-version")
        betas = frozenset(b.strip() for b in headers.get("anthropic-beta", "").split(",") if b)
        if name == "create":
            self.faults._pass_create_gates()  # outside the lock: a held create blocks nothing else
            return self._create_as_faulted(body, request_id, version, betas)
        if name == "list":
            return self._list(query, request_id)
        if name == "messages":
            return self._message(body, request_id, version, betas)
        if name == "count_tokens":
            return self._count_tokens(body, request_id, version)
        if name == "models":
            return self._models_list(query, request_id)
        if name == "model":
            assert batch_id is not None
            return self._model_get(batch_id, request_id)
        assert batch_id is not None
        with self._lock:
            batch = self._batches.get(batch_id)
            if batch is None or batch.deleted:
                return _error(404, f"Message Batch {batch_id!r} not found.", request_id)
            if name == "retrieve" and batch.not_found_left > 0:
                # The real API is eventually consistent right after create.
                batch.not_found_left -= 1
                return _error(404, f"Message Batch {batch_id!r} not found.", request_id)
        if name == "retrieve":
            return _json(200, self._render(batch), request_id)
        if name == "cancel":
            return self._cancel(batch, request_id)
        if name == "delete":
            return self._delete(batch, request_id)
        return self._results(batch, request_id)

    def _endpoint_fault(self, route: str, request_id: str) -> Response | None:
        with self._lock:
            faults = self.faults
            for name, status, message in (
                ("rate_limit", 429, "Number of request tokens has exceeded your rate limit."),
                ("overloaded", 529, "Overloaded"),
                ("server_error", 500, "Internal server error"),
            ):
                if faults._take(name, route):
                    ms = max(int(faults.retry_after_ms), 0)
                    extra = [
                        ("retry-after-ms", str(ms)),
                        ("retry-after", str(math.ceil(ms / 1000))),
                    ]
                    return _error(status, message, request_id, extra=extra)
        return None

    # --- control routes (not logged, no key) ------------------------------------------------

    def _control(self, method: str, path: str, query: dict[str, str], body: bytes) -> Response:
        rid = _new_request_id()
        if path == "/_emulator/faults" and method in ("GET", "POST"):
            # Lets another process (tests driving the CLI) switch faults at run time.
            if method == "POST":
                try:
                    changes = orjson.loads(body or b"{}")
                    with self._lock:
                        current = {f.name: getattr(self.faults, f.name) for f in fields(Faults)}
                        self.faults = Faults.coerce({**current, **changes})
                except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
                    return _error(400, f"faults: {exc}", rid)
            return _json(200, {f.name: getattr(self.faults, f.name) for f in fields(Faults)}, rid)
        if path == "/_emulator/requests" and method == "GET":
            return _json(200, [r.as_dict() for r in self.requests], rid)
        if path == "/_emulator/batches" and method == "GET":
            return _json(200, self.batch_report(), rid)
        if path == "/_emulator/advance" and method == "POST":
            try:
                seconds = float(query.get("seconds", "0"))
                now = self.clock.advance(seconds)
            except ValueError as exc:
                return _error(400, f"seconds: {exc}", rid)
            return _json(200, {"now": rfc3339(now), "time": now}, rid)
        if path == "/_emulator/clock" and method == "GET":
            now = self.clock.now()
            return _json(200, {"now": rfc3339(now), "time": now}, rid)
        return _error(404, f"Not found: {method} {path}", rid)

    # --- create -------------------------------------------------------------------------

    def _create(
        self,
        body: bytes,
        request_id: str,
        version: str | None = None,
        betas: frozenset[str] = frozenset(),
    ) -> Response:
        if len(body) > MAX_BATCH_BYTES:
            return _error(
                413, f"Request exceeds the maximum size of {MAX_BATCH_BYTES} bytes.", request_id
            )
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return _error(
                400, f"There was an error parsing the body of your request: {exc}", request_id
            )
        try:
            custom_ids, params, invalid = _validate_batch(data, version)
        except _Invalid as exc:
            return _error(400, exc.message, request_id)
        # Under the lock, so two creates at once cannot both fit the last of the room.
        with self._lock if self.queue_limit is not None else contextlib.nullcontext():
            refused = self._queue_refusal(len(custom_ids), request_id)
            if refused is not None:
                return refused
            batch = self._register(custom_ids, params, invalid, version)
            batch.betas = betas  # beta headers apply to the whole batch
        with self._lock:
            lost = self.faults.drop_after_create > 0
            if lost:
                self.faults.drop_after_create -= 1
        # A batch is never ended in the response that created it, whatever the clock says.
        response = _json(200, self._render(batch, fresh=True), request_id)
        if lost:
            blob = response.body
            assert isinstance(blob, bytes)
            return Response(200, response.headers, _chunks(blob, True), length=len(blob))
        return response

    # --- the organisation's batch queue ------------------------------------------------------

    def queued(self) -> int:
        """Requests waiting in the organisation's batch queue now (not yet processed)."""
        now = self.clock.now()
        with self._lock:
            batches = [self._batches[b] for b in self._order]
        total = 0
        for batch in batches:
            off = now - batch.created
            end, _ = batch.end_offset()
            if off < end:
                total += batch.n - bisect.bisect_right(batch.sorted_finish, off)
        return total

    def _queue_refusal(self, count: int, request_id: str) -> Response | None:
        limit = self.queue_limit
        if limit is None:
            return None
        queued = self.queued()
        if queued + count <= limit:
            return None
        return _error(
            429,
            f"Your organization's Message Batches queue is full: {queued} requests are queued "
            f"and this batch adds {count}, over the limit of {limit}. Wait for queued batches "
            "to finish, or send fewer requests at once.",
            request_id,
            error_type="rate_limit_error",
            extra=[("retry-after-ms", "10")],
        )

    def _register(
        self,
        custom_ids: list[str],
        params: list[dict[str, Any]],
        invalid: dict[int, str] | None = None,
        version: str | None = None,
    ) -> _Batch:
        """Make a batch of validated requests: its schedule, its faults, its id.

        ``invalid``: rows whose params were refused (errored lines); ``version``: the
        create's ``anthropic-version``, under which every row is answered.
        """
        opts = self.options
        with self._lock:
            self._seq += 1
            seq = self._seq
            faults = self.faults
            error_rate, error_types = faults.error_rate, faults.error_types
            expire_rate, not_found = faults.expire_rate, faults.not_found_after_create
        n = len(custom_ids)
        rng = random.Random(f"{opts.seed}:{seq}")
        rand = rng.random
        base, jitter = opts.request_seconds, opts.jitter
        durations = (
            [base * (1.0 + jitter * (2.0 * rand() - 1.0)) for _ in range(n)] if base else [0.0] * n
        )
        skip: set[int] = set()
        fault_errors: dict[int, str] = {}
        if expire_rate or error_rate:
            frng = random.Random(f"faults:{opts.seed}:{seq}")
            for i in range(n):
                if expire_rate and frng.random() < expire_rate:
                    skip.add(i)
                elif error_rate and frng.random() < error_rate:
                    fault_errors[i] = error_types[frng.randrange(len(error_types))]
        finish = _schedule(durations, skip, opts.concurrency)
        batch_id = "msgbatch_emu" + secrets.token_hex(10)
        batch = _Batch(
            seq=seq,
            batch_id=batch_id,
            created=self.clock.now(),
            custom_ids=custom_ids,
            params=params,
            finish=finish,
            fault_errors=fault_errors,
            not_found_left=not_found,
        )
        batch.invalid = invalid or {}
        batch.version = version
        with self._lock:
            self._batches[batch_id] = batch
            self._order.append(batch_id)
        return batch

    def _create_as_faulted(
        self,
        body: bytes,
        request_id: str,
        version: str | None = None,
        betas: frozenset[str] = frozenset(),
    ) -> Response:
        """A create, then the faults that lose its response after the batch exists."""
        response = self._create(body, request_id, version, betas)
        self._others_fire("create", after_create=True)
        if response.status != 200:
            return response
        with self._lock:
            failed = self.faults.error_after_create > 0
            if failed:
                self.faults.error_after_create -= 1
            stalled = not failed and self.faults.timeout_after_create > 0
            if stalled:
                self.faults.timeout_after_create -= 1
            stall = float(self.faults.stall_seconds)
        if failed:
            return _error(500, "Internal server error", request_id)
        if stalled:
            blob = response.body if isinstance(response.body, bytes) else b"".join(response.body)
            return Response(200, response.headers, _stalled(blob, stall), length=len(blob))
        return response

    # --- other users of the workspace ---------------------------------------------------------

    def _others_fire(self, route: str, *, after_create: bool = False) -> None:
        """Make the foreign batches ``Faults.others`` asks for at this point of a call."""
        with self._lock:
            due: list[int] = []
            if not after_create:
                due += [size for when, size in self._others_armed if when == "after"]
                self._others_armed = [x for x in self._others_armed if x[0] != "after"]
                if route == "create" and self.faults.others:
                    self._others_armed = list(self.faults.others)
                    self.faults.others = ()
                    due += [size for when, size in self._others_armed if when == "before"]
            elif route == "create":
                due += [size for when, size in self._others_armed if when == "during"]
                self._others_armed = [x for x in self._others_armed if x[0] == "after"]
        for size in due:
            self.foreign_batch(size)

    def foreign_batch(self, size: int) -> str:
        """Make a batch of ``size`` requests as another user of the workspace would; -> its id."""
        tag = secrets.token_hex(4)
        custom_ids = [f"other_{tag}_{i}" for i in range(size)]
        params: list[dict[str, Any]] = [
            {
                "model": "claude-haiku-4-5",
                "max_tokens": 16,
                "messages": [{"role": "user", "content": f"Someone else's question {i}"}],
            }
            for i in range(size)
        ]
        batch = self._register(custom_ids, params)
        with self._lock:
            self.foreign.add(batch.id)
        return batch.id

    def batch_report(self) -> list[dict[str, Any]]:
        """Every batch made, oldest first: id, custom_ids, whether another (simulated) user
        made it, and whether it was ever canceled or deleted."""
        with self._lock:
            batches = [self._batches[b] for b in self._order]
            return [
                {
                    "id": b.id,
                    "custom_ids": list(b.custom_ids),
                    "foreign": b.id in self.foreign,
                    "canceled": b.cancel_at is not None,
                    "deleted": b.deleted,
                }
                for b in batches
            ]

    # --- state ----------------------------------------------------------------------------

    def _evaluate(self, batch: _Batch, k: int) -> None:
        """Answer the first ``k`` rows in finish order (once; cached as result lines)."""
        if len(batch.err_cum) > k:
            return
        with batch.lock:
            while len(batch.err_cum) <= k:
                done = len(batch.err_cum) - 1
                i = batch.order[done]
                line, errored = self._row_line(batch, i)
                batch.lines[i] = line
                batch.err_cum.append(batch.err_cum[-1] + errored)

    def _row_line(self, batch: _Batch, i: int) -> tuple[bytes, int]:
        custom_id = batch.custom_ids[i]
        # Unique per batch and row, deterministic, and cheap (no hashing on the hot path).
        request_id = f"req_{batch.id[-20:]}{i:08x}"
        fault = batch.fault_errors.get(i)
        refused = batch.invalid.get(i) if batch.invalid else None
        if refused is not None:
            outcome: dict[str, Any] | RowError = RowError("invalid_request_error", refused)
        elif fault is not None:
            outcome = RowError(fault, _FAULT_MESSAGES.get(fault, fault))
        else:
            when = batch.created + batch.finish[i]
            msg_id = f"msg_{batch.id[-20:]}{i:08x}"
            # Stand-in responders draw per request, so repeated samples of a row differ.
            token = standins.CURRENT_CUSTOM_ID.set(custom_id)
            try:
                outcome = self._answer(
                    batch.params[i], msg_id, "batch", when, batch.version, batch.betas
                )
            finally:
                standins.CURRENT_CUSTOM_ID.reset(token)
        if isinstance(outcome, RowError):
            result: dict[str, Any] = {
                "type": "errored",
                "error": {
                    "type": "error",
                    "error": {"type": outcome.type, "message": outcome.message},
                    "request_id": request_id,
                },
            }
            errored = 1
        else:
            result, errored = {"type": "succeeded", "message": outcome}, 0
        try:
            return orjson.dumps({"custom_id": custom_id, "result": result}) + b"\n", errored
        except TypeError as exc:  # a user responder returned something that is not JSON
            bad = {
                "type": "errored",
                "error": {
                    "type": "error",
                    "error": {"type": "api_error", "message": f"responder output: {exc}"},
                    "request_id": request_id,
                },
            }
            return orjson.dumps({"custom_id": custom_id, "result": bad}) + b"\n", 1

    def _render(self, batch: _Batch, *, fresh: bool = False) -> dict[str, Any]:
        """The MessageBatch object as of now (as of creation when ``fresh``)."""
        now = batch.created if fresh else self.clock.now()
        off = now - batch.created
        end, why = batch.end_offset()
        ended = not fresh and off >= end
        n = batch.n
        counts = {"processing": n, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        if ended or self.options.counts == "incremental":
            k = bisect.bisect_right(batch.sorted_finish, min(off, end)) if not fresh else 0
            if ended or k:
                self._evaluate(batch, k)
            errored = batch.err_cum[k]
            counts.update(processing=n - k, succeeded=k - errored, errored=errored)
            if ended:
                counts["processing"] = 0
                if why == "canceled":
                    counts["canceled"] = n - k
                elif why == "expired":
                    counts["expired"] = n - k
        if ended:
            status = "ended"
        elif batch.cancel_at is not None:
            status = "canceling"
        else:
            status = "in_progress"
        archived = ended and off >= ARCHIVED_AFTER
        results_url = None
        if ended and not archived:
            results_url = f"{self.base_url}/v1/messages/batches/{batch.id}/results"
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": status,
            "request_counts": counts,
            "ended_at": rfc3339(batch.created + end) if ended else None,
            "created_at": rfc3339(batch.created),
            "expires_at": rfc3339(batch.created + EXPIRES_AFTER),
            "archived_at": rfc3339(batch.created + ARCHIVED_AFTER) if archived else None,
            "cancel_initiated_at": rfc3339(batch.cancel_at)
            if batch.cancel_at is not None
            else None,
            "results_url": results_url,
        }

    # --- list / cancel / delete / results ------------------------------------------------------

    def _list(self, query: dict[str, str], request_id: str) -> Response:
        try:
            limit = int(query.get("limit", "20"))
        except ValueError:
            return _error(400, "limit: Input should be a valid integer", request_id)
        if not 1 <= limit <= 1000:
            return _error(400, "limit: Input should be between 1 and 1000", request_id)
        after, before = query.get("after_id"), query.get("before_id")
        if after and before:
            return _error(400, "Provide only one of after_id and before_id.", request_id)
        with self._lock:
            ids = [b for b in reversed(self._order) if not self._batches[b].deleted]  # newest first
            cursor = after or before
            if cursor and cursor not in self._batches:
                which = "after_id" if after else "before_id"
                return _error(400, f"{which}: no Message Batch with id {cursor!r}", request_id)
            if after:
                pos = _position(ids, self._order, after)
                page, has_more = ids[pos : pos + limit], pos + limit < len(ids)
            elif before:
                pos = _position(ids, self._order, before, before=True)
                start = max(0, pos - limit)
                page, has_more = ids[start:pos], start > 0
            else:
                page, has_more = ids[:limit], limit < len(ids)
            batches = [self._batches[b] for b in page]
        data = [self._render(b) for b in batches]
        payload = {
            "data": data,
            "has_more": has_more,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }
        return _json(200, payload, request_id)

    def _cancel(self, batch: _Batch, request_id: str) -> Response:
        now = self.clock.now()
        with self._lock:
            end, _ = batch.end_offset()
            if batch.cancel_at is None and now - batch.created < end:
                batch.cancel_at = now
                batch.cancel_end = now - batch.created + self.options.cancel_seconds
        return _json(200, self._render(batch), request_id)

    def _delete(self, batch: _Batch, request_id: str) -> Response:
        state = self._render(batch)
        if state["processing_status"] != "ended":
            return _error(
                400,
                f"Message Batch {batch.id} cannot be deleted while it is "
                f"{state['processing_status']}; cancel it and delete it once it has ended.",
                request_id,
            )
        with self._lock:
            batch.deleted = True
            batch.lines = []
            batch.params = []
            batch.results_blob = None
        return _json(200, {"id": batch.id, "type": "message_batch_deleted"}, request_id)

    def _results(self, batch: _Batch, request_id: str) -> Response:
        state = self._render(batch)
        if state["processing_status"] != "ended":
            return _error(
                400,
                f"Message Batch {batch.id} has not finished processing "
                f"(processing_status: {state['processing_status']}); "
                "results are available once it has ended.",
                request_id,
            )
        if state["archived_at"] is not None:
            return _error(
                404,
                f"The results of Message Batch {batch.id} are no longer available: "
                f"it was archived at {state['archived_at']}.",
                request_id,
            )
        blob = self._blob(batch)
        with self._lock:
            drop = self.faults.drop_results > 0
            if drop:
                self.faults.drop_results -= 1
        headers = [
            ("content-type", "application/binary"),
            ("request-id", request_id),
        ]
        return Response(200, headers, _chunks(blob, drop), length=len(blob))

    def _blob(self, batch: _Batch) -> bytes:
        with batch.lock:
            if batch.results_blob is not None:
                return batch.results_blob
        end, why = batch.end_offset()
        k = bisect.bisect_right(batch.sorted_finish, end)
        self._evaluate(batch, k)
        with batch.lock:
            if batch.results_blob is None:
                tail = "canceled" if why == "canceled" else "expired"
                lines = batch.lines
                for i in batch.order[k:]:
                    lines[i] = (
                        orjson.dumps({"custom_id": batch.custom_ids[i], "result": {"type": tail}})
                        + b"\n"
                    )
                order = list(range(batch.n))
                rng = random.Random(f"results:{self.options.seed}:{batch.seq}")
                rng.shuffle(order)
                faults = self.faults
                if faults.omit_rate:
                    order = [i for i in order if rng.random() >= faults.omit_rate]
                parts: list[bytes] = [lines[i] for i in order]  # type: ignore[misc]
                if faults.stray_lines and parts:
                    stray = {"custom_id": "not_in_this_batch", "result": {"type": "canceled"}}
                    parts += [parts[0], orjson.dumps(stray) + b"\n"]
                batch.results_blob = b"".join(parts)
                # The blob is the cache now: drop what built it to halve the memory.
                batch.lines = []
                batch.params = []
            return batch.results_blob

    # --- messages ---------------------------------------------------------------------------

    def _answer(
        self,
        params: dict[str, Any],
        msg_id: str,
        tier: str,
        when: float,
        version: str | None = None,
        betas: frozenset[str] = frozenset(),
    ) -> dict[str, Any] | RowError:
        """One Messages answer, or the API error it produces (per row in a batch)."""
        refused = self._model_problem(params, version, betas)
        if refused is not None:
            return refused
        problem = features.check_request(params, batch=tier == "batch", betas=betas)
        if problem is not None:
            return RowError("invalid_request_error", problem)
        if params.get("max_tokens") == 0:  # cache pre-warming: no reply is generated
            return self._prewarm(params, msg_id, tier, when)
        text: str | None = None
        overrides: dict[str, Any] | None = None
        if self.responder is not None:
            try:
                out: Any = self.responder(params)
            except RowError as exc:
                return exc
            except Exception as exc:
                return RowError("api_error", f"responder failed: {type(exc).__name__}: {exc}")
            if isinstance(out, RowError):
                return out
            if isinstance(out, BaseException):
                return RowError("api_error", f"{type(out).__name__}: {out}")
            if isinstance(out, str):
                text = out
            elif isinstance(out, dict):
                overrides = out
            elif out is not None:
                return RowError("api_error", f"responder returned {type(out).__name__}")
        cache = self.prompt_cache.account(params, when)
        message = build_message(params, msg_id=msg_id, service_tier=tier, cache=cache, text=text)
        if overrides:
            usage = {**message["usage"], **(overrides.get("usage") or {})}
            message.update({k: v for k, v in overrides.items() if k != "usage"})
            if "content" in overrides:
                if "output_tokens" not in (overrides.get("usage") or {}):
                    usage["output_tokens"] = content_output_tokens(message["content"])
                if "stop_reason" not in overrides:
                    has_tool = any(
                        isinstance(b, dict) and b.get("type") == "tool_use"
                        for b in message["content"]
                    )
                    message["stop_reason"] = "tool_use" if has_tool else "end_turn"
                    message["stop_sequence"] = None
            message["usage"] = usage
        return message

    def _model_problem(
        self, params: dict[str, Any], version: str | None, betas: frozenset[str] = frozenset()
    ) -> RowError | None:
        """What the model catalogue refuses: unknown or retired model, limits, sampling."""
        model = params.get("model")
        record = self.catalogue.resolve(model) if isinstance(model, str) else None
        if record is None or record["lifecycle"] == "retired":
            why = "" if record is None else f" (retired on {record.get('retires_at')})"
            return RowError("not_found_error", f"model: {model}{why}")
        limit = record.get("max_tokens")
        if features.LONG_OUTPUT_BETA in betas:
            limit = features.LONG_OUTPUT_MAX_TOKENS  # the model itself is checked there
        max_tokens = params.get("max_tokens")
        if isinstance(limit, int) and isinstance(max_tokens, int) and max_tokens > limit:
            return RowError(
                "invalid_request_error",
                f"max_tokens: {max_tokens} > {limit}, which is the maximum allowed number of "
                f"output tokens for {model}",
            )
        problem = features.capability_problem(params, record.get("capabilities"))
        if problem is not None:
            return RowError("invalid_request_error", problem)
        if not versions.is_current(version) and not record.get("_sampling", True):
            for key in versions.SAMPLING:
                if key in params:
                    return RowError(
                        "invalid_request_error",
                        f"{key}: is not supported by {model}; remove it.",
                    )
        window = record.get("max_input_tokens")
        if isinstance(window, int):
            tokens = count_input_tokens(params)
            if tokens > window:
                return RowError(
                    "invalid_request_error",
                    f"prompt is too long: {tokens} tokens > {window} maximum",
                )
        return None

    def _prewarm(
        self, params: dict[str, Any], msg_id: str, tier: str, when: float
    ) -> dict[str, Any]:
        """``max_tokens: 0``: the prompt cache is written, no content is generated."""
        cache = self.prompt_cache.account(params, when)
        message = build_message(params, msg_id=msg_id, service_tier=tier, cache=cache)
        message.update(content=[], stop_reason="max_tokens", stop_sequence=None)
        message["usage"]["output_tokens"] = 0
        return message

    def _message(
        self,
        body: bytes,
        request_id: str,
        version: str | None = None,
        betas: frozenset[str] = frozenset(),
    ) -> Response:
        try:
            params = orjson.loads(body)
            validate_params(params, version=version)
        except orjson.JSONDecodeError as exc:
            return _error(
                400, f"There was an error parsing the body of your request: {exc}", request_id
            )
        except _Invalid as exc:
            return _error(400, exc.message, request_id)
        with self._lock:
            self._messages += 1
            msg_id = "msg_emu" + _short(str(self.options.seed), str(self._messages), "n")
        outcome = self._answer(params, msg_id, "standard", self.clock.now(), version, betas)
        if isinstance(outcome, RowError):
            status = _TYPE_STATUS.get(outcome.type, 500)
            return _error(status, outcome.message, request_id, error_type=outcome.type)
        if params.get("stream"):
            headers = [
                ("content-type", "text/event-stream"),
                ("cache-control", "no-cache"),
                ("request-id", request_id),
            ]
            return Response(200, headers, _sse(outcome))
        try:
            return _json(200, outcome, request_id)
        except TypeError as exc:
            return _error(500, f"responder output is not JSON: {exc}", request_id)

    def _count_tokens(self, body: bytes, request_id: str, version: str | None = None) -> Response:
        try:
            params = orjson.loads(body)
            validate_params(params, count_tokens=True, version=version)
        except orjson.JSONDecodeError as exc:
            return _error(
                400, f"There was an error parsing the body of your request: {exc}", request_id
            )
        except _Invalid as exc:
            return _error(400, exc.message, request_id)
        return _json(200, {"input_tokens": count_input_tokens(params)}, request_id)

    # --- models ---------------------------------------------------------------------------

    def _models_list(self, query: dict[str, str], request_id: str) -> Response:
        """``GET /v1/models``: newest first, paged like batches; retired only when asked."""
        try:
            limit = int(query.get("limit", "20"))
        except ValueError:
            return _error(400, "limit: Input should be a valid integer", request_id)
        if not 1 <= limit <= 1000:
            return _error(400, "limit: Input should be between 1 and 1000", request_id)
        after, before = query.get("after_id"), query.get("before_id")
        if after and before:
            return _error(400, "Provide only one of after_id and before_id.", request_id)
        raw = query.get("lifecycle[]") or query.get("lifecycle") or "active,deprecated"
        wanted = {x for x in raw.split(",") if x}
        bad = sorted(wanted - {"active", "deprecated", "retired"})
        if bad:
            return _error(
                400,
                f"lifecycle: {bad} is not one of 'active', 'deprecated', 'retired'",
                request_id,
            )
        records = self.catalogue.ordered(wanted)
        ids = [r["id"] for r in records]
        cursor = after or before
        if cursor and cursor not in ids:
            which = "after_id" if after else "before_id"
            return _error(400, f"{which}: no model with id {cursor!r} in this list", request_id)
        if after:
            pos = ids.index(after) + 1
            page, has_more = records[pos : pos + limit], pos + limit < len(ids)
        elif before:
            pos = ids.index(before)
            start = max(0, pos - limit)
            page, has_more = records[start:pos], start > 0
        else:
            page, has_more = records[:limit], limit < len(ids)
        data = [Catalogue.public(r) for r in page]
        payload = {
            "data": data,
            "has_more": has_more,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }
        return _json(200, payload, request_id)

    def _model_get(self, model_id: str, request_id: str) -> Response:
        """``GET /v1/models/{id}``: an id or an alias; retired models stay in the record."""
        record = self.catalogue.resolve(model_id)
        if record is None:
            return _error(404, f"model: {model_id}", request_id)
        return _json(200, Catalogue.public(record), request_id)


_FAULT_MESSAGES = {
    "api_error": "Internal server error",
    "overloaded_error": "Overloaded",
    "rate_limit_error": "Rate limited",
    "timeout_error": "Request timed out",
}


def _api_key(headers: Mapping[str, str]) -> bool:
    if headers.get("x-api-key", "").strip():
        return True
    auth = headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip())


def _short(*parts: str) -> str:
    return hashlib.blake2b("\x00".join(parts).encode(), digest_size=12).hexdigest()


def _position(ids: list[str], order: list[str], cursor: str, *, before: bool = False) -> int:
    """Index in newest-first ``ids`` just past (after_id) or at (before_id) ``cursor``.

    Works for a deleted cursor too, by its place in creation order.
    """
    if cursor in ids:
        at = ids.index(cursor)
        return at if before else at + 1
    rank = order.index(cursor)
    newer = sum(1 for b in ids if order.index(b) > rank)
    return newer


def _validate_batch(
    data: Any, version: str | None = None
) -> tuple[list[str], list[dict[str, Any]], dict[int, str]]:
    """Check the batch's structure (a failure fails the create) and each request's params.

    Params are validated asynchronously by the API: a bad one is not a failed create
    but an errored result line, so those messages come back by row index.
    """
    if not isinstance(data, dict):
        raise _Invalid("body: Input should be a valid dictionary")
    if "requests" not in data:
        raise _Invalid("requests: Field required")
    requests = data["requests"]
    if not isinstance(requests, list):
        raise _Invalid("requests: Input should be a valid list")
    n = len(requests)
    if n == 0:
        raise _Invalid("requests: List should have at least 1 item after validation, not 0")
    if n > MAX_BATCH_REQUESTS:
        raise _Invalid(
            f"requests: List should have at most {MAX_BATCH_REQUESTS} items after validation, "
            f"not {n}; split the work into several batches."
        )
    seen: dict[str, int] = {}
    custom_ids: list[str] = []
    params_list: list[dict[str, Any]] = []
    invalid: dict[int, str] = {}
    match = _CUSTOM_ID.fullmatch
    for i, item in enumerate(requests):
        if not isinstance(item, dict):
            raise _Invalid(f"requests.{i}: Input should be a valid dictionary")
        if len(item) != 2:
            for key in item:
                if key not in ("custom_id", "params"):
                    raise _Invalid(f"requests.{i}.{key}: Extra inputs are not permitted")
            missing = "custom_id" if "custom_id" not in item else "params"
            raise _Invalid(f"requests.{i}.{missing}: Field required")
        custom_id = item.get("custom_id")
        if not isinstance(custom_id, str) or match(custom_id) is None:
            raise _Invalid(
                f"requests.{i}.custom_id: String should match pattern '{CUSTOM_ID_PATTERN}'"
            )
        first = seen.setdefault(custom_id, i)
        if first != i:
            raise _Invalid(
                f"requests.{i}.custom_id: duplicate custom_id {custom_id!r} (also used by "
                f"requests.{first}.custom_id); custom_id must be unique within a batch"
            )
        params = item.get("params")
        if params is None:
            raise _Invalid(f"requests.{i}.params: Field required")
        if not isinstance(params, dict):
            raise _Invalid(f"requests.{i}.params: Input should be a valid dictionary")
        try:
            validate_params(params, f"requests.{i}.params", batch=True, version=version)
        except _Invalid as exc:
            invalid[i] = exc.message
        custom_ids.append(custom_id)
        params_list.append(params)
    return custom_ids, params_list, invalid


def _chunks(blob: bytes, drop: bool, size: int = 1 << 16) -> Iterator[bytes]:
    stop = len(blob) // 2 if drop else len(blob)
    for start in range(0, stop, size):
        yield blob[start : min(start + size, stop)]
    if drop:
        raise ConnectionDropped("fault: response cut halfway")


def _stalled(blob: bytes, seconds: float) -> Iterator[bytes]:
    time.sleep(seconds)  # the headers are out; the body is late, past the client's timeout
    yield blob


def _sse(message: dict[str, Any]) -> Iterator[bytes]:
    """A Message as the API's server-sent event stream."""

    def event(name: str, data: dict[str, Any]) -> bytes:
        return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    usage = message.get("usage") or {}
    start = {
        **message,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**usage, "output_tokens": 1},
    }
    yield event("message_start", {"type": "message_start", "message": start})
    yield event("ping", {"type": "ping"})
    for index, block in enumerate(message.get("content") or []):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            yield event(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "text", "text": ""},
                },
            )
            for piece in _pieces(str(block.get("text", ""))):
                delta = {"type": "text_delta", "text": piece}
                yield event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
        elif kind == "thinking":
            empty = {"type": "thinking", "thinking": "", "signature": ""}
            yield event(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": empty},
            )
            for piece in _pieces(str(block.get("thinking", ""))):
                delta = {"type": "thinking_delta", "thinking": piece}
                yield event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
            delta = {"type": "signature_delta", "signature": str(block.get("signature", ""))}
            yield event(
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": delta},
            )
        elif kind == "tool_use":
            head = {k: v for k, v in block.items() if k != "input"}
            yield event(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {**head, "input": {}},
                },
            )
            raw = orjson.dumps(block.get("input") or {}).decode()
            for piece in _pieces(raw, 16):
                delta = {"type": "input_json_delta", "partial_json": piece}
                yield event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
        else:
            yield event(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": block},
            )
        yield event("content_block_stop", {"type": "content_block_stop", "index": index})
    delta_usage = {
        "output_tokens": usage.get("output_tokens", 1),
        "input_tokens": usage.get("input_tokens"),
        "cache_creation_input_tokens": usage.get("cache_creation_input_tokens"),
        "cache_read_input_tokens": usage.get("cache_read_input_tokens"),
    }
    yield event(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {
                "stop_reason": message.get("stop_reason"),
                "stop_sequence": message.get("stop_sequence"),
            },
            "usage": delta_usage,
        },
    )
    yield event("message_stop", {"type": "message_stop"})


def _pieces(text: str, size: int = 12) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]
