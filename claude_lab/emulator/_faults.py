"""Fault switches: what goes wrong, when, deterministically by the emulator's seed.

Owns :class:`Faults` (row faults drawn per batch from a seeded generator, endpoint
counters that count down as they fire, lost or late create responses, dropped
results streams, latency, other users of the workspace), the create gates it
arms (:mod:`claude_lab.emulator._gates`), the endpoint fault answers (429/500/529
with ``retry-after``) and the per-row draws of errored and expired rows.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass, fields
from typing import Any

from claude_lab.emulator._gates import Gate
from claude_lab.emulator._responder import ROW_ERROR_TYPES
from claude_lab.emulator._wire import Response, error

__all__ = ["OTHERS_WHEN", "ROUTES", "ROW_FAULT_MESSAGES", "Faults", "endpoint_fault", "row_faults"]

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
    forbidden: Counter = 0
    """The next N calls answer 403 permission_error (e.g. a workspace without batch access):
    a real rejection, which resending cannot help."""
    overloaded: Counter = 0
    """The next N calls answer 529 overloaded_error."""
    retry_after_ms: int = 20
    """Retry delay sent with 429/500/529 faults (the SDK obeys it exactly: keep it small)."""
    not_found_after_create: int = 0
    """Each batch created while set answers 404 to its first N retrieves."""
    drop_results: int = 0
    """The next N results downloads stop halfway and the connection is cut."""
    omit_rate: float = 0.0
    """Fraction of rows whose line is left out of the results file (a server-side loss)."""
    stray_lines: bool = False
    """Add a repeated line and a line with an unknown custom_id to each results file."""
    drop_after_create: int = 0
    """The next N batch creates succeed, then the connection is cut before the response
    is complete: the client cannot tell whether its batch exists (no idempotency key)."""
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
        for name in ("rate_limit", "server_error", "overloaded", "forbidden"):
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


ROW_FAULT_MESSAGES = {
    "api_error": "Internal server error",
    "overloaded_error": "Overloaded",
    "rate_limit_error": "Rate limited",
    "timeout_error": "Request timed out",
}


def endpoint_fault(faults: Faults, route: str, request_id: str) -> Response | None:
    """The 429/529/500/403 a counter of ``faults`` asks for on ``route`` now (counting it down).

    The caller holds the emulator's lock, so two calls never take the same count.
    """
    # (counter, status, message, whether the API says when to retry)
    for name, status, message, retry in (
        ("rate_limit", 429, "Number of request tokens has exceeded your rate limit.", True),
        ("overloaded", 529, "Overloaded", True),
        ("server_error", 500, "Internal server error", True),
        (
            "forbidden",
            403,
            "Your workspace does not have access to the Message Batches API.",
            False,
        ),
    ):
        if faults._take(name, route):
            if not retry:
                return error(status, message, request_id)
            ms = max(int(faults.retry_after_ms), 0)
            extra = [("retry-after-ms", str(ms)), ("retry-after", str(math.ceil(ms / 1000)))]
            return error(status, message, request_id, extra=extra)
    return None


def row_faults(
    seed: int, seq: int, n: int, expire_rate: float, error_rate: float, error_types: tuple[str, ...]
) -> tuple[set[int], dict[int, str]]:
    """Which rows of the ``seq``-th batch never run (expire) and which come back errored (type).

    Drawn from a generator seeded by the emulator's seed and the batch, so a run repeats.
    """
    skip: set[int] = set()
    errors: dict[int, str] = {}
    if expire_rate or error_rate:
        frng = random.Random(f"faults:{seed}:{seq}")
        for i in range(n):
            if expire_rate and frng.random() < expire_rate:
                skip.add(i)
            elif error_rate and frng.random() < error_rate:
                errors[i] = error_types[frng.randrange(len(error_types))]
    return skip, errors
