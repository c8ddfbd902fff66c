"""The batches gateway stage: every Message Batches API call a job makes, and the
retry and orphan policy in one place.

Create (with our own retries, and adoption of a create whose response was lost),
retrieve, cancel, list and the results stream. The API has no idempotency key, so
the rules that keep a lost create from being paid twice live here (docs/architecture.md
R4-R8): a create is never resent blindly, and a batch found by its size is adopted
only on the evidence of its custom_ids. The gateway records what it settles in the
ledger; it knows nothing of rows, columns or displays.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import anthropic
import httpx2
import orjson

from claude_lab import _collector as collector
from claude_lab import _requests as requests
from claude_lab._errors import ConfigError, InputError, JobError
from claude_lab._ledger import Journal, SubmissionRecord

__all__ = [
    "COUNT_KEYS",
    "CREATE_LOCK",
    "OUTCOMES",
    "BatchState",
    "Gateway",
    "Lost",
    "connection_error",
    "mark_live",
    "resolve_client",
    "retry_after",
    "transient",
]

_log = logging.getLogger("claude_lab")
_HOST = socket.gethostname().replace(":", "_")
_LIVE_OWNERS: set[str] = set()  # tokens of this process's running workers
# One create at a time per process, recorded before the next starts: an orphan search
# then never mistakes a sibling job's new batch for its own.
CREATE_LOCK = threading.Lock()

OUTCOMES = ("succeeded", "errored", "canceled", "expired")
COUNT_KEYS = ("processing", *OUTCOMES)
_CLOCK_SKEW_S = 120.0  # tolerated difference between our clock and the API's created_at
_FOREIGN_OWNER_S = 15 * 60.0  # a create logged on another host is presumed live this long
_CHUNK_BYTES = 1 << 16  # the default read size makes the results download twice as slow


def resolve_client(client: anthropic.Anthropic | None) -> anthropic.Anthropic:
    """The given client, or one built from the environment; ConfigError if it has no credentials."""
    if client is not None:
        if not isinstance(client, anthropic.Anthropic):
            raise InputError(
                f"client must be an anthropic.Anthropic instance, got {type(client).__name__}. "
                "For async code use `await df.claude.abatch(...)` with a sync client."
            )
        return client
    try:
        built = anthropic.Anthropic()
    except Exception as exc:  # e.g. a broken credentials profile in the environment
        raise ConfigError(
            f"Could not build an Anthropic client from the environment ({exc}). Set "
            "ANTHROPIC_API_KEY or pass client=anthropic.Anthropic(api_key=...)."
        ) from exc
    if not any(
        getattr(built, attr, None) is not None
        for attr in ("api_key", "auth_token", "credentials", "_token_cache")
    ):
        raise ConfigError(
            "No Anthropic API key found - set ANTHROPIC_API_KEY (or pass "
            "client=anthropic.Anthropic(api_key=...)). To try it offline with no key, use the "
            "emulator: `with claude_lab.emulator.serve() as emu: df.claude.batch(..., "
            "client=emu.client())`."
        )
    return built


@dataclass(frozen=True)
class BatchState:
    """What one retrieve says of a batch."""

    status: str
    counts: dict[str, int]
    ended_at: str | None


class Lost(Exception):
    """A create's response was lost and a batch of its size exists: the evidence decides."""


@contextlib.contextmanager
def mark_live(job_id: str) -> Iterator[str]:
    """A worker's owner token (host:pid:token), known live while the block runs: a
    submission it logged is waited for, never repeated (R4)."""
    token = f"{_HOST}:{os.getpid()}:{os.urandom(4).hex()}"
    _LIVE_OWNERS.add(token)
    try:
        yield token
    finally:
        _LIVE_OWNERS.discard(token)


