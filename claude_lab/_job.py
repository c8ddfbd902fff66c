"""BatchJob: one run of rows through the Message Batches API, from submit to result table.

``run()`` checks and renders everything before any request is sent, answers
what it can from the result cache, re-attaches to an identical job already in
the journal, and otherwise submits batches. A daemon worker thread then
polls, fetches each batch's results as soon as it ends, journals them, and
finally builds the result table. Callers wait on the job's future in short
slices, so an interrupt stops the waiting and never the batch.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import os
import secrets
import socket
import sys
import threading
import time
import traceback
import urllib.parse
import warnings
from collections.abc import Callable, Generator, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import anthropic
import httpx2
import numpy as np
import orjson
import pandas as pd

from claude_lab import _collector as results
from claude_lab import _ledger as journal_mod
from claude_lab import _models as models
from claude_lab import _progress as progress
from claude_lab import _requests as requests
from claude_lab import _table_html as table_html
from claude_lab import _templates as templates
from claude_lab import _variants as variants
from claude_lab._errors import ConfigError, InputError, JobError, NotReadyError
from claude_lab._ledger import JobStatus
from claude_lab._plan import (
    DEFAULT_MAX_QUEUED,
    clashing_columns,
    now_iso,
    plan,
    poll_schedule,
    progress_choice,
)
from claude_lab._uipoll import CommPump
from claude_lab._version import __version__

__all__ = ["BatchJob", "attach", "load_result", "run"]

_log = logging.getLogger("claude_lab")
_HOST = socket.gethostname().replace(":", "_")
_OWNER = f"{_HOST}:{os.getpid()}"
_LIVE_OWNERS: set[str] = set()  # tokens of this process's running workers
_CREATE_LOCK = threading.Lock()
_COPY_ON_WRITE = int(pd.__version__.split(".")[0]) >= 3 or bool(
    pd.get_option("mode.copy_on_write") is True
)

TRANSIENT_ERRORS = ("overloaded_error", "api_error", "rate_limit_error", "timeout_error")
_OUTCOMES = ("succeeded", "errored", "canceled", "expired")
_COUNT_KEYS = ("processing", *_OUTCOMES)
_NOT_FOUND_GRACE_S = 60.0  # the API can 404 a batch for a moment right after creating it
_DOWNLOAD_ATTEMPTS = 5
_TICK_S = 0.5  # display refresh while waiting between polls
_CLOCK_SKEW_S = 120.0  # tolerated difference between our clock and the API's created_at
_FOREIGN_OWNER_S = 15 * 60.0  # a create logged on another host is presumed live this long
_CHUNK_BYTES = 1 << 16  # the default read size makes the results download twice as slow


def resolve_client(client: anthropic.Anthropic | None) -> anthropic.Anthropic:
    """The given client, or one built from the environment; ConfigError if it has no credentials."""
    if client is not None:
        if not isinstance(client, anthropic.Anthropic):
            raise InputError(
                f"client must be an anthropic.Anthropic instance, got {type(client).__name__}. "
                "For async code use `await df.claude.abatch(...)` with a sync client."
            )
        return client
    try:
        built = anthropic.Anthropic()
    except Exception as exc:  # e.g. a broken credentials profile in the environment
        raise ConfigError(
            f"Could not build an Anthropic client from the environment ({exc}). Set "
            "ANTHROPIC_API_KEY or pass client=anthropic.Anthropic(api_key=...)."
        ) from exc
    if not any(
        getattr(built, attr, None) is not None
        for attr in ("api_key", "auth_token", "credentials", "_token_cache")
    ):
        raise ConfigError(
            "No Anthropic API key found - set ANTHROPIC_API_KEY (or pass "
            "client=anthropic.Anthropic(api_key=...)). To try it offline with no key, use the "
            "emulator: `with claude_lab.emulator.serve() as emu: df.claude.batch(..., "
            "client=emu.client())`."
        )
    return built


class _Batch:
    """What the job knows of one of its batches (mutable, guarded by the job's lock)."""

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
        self.counts: dict[str, int] = {"processing": total, **dict.fromkeys(_OUTCOMES, 0)}
        self.fetched = fetched
        self.created = time.monotonic()
        self.cancel_sent = False


class BatchJob:
    """The handle of one run: ids, live counts, wait/result/cancel/retry, and a live display.

    ``await job`` works in a notebook cell and in asyncio programs. Shown in a
    notebook, the job renders its live widget (or a text/HTML summary where
    widgets are not available).
    """

    def __init__(
        self,
        *,
        client: anthropic.Anthropic | None,
        journal: journal_mod.Journal | None,
        job_id: str,
        custom_ids: list[str],
        params: list[bytes] | None,
        row_uid: np.ndarray,
        frame: pd.DataFrame | None,
        index: pd.Index,
        config: dict[str, Any],
        make_display: Callable[[Callable[[], None] | None], progress.Display],
        poll: tuple[float, float],
    ) -> None:
        self.id = job_id
        self._client = client
        self._journal = journal
        self._custom_ids = custom_ids
        self._params = params
        self._row_uid = row_uid
        self._frame = frame
        self._index = index
        self._config = config
        self._make_display = make_display
        self._display = make_display(self.cancel if client is not None else None)
        self._poll = poll
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._batches: list[_Batch] = []
        self._round = 0
        self._acc = results.ResultAccumulator(custom_ids)
        self._future: concurrent.futures.Future[pd.DataFrame] = concurrent.futures.Future()
        self._thread: threading.Thread | None = None
        self._status = JobStatus.PREPARING
        self._started = time.monotonic()
        self._counts_move = False
        self._canceled = False
        self._error: str | None = None
        self._traceback: str | None = None
        self._cached_rows = 0
        self._owner: str | None = None
        self._settle_at = 0.0  # when lost creates may next be settled (API calls: throttled)
        self._settle_every = poll[0]
        self._said: set[int] = set()  # lost submissions already explained in the log
        # Queue-aware submission: the next wave (requests, retry basis) and, after the API
        # refused a create (429: its batch queue is full), when to try again.
        self._later: tuple[np.ndarray, set[str] | None] | None = None
        self._queue_refusals = 0
        self._queue_retry_at: float | None = None
        # Raised as warnings in the thread that asks for the result, not the worker's.
        self._warnings: list[str] = []

    @property
    def _api(self) -> anthropic.Anthropic:
        assert self._client is not None, "a job with nothing to send makes no API calls"
        return self._client

    @property
    def _jnl(self) -> journal_mod.Journal:
        assert self._journal is not None, "a job with nothing to send has no journal entry"
        return self._journal

    # -- public surface ----------------------------------------------------------------

    @property
    def batch_ids(self) -> list[str]:
        with self._lock:
            return [b.id for b in self._batches]

    @property
    def status(self) -> JobStatus:
        """preparing, submitting, in_progress, canceling, fetching, then ended, canceled,
        failed or interrupted (a str-valued enum: ``job.status == "ended"`` works)."""
        return self._status

    def _transition(self, to: JobStatus, *, reopen: bool = False) -> bool:
        """The one place the status changes, under the job's lock. A final status is
        kept: a late cancel() or display tick cannot overwrite "ended"; only a retry
        (``reopen``) starts a new round. Returns whether the status changed."""
        with self._lock:
            if self._status.final and not reopen:
                return False
            self._status = to
            return True

    @property
    def request_counts(self) -> dict[str, int]:
        """The API's request_counts summed over every batch of this job."""
        with self._lock:
            return _sum_counts(self._batches)

    @property
    def cost(self) -> float | None:
        """What the replies in the table cost to produce, in USD at batch prices, whoever
        paid (the sum of ``<name>_cost_usd``; the same on a cached re-run); None before
        any result."""
        if not self._acc.filled.any():
            return None
        return float(self._acc.cost(self._config.get("prices"), cached=True))

    @property
    def spent(self) -> float:
        """What this call spent, in USD at batch prices: the succeeded results this job
        object downloaded from the API (including its ``retry()`` rounds). Results an
        earlier call already fetched, and cache hits, add nothing: 0.0 on a fully cached
        re-run or on re-attaching to a finished job."""
        return self._known_cost()

    def done(self) -> bool:
        """True once the result table is ready (or the job failed)."""
        return self._future.done()

    def wait(self, timeout: float | None = None) -> BatchJob:
        """Block until the job is done; Ctrl-C / Kernel Interrupt stops waiting, not the batch."""
        deadline = None if timeout is None else time.monotonic() + timeout
        # A notebook cell blocked here still gets its widget's clicks (Cancel): the
        # kernel's comm messages are handled while waiting, the rest re-queued after.
        waiting = getattr(self._display, "waiting", None)
        pump = CommPump.open() if callable(waiting) and not self._future.done() else None
        if callable(waiting) and not self._future.done():
            waiting(pump is not None)
        slice_s = 0.05 if pump is not None else 0.25
        try:
            while not self._future.done():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise NotReadyError(
                        f"Job {self.id} is still {self._status} after {timeout} s; "
                        "call job.wait() again later, or check job.status / job.request_counts."
                    )
                if pump is not None:
                    pump.poll()
                with contextlib.suppress(concurrent.futures.TimeoutError):
                    self._future.exception(timeout=slice_s if left is None else min(slice_s, left))
        except KeyboardInterrupt:
            print(self._interrupt_message(), file=sys.stderr, flush=True)
            raise
        finally:
            if pump is not None:
                pump.close()
        return self

    def result(self, timeout: float | None = None) -> pd.DataFrame:
        """The result table (blocks until ready): input rows in order, plus result columns."""
        self.wait(timeout)
        df = self._future.result()
        with self._lock:
            pending, self._warnings = self._warnings, []
        for message in pending:
            warnings.warn(message, RuntimeWarning, stacklevel=2)
        return df

    def cancel(self) -> None:
        """Cancel the job: no further batch is created, unfinished ones are canceled, and
        finished rows keep their results. A re-run of the same call then starts afresh."""
        with self._lock:
            if self._status.final:
                return  # it finished (or stopped) already: nothing is left to cancel
            self._canceled = True
            self._transition(JobStatus.CANCELING)
        if self._journal is not None:
            self._jnl.set_job_status(self.id, JobStatus.CANCELED)
        self._cancel_batches()
        self._wake.set()

    def _cancel_batches(self) -> None:
        with self._lock:
            # A provisional batch may be someone else's: it is never canceled (if it is
            # ours after all, its results still come back when it ends).
            todo = [
                b
                for b in self._batches
                if b.status != "ended" and not b.cancel_sent and not b.provisional
            ]
            for b in todo:
                b.cancel_sent = True
        for b in todo:
            with contextlib.suppress(anthropic.NotFoundError, anthropic.BadRequestError):
                self._api.messages.batches.cancel(b.id)

    def retry(
        self,
        *,
        errors: Sequence[str] | None = TRANSIENT_ERRORS,
        expired: bool = True,
        canceled: bool = False,
        missing: bool = True,
        wait: bool = True,
    ) -> pd.DataFrame | BatchJob:
        """Resubmit only the rows that did not succeed and merge their new results in place.

        By default: errored rows with a transient error type (overloaded, api_error,
        rate_limit, timeout), expired rows and rows with no result. Invalid requests
        are not resubmitted (they would fail again); ``errors=None`` retries every
        errored row; ``canceled=True`` adds canceled rows.
        """
        self.wait()
        if self._future.exception() is not None:
            raise JobError(
                f"Job {self.id} stopped ({self._error}); re-attach first with "
                f"claude_lab.attach({self.id!r}), then retry."
            )
        uids = self._acc.retry_candidates(
            errors=errors, expired=expired, canceled=canceled, missing=missing
        )
        if len(uids) == 0:
            return self.result() if wait else self
        with self._lock:
            # What this retry is based on: a request another worker has sent again since
            # (e.g. the same retry in another process) is followed, not sent a third time.
            seen = {b.id for b in self._batches if b.fetched}
        self._acc.forget(uids)
        with self._lock:
            self._round += 1
            self._future = concurrent.futures.Future()
            self._canceled = False
            self._transition(JobStatus.PREPARING, reopen=True)
            self._error = self._traceback = None
        # The first round's display ended as a card; the retry's live display takes its
        # place (the same output), or is shown here when there was none.
        previous = self._display
        self._display = self._make_display(self.cancel if self._client is not None else None)
        adopt = getattr(self._display, "adopt", None)
        if callable(adopt):
            self._display.update(self.snapshot())
        if not (callable(adopt) and adopt(previous)):
            _show(self)
        self._start(lambda: self._submit(uids, again=seen))
        return self.result() if wait else self

    def __await__(self) -> Generator[Any, None, pd.DataFrame]:
        return asyncio.wrap_future(self._future).__await__()

    def __repr__(self) -> str:
        counts = " ".join(f"{k}={v}" for k, v in self.request_counts.items() if v)
        return f"<BatchJob {self.id} {self._status} batches={len(self._batches)} {counts}>"

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        return progress.mimebundle(self.snapshot())

    def _ipython_display_(self) -> None:
        # The `job` idiom: the live view is shown once; showing the job again gives a
        # pointer to it while it runs, and the result card once it ended.
        show = getattr(self._display, "show", None)
        if callable(show):
            show(self.snapshot())
            return
        from IPython.display import display as ipy_display

        ipy_display(self._repr_mimebundle_(), raw=True)

    # -- preparing a run ----------------------------------------------------------------

    def _prepare(self, attached: bool, cache: bool) -> None:
        """Load what the journal already knows: this job's batches and results, the cache."""
        acc = self._acc
        if attached:
            own = {rec.batch_id for rec in self._jnl.batches(self.id)}
            by_batch: dict[str, list[tuple[str, bytes]]] = {}
            for cid, (batch_id, line) in self._jnl.job_results_by_batch(self.id).items():
                by_batch.setdefault(batch_id, []).append((cid, line))
            for batch_id, items in by_batch.items():
                acc.begin_pass(batch_id=batch_id)
                for cid, line in items:
                    if batch_id in own:
                        acc.feed(line)
                    else:  # another job paid for this one
                        acc.feed_cached(cid, line)
            for rec in self._jnl.batches(self.id):
                b = _Batch(
                    rec.batch_id,
                    rec.request_count,
                    0,
                    fetched=bool(rec.results_fetched),
                    provisional=rec.provisional,
                )
                b.status = rec.processing_status
                b.counts = {k: int(rec.request_counts.get(k, 0)) for k in _COUNT_KEYS}
                self._batches.append(b)
            # Fetched by an earlier call, so not paid by this one.
            acc.mark_cached(np.flatnonzero(acc.filled))
        if cache:
            wanted = [c for u, c in enumerate(self._custom_ids) if not acc.filled[u]]
            for cid, line in self._jnl.cached_results(wanted, self._config["endpoint"]).items():
                acc.feed_cached(cid, line)
        self._cached_rows = int(np.isin(self._row_uid, np.flatnonzero(acc.cached)).sum())
        todo = self._uncarried()
        if len(todo) and self._params is not None:
            self._config["estimated_cost_usd"] = variants.ceiling(
                self._config, self._params, self._row_uid, todo
            )

    def _finish_call(self, wait: bool) -> pd.DataFrame | BatchJob:
        # The worker refreshes the notebook output's fallbacks when the job ends.
        return self.result() if wait else self

    def _close_display(self) -> None:
        """The display's final render, then the text/html fallbacks of the notebook output.

        Runs on the worker before the future resolves: the snapshot says done (the
        widget's success / warning / danger style needs it), and while a cell is
        waiting on the job the refreshed output lands in that cell, in order. For a
        ``wait=False`` job it also refreshes the output of the cell that showed it
        (nbclient / nbconvert apply it wherever it arrives).
        """
        # A notebook display replaces each output that showed it with the final card.
        self._display.close(dataclasses.replace(self.snapshot(), done=True))

    # -- state --------------------------------------------------------------------------

    def snapshot(self) -> progress.Snapshot:
        """The immutable state displays render."""
        with self._lock:
            current = [b for b in self._batches if b.round == self._round]
            counts = _sum_counts(current)
            requests_n = sum(b.total for b in current)
        known = self._known_cost() if self._acc.filled.any() else None
        return progress.Snapshot(
            job_id=self.id,
            batch_ids=tuple(self.batch_ids),
            status=str(self._status),
            counts=counts,
            requests=requests_n,
            rows=len(self._row_uid),
            cached=self._cached_rows,
            skipped=int((self._row_uid < 0).sum()),
            elapsed=time.monotonic() - self._started,
            counts_move=self._counts_move,
            cost_usd=known,
            estimated_cost_usd=self._config.get("estimated_cost_usd"),
            error=self._error,
            done=self._future.done(),
            batches=tuple(progress.BatchInfo(b.id, b.status, dict(b.counts)) for b in current),
            traceback=self._traceback,
            name=str(self._config.get("name", "claude")),
            canceled_by_user=self._canceled,
        )

    def _known_cost(self) -> float:
        return float(self._acc.cost(self._config.get("prices")))

    def _interrupt_message(self) -> str:
        return (
            f"\nStopped waiting for job {self.id}. Its batches keep running at Anthropic and "
            "nothing is lost or paid twice. Get the results later with\n"
            f"    job = claude_lab.attach({self.id!r}); df = job.result()\n"
            "or re-run the same cell (it re-attaches instead of submitting again), or from a "
            f"shell: claude-lab wait {self.id}"
        )

    # -- the worker ---------------------------------------------------------------------

    def _start(self, first_step: Callable[[], None] | None = None) -> None:
        self._started = time.monotonic()
        self._thread = threading.Thread(
            target=self._work, args=(first_step,), name=f"claude_lab-{self.id}", daemon=True
        )
        self._thread.start()

    def _work(self, first_step: Callable[[], None] | None) -> None:
        future = self._future
        token = f"{_OWNER}:{secrets.token_hex(4)}"
        _LIVE_OWNERS.add(token)
        self._owner = token
        try:
            if first_step is not None:
                first_step()
            self._follow()
            df = self._build()
            with self._lock:  # decided together with cancel(): never "ended" then "canceling"
                final = JobStatus.CANCELED if self._canceled else JobStatus.ENDED
                self._transition(final)
            if final is JobStatus.ENDED:
                self._jnl.set_job_status(self.id, final)
            self._close_display()  # before resolving, so waiters see the final state
            future.set_result(df)
        except BaseException as caught:  # the waiting thread re-raises it
            exc = caught
            if isinstance(exc, anthropic.APIConnectionError) and self._client is not None:
                exc = _connection_error(exc, str(self._client.base_url), self.id)
                exc.__cause__ = caught
            self._error = f"{type(exc).__name__}: {exc}"
            self._traceback = "".join(traceback.format_exception(exc))
            # A job with batches at the API is not lost: leave it where a re-run finds it.
            with self._lock:
                sent = bool(self._batches)
            with contextlib.suppress(Exception):
                sent = sent or bool(self._jnl.pending_submissions(self.id))
            self._transition(JobStatus.INTERRUPTED if sent else JobStatus.FAILED)
            with contextlib.suppress(Exception):
                self._jnl.set_job_status(self.id, self._status)
            with contextlib.suppress(Exception):
                self._close_display()
            future.set_exception(exc)
        finally:
            _LIVE_OWNERS.discard(token)

    def _uncarried(self) -> np.ndarray:
        """Requests with no result yet that no recorded batch of this job carried."""
        carried = self._jnl.carried_custom_ids(self.id)
        filled = self._acc.filled
        return np.array(
            [u for u, c in enumerate(self._custom_ids) if not filled[u] and c not in carried],
            dtype=np.int64,
        )

    def _submit_uncarried(self) -> bool:
        """Claim and send what no batch carries; False if there was nothing to claim."""
        if self._canceled:
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

    def _candidates(
        self, since: float
    ) -> list[tuple[anthropic.types.messages.MessageBatch, str | None]]:
        """Batches at the API created since ``since`` (epoch s) that may be a lost create's:
        not a batch some job has verified, not one proved foreign to this job. Each comes
        with the job holding it provisionally, if any."""
        foreign = self._jnl.foreign_batches(self.id)
        found = []
        for mb in self._api.messages.batches.list(limit=100):
            if mb.created_at.timestamp() < since - _CLOCK_SKEW_S:
                break  # newest first: the rest are older
            if mb.id in foreign:
                continue
            held = self._jnl.batch_owner(mb.id)
            if held is not None and not held[1]:
                continue  # a verified batch of some job
            found.append((mb, held[0] if held else None))
        return found

    def _result_ids(self, batch_id: str) -> set[str] | None:
        """The custom_ids in an ended batch's results (None if they cannot be read). Only
        the ids are read: another user's results are never stored."""
        ids: set[str] = set()
        try:
            with self._api.messages.batches.with_streaming_response.results(batch_id) as resp:
                for line in results.iter_lines(resp.iter_bytes(_CHUNK_BYTES)):
                    with contextlib.suppress(ValueError, TypeError, KeyError):
                        ids.add(str(orjson.loads(line)["custom_id"]))
        except anthropic.NotFoundError:
            return None
        return ids

    def _recover_submissions(self) -> int:
        """Settle creates that started but were never recorded; return how many are still
        unsettled: in flight in a live worker, or waiting for evidence (those are waited
        for, never repeated).

        The API has no idempotency key, so a create whose response was lost (or whose
        worker died) may or may not have made a batch, and the batch list shows sizes,
        not owners: see ``_settle``.
        """
        pending = self._jnl.pending_submissions(self.id)
        open_ = [s for s in pending if s.lost_at or not _owner_alive(s.owner, s.started_at)]
        if not open_ or time.monotonic() < self._settle_at:
            return len(pending)
        with _CREATE_LOCK:
            waiting = self._settle(open_)
        self._sync_batches()
        if waiting:  # the evidence comes when the candidates end: look again later
            first, ceiling = self._poll
            self._settle_every = min(ceiling, max(first, self._settle_every * 1.5))
            self._settle_at = time.monotonic() + self._settle_every
        return len(pending) - len(open_) + waiting

    def _settle(self, subs: Sequence[journal_mod.SubmissionRecord]) -> int:
        """Decide lost creates on the job's own evidence; return how many must wait.

        Candidates are batches of the submission's size created since it began. An ended
        candidate whose results carry exactly the submission's custom_ids is the job's
        and is adopted; one that matches no create of this job is foreign to it, noted
        and never considered again (and never canceled or deleted). While candidates
        are still running nothing is visible but their size, so: a single one is adopted
        provisionally (and checked when it ends); two or more, or one another job holds,
        are waited for. With no candidate left, no batch was made and the submission is
        forgotten: its requests are then claimed and sent again, exactly once.
        """
        since = min(_parse_time(s.started_at) for s in subs)
        candidates = self._candidates(since)
        wanted = {
            s.id: (s.request_count, self._jnl.submission_custom_ids(s.id))
            for s in self._jnl.pending_submissions(self.id)
        }
        evidence: dict[str, set[str] | None] = {}
        for mb, _ in candidates:
            if mb.processing_status == "ended":
                evidence[mb.id] = self._result_ids(mb.id)
        for mb_id, ids in evidence.items():
            if not any(ids == want for _, want in wanted.values()):
                self._jnl.note_foreign(self.id, mb_id)
        used: set[str] = set()
        waiting = 0
        for sub in subs:
            started = _parse_time(sub.started_at)
            mine = [
                (mb, holder)
                for mb, holder in candidates
                if mb.id not in used
                and _size(mb) == sub.request_count
                and mb.created_at.timestamp() >= started - _CLOCK_SKEW_S
            ]
            want = wanted.get(sub.id, (0, set()))[1]
            match = next(((mb, h) for mb, h in mine if evidence.get(mb.id) == want), None)
            running = [(mb, h) for mb, h in mine if mb.processing_status != "ended"]
            with contextlib.suppress(KeyError):  # another worker settled it meanwhile
                if match is not None:
                    mb, holder = match
                    if holder is not None:  # held on size alone elsewhere; the ids say ours
                        self._jnl.release_batch(holder, mb.id)
                    self._adopt(sub.id, mb, provisional=False)
                    used.add(mb.id)
                elif len(running) == 1 and running[0][1] is None:
                    self._adopt(sub.id, running[0][0], provisional=True)
                    used.add(running[0][0].id)
                elif running:
                    waiting += 1
                    if sub.id not in self._said:
                        self._said.add(sub.id)
                        _log.warning(
                            "job %s: a create of %d requests may or may not have made a "
                            "batch, and %d running batches of that size could be it (%s); "
                            "nothing is sent again until they end and their custom_ids "
                            "show which, if any, is this job's",
                            self.id,
                            sub.request_count,
                            len(running),
                            ", ".join(mb.id for mb, _ in running),
                        )
                else:
                    self._jnl.abandon_submission(sub.id)
        return waiting

    def _adopt(
        self, sub_id: int, mb: anthropic.types.messages.MessageBatch, *, provisional: bool
    ) -> None:
        self._jnl.finish_submission(
            sub_id, mb.id, _iso(mb.created_at), _iso(mb.expires_at), provisional=provisional
        )

    def _check_provisional(self, b: _Batch) -> bool:
        """An ended provisional batch: keep it if its custom_ids are the job's, else
        release it (not ours: never canceled or deleted) so its requests are sent again."""
        want = set(self._jnl.job_custom_ids(self.id, b.id))
        got = self._result_ids(b.id)
        if got == want:
            self._jnl.confirm_batch(b.id)
            with self._lock:
                b.provisional = False
            return True
        self._jnl.release_batch(self.id, b.id)
        with self._lock:
            if b in self._batches:
                self._batches.remove(b)
        _log.warning(
            "job %s: batch %s has this job's size but not its requests (someone else's); "
            "released, and the requests it was thought to carry are sent again",
            self.id,
            b.id,
        )
        return False

    def _create(self, body: bytes, count: int) -> anthropic.types.messages.MessageBatch:
        """POST one batch, retrying under our control rather than the SDK's.

        A create whose response was lost (dropped connection, timeout, 5xx) may
        still have made a batch, and a blind resend would pay for it twice. So
        after such a failure, if any batch of this size appeared since, nothing is
        resent: ``_Lost`` hands the decision to the evidence (``_settle``). Only if
        none did is the create sent again. 429 and 529 are refusals: those are
        resent after the delay they ask for.
        """
        api = self._api.with_options(max_retries=0)
        attempts = max(self._api.max_retries, 2) + 1
        started = time.time()
        delay = 0.5
        for attempt in range(attempts):
            error: Exception
            try:
                return api.post(
                    "/v1/messages/batches",
                    cast_to=anthropic.types.messages.MessageBatch,
                    content=body,
                    options={"headers": _create_headers(self._config)},
                )
            except anthropic.APIStatusError as exc:
                code = exc.status_code
                if code < 500 and code not in (408, 409, 429):
                    raise  # a real rejection (bad request, auth, size): resending cannot help
                error, wait = exc, _retry_after(exc.response) or delay
                ambiguous = code not in (429, 529)
            except anthropic.APIConnectionError as exc:  # includes timeouts
                # A refused connection never carried the body: no batch can exist, so a
                # resend is safe and the list need not be read (it would fail too).
                refused = isinstance(exc.__cause__, httpx2.ConnectError)
                error, wait, ambiguous = exc, delay, not refused
            final = attempt == attempts - 1
            if final and not ambiguous:
                raise error
            # Wait first: a create still being processed then shows up in the list.
            time.sleep(wait)
            delay = min(delay * 2, 8.0)
            if ambiguous:
                try:
                    seen = any(_size(mb) == count for mb, _ in self._candidates(started))
                except Exception as exc:
                    if not _transient(exc):
                        raise
                    seen = True  # the list cannot be read now: let the settling decide later
                if seen:
                    raise _Lost() from error
            if final:
                raise error
        raise AssertionError("unreachable")

    def _submit(self, todo: np.ndarray, again: set[str] | None = None) -> None:
        """Claim the requests ``todo`` and create one batch per chunk of them.

        The claim is one journal transaction (see Journal.claim_submissions): of
        several workers, in threads or processes, sending the same job's requests at
        once, exactly one gets each request; the others follow its batches. Every
        chunk's intent is journaled before the first create, so a re-run sees them all
        as taken while this worker lives. ``again``: a retry, with the batches whose
        outcome it is based on.
        """
        if self._canceled or not len(todo):
            return
        limit = self._config.get("max_queued")
        if limit is not None and len(todo) > limit:
            # At most ``max_queued`` requests of this job wait in the API's queue at once:
            # the rest is the next wave, sent when these batches are done.
            todo, self._later = todo[:limit], (todo[limit:], again)
        self._transition(JobStatus.SUBMITTING)
        self._display.update(self.snapshot())
        params = self._request_params()
        lines = [_line(c, params[u]) for u, c in enumerate(self._custom_ids)]
        position = {c: u for u, c in enumerate(self._custom_ids)}
        chunks: list[requests.Chunk] = []

        def plan(free: list[str]) -> list[tuple[int, int, list[str]]]:
            uids = np.fromiter((position[c] for c in free), dtype=np.int64, count=len(free))
            chunks[:] = requests.split(lines, uids)
            ids = self._custom_ids
            return [(len(ch.uids), ch.body_bytes, [ids[u] for u in ch.uids]) for ch in chunks]

        subs = self._jnl.claim_submissions(
            self.id, [self._custom_ids[u] for u in todo], plan, self._owner, again=again
        )
        for k, (sub, chunk) in enumerate(zip(subs, chunks)):
            if self._canceled:
                for left in subs[k:]:
                    self._jnl.abandon_submission(left)
                return
            body = requests.batch_body(lines, chunk)
            # One create at a time per process, recorded before the next starts: an
            # orphan search then never mistakes a sibling job's new batch for its own.
            with _CREATE_LOCK:
                try:
                    batch = self._create(body, len(chunk.uids))
                except _Lost:
                    # Settled from the evidence by _follow; until then nothing is resent.
                    self._jnl.mark_lost(sub)
                    continue
                except anthropic.RateLimitError as exc:
                    # Refused, so nothing was created: give the wave's unsent requests back
                    # and send them again when the queue has room.
                    for left in subs[k:]:
                        self._jnl.abandon_submission(left)
                    self._defer(np.concatenate([ch.uids for ch in chunks[k:]]), again, exc)
                    return
                self._queue_refusals, self._queue_retry_at = 0, None
                self._jnl.finish_submission(
                    sub, batch.id, _iso(batch.created_at), _iso(batch.expires_at)
                )
            del body
            with self._lock:
                self._batches.append(_Batch(batch.id, len(chunk.uids), self._round))
                canceled = self._canceled
            if canceled:  # Cancel was pressed while this batch was being created
                self._cancel_batches()
            self._display.update(self.snapshot())

    def _defer(self, uids: np.ndarray, again: set[str] | None, exc: anthropic.APIError) -> None:
        """Put refused requests back in front of the next wave, to be tried again later
        (sooner if this job's own batches finish and free room in the queue)."""
        if self._later is not None:
            uids = np.concatenate([uids, self._later[0]])
        self._later = (uids, again)
        self._queue_refusals += 1
        first, ceiling = self._poll
        delay = min(ceiling, first * 2.0 ** min(self._queue_refusals, 30))
        self._queue_retry_at = time.monotonic() + delay
        if self._queue_refusals == 1:
            message = (
                f"Job {self.id}: the API refused a batch create with 429 rate_limit_error "
                f"({getattr(exc, 'message', exc)}). The organisation's batch queue is "
                f"probably full. {len(uids)} request(s) wait and are sent as queued batches "
                "finish; nothing is lost or sent twice. To queue less at once, pass "
                "max_queued= (requests per job in the queue)."
            )
            _log.warning("%s", message)
            with self._lock:
                self._warnings.append(message)

    def _queue_wait(self) -> bool:
        """True while a refused wave waits before its next try."""
        at = self._queue_retry_at
        return at is not None and time.monotonic() < at

    def _follow(self) -> None:
        """Poll until every batch has ended and its results are fetched, and no create
        is in flight anywhere for this job; submit what no batch carries."""
        first, ceiling = self._poll
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
                    if not _transient(exc):
                        raise
                    # The batch runs on at the API: keep polling, never give up the job.
                    _log.warning("job %s: %s: %s; polling again", self.id, type(exc).__name__, exc)
                    interval = min(ceiling, max(interval * 2, 1.0))
                next_poll = time.monotonic() + interval
            with self._lock:
                pending = [b for b in self._batches if not b.fetched]
            if not pending:
                try:
                    live = self._recover_submissions()  # may adopt batches
                except Exception as exc:
                    if not _transient(exc):
                        raise
                    # The list or a results download failed for now: settle next time.
                    _log.warning("job %s: %s: %s; looking again", self.id, type(exc).__name__, exc)
                    live = 1
                with self._lock:
                    pending = [b for b in self._batches if not b.fetched]
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
                    if self._jnl.pending_submissions(self.id):
                        continue
                    self._sync_batches()
                    with self._lock:
                        if not any(not b.fetched for b in self._batches):
                            return
                    next_poll = 0.0
                    continue
            if self._canceled:
                self._cancel_batches()
            self._transition(
                JobStatus.CANCELING
                if self._canceled
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
            self._display.update(self.snapshot())
            if self._wake.wait(timeout=max(0.0, min(_TICK_S, next_poll - time.monotonic()))):
                self._wake.clear()
                next_poll = 0.0

    def _sync_batches(self) -> None:
        """Pick up batches of this job recorded by another worker (thread or process), and
        drop provisional ones another worker has released."""
        recs = {rec.batch_id: rec for rec in self._jnl.batches(self.id)}
        with self._lock:
            self._batches = [b for b in self._batches if b.id in recs or not b.provisional]
            for b in self._batches:
                if b.provisional and not recs[b.id].provisional:
                    b.provisional = False  # another worker checked it
            known = {b.id for b in self._batches}
            for rec in recs.values():
                if rec.batch_id not in known:
                    self._batches.append(
                        _Batch(
                            rec.batch_id,
                            rec.request_count,
                            self._round,
                            provisional=rec.provisional,
                        )
                    )

    def _poll_once(self) -> None:
        with self._lock:
            pending = [b for b in self._batches if not b.fetched]
        for b in pending:
            if b.status != "ended":
                try:
                    mb = self._api.messages.batches.retrieve(b.id)
                except anthropic.NotFoundError:
                    if time.monotonic() - b.created < _NOT_FOUND_GRACE_S:
                        continue
                    raise
                rc = mb.request_counts
                with self._lock:
                    b.status = mb.processing_status
                    b.counts = {k: int(getattr(rc, k, 0) or 0) for k in _COUNT_KEYS}
                    if b.status != "ended" and any(b.counts[k] for k in _OUTCOMES):
                        self._counts_move = True
                self._jnl.update_batch(
                    b.id, b.status, b.counts, _iso(mb.ended_at) if mb.ended_at else None
                )
            if b.status == "ended":
                if b.provisional and not self._check_provisional(b):
                    continue
                self._transition(JobStatus.FETCHING)
                self._display.update(self.snapshot())
                self._download(b)

    def _download(self, b: _Batch) -> None:
        """Stream one batch's results into the accumulator and the journal; resume on drops."""
        last_exc: Exception | None = None
        unknown0, duplicates0 = self._acc.unknown, self._acc.duplicates
        for _ in range(_DOWNLOAD_ATTEMPTS):
            self._acc.begin_pass(batch_id=b.id)
            buffer: list[tuple[str, str, bytes]] = []
            try:
                with self._api.messages.batches.with_streaming_response.results(b.id) as resp:
                    for line in results.iter_lines(resp.iter_bytes(_CHUNK_BYTES)):
                        u = self._acc.feed(line)
                        if u >= 0:
                            buffer.append((self._custom_ids[u], self._acc.status_of(u), line))
                            if len(buffer) >= 20_000:
                                self._jnl.store_results(b.id, buffer)
                                buffer = []
                self._jnl.store_results(b.id, buffer)
                break
            except (anthropic.APIConnectionError, httpx2.TransportError) as exc:
                # Keep what arrived; the next pass skips ids already filled.
                self._jnl.store_results(b.id, buffer)
                last_exc = exc
                time.sleep(0.2)
            except anthropic.AnthropicError as exc:
                if "results_url" in str(exc) or isinstance(exc, anthropic.NotFoundError):
                    # Archived (29 days) or gone: what the journal holds is all there is.
                    last_exc = None
                    break
                raise
        else:
            raise JobError(
                f"The results of batch {b.id} could not be downloaded after "
                f"{_DOWNLOAD_ATTEMPTS} attempts ({last_exc}). Nothing is lost: run "
                f"`claude_lab.attach({self.id!r}).result()` to try again."
            )
        unknown = self._acc.unknown - unknown0
        duplicates = self._acc.duplicates - duplicates0
        if unknown or duplicates:
            with self._lock:
                self._warnings.append(
                    f"Batch {b.id}: ignored {unknown} result line(s) with an unknown "
                    f"custom_id and {duplicates} duplicate(s); each row kept its first result."
                )
        self._jnl.mark_fetched(b.id)
        with self._lock:
            b.fetched = True

    def _request_params(self) -> list[bytes]:
        if self._params is None:
            stored = self._jnl.get_request_params(self._custom_ids, job_id=self.id)
            self._params = [stored[c] for c in self._custom_ids]
        return self._params

    def _build(self) -> pd.DataFrame:
        cfg = self._config
        if cfg.get("variants"):
            return variants.build(self)
        cols = self._acc.columns(
            self._row_uid,
            prefix=cfg["name"],
            output=cfg.get("output"),
            parse=cfg.get("parse"),
            prices=cfg.get("prices"),
            features=cfg.get("features"),
        )
        out = (
            # Under copy-on-write a shallow copy is safe and free; before it (pandas 2
            # by default), editing the result could write through to the input frame.
            self._frame.copy(deep=not _COPY_ON_WRITE)
            if self._frame is not None
            else pd.DataFrame(index=self._index)
        )
        for key, values in cols.items():
            out[key] = values
        status = cols[f"{cfg['name']}_status"]
        totals = {str(k): int(v) for k, v in pd.Series(status).value_counts().items()}
        out.attrs["claude_lab"] = {
            "job_id": self.id,
            "package": f"claude-lab {__version__}",
            "model": cfg["model"],
            "templates": cfg["templates"],
            "params": cfg["params"],
            "name": cfg["name"],
            "batch_ids": self.batch_ids,
            "endpoint": cfg["endpoint"],
            "created_at": cfg["created_at"],
            "finished_at": now_iso(),
            "rows": len(out),
            "requests": len(self._custom_ids),
            "status_counts": totals,
            "cost_usd": float(pd.Series(cols[f"{cfg['name']}_cost_usd"]).sum()),
            "spent_usd": self.spent,
        }
        table_html.register()  # in a notebook: blank error cells rather than <NA>
        return out


def _line(custom_id: str, params: bytes) -> bytes:
    return b'{"custom_id":"' + custom_id.encode() + b'","params":' + params + b"}"


class _Lost(Exception):
    """A create's response was lost and a batch of its size exists: the evidence decides."""


def _size(mb: anthropic.types.messages.MessageBatch) -> int:
    return sum(int(getattr(mb.request_counts, k, 0) or 0) for k in _COUNT_KEYS)


def _retry_after(response: httpx2.Response) -> float | None:
    headers = response.headers
    with contextlib.suppress(TypeError, ValueError):
        if "retry-after-ms" in headers:
            return float(headers["retry-after-ms"]) / 1000
        if "retry-after" in headers:
            return float(headers["retry-after"])
    return None


def _owner_alive(owner: str | None, started_at: str) -> bool:
    """Is the worker that logged a submission still running (and so still creating it)?"""
    if not owner:
        return False
    host, pid, _token = [*owner.split(":"), "", "", ""][:3]
    if host != _HOST:
        return time.time() - _parse_time(started_at) < _FOREIGN_OWNER_S
    if int(pid or 0) == os.getpid():
        return owner in _LIVE_OWNERS
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OSError):
        return True
    return True


_LOOPBACK_HOSTS = ("localhost", "::1", "[::1]")


def _connection_error(exc: BaseException, base_url: str, job_id: str) -> JobError:
    """A connection failure as one error that names the URL and what to do next."""
    parts = urllib.parse.urlsplit(base_url)
    host = parts.hostname or ""
    text = f"Could not connect to {base_url} ({type(exc).__name__}: {exc})."
    if host in _LOOPBACK_HOSTS or host.startswith("127."):
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if not _listening(host, port):
            text += (
                f" Nothing is listening on {host}:{port}. To run offline, start the emulator "
                f"there (`python -m claude_lab.emulator --port {port}`), or use one in the "
                "notebook: `with claude_lab.emulator.serve() as emu: "
                "df.claude.batch(..., client=emu.client())`."
            )
            return JobError(text)
    text += (
        " Check the network and the client's base_url (ANTHROPIC_BASE_URL); "
        f"a re-run of the same call, or claude_lab.attach({job_id!r}), carries on without "
        "paying twice."
    )
    return JobError(text)


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host.strip("[]"), port), timeout=0.5):
            return True
    except OSError:
        return False


