"""Published facts about the Anthropic API that the client's checks and the emulator share.

Pure data, no logic: the emulator stands in for the server and never imports the
client's validation, yet both must agree on these facts, so both read them from
here (see /work/shared/API_FACTS.md and docs/api_rules.md for the sources).
"""

from __future__ import annotations

__all__ = [
    "LONG_OUTPUT_BETA",
    "LONG_OUTPUT_MAX_TOKENS",
    "LONG_OUTPUT_MODELS",
    "PRE_4_6_MODELS",
]

#: The beta that lifts a batch request's ``max_tokens`` to :data:`LONG_OUTPUT_MAX_TOKENS`.
LONG_OUTPUT_BETA = "output-300k-2026-03-24"
LONG_OUTPUT_MAX_TOKENS = 300_000
#: Model id prefixes that accept :data:`LONG_OUTPUT_BETA`.
LONG_OUTPUT_MODELS = ("claude-opus-4-6", "claude-opus-4-7", "claude-opus-4-8", "claude-sonnet-4-6")
#: Model id prefixes of the generation before Claude 4.6: no adaptive thinking, assistant
#: prefill still accepted, and a 200k-token context window (100 PDF pages a request).
PRE_4_6_MODELS = (
    "claude-haiku-4-5",
    "claude-sonnet-4-5",
    "claude-opus-4-5",
    "claude-opus-4-1",
    "claude-opus-4-0",
    "claude-opus-4-2",
    "claude-sonnet-4-0",
    "claude-sonnet-4-2",
    "claude-3",
)
