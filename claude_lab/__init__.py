"""claude_lab: Claude over every row of a DataFrame, through the Message Batches API.

``import claude_lab`` registers the ``df.claude`` accessor.
"""

from __future__ import annotations

from claude_lab._version import __version__
from claude_lab.errors import (
    ClaudeLabError,
    ConfigError,
    InputError,
    JobError,
    JobNotFoundError,
    NotReadyError,
    RequestTooLargeError,
    TemplateError,
)

__all__ = [
    "ClaudeLabError",
    "ConfigError",
    "InputError",
    "JobError",
    "JobNotFoundError",
    "NotReadyError",
    "RequestTooLargeError",
    "TemplateError",
    "__version__",
]
