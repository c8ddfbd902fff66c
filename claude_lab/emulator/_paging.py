"""Cursor pages, as the list endpoints (batches, models) serve them.

Owns the page query (``limit`` 1..1000, default 20; ``after_id`` or ``before_id``,
not both), the cut of a newest-first list at a cursor, and the page body
(``data``, ``has_more``, ``first_id``, ``last_id``).
"""

from __future__ import annotations

from typing import Any

from claude_lab.emulator._validation import Invalid

__all__ = ["cut", "page_body", "page_query"]


def page_query(query: dict[str, str]) -> tuple[int, str | None, str | None]:
    """-> (limit, after_id, before_id); ``Invalid`` with the API's message when they are off."""
    try:
        limit = int(query.get("limit", "20"))
    except ValueError:
        raise Invalid("limit: Input should be a valid integer") from None
    if not 1 <= limit <= 1000:
        raise Invalid("limit: Input should be between 1 and 1000")
    after, before = query.get("after_id"), query.get("before_id")
    if after and before:
        raise Invalid("Provide only one of after_id and before_id.")
    return limit, after or None, before or None


def cut(
    ids: list[str],
    limit: int,
    after: str | None,
    before: str | None,
    order: list[str] | None = None,
) -> tuple[list[str], bool]:
    """The page of newest-first ``ids`` just after ``after`` or just before ``before``,
    and whether more follow in that direction. ``order`` (oldest first, a superset of
    ``ids``) places a cursor that is no longer listed (a deleted batch)."""
    if after:
        pos = _position(ids, order or ids, after)
        return ids[pos : pos + limit], pos + limit < len(ids)
    if before:
        pos = _position(ids, order or ids, before, before=True)
        start = max(0, pos - limit)
        return ids[start:pos], start > 0
    return ids[:limit], limit < len(ids)


def page_body(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {
        "data": data,
        "has_more": has_more,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


def _position(ids: list[str], order: list[str], cursor: str, *, before: bool = False) -> int:
    """Index in newest-first ``ids`` just past (after_id) or at (before_id) ``cursor``.

    Works for a cursor no longer in ``ids`` too, by its place in ``order`` (oldest first).
    """
    if cursor in ids:
        at = ids.index(cursor)
        return at if before else at + 1
    rank = order.index(cursor)
    return sum(1 for b in ids if order.index(b) > rank)
