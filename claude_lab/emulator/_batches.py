"""The batch store: Message Batches and their lifecycle on the emulator's clock.

Owns every batch made (the client's and other users'), its schedule (each row's
finish time from request_seconds, jitter and concurrency, drawn from the seed),
its state derived from the clock on every read (in_progress, canceling, ended;
counts; expiry at 24 h, archiving at 29 days), the batch routes (create,
retrieve, list with paging, cancel, delete, results), the organisation's queue
limit and the create faults that lose or delay a create's response.
"""

from __future__ import annotations

import bisect
import contextlib
import heapq
import math
import random
import secrets
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from claude_lab.emulator import _paging as paging
from claude_lab.emulator import _results as results
from claude_lab.emulator._clock import rfc3339
from claude_lab.emulator._faults import row_faults
from claude_lab.emulator._validation import MAX_BATCH_BYTES, Invalid, load_body, validate_batch
from claude_lab.emulator._wire import Response, chunks, error, json_response

if TYPE_CHECKING:
    from claude_lab.emulator._routing import Core

__all__ = ["ARCHIVED_AFTER", "EXPIRES_AFTER", "ROUTES", "Batch", "Batches", "Options"]

DAY = 86_400.0
EXPIRES_AFTER = DAY
ARCHIVED_AFTER = 29 * DAY
#: The routes this store answers.
ROUTES = frozenset({"create", "list", "retrieve", "cancel", "delete", "results"})


@dataclass
class Options:
    """How fast batches run, and the seed every draw derives from."""

    request_seconds: float
    jitter: float
    concurrency: int
    seed: int
    counts: Literal["end", "incremental"]
    cancel_seconds: float


class Batch:
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


