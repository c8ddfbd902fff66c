"""claude_lab: Claude over every row of a DataFrame, through the Message Batches API.

``import claude_lab`` registers the ``df.claude`` accessor::

    out = df.claude.batch("Question: {question}", model="claude-haiku-4-5")
"""

import pandas as pd

from claude_lab import _accessor  # registers df.claude
from claude_lab import _shapes as shapes
from claude_lab._compare import Comparison, compare, disagreements
from claude_lab._demo import load_sample
from claude_lab._errors import (
    ClaudeLabError,
    ConfigError,
    InputError,
    JobError,
    JobNotFoundError,
    JournalError,
    NotReadyError,
    RequestTooLargeError,
    TemplateError,
)
from claude_lab._export import export, read_provenance
from claude_lab._job import BatchJob, attach
from claude_lab._ledger import JobStatus
from claude_lab._plots import plot_accuracy, plot_cost_vs_score, plot_latency, plot_tokens
from claude_lab._pricing import Price
from claude_lab._report import report, to_latex
from claude_lab._scoring import JUDGE_RUBRIC, Verdict, score
from claude_lab._stats import summarize
from claude_lab._version import __version__


def jobs() -> pd.DataFrame:
    """The jobs recorded in the journal (``CLAUDE_LAB_HOME``), newest first.

    ``stored_mb`` is what each job takes up in the journal; ``attrs["journal"]`` holds
    the journal's path and total size (``claude-lab prune`` or ``forget`` trims it).
    """
    from claude_lab._ledger import open_journal

    jnl = open_journal()
    frame = jnl.list_jobs()
    stored = jnl.stored_bytes()
    frame["stored_mb"] = [round(stored.get(j, 0) / 1e6, 3) for j in frame["job_id"]]
    frame.attrs["journal"] = {"path": str(jnl.path), "bytes": jnl.size_bytes}
    return frame


def forget(job: str | BatchJob, *, keep_cache: bool = False) -> None:
    """Delete a finished job (id, prefix, batch id or the job itself) from the journal:
    its rows, requests, batches and, unless ``keep_cache``, its result lines.

    A job whose batches may still be running is refused (wait for it or cancel it
    first): the journal is what keeps them from being lost or paid twice.
    """
    from claude_lab._ledger import open_journal

    open_journal().prune(
        job_ids=[job.id if isinstance(job, BatchJob) else job], keep_cache=keep_cache
    )


del _accessor

__all__ = [  # noqa: RUF022 (plain sorted, as tests/test_exported_members.py checks)
    "BatchJob",
    "ClaudeLabError",
    "Comparison",
    "ConfigError",
    "InputError",
    "JUDGE_RUBRIC",
    "JobError",
    "JobNotFoundError",
    "JobStatus",
    "JournalError",
    "NotReadyError",
    "Price",
    "RequestTooLargeError",
    "TemplateError",
    "Verdict",
    "__version__",
    "attach",
    "compare",
    "disagreements",
    "export",
    "forget",
    "jobs",
    "load_sample",
    "plot_accuracy",
    "plot_cost_vs_score",
    "plot_latency",
    "plot_tokens",
    "read_provenance",
    "report",
    "score",
    "shapes",
    "summarize",
    "to_latex",
]