def _transient(exc: BaseException) -> bool:
    """Errors the API recovers from by itself: polling again later is the cure."""
    if isinstance(exc, (anthropic.APIConnectionError, httpx2.TransportError)):
        return True
    if isinstance(exc, anthropic.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return False


def _parse_time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


def _sum_counts(batches: Sequence[_Batch]) -> dict[str, int]:
    total = dict.fromkeys(_COUNT_KEYS, 0)
    for b in batches:
        for k in _COUNT_KEYS:
            total[k] += b.counts.get(k, 0)
    return total


# -- building a run -----------------------------------------------------------------------


def run(
    df: pd.DataFrame,
    prompt: templates.PromptArg,
    *,
    wait: bool = True,
    client: anthropic.Anthropic | None = None,
    max_cost: float | None = None,
    **options: Any,
) -> pd.DataFrame | BatchJob:
    """Run every row of ``df`` through the Message Batches API; see ``DataFrame.claude.batch``."""
    if not isinstance(wait, bool):
        raise InputError(f"wait must be True or False, got {wait!r}.")
    if max_cost is not None and (
        isinstance(max_cost, bool) or not isinstance(max_cost, (int, float)) or max_cost < 0
    ):
        raise InputError(f"max_cost={max_cost!r}: pass a budget in USD (a number >= 0), or None.")
    p = plan(df, prompt, **options)
    df = p.df  # without the result columns overwrite=True replaces
    encoded, config = p.encoded, p.config
    if not encoded.custom_ids:  # empty frame, or every row skipped: nothing to send
        job = BatchJob(
            client=None,
            journal=None,
            job_id="job_empty",
            custom_ids=[],
            params=[],
            row_uid=encoded.row_uid,
            frame=df,
            index=df.index,
            config=config,
            make_display=p.make_display,
            poll=p.poll,
        )
        job._future.set_result(job._build())
        job._transition(JobStatus.ENDED)
        return job.result() if wait else job

    client = resolve_client(client)
    models.preflight(p, client)  # the model, its limits and capabilities: one error, or none
    if max_cost is not None:
        _check_budget(p, float(max_cost))
    endpoint = str(client.base_url)
    config["endpoint"] = endpoint
    jnl = journal_mod.open_journal()
    fp = requests.fingerprint(
        encoded.custom_ids,
        endpoint + ("" if p.cache else "#nocache") + _variants_key(config.get("variants")),
    )
    # Look up and create in one transaction: of identical calls starting together (in
    # threads, notebooks, a job array), one creates the job and the rest attach to it.
    # A canceled job is not resumed: a re-run of it is on purpose.
    existing, job_id = jnl.find_or_create_job(
        fp,
        endpoint,
        model=str(config["model"]),
        templates=config["templates"],
        params=config["params"],
        name=config["name"],
        row_count=len(df),
        request_count=len(encoded.custom_ids),
        package_version=__version__,
        meta={"cache": p.cache, **_post_processing(config)},
        rows=(
            list(df.index) * (len(encoded.row_uid) // len(df)),  # once per model and epoch
            [encoded.custom_ids[u] if u >= 0 else None for u in encoded.row_uid],
        ),
        requests=(encoded.custom_ids, encoded.params),
    )
    if existing is None:
        jnl.add_input(job_id, df)  # so the full table can be exported offline later

    job = BatchJob(
        client=client,
        journal=jnl,
        job_id=job_id,
        custom_ids=encoded.custom_ids,
        params=encoded.params,
        row_uid=encoded.row_uid,
        frame=df,
        index=df.index,
        config=config,
        make_display=p.make_display,
        poll=p.poll,
    )
    job._prepare(existing is not None, p.cache)
    _show(job)
    job._start()
    return job._finish_call(wait)


def _check_budget(p: Any, max_cost: float) -> None:
    """InputError when the run's cost ceiling is over ``max_cost`` (nothing sent, no journal)."""
    enc, config = p.encoded, p.config
    n = len(enc.custom_ids)
    ceiling = variants.ceiling(config, enc.params, enc.row_uid, range(n))
    if ceiling is None:
        raise InputError(
            f"max_cost=${max_cost:g} cannot be checked: no price is known for model "
            f"{config['model']!r}. Pass prices={{model: (input, output)}} USD per million "
            "tokens. Nothing was sent."
        )
    if ceiling <= max_cost:
        return
    tokens = int(models.estimate_tokens(enc.params).sum())
    raise InputError(
        f"This run could cost up to ${ceiling:,.4f}, over max_cost=${max_cost:g}; nothing was "
        f"sent. How it was estimated: {n} request(s), ~{tokens:,} input tokens (4 bytes of "
        f"request JSON per token), each using its full max_tokens="
        f"{config['params'].get('max_tokens')} output tokens, at batch prices (50% of list), "
        "no cache hits deducted - a ceiling, not a forecast. Raise max_cost, lower max_tokens, "
        "or run df.claude.pilot(...) first: it projects the batch's cost from real token usage."
    )


def _show(job: BatchJob) -> None:
    """Put a notebook display in the current cell (live until the job ends)."""
    show = getattr(job._display, "show", None)
    if callable(show):
        show(job.snapshot())


def attach(
    job_or_batch_id: str,
    *,
    client: anthropic.Anthropic | None = None,
    frame: pd.DataFrame | None = None,
    progress: str | None = "auto",
    poll_interval: float | tuple[float, float] = (1.0, 30.0),
    output: Any = None,
    parse: Callable[[str], Any] | str | None = None,
) -> BatchJob:
    """Re-attach to a recorded job (by job id, a prefix of one, or any of its batch ids).

    The job keeps polling and fetching where it left off; ``job.result()`` rebuilds the
    full table from the journal, on top of ``frame`` (the original input) if given, or
    on the stored row index otherwise. Nothing already submitted is submitted again,
    and nothing at all for a canceled job. A regex or ``"json"`` ``parse=`` and the
    ``output=`` schema of the original call are reapplied; pass them to override
    (a callable ``parse=`` cannot be stored, so pass it again).
    """
    jnl = journal_mod.open_journal()
    rec = jnl.get_job(job_or_batch_id)
    if client is None:
        client = resolve_client(None)
        if rec.endpoint and str(client.base_url).rstrip("/") != rec.endpoint.rstrip("/"):
            # The job lives where it was submitted (the emulator, or the real API).
            client = client.with_options(base_url=rec.endpoint)
    job = _from_record(
        jnl,
        rec,
        client=client,
        frame=frame,
        progress=progress,
        poll_interval=poll_interval,
        output=output,
        parse=parse,
    )
    job._canceled = rec.status == "canceled"
    job._prepare(True, bool(rec.meta.get("cache", True)))
    _show(job)
    job._start()
    return job


def load_result(
    job_or_batch_id: str, *, frame: pd.DataFrame | None = None, with_input: bool = True
) -> tuple[pd.DataFrame, journal_mod.JobRecord]:
    """A recorded job's result table as the journal has it, built offline: no API key,
    no network. Rows whose result was never fetched are ``missing``. With
    ``with_input`` (and no ``frame``) the input columns recorded with the job lead the
    table, as in the original call's result."""
    jnl = journal_mod.open_journal()
    rec = jnl.get_job(job_or_batch_id)
    if frame is None and with_input:
        stored = jnl.get_input(rec.job_id)
        if stored is not None and len(stored.columns):
            labels = jnl.get_rows(rec.job_id)[0][: len(stored)]  # repeated per model and epoch
            frame = stored.set_axis(_index_from_labels(labels))
    job = _from_record(jnl, rec, client=None, frame=frame, progress=None)
    job._prepare(True, bool(rec.meta.get("cache", True)))
    return job._build(), rec


def _from_record(
    jnl: journal_mod.Journal,
    rec: journal_mod.JobRecord,
    *,
    client: anthropic.Anthropic | None,
    frame: pd.DataFrame | None,
    progress: str | None,
    poll_interval: float | tuple[float, float] = (1.0, 30.0),
    output: Any = None,
    parse: Callable[[str], Any] | str | None = None,
) -> BatchJob:
    """A BatchJob for a recorded job, not yet loaded from the journal nor started."""
    labels, row_cids = jnl.get_rows(rec.job_id)
    custom_ids = list(dict.fromkeys(c for c in row_cids if c is not None))
    pos = {c: u for u, c in enumerate(custom_ids)}
    row_uid = np.fromiter(
        (pos[c] if c is not None else -1 for c in row_cids), dtype=np.int64, count=len(row_cids)
    )
    rows = len(row_uid) // len(rec.meta.get("variants") or [None])  # per model and epoch
    if frame is not None and len(frame) != rows:
        raise InputError(
            f"frame has {len(frame)} rows but job {rec.job_id} was run on {rows}; "
            "pass the original DataFrame, or no frame to rebuild from the stored rows."
        )
    if frame is not None:
        schema = output if output is not None else rec.meta.get("output_schema")
        if schema is None:
            schema = (rec.meta.get("features") or {}).get("tool_schema")
        clashes = clashing_columns(frame, rec.name or "claude", schema)
        if clashes:
            raise InputError(
                f"frame already has the result column(s) {clashes}; pass the original input "
                "DataFrame, so the rebuilt results do not overwrite columns you have."
            )
    index = frame.index if frame is not None else _index_from_labels(labels[:rows])
    config: dict[str, Any] = {
        "name": rec.name,
        "model": rec.model,
        "output": output if output is not None else rec.meta.get("output_schema"),
        "parse": parse if parse is not None else rec.meta.get("parse"),
        "prices": None,
        "templates": rec.templates,
        "params": rec.params,
        "created_at": rec.created_at,
        "endpoint": rec.endpoint,
        "estimated_cost_usd": None,
        "max_queued": DEFAULT_MAX_QUEUED,
    }
    if rec.meta.get("variants"):
        config["variants"] = rec.meta["variants"]
    if rec.meta.get("features"):
        config["features"] = rec.meta["features"]
    return BatchJob(
        client=client,
        journal=jnl,
        job_id=rec.job_id,
        custom_ids=custom_ids,
        params=None,
        row_uid=row_uid,
        frame=frame,
        index=index,
        config=config,
        make_display=progress_choice(progress),
        poll=poll_schedule(poll_interval),
    )


def _post_processing(config: Mapping[str, Any]) -> dict[str, Any]:
    """What attach() needs to rebuild parsed and structured columns (JSON-able only)."""
    meta: dict[str, Any] = {}
    if isinstance(config.get("parse"), str):
        meta["parse"] = config["parse"]
    if config.get("output") is not None:
        meta["output_schema"] = anthropic.transform_schema(config["output"])
    if config.get("variants"):
        meta["variants"] = config["variants"]
    if config.get("features"):
        meta["features"] = config["features"]
    return meta


def _create_headers(config: Mapping[str, Any]) -> dict[str, str]:
    """Headers of a batch create call: beta headers apply to the whole batch."""
    headers = {"Content-Type": "application/json"}
    betas = (config.get("features") or {}).get("betas")
    if betas:
        headers["anthropic-beta"] = ",".join(betas)
    return headers


def _variants_key(vs: Sequence[Mapping[str, Any]] | None) -> str:
    """Part of a multi-model job's fingerprint: the same requests under other column names
    (or as a plain run) are another job."""
    return "" if not vs else "#" + ",".join(f"{v['name']}/{v['epoch']}" for v in vs)


def _index_from_labels(labels: Sequence[Any]) -> pd.Index:
    if labels and all(isinstance(x, (tuple, list)) for x in labels):
        return pd.MultiIndex.from_tuples([tuple(x) for x in labels])
    return pd.Index(list(labels))
