"""Request identity and batch packing: canonical bytes, content-hash custom_ids, splitting.

A request's custom_id is ``"r" + blake2b-128(canonical params)``: valid for the
API, never derived from the DataFrame index, equal for identical requests (so
they are sent once) and usable as the result-cache key. Batch bodies are built
from the exact bytes that will be sent, so the 256 MB limit is measured, not
guessed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any

import numpy as np
import orjson

from claude_lab._errors import RequestTooLargeError

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_BATCH_REQUESTS",
    "Body",
    "Chunk",
    "Encoded",
    "encode",
    "fingerprint",
    "line",
    "line_sizes",
    "request_body",
    "split",
]

MAX_BATCH_REQUESTS = 100_000
# The API documents "256 MB". Read as decimal megabytes, the smaller of the two readings:
# splitting a little early costs nothing, a 413 on create fails the submission.
MAX_BATCH_BYTES = 256_000_000
_BODY_OPEN = b'{"requests":['
_BODY_CLOSE = b"]}"


_LINE_OPEN = b'{"custom_id":"'
_LINE_PARAMS = b'","params":'
_LINE_CLOSE = b"}"


@dataclass(frozen=True)
class Encoded:
    """The unique requests of a run and how rows map onto them.

    A request's batch line is not kept: it is the params with the custom_id around
    them (``line``), built only into the create call's body.
    """

    custom_ids: list[str]  # unique, first-seen order; index u
    params: list[bytes]  # canonical params bytes per u (stored in the journal)
    row_uid: np.ndarray  # int64 per row: u, or -1 for a skipped row

    @property
    def sizes(self) -> np.ndarray:
        """The byte size of each request's batch line (int64 per u)."""
        return line_sizes(self.custom_ids, self.params)


def line(custom_id: str, params: bytes) -> bytes:
    """One batch request line: the exact bytes a create body carries for a request."""
    return _LINE_OPEN + custom_id.encode() + _LINE_PARAMS + params + _LINE_CLOSE


def line_sizes(custom_ids: Sequence[str], params: Sequence[bytes]) -> np.ndarray:
    """The byte size of each ``line`` (custom_ids are ASCII), without building it."""
    fixed = len(_LINE_OPEN) + len(_LINE_PARAMS) + len(_LINE_CLOSE)
    ids = np.fromiter(map(len, custom_ids), dtype=np.int64, count=len(custom_ids))
    return ids + np.fromiter(map(len, params), dtype=np.int64, count=len(params)) + fixed


def encode(
    params: Sequence[dict[str, Any] | bytes | None], salts: Sequence[int] | None = None
) -> Encoded:
    """Canonically encode each row's params, hash them, and deduplicate identical requests.

    A row's params may come already encoded (canonical bytes, ``templates.render_json``).

    ``salts`` (per row, e.g. the epoch of a repeated sample) go into the hash only:
    a non-zero salt gives the same request its own custom_id; the bytes sent are the same.
    """
    ids: list[str] = []
    blobs: list[bytes] = []
    seen: dict[str, int] = {}
    row_uid = np.full(len(params), -1, dtype=np.int64)
    dumps = orjson.dumps
    sort = orjson.OPT_SORT_KEYS
    for i, p in enumerate(params):
        if p is None:
            continue
        blob = p if type(p) is bytes else dumps(p, option=sort)
        if salts is not None and salts[i]:
            cid = "r" + blake2b(blob + b"\x00epoch=%d" % salts[i], digest_size=16).hexdigest()
        else:
            cid = "r" + blake2b(blob, digest_size=16).hexdigest()
        u = seen.get(cid)
        if u is None:
            u = seen[cid] = len(ids)
            ids.append(cid)
            # orjson's output buffer is over-allocated (about 1 KB for a 120-byte
            # request); an exact-size copy keeps 100k params at ~15 MB, not ~100 MB.
            blobs.append(blob if type(p) is bytes else bytes(memoryview(blob)))
        row_uid[i] = u
    return Encoded(ids, blobs, row_uid)


def fingerprint(custom_ids: Sequence[str], endpoint: str) -> str:
    """The identity of a run: its set of requests and where they go (order-free)."""
    h = blake2b(digest_size=16)
    h.update(endpoint.encode())
    if custom_ids:  # endpoint, then "\n" + custom_id for each in sorted order
        h.update(("\n" + "\n".join(sorted(custom_ids))).encode())
    return h.hexdigest()


