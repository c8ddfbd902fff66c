"""Stand-in models that differ: a seeded per-model error rate on arithmetic, and a judge.

The default emulator answers every arithmetic question correctly, whatever the
model, so a comparison of models run against it has nothing to show. Pass
``responder=stand_in_models()`` to ``serve()`` and each model id gets its own
error rate (:data:`ERROR_RATES`; others :data:`DEFAULT_ERROR_RATE`): a request
is answered wrongly when a uniform draw, seeded by ``seed``, the model and the
request (its custom_id in a batch, so repeated samples of one row differ) falls
below the rate; a wrong answer is the right one off by 1, 10 or 100. Nothing
reads a reference answer: the stand-ins compute the answer from the question,
as the emulator always does, and then sometimes get it wrong.

Requests asking for a structured verdict (an output schema with ``score`` and
``reason``) are answered as a judge: the number after ``Response:`` is compared
with the number after ``Reference answer:`` in the prompt (the layout of
:data:`claude_lab._scoring.JUDGE_RUBRIC`), score 1.0 or 0.0.
"""

from __future__ import annotations

import contextvars
import hashlib
import re
from collections.abc import Mapping
from typing import Any, cast

import orjson

from claude_lab.emulator._responder import Responder, arithmetic_answer, last_user_text, reply_text

__all__ = ["CURRENT_CUSTOM_ID", "DEFAULT_ERROR_RATE", "ERROR_RATES", "stand_in_models"]

#: Per-model probability of a wrong arithmetic answer (documented, so demos can say so).
ERROR_RATES: dict[str, float] = {
    "claude-haiku-4-5": 0.20,
    "claude-sonnet-4-5": 0.08,
    "claude-opus-4-5": 0.04,
}
DEFAULT_ERROR_RATE = 0.12

#: The custom_id of the batch request being answered (set by the emulator core; None
#: for /v1/messages), so that identical requests with distinct ids draw independently.
CURRENT_CUSTOM_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "claude_lab_emulator_custom_id", default=None
)

_OFFSETS = (1, -1, 10, -10, 100, -100)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _draw(seed: int, model: str, params: Mapping[str, Any]) -> tuple[float, int]:
    key = CURRENT_CUSTOM_ID.get()
    if key is None:
        key = orjson.dumps(params, option=orjson.OPT_SORT_KEYS).decode()
    digest = hashlib.blake2b(f"{seed}\x00{model}\x00{key}".encode(), digest_size=16).digest()
    return int.from_bytes(digest[:8], "big") / 2**64, digest[8]


def _verdict_schema(params: Mapping[str, Any]) -> bool:
    fmt = (params.get("output_config") or {}).get("format") or {}
    props = (fmt.get("schema") or {}).get("properties") or {}
    return isinstance(props, dict) and "score" in props and "reason" in props


def _after(label: str, text: str) -> str | None:
    at = text.find(label)
    if at < 0:
        return None
    line = text[at + len(label) :].split("\n", 1)[0]
    return line.strip()


def _judge(params: Mapping[str, Any]) -> str:
    prompt = last_user_text(dict(params))
    ref, reply = _after("Reference answer:", prompt), _after("Response:", prompt)
    if ref is None or reply is None:
        verdict = {"score": 0.5, "reason": "No reference or response found in the prompt."}
    else:
        want, got = _NUMBER.search(ref), _NUMBER.search(reply)
        same = (
            float(want.group()) == float(got.group())
            if want and got
            else ref.strip().lower() == reply.strip().lower()
        )
        verdict = {
            "score": 1.0 if same else 0.0,
            "reason": "The response states the reference answer."
            if same
            else "The response does not match the reference answer.",
        }
    return orjson.dumps(verdict).decode()


def stand_in_models(seed: int = 0, error_rates: Mapping[str, float] | None = None) -> Responder:
    """A responder: per-model seeded arithmetic errors, and a judge for verdict requests."""
    rates = {**ERROR_RATES, **(error_rates or {})}

    def respond(params: dict[str, Any]) -> str | None:
        if _verdict_schema(params):
            return _judge(params)
        prompt = last_user_text(params)
        answer = arithmetic_answer(prompt)
        if answer is None or answer == "undefined":
            return None  # the emulator's default reply
        model = str(params.get("model"))
        u, pick = _draw(seed, model, params)
        if u >= rates.get(model, DEFAULT_ERROR_RATE):
            return None
        value = float(answer)
        wrong = value + _OFFSETS[pick % len(_OFFSETS)]
        text = str(int(wrong)) if wrong.is_integer() else f"{wrong:g}"
        return reply_text(params, prompt=prompt, answer=text)

    return cast(Responder, respond)
