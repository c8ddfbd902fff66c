"""The command line: ``claude-lab`` / ``python -m claude_lab``.

``demo`` runs the README's evaluation; ``jobs``, ``show``, ``wait``, ``cancel``
and ``results`` work on the journal, so a run started in a notebook can be
followed, stopped or exported from a shell. Exit codes: 0 done, 1 a claude_lab
error (the message says what to do), 2 bad usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import pandas as pd

from claude_lab.errors import ClaudeLabError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="claude-lab", description="Run and follow Claude batch jobs over DataFrames."
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    d = sub.add_parser("demo", help="evaluate a model on the shipped arithmetic set")
    d.add_argument("--real", action="store_true", help="use the real API (needs ANTHROPIC_API_KEY)")
    d.add_argument("--rows", type=int, default=None, help="use only the first N questions")
    d.add_argument("--model", default="claude-haiku-4-5")
    d.add_argument("--out", default="claude_lab_results/demo_results.csv")
    sub.add_parser("jobs", help="list the jobs in the journal")
    for name, text in (
        ("show", "show one job's batches and counts"),
        ("wait", "wait for a job to finish and fetch its results"),
        ("cancel", "cancel a job's unfinished batches"),
    ):
        sp = sub.add_parser(name, help=text)
        sp.add_argument("job", help="job id (or a unique prefix), or one of its batch ids")
    r = sub.add_parser("results", help="write a job's result table to a file")
    r.add_argument("job")
    r.add_argument("--out", required=True, help="FILE.csv, FILE.parquet or FILE.jsonl")
    return p


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
    from claude_lab import job as job_mod
    from claude_lab.journal import open_journal

    if args.command == "demo":
        from claude_lab.demo import run_demo

        run_demo(
            real=args.real,
            rows=args.rows,
            model=args.model,
            out=args.out,
            progress="console" if sys.stderr.isatty() else None,
        )
        return 0
    if args.command == "jobs":
        df = open_journal().list_jobs()
        if df.empty:
            print("No jobs recorded yet.")
        else:
            with pd.option_context("display.width", 160, "display.max_columns", 20):
                print(df.to_string(index=False))
        return 0
    jnl = open_journal()
    rec = jnl.get_job(args.job)
    if args.command == "show":
        print(
            f"job {rec.job_id}  status={rec.status}  model={rec.model}  "
            f"rows={rec.row_count}  requests={rec.request_count}  created={rec.created_at}"
        )
        for b in jnl.batches(rec.job_id):
            counts = " ".join(f"{k}={v}" for k, v in b.request_counts.items())
            print(f"  {b.batch_id}  {b.processing_status}  {counts}")
        return 0
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
    status = df[f"{rec.name}_status"].value_counts().to_dict()
    if args.command == "wait":
        print(f"job {rec.job_id} {job.status}: {status}")
        return 0
    from claude_lab.export import export

    export(df, args.out)
    print(f"Wrote {len(df)} rows to {args.out} ({status})")
    return 0
