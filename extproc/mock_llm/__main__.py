"""Run the mock LLM: ``python -m extproc.mock_llm --host 127.0.0.1 --port 9000``."""

from __future__ import annotations

import argparse
import asyncio
import errno
import signal
import sys

from aiohttp import web

from .server import MockConfig, create_app, parse_chunking


def _chunking(value: str) -> str:
    try:
        parse_chunking(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _delay(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {value!r}")
    return int(value)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m extproc.mock_llm", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000, help="0 picks a free port")
    parser.add_argument(
        "--chunking", type=_chunking, default=None, help="default chunking: random:SEED or none"
    )
    parser.add_argument("--chunk-delay-ms", type=_delay, default=0)
    return parser.parse_args(argv)


async def serve(host: str, port: int, config: MockConfig) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(create_app(config), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        in_use = exc.errno == errno.EADDRINUSE or "in use" in str(exc)
        reason = "address already in use" if in_use else exc.strerror or str(exc)
        print(f"mock-llm: cannot listen on {host}:{port}: {reason}", file=sys.stderr, flush=True)
        return 1
    bound_port = runner.addresses[0][1]
    shown_host = f"[{host}]" if ":" in host else host
    print(f"mock-llm listening on http://{shown_host}:{bound_port}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    chunking = None if args.chunking in (None, "none") else args.chunking
    config = MockConfig(chunking=chunking, chunk_delay_ms=args.chunk_delay_ms)
    return asyncio.run(serve(args.host, args.port, config))


if __name__ == "__main__":
    sys.exit(main())
