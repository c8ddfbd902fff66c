"""The worker: one job's daemon thread, moving its requests through the stages.

Plan has rendered the requests; the worker claims them in the ledger, sends them
through the gateway, polls, streams each ended batch's results into the collector
(and the ledger), and finally asks for the table. It owns the job's mutable state
(its batches, results, status) under one lock, and tells its handle when that
state changed; it knows nothing of displays.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import threading
import time
import traceback
from collections.abc import Callable

import anthropic
import httpx2
import numpy as np
import pandas as pd

from claude_lab import _memory as memory
from claude_lab import _requests as requests
from claude_lab import _variants as variants
from claude_lab._collector import ResultAccumulator
from claude_lab._errors import JobError
from claude_lab._gateway import (
    COUNT_KEYS,
    CREATE_LOCK,
    OUTCOMES,
    Gateway,
    Lost,
    mark_live,
    owner_alive,
    sum_counts,
    transient,
)
from claude_lab._ledger import JobStatus, Journal
from claude_lab._plan import RunConfig

__all__ = ["Batch", "Worker"]

_log = logging.getLogger("claude_lab")

_NOT_FOUND_GRACE_S = 60.0  # the API can 404 a batch for a moment right after creating it
_DOWNLOAD_ATTEMPTS = 5
_TICK_S = 0.5  # display refresh while waiting between polls
# Result lines journaled per transaction while downloading: each commit rewrites the
# custom_id index pages its (random) ids land on, so fewer, larger commits cost less CPU
# (per 100k lines: 0.39-0.51 s at 5k, 0.29-0.35 s at 10k, 0.23 s at 20k). 10k holds
# ~5 MB of typical lines; the byte bound keeps long replies from holding more.
_STORE_EVERY = 10_000
_STORE_BYTES = 8 << 20


class Batch:
    """What the job knows of one of its batches (mutable, guarded by the worker's lock)."""

    __slots__ = (
        *("cancel_sent", "counts", "created", "fetched", "id", "provisional", "round"),
        *("status", "total"),
    )

    def __init__(
        self,
        batch_id: str,
        total: int,
        round_: int,
        fetched: bool = False,
        provisional: bool = False,
    ) -> None:
        self.id = batch_id
        # Found by its size after a lost create: ours only once its custom_ids match.
        self.provisional = provisional
        self.total = total
        self.round = round_
        self.status = "in_progress"
        self.counts: dict[str, int] = {"processing": total, **dict.fromkeys(OUTCOMES, 0)}
        self.fetched = fetched
        self.created = time.monotonic()
        self.cancel_sent = False


def _nothing() -> None:
    pass


class Worker:
    """One job's state and the thread that moves it (``gateway`` None: nothing to send)."""

    _on_change: Callable[[], None]
    _on_end: Callable[[], None]
    _build: Callable[[], pd.DataFrame]

    def __init__(
        self,
        *,
        job_id: str,
        gateway: Gateway | None,
        ledger: Journal | None,
        custom_ids: list[str],
        params: list[bytes] | None,
        row_uid: np.ndarray,
        config: RunConfig,
        poll: tuple[float, float],
    ) -> None:
        self.job_id = job_id
        self.gateway = gateway
        self.ledger = ledger
        self.custom_ids = custom_ids
        self._params = params
        self.row_uid = row_uid
        self.config = config
        self.poll = poll
        # The job's hooks, held only while a round runs (``start``): held for good, they
        # would make job and worker a cycle that keeps a finished run's results (16 MB
        # per 100k rows) until the garbage collector's next full pass.
        self._unbind()
        self.lock = threading.RLock()
        self.wake = threading.Event()
        self.batches: list[Batch] = []
        self.round = 0
        self.acc = ResultAccumulator(custom_ids)
        self.future: concurrent.futures.Future[pd.DataFrame] = concurrent.futures.Future()
        self.status = JobStatus.PREPARING
        self.started = time.monotonic()
        self.counts_move = False
        self.canceled = False
        self.error: str | None = None
        self.traceback: str | None = None
        self.cached_rows = 0
        self.estimated_cost: float | None = None
        self._owner: str | None = None
        self._settle_at = 0.0  # when lost creates may next be settled (API calls: throttled)
        self._settle_every = poll[0]
        # Queue-aware submission: the next wave (requests, retry basis) and, after the API
        # refused a create (429: its batch queue is full), when to try again.
        self._later: tuple[np.ndarray, set[str] | None] | None = None
        self._queue_refusals = 0
        self._queue_retry_at: float | None = None
        # Raised as warnings in the thread that asks for the result, not the worker's.
        self.warnings: list[str] = []

    @property
    def _api(self) -> Gateway:
        assert self.gateway is not None, "a job with nothing to send makes no API calls"
        return self.gateway

    @property
    def _ledger(self) -> Journal:
        assert self.ledger is not None, "a job with nothing to send has no journal entry"
        return self.ledger

    # -- state --------------------------------------------------------------------------

    def transition(self, to: JobStatus, *, reopen: bool = False) -> bool:
        """The one place the status changes, under the lock. A final status is kept: a
        late cancel() or display tick cannot overwrite "ended"; only a retry (``reopen``)
        starts a new round. Returns whether the status changed."""
        with self.lock:
            if self.status.final and not reopen:
                return False
            self.status = to
            return True

    def counts(self, current_round: bool = False) -> dict[str, int]:
        with self.lock:
            batches = [b for b in self.batches if b.round == self.round or not current_round]
            return sum_counts([b.counts for b in batches])

    def spent(self) -> float:
        """What this worker's downloads cost (results it fetched itself, at batch prices)."""
        return float(self.acc.cost(self.config.prices))

    # -- loading what the ledger knows ---------------------------------------------------

    def load(self, attached: bool, cache: bool) -> None:
        """This job's batches and results from the ledger (when re-attaching), then the
        cache; and the cost ceiling of what is left to send."""
        acc = self.acc
        ids, endpoint = self.custom_ids, str(self.config.endpoint)
        if attached:
            records = self._ledger.batches(self.job_id)
            own = {rec.batch_id for rec in records}
            found = self._ledger.find_results(ids, endpoint)
            if len(found):
                memory.give_back()  # the lookup's temporaries, before a line is read
            current = None
            for batch_id, pos, lines in self._ledger.read_results(found):
                if batch_id != current:
                    acc.begin_pass(batch_id=batch_id)
                    current = batch_id
                # Lines of another job's batches were paid for there: cached here.
                acc.feed_many(lines, uids=pos, cached=batch_id not in own)
            for rec in records:
                b = Batch(
                    rec.batch_id,
                    rec.request_count,
                    0,
                    fetched=bool(rec.results_fetched),
                    provisional=rec.provisional,
                )
                b.status = rec.processing_status
                b.counts = {k: int(rec.request_counts.get(k, 0)) for k in COUNT_KEYS}
                self.batches.append(b)
            # Fetched by an earlier call, so not paid by this one.
            acc.mark_cached(np.flatnonzero(acc.filled))
        if cache:
            wanted = np.flatnonzero(~acc.filled)
            asked = [ids[u] for u in wanted.tolist()]
            found = self._ledger.find_results(asked, endpoint, succeeded_only=True)
            if len(found):
                memory.give_back()
            for _, pos, lines in self._ledger.read_results(found):
                acc.feed_many(lines, uids=wanted[pos], cached=True)
        self.cached_rows = int(np.isin(self.row_uid, np.flatnonzero(acc.cached)).sum())
        todo = self._uncarried()
        if len(todo) and self._params is not None:
            self.estimated_cost = variants.ceiling(self.config, self._params, self.row_uid, todo)
        elif not len(todo):
            # Nothing left to send (a re-run, the cache): as after a submission, the
            # ledger has the params should a retry need them (16 MB per 100k requests).
            self._params = None

    # -- control from the handle ---------------------------------------------------------

    def start(
        self,
        first_step: Callable[[], None] | None,
        *,
        on_change: Callable[[], None],
        on_end: Callable[[], None],
        build: Callable[[], pd.DataFrame],
    ) -> None:
        """Run a round on a new thread: ``on_change`` after each move, ``on_end`` once it
        is over (before the future resolves), ``build`` for its table."""
        self._on_change, self._on_end, self._build = on_change, on_end, build
        self.started = time.monotonic()
        threading.Thread(
            target=self._work, args=(first_step,), name=f"claude_lab-{self.job_id}", daemon=True
        ).start()

    def finish_now(self, build: Callable[[], pd.DataFrame]) -> None:
        """A job with nothing to send: its table now, no thread."""
        self.future.set_result(build())
        self.transition(JobStatus.ENDED)

    def _unbind(self) -> None:
        self._on_change = self._on_end = _nothing
        self._build = pd.DataFrame

    def cancel(self) -> None:
        with self.lock:
            if self.status.final:
                return  # it finished (or stopped) already: nothing is left to cancel
            self.canceled = True
            self.transition(JobStatus.CANCELING)
        if self.ledger is not None:
            self.ledger.set_job_status(self.job_id, JobStatus.CANCELED)
        self._cancel_batches()
        self.wake.set()

    def reopen(self, uids: np.ndarray) -> Callable[[], None]:
        """A retry's new round for requests ``uids``; returns its first step."""
        with self.lock:
            # What this retry is based on: a request another worker has sent again since
            # (e.g. the same retry in another process) is followed, not sent a third time.
            seen = {b.id for b in self.batches if b.fetched}
        self.acc.forget(uids)
        with self.lock:
            self.round += 1
            self.future = concurrent.futures.Future()
            self.canceled = False
            self.transition(JobStatus.PREPARING, reopen=True)
            self.error = self.traceback = None
        return lambda: self._submit(uids, again=seen)

    # -- the thread ----------------------------------------------------------------------

    def _work(self, first_step: Callable[[], None] | None) -> None:
        future = self.future
        with mark_live(self.job_id) as token:
            self._owner = token
            try:
                if first_step is not None:
                    first_step()
                self._follow()
                self.acc.pack()  # every result is in: the table's peak is next
                # The download's temporaries are freed but mapped: the table's peak
                # would stack on them (1M rows: 749-758 MiB over three runs with this,
                # 755-831 without).
                memory.give_back()
                df = self._build()
                # The build's own temporaries: handed back before the final snapshot prices
                # the run again, or its peak would stack on them.
                memory.give_back()
                with self.lock:  # decided together with cancel(): never "ended" then "canceling"
                    final = JobStatus.CANCELED if self.canceled else JobStatus.ENDED
                    self.transition(final)
                if final is JobStatus.ENDED:
                    self._ledger.set_job_status(self.job_id, final)
                self._on_end()  # before resolving, so waiters see the final state
                self._unbind()  # before resolving: a retry's start() binds its own
                future.set_result(df)
            except BaseException as caught:  # the waiting thread re-raises it
                exc = self._api.explain(caught) if self.gateway is not None else caught
                self.error = f"{type(exc).__name__}: {exc}"
                self.traceback = "".join(traceback.format_exception(exc))
                # A job with batches at the API is not lost: leave it where a re-run finds it.
                with self.lock:
                    sent = bool(self.batches)
                with contextlib.suppress(Exception):
                    sent = sent or bool(self._ledger.pending_submissions(self.job_id))
                self.transition(JobStatus.INTERRUPTED if sent else JobStatus.FAILED)
                with contextlib.suppress(Exception):
                    self._ledger.set_job_status(self.job_id, self.status)
                with contextlib.suppress(Exception):
                    self._on_end()
                self._unbind()
                future.set_exception(exc)

    def _follow(self) -> None:
        """Poll until every batch has ended and its results are fetched, and no create
        is in flight anywhere for this job; submit what no batch carries."""
        first, ceiling = self.poll
        interval = first
        next_poll = 0.0
        while True:
            now = time.monotonic()
            if now >= next_poll:
                try:
                    self._sync_batches()
                    self._poll_once()
                    interval = min(ceiling, interval * 1.5)
                except Exception as exc:
                    if not transient(exc):
                        raise
                    # The batch runs on at the API: keep polling, never give up the job.
                    _log.warning(
                        "job %s: %s: %s; polling again", self.job_id, type(exc).__name__, exc
                    )
                    interval = min(ceiling, max(interval * 2, 1.0))
                next_poll = time.monotonic() + interval
            with self.lock:
                pending = [b for b in self.batches if not b.fetched]
            if not pending:
                try:
                    live = self._recover_submissions()  # may adopt batches
                except Exception as exc:
                    if not transient(exc):
                        raise
                    # The list or a results download failed for now: settle next time.
                    _log.warning(
                        "job %s: %s: %s; looking again", self.job_id, type(exc).__name__, exc
                    )
                    live = 1
                with self.lock:
                    pending = [b for b in self.batches if not b.fetched]
                if pending:
                    next_poll = 0.0
                    continue
                if not live and self._queue_wait():
                    pass  # the API's batch queue was full: wait below, then send the wave
                elif not live:  # else another worker is creating a batch for this job: wait
                    if self._submit_uncarried():
                        next_poll = 0.0
                        continue
                    # Nothing left to claim. Done, unless another worker's create or
                    # batch for this job appeared since the checks above.
                    if self._ledger.pending_submissions(self.job_id):
                        continue
                    self._sync_batches()
                    with self.lock:
                        if not any(not b.fetched for b in self.batches):
                            return
                    next_poll = 0.0
                    continue
            if self.canceled:
                self._cancel_batches()
            self.transition(
                JobStatus.CANCELING
                if self.canceled
                # No batch to follow yet: a create (this worker's lost one, or
                # another worker's) is still being settled.
                else JobStatus.SUBMITTING
                if not pending
                else (
                    JobStatus.IN_PROGRESS
                    if any(b.status != "ended" for b in pending)
                    else JobStatus.FETCHING
                )
            )
            self._on_change()
            if self.wake.wait(timeout=max(0.0, min(_TICK_S, next_poll - time.monotonic()))):
                self.wake.clear()
                next_poll = 0.0

    # -- submitting ----------------------------------------------------------------------

    def _uncarried(self) -> np.ndarray:
        """Requests with no result yet that no recorded batch of this job carried."""
        open_ = np.flatnonzero(~self.acc.filled).astype(np.int64)
        # Every request answered: nothing to read. Nothing sent yet: no id to look up.
        carried = self._ledger.carried_custom_ids(self.job_id) if len(open_) else set()
        if not carried:
            return open_
        ids = self.custom_ids
        return np.array([u for u in open_.tolist() if ids[u] not in carried], dtype=np.int64)

    def _submit_uncarried(self) -> bool:
        """Claim and send what no batch carries; False if there was nothing to claim."""
        if self.canceled:
            return False
        if self._later is not None:  # the next wave
            (todo, again), self._later = self._later, None
            self._submit(todo, again)
            return True
        todo = self._uncarried()
        if not len(todo):
            return False
        self._submit(todo)
        return True  # sent, or another worker claimed it first: either way look again

    def _request_params(self) -> list[bytes]:
        if self._params is None:
            stored = self._ledger.get_request_params(self.custom_ids, job_id=self.job_id)
            self._params = [stored[c] for c in self.custom_ids]
        return self._params

    def _submit(self, todo: np.ndarray, again: set[str] | None = None) -> None:
        """Claim the requests ``todo`` and create one batch per chunk of them.

        The claim is one ledger transaction (see Journal.claim_submissions): of
        several workers, in threads or processes, sending the same job's requests at
        once, exactly one gets each request; the others follow its batches. Every
        chunk's intent is journaled before the first create, so a re-run sees them all
        as taken while this worker lives. ``again``: a retry, with the batches whose
        outcome it is based on.
        """
        if self.canceled or not len(todo):
            return
        limit = self.config.max_queued
        if limit is not None and len(todo) > limit:
            # At most ``max_queued`` requests of this job wait in the API's queue at once:
            # the rest is the next wave, sent when these batches are done.
            todo, self._later = todo[:limit], (todo[limit:], again)
        self.transition(JobStatus.SUBMITTING)
        self._on_change()
        params = self._request_params()
        ids = self.custom_ids
        # Only sizes up front: each body is joined from the params when its turn comes.
        sizes = requests.line_sizes(ids, params)
        chunks: list[requests.Chunk] = []

        def plan(free: list[str]) -> list[tuple[int, int, list[str]]]:
            # All of them free (the usual case): no lookup of each id needed.
            uids = todo if len(free) == len(todo) else self.acc.uids_of(free)
            chunks[:] = requests.split(sizes, uids)
            return [(len(ch.uids), ch.body_bytes, [ids[u] for u in ch.uids]) for ch in chunks]

        ledger = self._ledger
        subs = ledger.claim_submissions(
            self.job_id, [ids[u] for u in todo], plan, self._owner, again=again
        )
        for k, (sub, chunk) in enumerate(zip(subs, chunks)):
            if self.canceled:
                for left in subs[k:]:
                    ledger.abandon_submission(left)
                return
            body = requests.Body(ids, params, chunk)
            with CREATE_LOCK:
                try:
                    batch = self._api.create(body, len(chunk.uids))
                except Lost:
                    # Settled from the evidence by _follow; until then nothing is resent.
                    ledger.mark_lost(sub)
                    continue
                except anthropic.APIStatusError as exc:
                    if isinstance(exc, anthropic.RateLimitError):
                        # Refused, so nothing was created: give the wave's unsent requests
                        # back and send them again when the queue has room.
                        for left in subs[k:]:
                            ledger.abandon_submission(left)
                        self._defer(np.concatenate([ch.uids for ch in chunks[k:]]), again, exc)
                        return
                    if exc.status_code < 500 and exc.status_code not in (408, 409):
                        # Rejected outright (bad request, auth, permission): no batch was
                        # made, so none is left pending and the job ends "failed", not
                        # "interrupted". A 5xx after the gateway's retries stays pending:
                        # a late batch may yet appear, and a re-run settles it on evidence.
                        for left in subs[k:]:
                            ledger.abandon_submission(left)
                    raise
                self._queue_refusals, self._queue_retry_at = 0, None
                self._api.record(sub, batch)
            del body
            with self.lock:
                self.batches.append(Batch(batch.id, len(chunk.uids), self.round))
                canceled = self.canceled
            if canceled:  # Cancel was pressed while this batch was being created
                self._cancel_batches()
            self._on_change()
        if self._later is None:
            # All sent: the ledger has the params should a lost create or a retry need
            # them again; not holding them halves what the rest of the run keeps alive.
            self._params = None

    def _defer(self, uids: np.ndarray, again: set[str] | None, exc: anthropic.APIError) -> None:
        """Put refused requests back in front of the next wave, to be tried again later
        (sooner if this job's own batches finish and free room in the queue)."""
        if self._later is not None:
            uids = np.concatenate([uids, self._later[0]])
        self._later = (uids, again)
        self._queue_refusals += 1
        first, ceiling = self.poll
        delay = min(ceiling, first * 2.0 ** min(self._queue_refusals, 30))
        self._queue_retry_at = time.monotonic() + delay
        if self._queue_refusals == 1:
            message = (
                f"Job {self.job_id}: the API refused a batch create with 429 rate_limit_error "
                f"({getattr(exc, 'message', exc)}). The organisation's batch queue is "
                f"probably full. {len(uids)} request(s) wait and are sent as queued batches "
                "finish; nothing is lost or sent twice. To queue less at once, pass "
                "max_queued= (requests per job in the queue)."
            )
            _log.warning("%s", message)
            with self.lock:
                self.warnings.append(message)

    def _queue_wait(self) -> bool:
        """True while a refused wave waits before its next try."""
        at = self._queue_retry_at
        return at is not None and time.monotonic() < at

    def _cancel_batches(self) -> None:
        with self.lock:
            # A provisional batch may be someone else's: it is never canceled (if it is
            # ours after all, its results still come back when it ends).
            todo = [
                b
                for b in self.batches
                if b.status != "ended" and not b.cancel_sent and not b.provisional
            ]
            for b in todo:
                b.cancel_sent = True
        self._api.cancel([b.id for b in todo])

    # -- lost creates --------------------------------------------------------------------

    def _recover_submissions(self) -> int:
        """Settle creates that started but were never recorded; return how many are still
        unsettled: in flight in a live worker, or waiting for evidence (those are waited
        for, never repeated). See ``Gateway.settle``."""
        pending = self._ledger.pending_submissions(self.job_id)
        open_ = [s for s in pending if s.lost_at or not owner_alive(s.owner, s.started_at)]
        if not open_ or time.monotonic() < self._settle_at:
            return len(pending)
        waiting = self._api.settle(open_)
        self._sync_batches()
        if waiting:  # the evidence comes when the candidates end: look again later
            first, ceiling = self.poll
            self._settle_every = min(ceiling, max(first, self._settle_every * 1.5))
            self._settle_at = time.monotonic() + self._settle_every
        return len(pending) - len(open_) + waiting

    def _sync_batches(self) -> None:
        """Pick up batches of this job recorded by another worker (thread or process), and
        drop provisional ones another worker has released."""
        recs = {rec.batch_id: rec for rec in self._ledger.batches(self.job_id)}
        with self.lock:
            self.batches = [b for b in self.batches if b.id in recs or not b.provisional]
            for b in self.batches:
                if b.provisional and not recs[b.id].provisional:
                    b.provisional = False  # another worker checked it
            known = {b.id for b in self.batches}
            for rec in recs.values():
                if rec.batch_id not in known:
                    self.batches.append(
                        Batch(
                            rec.batch_id, rec.request_count, self.round, provisional=rec.provisional
                        )
                    )

    # -- polling and collecting ----------------------------------------------------------

    def _poll_once(self) -> None:
        with self.lock:
            pending = [b for b in self.batches if not b.fetched]
        for b in pending:
            if b.status != "ended":
                try:
                    state = self._api.retrieve(b.id)
                except anthropic.NotFoundError:
                    if time.monotonic() - b.created < _NOT_FOUND_GRACE_S:
                        continue
                    raise
                with self.lock:
                    b.status, b.counts = state.status, state.counts
                    if b.status != "ended" and any(b.counts[k] for k in OUTCOMES):
                        self.counts_move = True
                self._ledger.update_batch(b.id, b.status, b.counts, state.ended_at)
            if b.status == "ended":
                if b.provisional and not self._confirm(b):
                    continue
                self.transition(JobStatus.FETCHING)
                self._on_change()
                self._download(b)

    def _confirm(self, b: Batch) -> bool:
        if self._api.confirm(b.id):
            with self.lock:
                b.provisional = False
            return True
        with self.lock:
            if b in self.batches:
                self.batches.remove(b)
        return False

    def _download(self, b: Batch) -> None:
        """Stream one batch's results into the collector and the ledger; resume on drops."""
        acc, ledger = self.acc, self._ledger
        last_exc: Exception | None = None
        unknown0, duplicates0 = acc.unknown, acc.duplicates
        ids = self.custom_ids

        def collect(pending: list[bytes]) -> None:
            """Parse lines into the collector, then journal those it took, in one go."""
            us = acc.feed_many(pending)
            took = [k for k, u in enumerate(us) if u >= 0]
            if len(took) < len(pending):
                us, pending = [us[k] for k in took], [pending[k] for k in took]
            # The collector took each line once in this process (a resumed pass skips
            # what earlier ones took): no earlier copy to look for and replace.
            ledger.store_lines(b.id, [ids[u] for u in us], acc.statuses(us), pending, replace=False)

        for _ in range(_DOWNLOAD_ATTEMPTS):
            acc.begin_pass(batch_id=b.id)
            pending: list[bytes] = []
            size = 0
            try:
                with self._api.results(b.id) as lines:
                    for line in lines:
                        pending.append(line)
                        size += len(line)
                        if len(pending) >= _STORE_EVERY or size >= _STORE_BYTES:
                            collect(pending)
                            pending, size = [], 0
                collect(pending)
                break
            except (anthropic.APIConnectionError, httpx2.TransportError) as exc:
                # Keep what arrived; the next pass skips ids already filled.
                collect(pending)
                last_exc = exc
                time.sleep(0.2)
            except anthropic.AnthropicError as exc:
                collect(pending)
                if "results_url" in str(exc) or isinstance(exc, anthropic.NotFoundError):
                    # Archived (29 days) or gone: what the journal holds is all there is.
                    last_exc = None
                    break
                raise
        else:
            raise JobError(
                f"The results of batch {b.id} could not be downloaded after "
                f"{_DOWNLOAD_ATTEMPTS} attempts ({last_exc}). Nothing is lost: run "
                f"`claude_lab.attach({self.job_id!r}).result()` to try again."
            )
        unknown = acc.unknown - unknown0
        duplicates = acc.duplicates - duplicates0
        if unknown or duplicates:
            with self.lock:
                self.warnings.append(
                    f"Batch {b.id}: ignored {unknown} result line(s) with an unknown "
                    f"custom_id and {duplicates} duplicate(s); each row kept its first result."
                )
        ledger.mark_fetched(b.id)
        with self.lock:
            b.fetched = True
