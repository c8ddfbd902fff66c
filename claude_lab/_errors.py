"""The exceptions claude_lab raises; each message says what went wrong and what to do next.

Per-row API failures are never raised: they are data (the ``*_status`` and
``*_error`` columns). These exceptions are for problems found before anything
is sent, or for a job that cannot continue.
"""

from __future__ import annotations

__all__ = [
    "ClaudeLabError",
    "ConfigError",
    "InputError",
    "JobError",
    "JobNotFoundError",
    "JournalError",
    "NotReadyError",
    "RequestTooLargeError",
    "TemplateError",
]


class ClaudeLabError(Exception):
    """Base class of every error claude_lab raises on purpose."""


class ConfigError(ClaudeLabError):
    """The environment is not set up: no API key, an unusable client, an unwritable home."""


class JournalError(ConfigError):
    """The journal file cannot be used: not a database, damaged or truncated, or read-only.

    The message names the file, what went wrong and what to do; claude_lab never
    deletes or overwrites a journal to get past this.
    """


class InputError(ClaudeLabError, ValueError):
    """Bad arguments or data, found before any request was sent; nothing was spent."""


class TemplateError(InputError):
    """A prompt template names missing columns or uses a field form that is refused."""


class RequestTooLargeError(InputError):
    """One row's request cannot fit in a batch even on its own."""


class JobError(ClaudeLabError):
    """A job could not be submitted, polled or fetched."""


class JobNotFoundError(JobError, KeyError):
    """No job or batch with that id in the journal."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class NotReadyError(JobError):
    """Results were asked for before the job's batches ended."""
