"""What an answer is, before any transport carries it: status, headers, and a body.

Owns :class:`Response` (bytes, or chunks produced as they are read), the JSON and
error bodies every route answers with (``request-id`` header and field), the
request ids, and the two body shapes faults use: a body cut halfway
(:class:`ConnectionDropped`) and a body that is late (``Response.stall``). The
socket server and the in-process transport both turn a Response into exactly
the same bytes.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = [
    "STATUS_TYPES",
    "TYPE_STATUS",
    "ConnectionDropped",
    "Response",
    "chunks",
    "error",
    "json_response",
    "new_request_id",
]

STATUS_TYPES = {
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
TYPE_STATUS = {v: k for k, v in STATUS_TYPES.items()}


class ConnectionDropped(Exception):
    """Raised by a response body iterator: the transport must cut the connection right there."""


@dataclass
class Response:
    """What the emulator answers; ``body`` is bytes or an iterator of chunks (streamed)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes | Iterable[bytes]
    length: int | None = None  # for an iterator body: known total length, else chunked
    stall: float = 0.0
    """Real seconds between the headers and the body (a late response, past a client's timeout)."""

    @property
    def chunked(self) -> bool:
        """Sent with ``transfer-encoding: chunked`` (a stream of unknown length)."""
        return not isinstance(self.body, bytes) and self.length is None

    def framing(self) -> tuple[str, str]:
        """The header that delimits the body: its length, or chunked."""
        if self.chunked:
            return ("transfer-encoding", "chunked")
        return (
            "content-length",
            str(len(self.body) if isinstance(self.body, bytes) else self.length),
        )

    def pieces(self) -> Iterable[bytes]:
        """The body as chunks (bytes: one chunk)."""
        return [self.body] if isinstance(self.body, bytes) else self.body


def json_response(
    status: int, payload: Any, request_id: str, extra: Iterable[tuple[str, str]] = ()
) -> Response:
    body = orjson.dumps(payload)
    headers = [("content-type", "application/json"), ("request-id", request_id), *extra]
    return Response(status, headers, body)


def error(
    status: int,
    message: str,
    request_id: str,
    *,
    error_type: str | None = None,
    extra: Iterable[tuple[str, str]] = (),
) -> Response:
    """The API's error body: ``{"type": "error", "error": {type, message}, "request_id"}``."""
    kind = error_type or STATUS_TYPES.get(status, "api_error")
    payload = {
        "type": "error",
        "error": {"type": kind, "message": message},
        "request_id": request_id,
    }
    return json_response(status, payload, request_id, extra)


def new_request_id() -> str:
    return "req_emu" + secrets.token_hex(12)


def chunks(blob: bytes, drop: bool, size: int = 1 << 16) -> Iterator[bytes]:
    """``blob`` in pieces; with ``drop``, only its first half, then the connection is cut."""
    stop = len(blob) // 2 if drop else len(blob)
    for start in range(0, stop, size):
        yield blob[start : min(start + size, stop)]
    if drop:
        raise ConnectionDropped("fault: response cut halfway")
