"""An offline, local stand-in for the Messages and Message Batches API.

Used through the real ``anthropic`` SDK::

    from claude_lab.emulator import serve

    with serve(speed=0) as emu:
        client = emu.client()
        batch = client.messages.batches.create(requests=[...])
        emu.clock.advance(3600)

Run standalone on 127.0.0.1 with ``python -m claude_lab.emulator --port 8765``.
Everything here is the public surface; the modules behind it (``_routing``,
``_batches``, ...) are private.
"""

from __future__ import annotations

from claude_lab.emulator._clock import Clock
from claude_lab.emulator._faults import Faults
from claude_lab.emulator._gates import Gate
from claude_lab.emulator._responder import Responder, RowError
from claude_lab.emulator._routing import RequestRecord
from claude_lab.emulator._server import Emulator, serve
from claude_lab.emulator._standins import DEFAULT_ERROR_RATE, ERROR_RATES, stand_in_models

__all__ = [
    "DEFAULT_ERROR_RATE",
    "ERROR_RATES",
    "Clock",
    "Emulator",
    "Faults",
    "Gate",
    "RequestRecord",
    "Responder",
    "RowError",
    "serve",
    "stand_in_models",
]