class Batches:
    """Every batch made, by id and in creation order; shares the emulator's lock."""

    def __init__(self, core: Core) -> None:
        self._core = core
        self._lock = core._lock
        self._batches: dict[str, Batch] = {}
        self._order: list[str] = []  # creation order, oldest first
        self._seq = 0
        self.foreign: set[str] = set()  # ids of batches made by simulated other users
        self._others_armed: list[tuple[str, int]] = []  # (when, size) of the create in hand

    # --- routes -------------------------------------------------------------------------

    def handle(
        self,
        name: str,
        batch_id: str | None,
        query: dict[str, str],
        body: bytes,
        request_id: str,
        version: str | None,
        betas: frozenset[str],
    ) -> Response:
        """Answer one of :data:`ROUTES`."""
        if name == "create":
            self._core.faults._pass_create_gates()  # outside the lock: a held create blocks nothing
            response = self._create(body, request_id, version, betas)
            self.others_fire("create", after_create=True)
            return self._lose_create(response, request_id)
        if name == "list":
            return self._list(query, request_id)
        assert batch_id is not None
        with self._lock:
            batch = self._batches.get(batch_id)
            if batch is None or batch.deleted:
                return error(404, f"Message Batch {batch_id!r} not found.", request_id)
            if name == "retrieve" and batch.not_found_left > 0:
                # The real API is eventually consistent right after create.
                batch.not_found_left -= 1
                return error(404, f"Message Batch {batch_id!r} not found.", request_id)
        if name == "retrieve":
            return json_response(200, self._render(batch), request_id)
        if name == "cancel":
            return self._cancel(batch, request_id)
        if name == "delete":
            return self._delete(batch, request_id)
        return self._results(batch, request_id)

    # --- create ---------------------------------------------------------------------------

    def _create(
        self, body: bytes, request_id: str, version: str | None, betas: frozenset[str]
    ) -> Response:
        if len(body) > MAX_BATCH_BYTES:
            return error(
                413, f"Request exceeds the maximum size of {MAX_BATCH_BYTES} bytes.", request_id
            )
        try:
            custom_ids, params, invalid = validate_batch(load_body(body), version)
        except Invalid as exc:
            return error(400, exc.message, request_id)
        core = self._core
        # Under the lock, so two creates at once cannot both fit the last of the room.
        with self._lock if core.queue_limit is not None else contextlib.nullcontext():
            refused = self._queue_refusal(len(custom_ids), request_id)
            if refused is not None:
                return refused
            batch = self._register(custom_ids, params, invalid, version)
            batch.betas = betas  # beta headers apply to the whole batch
        with self._lock:
            lost = core.faults._take("drop_after_create", "create")
        # A batch is never ended in the response that created it, whatever the clock says.
        response = json_response(200, self._render(batch, fresh=True), request_id)
        if lost:
            blob = response.body
            assert isinstance(blob, bytes)
            return Response(200, response.headers, chunks(blob, True), length=len(blob))
        return response

    def _lose_create(self, response: Response, request_id: str) -> Response:
        """The create faults that lose its response after the batch exists."""
        if response.status != 200:
            return response
        faults = self._core.faults
        with self._lock:
            failed = faults._take("error_after_create", "create")
            stalled = not failed and faults._take("timeout_after_create", "create")
            stall = float(faults.stall_seconds)
        if failed:
            return error(500, "Internal server error", request_id)
        if stalled:
            response.stall = stall
        return response

    def _register(
        self,
        custom_ids: list[str],
        params: list[dict[str, Any]],
        invalid: dict[int, str] | None = None,
        version: str | None = None,
    ) -> Batch:
        """Make a batch of validated requests: its schedule, its faults, its id.

        ``invalid``: rows whose params were refused (errored lines); ``version``: the
        create's ``anthropic-version``, under which every row is answered.
        """
        core = self._core
        opts = core.options
        with self._lock:
            self._seq += 1
            seq = self._seq
            faults = core.faults
            error_rate, error_types = faults.error_rate, faults.error_types
            expire_rate, not_found = faults.expire_rate, faults.not_found_after_create
        n = len(custom_ids)
        rng = random.Random(f"{opts.seed}:{seq}")
        rand = rng.random
        base, jitter = opts.request_seconds, opts.jitter
        durations = (
            [base * (1.0 + jitter * (2.0 * rand() - 1.0)) for _ in range(n)] if base else [0.0] * n
        )
        skip, fault_errors = row_faults(opts.seed, seq, n, expire_rate, error_rate, error_types)
        finish = _schedule(durations, skip, opts.concurrency)
        batch_id = "msgbatch_emu" + secrets.token_hex(10)
        batch = Batch(
            seq=seq,
            batch_id=batch_id,
            created=core.clock.now(),
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

    # --- the organisation's batch queue ---------------------------------------------------

    def queued(self) -> int:
        """Requests waiting in the organisation's batch queue now (not yet processed)."""
        now = self._core.clock.now()
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
        limit = self._core.queue_limit
        if limit is None:
            return None
        queued = self.queued()
        if queued + count <= limit:
            return None
        return error(
            429,
            f"Your organization's Message Batches queue is full: {queued} requests are queued "
            f"and this batch adds {count}, over the limit of {limit}. Wait for queued batches "
            "to finish, or send fewer requests at once.",
            request_id,
            error_type="rate_limit_error",
            extra=[("retry-after-ms", "10")],
        )

    # --- other users of the workspace -----------------------------------------------------

    def others_fire(self, route: str, *, after_create: bool = False) -> None:
        """Make the foreign batches ``Faults.others`` asks for at this point of a call."""
        faults = self._core.faults
        with self._lock:
            due: list[int] = []
            if not after_create:
                due += [size for when, size in self._others_armed if when == "after"]
                self._others_armed = [x for x in self._others_armed if x[0] != "after"]
                if route == "create" and faults.others:
                    self._others_armed = list(faults.others)
                    faults.others = ()
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

    def report(self) -> list[dict[str, Any]]:
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

    def _render(self, batch: Batch, *, fresh: bool = False) -> dict[str, Any]:
        """The MessageBatch object as of now (as of creation when ``fresh``)."""
        core = self._core
        now = batch.created if fresh else core.clock.now()
        off = now - batch.created
        end, why = batch.end_offset()
        ended = not fresh and off >= end
        n = batch.n
        counts = {"processing": n, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        if ended or core.options.counts == "incremental":
            k = bisect.bisect_right(batch.sorted_finish, min(off, end)) if not fresh else 0
            if ended or k:
                results.evaluate(batch, k, core.messages.answer)
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
            results_url = f"{core.base_url}/v1/messages/batches/{batch.id}/results"
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

    # --- list / cancel / delete / results -------------------------------------------------

    def _list(self, query: dict[str, str], request_id: str) -> Response:
        try:
            limit, after, before = paging.page_query(query)
        except Invalid as exc:
            return error(400, exc.message, request_id)
        with self._lock:
            ids = [b for b in reversed(self._order) if not self._batches[b].deleted]  # newest first
            cursor = after or before
            if cursor and cursor not in self._batches:
                which = "after_id" if after else "before_id"
                return error(400, f"{which}: no Message Batch with id {cursor!r}", request_id)
            page, has_more = paging.cut(ids, limit, after, before, self._order)
            batches = [self._batches[b] for b in page]
        data = [self._render(b) for b in batches]
        return json_response(200, paging.page_body(data, has_more), request_id)

    def _cancel(self, batch: Batch, request_id: str) -> Response:
        core = self._core
        now = core.clock.now()
        with self._lock:
            end, _ = batch.end_offset()
            if batch.cancel_at is None and now - batch.created < end:
                batch.cancel_at = now
                batch.cancel_end = now - batch.created + core.options.cancel_seconds
        return json_response(200, self._render(batch), request_id)

    def _delete(self, batch: Batch, request_id: str) -> Response:
        state = self._render(batch)
        if state["processing_status"] != "ended":
            return error(
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
        return json_response(200, {"id": batch.id, "type": "message_batch_deleted"}, request_id)

    def _results(self, batch: Batch, request_id: str) -> Response:
        state = self._render(batch)
        if state["processing_status"] != "ended":
            return error(
                400,
                f"Message Batch {batch.id} has not finished processing "
                f"(processing_status: {state['processing_status']}); "
                "results are available once it has ended.",
                request_id,
            )
        if state["archived_at"] is not None:
            return error(
                404,
                f"The results of Message Batch {batch.id} are no longer available: "
                f"it was archived at {state['archived_at']}.",
                request_id,
            )
        core = self._core
        blob = results.results_file(batch, core.options.seed, core.faults, core.messages.answer)
        with self._lock:
            drop = core.faults._take("drop_results", "results")
        headers = [
            ("content-type", "application/binary"),
            ("request-id", request_id),
        ]
        return Response(200, headers, chunks(blob, drop), length=len(blob))
