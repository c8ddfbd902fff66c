"""A Snapshot builder shared by the display tests (console and widget front-ends)."""

from __future__ import annotations

from typing import Any

from claude_lab._progress import Snapshot

JOB = "job_7f3a9c"


def snapshot(batch_ids: tuple[str, ...], /, **kw: Any) -> Snapshot:
    """A snapshot of job JOB over ``batch_ids``: every count zero but those in ``counts=``,
    requests and rows their sum, any other field (``batch_ids=`` too) as given."""
    counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
    counts.update(kw.pop("counts", {}))
    base: dict[str, Any] = dict(
        job_id=JOB,
        batch_ids=batch_ids,
        status="in_progress",
        counts=counts,
        requests=sum(counts.values()),
        rows=sum(counts.values()),
    )
    base.update(kw)
    return Snapshot(**base)
