"""claude_lab: Claude over every row of a DataFrame, through the Message Batches API.

``import claude_lab`` registers the ``df.claude`` accessor::

    out = df.claude.batch("Question: {question}", model="claude-haiku-4-5")
"""

import pandas as pd

from claude_lab import accessor as _accessor  # registers df.claude
from claude_lab._version import __version__
from claude_lab.compare import Comparison, compare, disagreements
from claude_lab.errors import (
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
from claude_lab.export import export, read_provenance
from claude_lab.job import BatchJob, attach
from claude_lab.plots import plot_accuracy, plot_cost_vs_score, plot_latency, plot_tokens
from claude_lab.report import report, to_latex
from claude_lab.scoring import score
from claude_lab.stats import summarize


def jobs() -> pd.DataFrame:
    """The jobs recorded in the journal (``CLAUDE_LAB_HOME``), newest first."""
    from claude_lab.journal import open_journal

    return open_journal().list_jobs()


del _accessor

__all__ = [
    "BatchJob",
    "ClaudeLabError",
    "Comparison",
    "ConfigError",
    "InputError",
    "JobError",
    "JobNotFoundError",
    "JournalError",
    "NotReadyError",
    "RequestTooLargeError",
    "TemplateError",
    "__version__",
    "attach",
    "compare",
    "disagreements",
    "export",
    "jobs",
    "plot_accuracy",
    "plot_cost_vs_score",
    "plot_latency",
    "plot_tokens",
    "read_provenance",
    "report",
    "score",
    "summarize",
    "to_latex",
]
