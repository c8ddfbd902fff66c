"""The ``df.claude`` accessor: a stateless shell over ``jobs.run``.

pandas builds a new accessor object on every attribute access, so nothing may
be stored on it; every call goes straight to the core.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from claude_lab import _job as job_mod
from claude_lab import _plan as plan_mod

__all__ = ["ClaudeAccessor"]


@pd.api.extensions.register_dataframe_accessor("claude")
class ClaudeAccessor:
    """``df.claude.batch(prompt, model=..., ...)``: Claude over every row, via the Batches API."""

    def __init__(self, df: pd.DataFrame) -> None:
        self._df = df

    def batch(self, prompt: Any, **options: Any) -> pd.DataFrame | job_mod.BatchJob:
        """Send one request per row as a Message Batch and return the rows with result columns.

        ``prompt`` is a ``{column}`` template, a list of ``{"role", "content"}``
        templates, or a callable ``row -> str | list[dict] | None``. Options:
        ``system``, ``model``, ``max_tokens`` (1024), ``stop_sequences``, ``thinking``,
        ``tools``, ``tool_choice``, ``metadata``, ``params`` (any other Messages field;
        ``temperature``/``top_p``/``top_k`` are refused: API version 2026-10-21 removed
        them), ``output`` (pydantic model or JSON schema: one column per field),
        ``parse`` (callable, ``"json"`` or a regex), ``name`` (column prefix,
        ``"claude"``; the reply is ``<name>_text``),
        ``overwrite`` (False: a frame that already has this run's result columns is
        refused before anything is sent; True replaces them), ``on_missing``
        (``"skip"``, ``"raise"``, ``"empty"``), ``wait`` (True returns the table,
        False a :class:`BatchJob` at once), ``progress`` (``"auto"``, ``"widget"``,
        ``"console"``, ``"log"``, None), ``client`` (an ``anthropic.Anthropic``), ``cache``
        (answer identical past requests from the journal, True), ``poll_interval``,
        ``prices``, ``max_queued`` (requests of this job in the API's batch queue
        at once, 100,000; a bigger job is sent in waves as earlier batches finish) and
        ``max_cost`` (USD: refuse to send when the run's cost ceiling is over it).

        Before anything is sent, the model is checked against the Models API (exists,
        not retired, ``max_tokens`` and context window, capabilities).

        ``model=[...]`` runs several models in one job (a column block per model,
        prefixed from the model id or by ``names=[...]``); ``epochs=k`` sends each
        row k times (the table is then long, with an ``epoch`` column).

        Beyond text: ``images=``/``documents=`` name columns of paths, bytes, URLs or
        PIL images sent as image / PDF blocks; ``tools=`` takes dicts, pydantic models
        or functions and ``tool_choice=`` a dict, ``"auto"``/``"any"``/``"none"`` or a
        tool's name (``<name>_tool_calls``; a forced tool adds a column per field);
        ``thinking=`` a budget, ``"adaptive"`` or a dict (``<name>_thinking``,
        ``<name>_thinking_tokens``); ``prompt_cache="5m"|"1h"`` caches what every row
        shares; ``long_output=True`` allows ``max_tokens`` up to 300,000 on the models
        that have it; a template ending with an assistant turn is a prefill.

        The result has the input's index, order and length; every row gets a
        ``<name>_status``. Nothing is sent if any template or argument is wrong.
        """
        plan_mod.check_options(options, "df.claude.batch", also=("wait", "client", "max_cost"))
        return job_mod.run(self._df, prompt, **options)

    async def abatch(self, prompt: Any, **options: Any) -> pd.DataFrame:
        """``await df.claude.abatch(...)``: the same run, awaited (notebook cells, asyncio)."""
        plan_mod.check_options(options, "df.claude.abatch", also=("client", "max_cost"))
        options["wait"] = False
        job = job_mod.run(self._df, prompt, **options)
        assert isinstance(job, job_mod.BatchJob)
        return await job

    def pilot(self, prompt: Any, **options: Any) -> pd.DataFrame:
        """Try ``n`` sampled rows (5; ``seed=``, ``rows=`` labels) through the Messages API.

        Takes the options of :meth:`batch` plus ``n``, ``seed``, ``rows`` and
        ``concurrency``; returns those rows with the same result columns plus
        ``<name>_request`` (the rendered request), at standard prices, in seconds, and
        prints the full batch's cost projected from the pilot's real token usage (also
        in ``attrs["claude_lab"]["projection"]``). No batch is created; nothing journaled.
        """
        from claude_lab import _direct as direct

        plan_mod.check_options(
            options, "df.claude.pilot", also=("client", "n", "seed", "rows", "concurrency")
        )
        return direct.pilot(self._df, prompt, **options)

    def messages(self, prompt: Any, **options: Any) -> pd.DataFrame:
        """Every row through the Messages API: standard prices, answers in seconds.

        Same options and columns as :meth:`batch` (plus ``concurrency``, 8); journaled
        and cached like a batch run; 429 ``retry-after`` is honoured. For small frames
        in an interactive loop, where waiting for a batch costs more than 50% saves.
        """
        from claude_lab import _direct as direct

        plan_mod.check_options(options, "df.claude.messages", also=("client", "concurrency"))
        return direct.messages(self._df, prompt, **options)

    def estimate(self, prompt: Any, **options: Any) -> dict[str, Any]:
        """What a run would send and cost at most, without sending anything."""
        plan_mod.check_options(options, "df.claude.estimate", also=("wait", "client"))
        return job_mod.estimate(self._df, prompt, **options)
