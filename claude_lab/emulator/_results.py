"""Result lines: each row's line of a batch's results file, and the file itself.

Owns the answer of each row in the order rows finish (computed once, lazily, when
a read first needs it, and cached as bytes), the errored lines (refused params,
row faults, a responder's error), the canceled and expired lines of rows never
processed, and the file as served: shuffled by the seed, with the omitted rows
and stray lines that faults ask for.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from claude_lab.emulator import _standins as standins
from claude_lab.emulator._faults import ROW_FAULT_MESSAGES, Faults
from claude_lab.emulator._responder import RowError

if TYPE_CHECKING:
    from claude_lab.emulator._batches import Batch

__all__ = ["Answer", "evaluate", "results_file"]

#: (params, msg_id, service tier, simulated time, anthropic-version, betas) -> answer.
Answer = Callable[
    [dict[str, Any], str, str, float, "str | None", frozenset[str]], "dict[str, Any] | RowError"
]


def evaluate(batch: Batch, k: int, answer: Answer) -> None:
    """Answer the first ``k`` rows in finish order (once; cached as result lines)."""
    if len(batch.err_cum) > k:
        return
    with batch.lock:
        while len(batch.err_cum) <= k:
            done = len(batch.err_cum) - 1
            i = batch.order[done]
            line, errored = _row_line(batch, i, answer)
            batch.lines[i] = line
            batch.err_cum.append(batch.err_cum[-1] + errored)


def _row_line(batch: Batch, i: int, answer: Answer) -> tuple[bytes, int]:
    custom_id = batch.custom_ids[i]
    # Unique per batch and row, deterministic, and cheap (no hashing on the hot path).
    request_id = f"req_{batch.id[-20:]}{i:08x}"
    fault = batch.fault_errors.get(i)
    refused = batch.invalid.get(i) if batch.invalid else None
    if refused is not None:
        outcome: dict[str, Any] | RowError = RowError("invalid_request_error", refused)
    elif fault is not None:
        outcome = RowError(fault, ROW_FAULT_MESSAGES.get(fault, fault))
    else:
        when = batch.created + batch.finish[i]
        msg_id = f"msg_{batch.id[-20:]}{i:08x}"
        # Stand-in responders draw per request, so repeated samples of a row differ.
        token = standins.CURRENT_CUSTOM_ID.set(custom_id)
        try:
            outcome = answer(batch.params[i], msg_id, "batch", when, batch.version, batch.betas)
        finally:
            standins.CURRENT_CUSTOM_ID.reset(token)
    if isinstance(outcome, RowError):
        result, errored = _errored(outcome.type, outcome.message, request_id), 1
    else:
        result, errored = {"type": "succeeded", "message": outcome}, 0
    try:
        return orjson.dumps({"custom_id": custom_id, "result": result}) + b"\n", errored
    except TypeError as exc:  # a user responder returned something that is not JSON
        bad = _errored("api_error", f"responder output: {exc}", request_id)
        return orjson.dumps({"custom_id": custom_id, "result": bad}) + b"\n", 1


def _errored(error_type: str, message: str, request_id: str) -> dict[str, Any]:
    return {
        "type": "errored",
        "error": {
            "type": "error",
            "error": {"type": error_type, "message": message},
            "request_id": request_id,
        },
    }


def results_file(batch: Batch, seed: int, faults: Faults, answer: Answer) -> bytes:
    """The ended batch's results JSONL (built once, then the batch keeps only these bytes)."""
    with batch.lock:
        if batch.results_blob is not None:
            return batch.results_blob
    end, why = batch.end_offset()
    k = bisect.bisect_right(batch.sorted_finish, end)
    evaluate(batch, k, answer)
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
            rng = random.Random(f"results:{seed}:{batch.seq}")
            rng.shuffle(order)
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
