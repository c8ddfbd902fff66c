"""An offline, local stand-in for the Messages and Message Batches API.

Served on 127.0.0.1 and used through the real ``anthropic`` SDK::

    from claude_lab.emulator import serve

    with serve(speed=0) as emu:
        client = emu.client()
        batch = client.messages.batches.create(requests=[...])
        emu.clock.advance(3600)

Run standalone with ``python -m claude_lab.emulator --port 8765``.
"""

from __future__ import annotations

from claude_lab.emulator.clock import Clock
from claude_lab.emulator.core import Faults
from claude_lab.emulator.responder import RowError
from claude_lab.emulator.server import Emulator, serve
from claude_lab.emulator.standins import stand_in_models

__all__ = ["Clock", "Emulator", "Faults", "RowError", "serve", "stand_in_models"]