class Gateway:
    """The Batches API as one job uses it (thread-safe: the SDK client is)."""

    def __init__(
        self,
        client: anthropic.Anthropic,
        ledger: Journal,
        job_id: str,
        *,
        betas: Sequence[str] = (),
    ) -> None:
        self.client = client
        self._ledger = ledger
        self._job_id = job_id
        # Beta headers apply to the whole batch.
        self._headers = {"Content-Type": "application/json"}
        if betas:
            self._headers["anthropic-beta"] = ",".join(betas)
        self._said: set[int] = set()  # lost submissions already explained in the log

    @property
    def base_url(self) -> str:
        return str(self.client.base_url)

    # -- plain calls ---------------------------------------------------------------------

    def retrieve(self, batch_id: str) -> BatchState:
        mb = self.client.messages.batches.retrieve(batch_id)
        rc = mb.request_counts
        return BatchState(
            mb.processing_status,
            {k: int(getattr(rc, k, 0) or 0) for k in COUNT_KEYS},
            _iso(mb.ended_at) if mb.ended_at else None,
        )

    def cancel(self, batch_ids: Sequence[str]) -> None:
        for batch_id in batch_ids:
            with contextlib.suppress(anthropic.NotFoundError, anthropic.BadRequestError):
                self.client.messages.batches.cancel(batch_id)

    @contextlib.contextmanager
    def results(self, batch_id: str) -> Iterator[Iterator[bytes]]:
        """The batch's results as raw JSONL lines (bytes), streamed: never SDK objects."""
        with self.client.messages.batches.with_streaming_response.results(batch_id) as resp:
            yield collector.iter_lines(resp.iter_bytes(_CHUNK_BYTES))

    def result_ids(self, batch_id: str) -> set[str] | None:
        """The custom_ids in an ended batch's results (None if they cannot be read). Only
        the ids are read: another user's results are never stored."""
        ids: set[str] = set()
        try:
            with self.results(batch_id) as lines:
                for line in lines:
                    with contextlib.suppress(ValueError, TypeError, KeyError):
                        ids.add(str(orjson.loads(line)["custom_id"]))
        except anthropic.NotFoundError:
            return None
        return ids

    # -- create, and what a lost one leaves -----------------------------------------------

    def create(
        self, body: bytes | requests.Body, count: int
    ) -> anthropic.types.messages.MessageBatch:
        """POST one batch, retrying under our control rather than the SDK's.

        A create whose response was lost (dropped connection, timeout, 5xx) may
        still have made a batch, and a blind resend would pay for it twice. So
        after such a failure, if any batch of this size appeared since, nothing is
        resent: ``Lost`` hands the decision to the evidence (``settle``). Only if
        none did is the create sent again. 429 and 529 are refusals: those are
        resent after the delay they ask for.
        """
        api = self.client.with_options(max_retries=0)
        attempts = max(self.client.max_retries, 2) + 1
        started = time.time()
        delay = 0.5
        for attempt in range(attempts):
            error: Exception
            try:
                return api.post(
                    "/v1/messages/batches",
                    cast_to=anthropic.types.messages.MessageBatch,
                    content=body,
                    # A streamed Body is sent with its length, not chunked.
                    options={"headers": {**self._headers, "Content-Length": str(len(body))}},
                )
            except anthropic.APIStatusError as exc:
                code = exc.status_code
                if code < 500 and code not in (408, 409, 429):
                    raise  # a real rejection (bad request, auth, size): resending cannot help
                error, wait = exc, retry_after(exc.response) or delay
                ambiguous = code not in (429, 529)
            except anthropic.APIConnectionError as exc:  # includes timeouts
                # A refused connection never carried the body: no batch can exist, so a
                # resend is safe and the list need not be read (it would fail too).
                refused = isinstance(exc.__cause__, httpx2.ConnectError)
                error, wait, ambiguous = exc, delay, not refused
            final = attempt == attempts - 1
            if final and not ambiguous:
                raise error
            # Wait first: a create still being processed then shows up in the list.
            time.sleep(wait)
            delay = min(delay * 2, 8.0)
            if ambiguous:
                try:
                    seen = any(_size(mb) == count for mb, _ in self._candidates(started))
                except Exception as exc:
                    if not transient(exc):
                        raise
                    seen = True  # the list cannot be read now: let the settling decide later
                if seen:
                    raise Lost() from error
            if final:
                raise error
        raise AssertionError("unreachable")

    def _candidates(
        self, since: float
    ) -> list[tuple[anthropic.types.messages.MessageBatch, str | None]]:
        """Batches at the API created since ``since`` (epoch s) that may be a lost create's:
        not a batch some job has verified, not one proved foreign to this job. Each comes
        with the job holding it provisionally, if any."""
        foreign = self._ledger.foreign_batches(self._job_id)
        found = []
        for mb in self.client.messages.batches.list(limit=100):
            if mb.created_at.timestamp() < since - _CLOCK_SKEW_S:
                break  # newest first: the rest are older
            if mb.id in foreign:
                continue
            held = self._ledger.batch_owner(mb.id)
            if held is not None and not held[1]:
                continue  # a verified batch of some job
            found.append((mb, held[0] if held else None))
        return found

    def settle(self, subs: Sequence[SubmissionRecord]) -> int:
        """Decide lost creates on the job's own evidence; return how many must wait.

        Candidates are batches of the submission's size created since it began. An ended
        candidate whose results carry exactly the submission's custom_ids is the job's
        and is adopted; one that matches no create of this job is foreign to it, noted
        and never considered again (and never canceled or deleted). While candidates
        are still running nothing is visible but their size, so: a single one is adopted
        provisionally (and checked when it ends); two or more, or one another job holds,
        are waited for. With no candidate left, no batch was made and the submission is
        forgotten: its requests are then claimed and sent again, exactly once.
        """
        ledger = self._ledger
        with CREATE_LOCK:
            since = min(_parse_time(s.started_at) for s in subs)
            candidates = self._candidates(since)
            wanted = {
                s.id: (s.request_count, ledger.submission_custom_ids(s.id))
                for s in ledger.pending_submissions(self._job_id)
            }
            evidence: dict[str, set[str] | None] = {}
            for mb, _ in candidates:
                if mb.processing_status == "ended":
                    evidence[mb.id] = self.result_ids(mb.id)
            for mb_id, ids in evidence.items():
                if not any(ids == want for _, want in wanted.values()):
                    ledger.note_foreign(self._job_id, mb_id)
            used: set[str] = set()
            waiting = 0
            for sub in subs:
                started = _parse_time(sub.started_at)
                mine = [
                    (mb, holder)
                    for mb, holder in candidates
                    if mb.id not in used
                    and _size(mb) == sub.request_count
                    and mb.created_at.timestamp() >= started - _CLOCK_SKEW_S
                ]
                want = wanted.get(sub.id, (0, set()))[1]
                match = next(((mb, h) for mb, h in mine if evidence.get(mb.id) == want), None)
                running = [(mb, h) for mb, h in mine if mb.processing_status != "ended"]
                with contextlib.suppress(KeyError):  # another worker settled it meanwhile
                    if match is not None:
                        mb, holder = match
                        if holder is not None:  # held on size alone elsewhere; ids say ours
                            ledger.release_batch(holder, mb.id)
                        self.record(sub.id, mb)
                        used.add(mb.id)
                    elif len(running) == 1 and running[0][1] is None:
                        self.record(sub.id, running[0][0], provisional=True)
                        used.add(running[0][0].id)
                    elif running:
                        waiting += 1
                        self._explain_wait(sub, [mb.id for mb, _ in running])
                    else:
                        ledger.abandon_submission(sub.id)
        return waiting

    def _explain_wait(self, sub: SubmissionRecord, running: list[str]) -> None:
        if sub.id in self._said:
            return
        self._said.add(sub.id)
        _log.warning(
            "job %s: a create of %d requests may or may not have made a batch, and %d "
            "running batches of that size could be it (%s); nothing is sent again until "
            "they end and their custom_ids show which, if any, is this job's",
            self._job_id,
            sub.request_count,
            len(running),
            ", ".join(running),
        )

    def record(
        self, sub_id: int, mb: anthropic.types.messages.MessageBatch, *, provisional: bool = False
    ) -> None:
        """A submission's batch, in the ledger (``provisional``: found by size only)."""
        self._ledger.finish_submission(
            sub_id, mb.id, _iso(mb.created_at), _iso(mb.expires_at), provisional=provisional
        )

    def confirm(self, batch_id: str) -> bool:
        """An ended provisional batch: keep it if its custom_ids are the job's, else
        release it (not ours: never canceled or deleted) so its requests are sent again."""
        want = set(self._ledger.job_custom_ids(self._job_id, batch_id))
        if self.result_ids(batch_id) == want:
            self._ledger.confirm_batch(batch_id)
            return True
        self._ledger.release_batch(self._job_id, batch_id)
        _log.warning(
            "job %s: batch %s has this job's size but not its requests (someone else's); "
            "released, and the requests it was thought to carry are sent again",
            self._job_id,
            batch_id,
        )
        return False

    def explain(self, exc: BaseException) -> BaseException:
        """A connection failure as one error naming the URL and what to do; others as is."""
        if isinstance(exc, anthropic.APIConnectionError):
            better = connection_error(exc, self.base_url, self._job_id)
            better.__cause__ = exc
            return better
        return exc


