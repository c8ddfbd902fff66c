"""BatchJob: the handle of one run — wait, result, cancel, retry, await, display.

``run()`` plans everything before any request is sent (``_plan.py``), answers what
it can from the ledger's cache, re-attaches to an identical job already in the
ledger, and otherwise hands the requests to a worker (``_worker.py``), which
drives the gateway, the collector and, at the end, the table. The handle holds
no run state of its own: it reads the worker's, and publishes snapshots of it to
its display. Callers wait on the worker's future in short slices, so an interrupt
stops the waiting and never the batch.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import sys
import time
import warnings
from collections.abc import Callable, Generator, Sequence
from typing import Any

import anthropic
import numpy as np
import pandas as pd

from claude_lab import _ledger as journal_mod
from claude_lab import _models as models
from claude_lab import _progress as progress
from claude_lab import _requests as requests
from claude_lab import _table as table
from claude_lab import _templates as templates
from claude_lab import _variants as variants
from claude_lab._errors import InputError, JobError, NotReadyError
from claude_lab._gateway import Gateway, resolve_client
from claude_lab._ledger import JobStatus
from claude_lab._plan import (
    DEFAULT_MAX_QUEUED,
    RunConfig,
    clashing_columns,
    estimate_plan,
    plan,
    poll_schedule,
    progress_choice,
)
from claude_lab._uipoll import CommPump
from claude_lab._version import __version__
from claude_lab._worker import Worker

__all__ = ["TRANSIENT_ERRORS", "BatchJob", "attach", "load_result", "resolve_client", "run"]

TRANSIENT_ERRORS = ("overloaded_error", "api_error", "rate_limit_error", "timeout_error")


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
        rows: table.Rows,
        params: list[bytes] | None,
        config: RunConfig,
        make_display: Callable[[Callable[[], None] | None], progress.Display],
        poll: tuple[float, float],
    ) -> None:
        self.id = rows.job_id
        self._rows = rows
        self._config = config
        self._make_display = make_display
        self._can_cancel = client is not None
        self._display = make_display(self.cancel if self._can_cancel else None)
        gateway = None
        if client is not None and journal is not None:
            gateway = Gateway(client, journal, rows.job_id, betas=config.betas)
        self._worker = Worker(
            job_id=rows.job_id,
            gateway=gateway,
            ledger=journal,
            custom_ids=rows.custom_ids,
            params=params,
            row_uid=rows.row_uid,
            config=config,
            poll=poll,
        )

    # -- public surface ----------------------------------------------------------------

    @property
    def batch_ids(self) -> list[str]:
        w = self._worker
        with w.lock:
            return [b.id for b in w.batches]

    @property
    def status(self) -> JobStatus:
        """preparing, submitting, in_progress, canceling, fetching, then ended, canceled,
        failed or interrupted (a str-valued enum: ``job.status == "ended"`` works)."""
        return self._worker.status

    @property
    def request_counts(self) -> dict[str, int]:
        """The API's request_counts summed over every batch of this job."""
        return self._worker.counts()

    @property
    def cost(self) -> float | None:
        """What the replies in the table cost to produce, in USD at batch prices, whoever
        paid (the sum of ``<name>_cost_usd``; the same on a cached re-run); None before
        any result."""
        acc = self._worker.acc
        if not acc.filled.any():
            return None
        return float(acc.cost(self._config.prices, cached=True))

    @property
    def spent(self) -> float:
        """What this call spent, in USD at batch prices: the succeeded results this job
        object downloaded from the API (including its ``retry()`` rounds). Results an
        earlier call already fetched, and cache hits, add nothing: 0.0 on a fully cached
        re-run or on re-attaching to a finished job."""
        return self._worker.spent()

    def done(self) -> bool:
        """True once the result table is ready (or the job failed)."""
        return self._worker.future.done()

    def wait(self, timeout: float | None = None) -> BatchJob:
        """Block until the job is done; Ctrl-C / Kernel Interrupt stops waiting, not the batch."""
        future = self._worker.future
        deadline = None if timeout is None else time.monotonic() + timeout
        # A notebook cell blocked here still gets its widget's clicks (Cancel): the
        # kernel's comm messages are handled while waiting, the rest re-queued after.
        waiting = getattr(self._display, "waiting", None)
        pump = CommPump.open() if callable(waiting) and not future.done() else None
        if callable(waiting) and not future.done():
            waiting(pump is not None)
        slice_s = 0.05 if pump is not None else 0.25
        try:
            while not future.done():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise NotReadyError(
                        f"Job {self.id} is still {self.status} after {timeout} s; "
                        "call job.wait() again later, or check job.status / job.request_counts."
                    )
                if pump is not None:
                    pump.poll()
                with contextlib.suppress(concurrent.futures.TimeoutError):
                    future.exception(timeout=slice_s if left is None else min(slice_s, left))
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
        df = self._worker.future.result()
        w = self._worker
        with w.lock:
            pending, w.warnings = w.warnings, []
        for message in pending:
            warnings.warn(message, RuntimeWarning, stacklevel=2)
        return df

    def cancel(self) -> None:
        """Cancel the job: no further batch is created, unfinished ones are canceled, and
        finished rows keep their results. A re-run of the same call then starts afresh."""
        self._worker.cancel()

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
        w = self._worker
        if w.future.exception() is not None:
            raise JobError(
                f"Job {self.id} stopped ({w.error}); re-attach first with "
                f"claude_lab.attach({self.id!r}), then retry."
            )
        uids = w.acc.retry_candidates(
            errors=errors, expired=expired, canceled=canceled, missing=missing
        )
        if len(uids) == 0:
            return self.result() if wait else self
        first_step = w.reopen(uids)
        # The first round's display ended as a card; the retry's live display takes its
        # place (the same output), or is shown here when there was none.
        previous = self._display
        self._display = self._make_display(self.cancel if self._can_cancel else None)
        adopt = getattr(self._display, "adopt", None)
        if callable(adopt):
            self._display.update(self.snapshot())
        if not (callable(adopt) and adopt(previous)):
            _show(self)
        self._start(first_step)
        return self.result() if wait else self

    def __await__(self) -> Generator[Any, None, pd.DataFrame]:
        return asyncio.wrap_future(self._worker.future).__await__()

    def __repr__(self) -> str:
        counts = " ".join(f"{k}={v}" for k, v in self.request_counts.items() if v)
        return f"<BatchJob {self.id} {self.status} batches={len(self.batch_ids)} {counts}>"

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

    # -- what displays read ---------------------------------------------------------------

    def snapshot(self) -> progress.Snapshot:
        """The immutable state displays render."""
        w = self._worker
        with w.lock:
            current = [b for b in w.batches if b.round == w.round]
            batches = tuple(progress.BatchInfo(b.id, b.status, dict(b.counts)) for b in current)
            requests_n = sum(b.total for b in current)
            batch_ids = tuple(b.id for b in w.batches)
        known = w.spent() if w.acc.filled.any() else None
        return progress.Snapshot(
            job_id=self.id,
            batch_ids=batch_ids,
            status=str(w.status),
            counts=w.counts(current_round=True),
            requests=requests_n,
            rows=len(w.row_uid),
            cached=w.cached_rows,
            skipped=int((w.row_uid < 0).sum()),
            elapsed=time.monotonic() - w.started,
            counts_move=w.counts_move,
            cost_usd=known,
            estimated_cost_usd=w.estimated_cost,
            error=w.error,
            done=w.future.done(),
            batches=batches,
            traceback=w.traceback,
            name=self._config.name,
            canceled_by_user=w.canceled,
        )

    def _start(self, first_step: Callable[[], None] | None = None) -> None:
        self._worker.start(
            first_step, on_change=self._publish, on_end=self._close_display, build=self._build
        )

    def _publish(self) -> None:
        self._display.update(self.snapshot())

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

    def _build(self) -> pd.DataFrame:
        return table.build(
            self._rows,
            self._config,
            self._worker.acc,
            batch_ids=self.batch_ids,
            spent=self.spent,
        )

    def _interrupt_message(self) -> str:
        return (
            f"\nStopped waiting for job {self.id}. Its batches keep running at Anthropic and "
            "nothing is lost or paid twice. Get the results later with\n"
            f"    job = claude_lab.attach({self.id!r}); df = job.result()\n"
            "or re-run the same cell (it re-attaches instead of submitting again), or from a "
            f"shell: claude-lab wait {self.id}"
        )


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
        rows = table.Rows("job_empty", [], encoded.row_uid, df, df.index)
        job = BatchJob(
            client=None,
            journal=None,
            rows=rows,
            params=[],
            config=config,
            make_display=p.make_display,
            poll=p.poll,
        )
        job._worker.finish_now(job._build)
        return job.result() if wait else job

    client = resolve_client(client)
    models.preflight(p, client)  # the model, its limits and capabilities: one error, or none
    endpoint = str(client.base_url)
    config = config.replace(endpoint=endpoint)
    jnl = journal_mod.open_journal()
    fp = _fingerprint(p, endpoint)
    if max_cost is not None:
        _check_budget(p, float(max_cost), _to_send(p, jnl, fp, endpoint))
    # Look up and create in one transaction: of identical calls starting together (in
    # threads, notebooks, a job array), one creates the job and the rest attach to it.
    # A canceled job is not resumed: a re-run of it is on purpose.
    existing, job_id = jnl.find_or_create_job(
        fp,
        endpoint,
        model=config.model,
        templates=config.templates,
        params=config.params,
        name=config.name,
        row_count=len(df),
        request_count=len(encoded.custom_ids),
        package_version=__version__,
        meta={"cache": p.cache, **_post_processing(config)},
        rows=(
            list(df.index) * (len(encoded.row_uid) // len(df)),  # once per model and epoch
            [encoded.custom_ids[u] if u >= 0 else None for u in encoded.row_uid.tolist()],
        ),
        requests=(encoded.custom_ids, encoded.params),
    )
    if existing is None:
        jnl.add_input(job_id, df)  # so the full table can be exported offline later

    job = BatchJob(
        client=client,
        journal=jnl,
        rows=table.Rows(job_id, encoded.custom_ids, encoded.row_uid, df, df.index),
        params=encoded.params,
        config=config,
        make_display=p.make_display,
        poll=p.poll,
    )
    cache = p.cache
    # The worker holds what it needs; the plan's own references would keep every
    # request's bytes alive while the batches run.
    del p, encoded
    job._worker.load(existing is not None, cache)
    _show(job)
    job._start()
    # The worker refreshes the notebook output's fallbacks when the job ends.
    return job.result() if wait else job


def _fingerprint(p: Any, endpoint: str) -> str:
    """The identity of a run in the journal: its requests, endpoint, cache and variants."""
    return requests.fingerprint(
        p.encoded.custom_ids,
        endpoint + ("" if p.cache else "#nocache") + _variants_key(p.config.variants),
    )


def _to_send(p: Any, jnl: journal_mod.Journal, fp: str, endpoint: str) -> np.ndarray:
    """The requests (u, ascending) a run would pay for now: not those a resumable job of
    the same call already carries, nor, with the cache on, those with a cached reply."""
    ids = p.encoded.custom_ids
    covered: set[str] = set()
    job = jnl.find_job(fp, endpoint)
    if job is not None and job.status != JobStatus.CANCELED:  # a canceled one is not resumed
        covered |= jnl.carried_custom_ids(job.job_id)
    if p.cache:
        covered |= jnl.cached_ids([c for c in ids if c not in covered], endpoint)
    if not covered:
        return np.arange(len(ids), dtype=np.int64)
    return np.flatnonzero(np.fromiter((c not in covered for c in ids), bool, len(ids)))


def estimate(df: pd.DataFrame, prompt: Any, **options: Any) -> dict[str, Any]:
    """``estimate_plan`` less what the journal already holds: the requests a resumable job
    of the same call carries and, with the cache on, those with a cached reply. Reads the
    journal only if there is one, and writes nothing."""
    options.pop("wait", None)
    client = options.pop("client", None)
    p = plan(df, prompt, **options)
    if client is not None:  # the model checks need the catalogue, so only with a client
        models.preflight(p, resolve_client(client))
    todo: np.ndarray | None = None
    path = journal_mod.default_home() / "journal.sqlite3"
    if path.exists():
        try:  # the endpoint a run would use, as the SDK resolves it (no key needed)
            endpoint = str((client or anthropic.Anthropic()).base_url)
        except Exception:
            endpoint = None
        if endpoint is not None:
            jnl = journal_mod.open_journal()
            todo = _to_send(p, jnl, _fingerprint(p, endpoint), endpoint)
    return estimate_plan(p, todo)


def _check_budget(p: Any, max_cost: float, todo: np.ndarray) -> None:
    """InputError when the cost ceiling of the requests ``todo`` is over ``max_cost``
    (checked before anything is sent or journaled)."""
    enc, config = p.encoded, p.config
    n = len(enc.custom_ids)
    ceiling = variants.ceiling(config, enc.params, enc.row_uid, todo) if len(todo) else 0.0
    if ceiling is None:
        raise InputError(
            f"max_cost=${max_cost:g} cannot be checked: no price is known for model "
            f"{config.model!r}. Pass prices={{model: (input, output)}} USD per million "
            "tokens. Nothing was sent."
        )
    if ceiling <= max_cost:
        return
    tokens = int(models.estimate_tokens([enc.params[u] for u in todo.tolist()]).sum())
    held = n - len(todo)
    deducted = f"; {held} request(s) already sent or cached are not counted" if held else ""
    raise InputError(
        f"This run could cost up to ${ceiling:,.4f}, over max_cost=${max_cost:g}; nothing was "
        f"sent. How it was estimated: {len(todo)} request(s) to send, ~{tokens:,} input tokens "
        f"(4 bytes of request JSON per token), each using its full max_tokens="
        f"{config.params.get('max_tokens')} output tokens, at batch prices (50% of list)"
        f"{deducted} - a ceiling, not a forecast. Raise max_cost, lower max_tokens, or run "
        "df.claude.pilot(...) first: it projects the batch's cost from real token usage."
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
    job._worker.canceled = rec.status == "canceled"
    job._worker.load(True, bool(rec.meta.get("cache", True)))
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
    job._worker.load(True, bool(rec.meta.get("cache", True)))
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
    config = RunConfig(
        name=rec.name or "claude",
        model=str(rec.model),
        templates=rec.templates,
        params=rec.params,
        created_at=rec.created_at,
        output=output if output is not None else rec.meta.get("output_schema"),
        parse=parse if parse is not None else rec.meta.get("parse"),
        max_queued=DEFAULT_MAX_QUEUED,
        variants=rec.meta.get("variants") or None,
        features=rec.meta.get("features") or None,
        endpoint=rec.endpoint,
    )
    return BatchJob(
        client=client,
        journal=jnl,
        rows=table.Rows(rec.job_id, custom_ids, row_uid, frame, index),
        params=None,
        config=config,
        make_display=progress_choice(progress),
        poll=poll_schedule(poll_interval),
    )


def _post_processing(config: RunConfig) -> dict[str, Any]:
    """What attach() needs to rebuild parsed and structured columns (JSON-able only)."""
    meta: dict[str, Any] = {}
    if isinstance(config.parse, str):
        meta["parse"] = config.parse
    if config.output is not None:
        meta["output_schema"] = anthropic.transform_schema(config.output)
    if config.variants:
        meta["variants"] = config.variants
    if config.features:
        meta["features"] = config.features
    return meta


def _variants_key(vs: Sequence[dict[str, Any]] | None) -> str:
    """Part of a multi-model job's fingerprint: the same requests under other column names
    (or as a plain run) are another job."""
    return "" if not vs else "#" + ",".join(f"{v['name']}/{v['epoch']}" for v in vs)


def _index_from_labels(labels: Sequence[Any]) -> pd.Index:
    if labels and all(isinstance(x, (tuple, list)) for x in labels):
        return pd.MultiIndex.from_tuples([tuple(x) for x in labels])
    return pd.Index(list(labels))
