"""`python -m kling_simulator`: serve the simulator until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import os
import signal
import threading

from .server import SimulatorServer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m kling_simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument(
        "--token",
        default=os.environ.get("KLING_SIMULATOR_TOKEN"),
        help="static bearer token to accept (default: $KLING_SIMULATOR_TOKEN, which keeps it out of ps)",
    )
    parser.add_argument("--access-key", help="JWT issuer to accept (with --secret-key)")
    parser.add_argument("--secret-key", help="HS256 key for JWTs (with --access-key)")
    parser.add_argument("--public-url", help="base URL put into video URLs (default: the request's host)")
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    args = parser.parse_args(argv)
    if (args.access_key is None) != (args.secret_key is None):
        parser.error("--access-key and --secret-key go together")

    server = SimulatorServer(
        host=args.host,
        port=args.port,
        token=args.token,
        access_key=args.access_key,
        secret_key=args.secret_key,
        public_url=args.public_url,
        log_requests=not args.quiet,
    ).start()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"Kling simulator listening on {server.url} (gateway prefix: {server.url}/kling)", flush=True)
    stop.wait()
    server.stop()


if __name__ == "__main__":
    main()