def owner_alive(owner: str | None, started_at: str) -> bool:
    """Is the worker that logged a submission still running (and so still creating it)?"""
    if not owner:
        return False
    host, pid, _token = [*owner.split(":"), "", "", ""][:3]
    if host != _HOST:
        return time.time() - _parse_time(started_at) < _FOREIGN_OWNER_S
    if int(pid or 0) == os.getpid():
        return owner in _LIVE_OWNERS
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OSError):
        return True
    return True


def retry_after(response: httpx2.Response) -> float | None:
    """The delay a 429/529 asks for, in seconds (``retry-after-ms`` first)."""
    headers = response.headers
    with contextlib.suppress(TypeError, ValueError):
        if "retry-after-ms" in headers:
            return float(headers["retry-after-ms"]) / 1000
        if "retry-after" in headers:
            return float(headers["retry-after"])
    return None


def transient(exc: BaseException) -> bool:
    """Errors the API recovers from by itself: polling again later is the cure."""
    if isinstance(exc, (anthropic.APIConnectionError, httpx2.TransportError)):
        return True
    if isinstance(exc, anthropic.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return False


_LOOPBACK_HOSTS = ("localhost", "::1", "[::1]")


def connection_error(exc: BaseException, base_url: str, job_id: str) -> JobError:
    """A connection failure as one error that names the URL and what to do next."""
    parts = urllib.parse.urlsplit(base_url)
    host = parts.hostname or ""
    text = f"Could not connect to {base_url} ({type(exc).__name__}: {exc})."
    if host in _LOOPBACK_HOSTS or host.startswith("127."):
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if not _listening(host, port):
            text += (
                f" Nothing is listening on {host}:{port}. To run offline, start the emulator "
                f"there (`python -m claude_lab.emulator --port {port}`), or use one in the "
                "notebook: `with claude_lab.emulator.serve() as emu: "
                "df.claude.batch(..., client=emu.client())`."
            )
            return JobError(text)
    text += (
        " Check the network and the client's base_url (ANTHROPIC_BASE_URL); "
        f"a re-run of the same call, or claude_lab.attach({job_id!r}), carries on without "
        "paying twice."
    )
    return JobError(text)


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host.strip("[]"), port), timeout=0.5):
            return True
    except OSError:
        return False


def _size(mb: anthropic.types.messages.MessageBatch) -> int:
    return sum(int(getattr(mb.request_counts, k, 0) or 0) for k in COUNT_KEYS)


def _parse_time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


def sum_counts(counts: Sequence[Mapping[str, int]]) -> dict[str, int]:
    """request_counts summed over batches."""
    total = dict.fromkeys(COUNT_KEYS, 0)
    for c in counts:
        for k in COUNT_KEYS:
            total[k] += c.get(k, 0)
    return total
