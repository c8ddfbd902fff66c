"""Request identity (content-hash custom_ids) and batch splitting by count and bytes."""

from __future__ import annotations

import re

import numpy as np
import orjson
import pytest

from claude_lab import _requests as requests
from claude_lab._errors import RequestTooLargeError


def _params(text: str) -> dict[str, object]:
    return {
        "model": "claude-haiku-4-5",
        "max_tokens": 8,
        "messages": [{"role": "user", "content": text}],
    }


def test_custom_ids_are_valid_unique_and_shared_by_identical_requests() -> None:
    enc = requests.encode([_params("a"), None, _params("b"), _params("a")])
    assert len(enc.custom_ids) == 2
    assert all(re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", c) for c in enc.custom_ids)
    assert enc.row_uid.tolist() == [0, -1, 1, 0]


def test_custom_id_ignores_key_order_but_not_content() -> None:
    a = {"max_tokens": 8, "model": "m", "messages": [{"content": "x", "role": "user"}]}
    b = {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 8}
    c = {**b, "max_tokens": 9}
    ids = requests.encode([a, b, c]).custom_ids
    assert len(ids) == 2


def test_lines_are_the_exact_request_json() -> None:
    enc = requests.encode([_params("hello")])
    line = orjson.loads(requests.line(enc.custom_ids[0], enc.params[0]))
    assert enc.sizes.tolist() == [len(requests.line(enc.custom_ids[0], enc.params[0]))]
    assert line == {"custom_id": enc.custom_ids[0], "params": _params("hello")}


def test_split_by_count_and_exact_body_size() -> None:
    enc = requests.encode([_params(f"q{i}") for i in range(10)])
    chunks = requests.split(enc.sizes, np.arange(10), max_requests=4)
    assert [len(c.uids) for c in chunks] == [4, 4, 2]
    for c in chunks:
        body = requests.request_body(enc.custom_ids, enc.params, c)
        assert len(body) == c.body_bytes
        assert len(orjson.loads(body)["requests"]) == len(c.uids)
    limit = chunks[0].body_bytes  # exactly four requests fit
    by_bytes = requests.split(enc.sizes, np.arange(10), max_bytes=limit)
    assert all(c.body_bytes <= limit for c in by_bytes)
    assert sum(len(c.uids) for c in by_bytes) == 10
    assert len(by_bytes[0].uids) == 4


def test_a_streamed_body_is_the_same_bytes_every_time_it_is_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(requests.Body, "_STEP", 3)  # several pieces from ten requests
    enc = requests.encode([_params(f"q{i}") for i in range(10)])
    (chunk,) = requests.split(enc.sizes, np.arange(10))
    body = requests.Body(enc.custom_ids, enc.params, chunk)
    pieces = list(body)
    assert len(pieces) > 3
    sent = b"".join(pieces)
    assert len(sent) == len(body) == chunk.body_bytes
    assert b"".join(body) == sent  # a resend streams it again, identically
    got = orjson.loads(sent)["requests"]
    assert [r["custom_id"] for r in got] == enc.custom_ids
    assert [orjson.dumps(r["params"], option=orjson.OPT_SORT_KEYS) for r in got] == enc.params


def test_the_default_byte_limit_is_256_decimal_megabytes() -> None:
    assert requests.MAX_BATCH_BYTES == 256_000_000  # "256 MB", not 256 MiB
    assert requests.MAX_BATCH_REQUESTS == 100_000
    overhead = len(b'{"requests":[') + len(b"]}")
    first = 100_000_000
    # Two lines and the comma between them fill the body to exactly 256,000,000 bytes.
    exact = 256_000_000 - overhead - 1 - first
    # split() only measures lines, so the real 256 MB default is tested without building it.
    at = requests.split(np.array([first, exact]), [0, 1])
    assert [len(c.uids) for c in at] == [2] and at[0].body_bytes == 256_000_000
    over = requests.split(np.array([first, exact + 1]), [0, 1])
    assert [len(c.uids) for c in over] == [1, 1]
    assert max(c.body_bytes for c in over) < 256_000_000
    with pytest.raises(RequestTooLargeError, match="256,000,000 bytes"):
        requests.split(np.array([256_000_000 - overhead + 1]), [0])
    assert len(requests.split(np.array([256_000_000 - overhead]), [0])) == 1


def test_too_large_request_is_named_by_row() -> None:
    enc = requests.encode([_params("small"), _params("x" * 5000)])
    with pytest.raises(RequestTooLargeError, match="'row-b'") as info:
        requests.split(enc.sizes, np.arange(2), row_labels=["row-a", "row-b"], max_bytes=1000)
    assert "nothing was sent" in str(info.value)


def test_fingerprint_is_order_free_and_endpoint_bound() -> None:
    assert requests.fingerprint(["b", "a"], "u") == requests.fingerprint(["a", "b"], "u")
    assert requests.fingerprint(["a"], "u") != requests.fingerprint(["a"], "v")
