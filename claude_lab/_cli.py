"""The command line: ``claude-lab`` / ``python -m claude_lab``.

``demo`` runs the README's evaluation; ``jobs``, ``show``, ``wait``, ``cancel``,
``results`` and ``prune`` work on the journal, so a run started in a notebook can be
followed, stopped or exported from a shell. ``jobs``, ``show`` and ``results``
answer from the journal and need no API key (``show`` refreshes from the API
when it can). Exit codes: 0 done, 1 a claude_lab error (the message says what
to do), 2 bad usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import anthropic
import pandas as pd

from claude_lab._errors import ClaudeLabError, InputError
from claude_lab._ledger import ROW_COUNT_KINDS, JobRecord, Journal
from claude_lab._version import __version__

__all__ = ["main"]

_BATCH_COUNTS = ("processing", "succeeded", "errored", "canceled", "expired")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="claude-lab",
        description="Run and follow Claude batch jobs over DataFrames.",
        epilog="Exit codes: 0 done, 1 a claude_lab error (the message says what to do), "
        "2 bad usage, 130 interrupted.",
    )
    p.add_argument("--version", action="version", version=f"claude-lab {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    d = sub.add_parser("demo", help="evaluate a model on the shipped arithmetic set")
    d.add_argument("--real", action="store_true", help="use the real API (needs ANTHROPIC_API_KEY)")
    d.add_argument(
        "--rows", type=_positive_int, default=None, help="use only the first N questions"
    )
    d.add_argument("--model", default="claude-haiku-4-5")
    d.add_argument("--out", default="claude_lab_results/demo_results.csv")
    sub.add_parser("jobs", help="list the jobs in the journal (offline)")
    for name, text in (
        ("show", "show one job's rows and batches (refreshed from the API when possible)"),
        ("wait", "wait for a job to finish and fetch its results"),
        ("cancel", "cancel a job's unfinished batches"),
    ):
        sp = sub.add_parser(name, help=text)
        sp.add_argument("job", help="job id (or a unique prefix), or one of its batch ids")
    pr = sub.add_parser(
        "prune", help="delete finished jobs from the journal (by age and/or by job)"
    )
    pr.add_argument("--older-than", metavar="AGE", help="e.g. 30d, 12h, 2w: last updated before")
    pr.add_argument("--job", action="append", default=[], help="a job to delete (repeatable)")
    pr.add_argument(
        "--keep-cache",
        action="store_true",
        help="keep the jobs' result lines, so identical requests are still answered from them",
    )
    r = sub.add_parser("results", help="write a job's result table to a file (offline)")
    r.add_argument("job")
    r.add_argument("--out", required=True, help="FILE.csv, FILE.parquet or FILE.jsonl")
    r.add_argument(
        "--results-only",
        action="store_true",
        help="leave out the input columns recorded with the job",
    )
    return p


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ClaudeLabError as exc:
        print(f"claude-lab: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("claude-lab: interrupted; nothing was lost.", file=sys.stderr)
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    from claude_lab import _job as job_mod
    from claude_lab._ledger import open_journal

    if args.command == "demo":
        from claude_lab._demo import run_demo

        run_demo(
            real=args.real,
            rows=args.rows,
            model=args.model,
            out=args.out,
            progress="console" if sys.stderr.isatty() else None,
        )
        return 0
    if args.command == "jobs":
        from claude_lab import jobs

        df = jobs()
        if df.empty:
            print("No jobs recorded yet.")
        else:
            with pd.option_context("display.width", 200, "display.max_columns", 30):
                print(df.to_string(index=False))
        print(_journal_line(open_journal()))
        return 0
    if args.command == "prune":
        return _prune(args)
    jnl = open_journal()
    rec = jnl.get_job(args.job)
    if args.command == "show":
        _show(jnl, rec)
        return 0
    if args.command == "results":
        return _results(rec, args.out, with_input=not args.results_only)
    if args.command == "cancel":
        job = job_mod.attach(rec.job_id, progress=None)
        job.cancel()
        print(
            f"Cancel requested for job {rec.job_id}; `claude-lab wait {rec.job_id}` "
            "fetches what finished."
        )
        return 0
    job = job_mod.attach(rec.job_id, progress="console" if sys.stderr.isatty() else None)
    df = job.result()
    status = df.attrs["claude_lab"]["status_counts"]  # every model's, for a multi-model job
    print(f"job {rec.job_id} {job.status}: {status}")
    return 0


def _results(rec: JobRecord, out: str, *, with_input: bool) -> int:
    from claude_lab._export import export
    from claude_lab._job import load_result

    df, rec = load_result(rec.job_id, with_input=with_input)
    export(df, out)
    status = df.attrs["claude_lab"]["status_counts"]  # every model's, for a multi-model job
    print(f"Wrote {len(df)} rows and {df.shape[1]} columns to {out} ({status})")
    if rec.status not in ("ended", "canceled"):
        print(
            f"claude-lab: job {rec.job_id} is {rec.status}: rows whose results were not "
            f"fetched yet are 'missing'. `claude-lab wait {rec.job_id}` fetches them.",
            file=sys.stderr,
        )
    return 0


def _show(jnl: Journal, rec: JobRecord) -> None:
    fresh, note = _refresh(jnl, rec)
    rec = jnl.get_job(rec.job_id)
    print(
        f"job {rec.job_id}  status={rec.status}  model={rec.model}  "
        f"rows={rec.row_count}  requests={rec.request_count}  created={rec.created_at}"
    )
    counts = jnl.row_counts(rec.job_id).get(rec.job_id, dict.fromkeys(ROW_COUNT_KINDS, 0))
    print("rows: " + " ".join(f"{k}={v}" for k, v in counts.items()))
    batches = jnl.batches(rec.job_id)
    if fresh:
        print(f"batches ({note}):")
    else:
        stamps = [rec.updated_at, *(b.updated_at for b in batches)]
        print(f"batches (as of {max(stamps)}; {note}):")
    for b in batches:
        bc = " ".join(f"{k}={v}" for k, v in b.request_counts.items())
        print(f"  {b.batch_id}  {b.processing_status}  {bc}")
    if not batches:
        print("  none (every row was skipped or answered from the result cache)")
    print(f"stored: {_mb(jnl.stored_bytes().get(rec.job_id, 0))}; {_journal_line(jnl)}")


def _refresh(jnl: Journal, rec: JobRecord) -> tuple[bool, str]:
    """Update the journal's batch statuses from the API; (done, what happened)."""
    from claude_lab._job import resolve_client

    open_batches = [b for b in jnl.batches(rec.job_id) if b.processing_status != "ended"]
    if not open_batches:
        if rec.status in ("ended", "canceled"):
            return True, "final: every batch has ended"
        return False, "no batch is running"
    try:
        client = resolve_client(None)
    except ClaudeLabError:
        return False, "no API key to refresh from the API (set ANTHROPIC_API_KEY)"
    if rec.endpoint and str(client.base_url).rstrip("/") != rec.endpoint.rstrip("/"):
        client = client.with_options(base_url=rec.endpoint)
    client = client.with_options(max_retries=0, timeout=10.0)
    try:
        for b in open_batches:
            mb = client.messages.batches.retrieve(b.batch_id)
            rc = mb.request_counts
            counts = {k: int(getattr(rc, k, 0) or 0) for k in _BATCH_COUNTS}
            jnl.update_batch(b.batch_id, mb.processing_status, counts, mb.ended_at)
    except anthropic.AnthropicError as exc:
        return False, f"could not refresh from {client.base_url}: {type(exc).__name__}"
    return True, "refreshed from the API just now"


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _journal_line(jnl: Any) -> str:
    return (
        f"journal: {jnl.path} ({_mb(jnl.size_bytes)}); `claude-lab prune --older-than 30d` trims it"
    )


def _age(text: str) -> timedelta:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if m is None:
        raise InputError(f"--older-than {text!r}: give an age such as 30d, 12h or 2w.")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[m[2]]
    return timedelta(**{unit: float(m[1])})


def _prune(args: argparse.Namespace) -> int:
    from claude_lab._ledger import open_journal

    if args.older_than is None and not args.job:
        raise InputError("claude-lab prune: give --older-than AGE (e.g. 30d) and/or --job ID.")
    age = _age(args.older_than) if args.older_than is not None else None
    jnl = open_journal()
    done = jnl.prune(older_than=age, job_ids=args.job, keep_cache=args.keep_cache)
    print(
        f"Deleted {done['jobs']} job(s) and {done['result_lines']} result line(s); "
        f"journal {_mb(done['bytes_before'])} -> {_mb(done['bytes_after'])} ({jnl.path})."
    )
    return 0
