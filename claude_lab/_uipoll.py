"""Widget clicks while a notebook cell blocks: the kernel's comm messages, pumped by hand.

A cell blocked in ``job.wait()`` holds the kernel's main thread, so the click
of a Cancel button would sit in the kernel's queue until the cell ends, which
is too late. `CommPump` reads the main shell's message socket itself while the
cell waits (what jupyter-ui-poll does), handles **only** comm messages (a
widget's click or state change) and hands every other message back to the
kernel afterwards, in arrival order, so Run All's queued cells run as before.
No event loop is patched or re-entered (no nest_asyncio).

It works on ipykernel 7 (with or without the shell channel thread). Anywhere
else `CommPump.open()` returns None and the display says how to stop instead.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import sys
import threading
from typing import Any

__all__ = ["CommPump"]

log = logging.getLogger("claude_lab")

# comm_open too: a page reloaded while the cell waits opens a comm, then writes to it.
_COMM_TYPES = frozenset({"comm_open", "comm_msg", "comm_close"})
_ACTIVE = threading.local()  # one pump at a time: a nested one would reorder held messages
_REQUEUED: set[asyncio.Future[Any]] = set()  # asyncio keeps only weak references to tasks


class CommPump:
    """Reads the main shell's socket while a cell blocks; see the module docstring."""

    def __init__(self, kernel: Any, stream: Any) -> None:
        self._kernel = kernel
        self._stream = stream
        self._held: list[Any] = []

    @classmethod
    def open(cls) -> CommPump | None:
        """A pump for the current kernel, or None (no kernel, not the main thread,
        or a kernel this module does not know how to pump)."""
        if threading.current_thread() is not threading.main_thread():
            return None
        if getattr(_ACTIVE, "pump", None) is not None:
            return None
        if "ipykernel" not in sys.modules:
            return None
        try:
            from IPython import get_ipython

            shell = get_ipython()
            kernel = getattr(shell, "kernel", None)
            if kernel is None or not hasattr(kernel, "shell_main"):
                return None
            from ipykernel.eventloops import get_shell_stream

            stream = get_shell_stream(kernel)
            if stream is None or getattr(kernel, "session", None) is None:
                return None
            asyncio.get_running_loop()  # re-queuing needs the kernel's loop in this thread
        except Exception:  # any other ipykernel layout: no pump, the display explains
            return None
        pump = cls(kernel, stream)
        _ACTIVE.pump = pump
        return pump

    def poll(self, limit: int = 50) -> int:
        """Handle waiting comm messages now, hold the rest; return how many were read."""
        import zmq

        kernel, n = self._kernel, 0
        socket = self._stream.socket
        while n < limit:
            try:
                frames = socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            n += 1
            try:
                # The header alone says what it is; a full deserialize would record the
                # signature, and the kernel would then refuse the message as a replay.
                idents, parts = kernel.session.feed_identities(frames, copy=False)
                kind = kernel.session.unpack(parts[1].bytes)["msg_type"]
            except Exception:
                kind = None
            if kind not in _COMM_TYPES:
                self._held.append(frames)  # the kernel reads (and judges) it later
                continue
            try:
                msg = kernel.session.deserialize(parts, content=True, copy=False)
            except Exception:
                log.exception("claude_lab: an invalid widget message was dropped")
                continue
            handler = kernel.shell_handlers.get(kind)
            try:
                if handler is not None:
                    handler(self._stream, idents, msg)
            except Exception:
                log.exception("claude_lab: a widget message failed while waiting")
        return n

    def close(self) -> None:
        """Hand the held messages back to the kernel, in the order they arrived."""
        held, self._held = self._held, []
        if getattr(_ACTIVE, "pump", None) is self:
            _ACTIVE.pump = None
        # Through the stream's own receive callback, exactly as if the kernel had read
        # them: same context, and the same scheduling hops, so they queue on the
        # kernel's lock behind the messages it read itself before, in order.
        callback = getattr(self._stream, "_recv_callback", None)
        for frames in held:
            step = callback(frames) if callback is not None else _hop(self._kernel, frames)
            if not inspect.isawaitable(step):
                continue
            task = asyncio.ensure_future(step)
            _REQUEUED.add(task)
            task.add_done_callback(_REQUEUED.discard)


async def _hop(kernel: Any, frames: Any) -> None:
    # ipykernel's own receive path: one task that starts another.
    await asyncio.create_task(kernel.shell_main(None, frames))
