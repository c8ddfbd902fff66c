"""``python -m claude_lab.emulator``: run the offline API standalone until Ctrl-C.

The first line printed (and flushed as soon as the socket listens) is
``claude_lab emulator listening on http://127.0.0.1:PORT``, so scripts and tests
can read the address from a subprocess.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from types import FrameType

from claude_lab.emulator._faults import Faults
from claude_lab.emulator._server import serve


def _faults(text: str) -> Faults:
    try:
        return Faults.coerce(json.loads(text))
    except (ValueError, TypeError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m claude_lab.emulator",
        description="Offline stand-in for the Messages and Message Batches API, on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=8765, help="port (0 = any free port)")
    parser.add_argument(
        "--speed", type=float, default=1.0, help="simulated seconds per real second (0 = frozen)"
    )
    parser.add_argument(
        "--request-seconds", type=float, default=0.05, help="simulated time per request"
    )
    parser.add_argument("--concurrency", type=int, default=16, help="requests processed at once")
    parser.add_argument("--seed", type=int, default=0, help="seed for jitter, order and faults")
    parser.add_argument(
        "--faults",
        type=_faults,
        default=None,
        help='fault switches as JSON, e.g. \'{"error_rate": 0.1, "rate_limit": 2}\'',
    )
    parser.add_argument(
        "--queue-limit",
        type=int,
        default=None,
        help="the organisation's batch queue limit in requests (429 over it; default none)",
    )
    parser.add_argument(
        "--counts",
        choices=("end", "incremental"),
        default="end",
        help="request_counts move at the end (as documented) or as requests finish",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    emulator = serve(
        port=args.port,
        transport="socket",
        speed=args.speed,
        request_seconds=args.request_seconds,
        seed=args.seed,
        counts=args.counts,
        concurrency=args.concurrency,
        faults=args.faults,
    )
    emulator.queue_limit = args.queue_limit
    try:
        emulator.start()
    except OSError as exc:
        print(f"cannot listen on 127.0.0.1:{args.port}: {exc}; try --port 0", file=sys.stderr)
        return 1
    with emulator:
        url = emulator.base_url
        print(f"claude_lab emulator listening on {url}", flush=True)
        print("Point the anthropic SDK at it (any non-empty key works):")
        print(f"  export ANTHROPIC_BASE_URL={url}")
        print("  export ANTHROPIC_API_KEY=emulator")
        print(f"Inspect: GET {url}/_emulator/requests")
        print(f"Advance the clock: POST {url}/_emulator/advance?seconds=N")
        print(f'Switch faults: POST {url}/_emulator/faults with JSON, e.g. {{"rate_limit": 1}}')
        print("Press Ctrl-C to stop.", flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    print("emulator stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
