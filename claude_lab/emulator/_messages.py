"""Messages: one answer (a Message or the API error it produces) per request.

Owns ``POST /v1/messages`` (JSON or, with ``stream``, an event stream from
:mod:`claude_lab.emulator._sse`), ``POST /v1/messages/count_tokens``, and the
answer every batch row gets: what the model catalogue refuses (unknown or
retired model, output limit, capabilities, sampling, context window), the
feature checks, cache pre-warming, and the user's responder, if any, over the
default reply.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any

from claude_lab import _api_facts as facts
from claude_lab.emulator import _features as features
from claude_lab.emulator import _sse as sse
from claude_lab.emulator import _versions as versions
from claude_lab.emulator._catalogue import Catalogue
from claude_lab.emulator._clock import Clock
from claude_lab.emulator._responder import (
    PromptCache,
    Responder,
    RowError,
    build_message,
    content_output_tokens,
    count_input_tokens,
)
from claude_lab.emulator._validation import Invalid, load_body, validate_params
from claude_lab.emulator._wire import TYPE_STATUS, Response, error, json_response

__all__ = ["Messages"]


class Messages:
    """Answers Messages requests; ``responder`` (None: the default replies) may be swapped."""

    def __init__(self, *, clock: Clock, seed: int, responder: Responder | None) -> None:
        self.clock = clock
        self.responder = responder
        self.prompt_cache = PromptCache()
        self.catalogue = Catalogue()
        self._seed = seed
        self._lock = threading.Lock()
        self._count = 0

    def answer(
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
        if facts.LONG_OUTPUT_BETA in betas:
            limit = facts.LONG_OUTPUT_MAX_TOKENS  # the model itself is checked there
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

    def message(
        self,
        body: bytes,
        request_id: str,
        version: str | None = None,
        betas: frozenset[str] = frozenset(),
    ) -> Response:
        """``POST /v1/messages``."""
        try:
            params = load_body(body)
            validate_params(params, version=version)
        except Invalid as exc:
            return error(400, exc.message, request_id)
        with self._lock:
            self._count += 1
            msg_id = "msg_emu" + _short(str(self._seed), str(self._count), "n")
        outcome = self.answer(params, msg_id, "standard", self.clock.now(), version, betas)
        if isinstance(outcome, RowError):
            status = TYPE_STATUS.get(outcome.type, 500)
            return error(status, outcome.message, request_id, error_type=outcome.type)
        if params.get("stream"):
            return Response(200, [*sse.HEADERS, ("request-id", request_id)], sse.events(outcome))
        try:
            return json_response(200, outcome, request_id)
        except TypeError as exc:
            return error(500, f"responder output is not JSON: {exc}", request_id)

    def count_tokens(self, body: bytes, request_id: str, version: str | None = None) -> Response:
        """``POST /v1/messages/count_tokens``."""
        try:
            params = load_body(body)
            validate_params(params, count_tokens=True, version=version)
        except Invalid as exc:
            return error(400, exc.message, request_id)
        return json_response(200, {"input_tokens": count_input_tokens(params)}, request_id)


def _short(*parts: str) -> str:
    return hashlib.blake2b("\x00".join(parts).encode(), digest_size=12).hexdigest()