@dataclass(frozen=True)
class Chunk:
    """One batch's worth of requests: positions u into Encoded, and the body size in bytes."""

    uids: np.ndarray
    body_bytes: int


def split(
    sizes: np.ndarray,
    uids: Sequence[int] | np.ndarray,
    *,
    row_labels: Sequence[Any] | None = None,
    max_requests: int | None = None,
    max_bytes: int | None = None,
) -> list[Chunk]:
    """Cut the requests ``uids`` into batches under the count and byte limits, in order.

    ``sizes`` is each request's line size per u (``line_sizes``).
    ``row_labels`` (per u) names the offending rows when one request cannot fit
    in a batch on its own; that is raised before anything is sent.
    """
    max_requests = MAX_BATCH_REQUESTS if max_requests is None else max_requests
    max_bytes = MAX_BATCH_BYTES if max_bytes is None else max_bytes
    overhead = len(_BODY_OPEN) + len(_BODY_CLOSE)
    uids = np.asarray(uids, dtype=np.int64)
    size = np.asarray(sizes, dtype=np.int64)[uids]
    too_big = np.flatnonzero(size + overhead > max_bytes)
    if len(too_big):
        where = [
            repr(_plain(row_labels[int(uids[k])]))
            if row_labels is not None
            else f"request {int(uids[k])}"
            for k in too_big[:5]
        ]
        more = f" and {len(too_big) - 5} more" if len(too_big) > 5 else ""
        raise RequestTooLargeError(
            f"{len(too_big)} request(s) exceed the batch size limit of {max_bytes:,} bytes "
            f"on their own (rows {', '.join(where)}{more}; largest "
            f"{int(size[too_big].max()):,} bytes). Shorten those rows' prompts or drop them; "
            "nothing was sent."
        )
    # A body is its lines plus a comma between each two: cut where the running total of
    # (line + comma) would pass the limit, or the count would. Whole batches are found
    # with one cumulative sum and a binary search each, not a step per request.
    chunks: list[Chunk] = []
    ends = np.cumsum(size + 1)  # bytes of lines[:k+1] with a comma after each
    start = 0
    base = 0
    n = len(uids)
    while start < n:
        # The body of [start, k] is ends[k] - base - 1 (no comma after the last) + overhead.
        stop = int(np.searchsorted(ends, base + max_bytes - overhead + 1, side="right"))
        stop = max(min(stop, start + max_requests, n), start + 1)
        total = int(ends[stop - 1]) - base - 1 + overhead
        chunks.append(Chunk(uids[start:stop], total))
        base = int(ends[stop - 1])
        start = stop
    return chunks


def _plain(label: Any) -> Any:
    # A label read from a pandas Index may be a numpy scalar: name it as the user wrote it.
    return label.item() if isinstance(label, np.generic) else label


class Body:
    """One chunk's create-call body, produced piece by piece as it is sent.

    Iterating yields the exact bytes (about 0.5 MB at a time, built from the params
    then), so the body of a 100k-request batch is never held whole, nor copied again
    by the HTTP layer; ``len()`` is its size, for the Content-Length header. Each
    iteration starts afresh, so a create can be sent again.
    """

    _STEP = 2_000  # requests per piece

    def __init__(self, custom_ids: Sequence[str], params: Sequence[bytes], chunk: Chunk) -> None:
        self._ids, self._params, self._chunk = custom_ids, params, chunk

    def __len__(self) -> int:
        return self._chunk.body_bytes

    def __iter__(self) -> Iterator[bytes]:
        ids, params, step = self._ids, self._params, self._STEP
        uids = self._chunk.uids.tolist()
        size = len(_BODY_OPEN)
        yield _BODY_OPEN
        for start in range(0, len(uids), step):
            parts: list[bytes] = [b","] if start else []
            append = parts.append
            for u in uids[start : start + step]:
                append(_LINE_OPEN)
                append(ids[u].encode())
                append(_LINE_PARAMS)
                append(params[u])
                append(b"},")
            parts[-1] = _LINE_CLOSE
            piece = b"".join(parts)
            size += len(piece)
            yield piece
        yield _BODY_CLOSE
        assert size + len(_BODY_CLOSE) == self._chunk.body_bytes

    def __bytes__(self) -> bytes:
        return b"".join(self)


def request_body(custom_ids: Sequence[str], params: Sequence[bytes], chunk: Chunk) -> bytes:
    """The exact create-call body for one chunk, whole (see ``Body`` to stream it)."""
    return bytes(Body(custom_ids, params, chunk))
