"""`python -m k2.platform.registry --host 127.0.0.1 --port PORT --data-dir DIR`.

Logs one line "ready on http://HOST:PORT" once listening (port 0 picks a free port and the line says
which). SIGTERM/SIGINT stop it cleanly; SIGKILL is safe too: every acknowledged write is fsynced.
Exit status: 0 after a clean stop, 2 when the data dir or the port cannot be used.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import signal
import sys
import threading
from types import FrameType

from k2.platform.errors import PlatformError
from k2.platform.registry.compat import CompatibilityLevel
from k2.platform.registry.server import RegistryServer

log = logging.getLogger("k2.platform.registry")


def _level(value: str) -> CompatibilityLevel:
    try:
        return CompatibilityLevel.parse(value)
    except PlatformError as exc:
        raise argparse.ArgumentTypeError(exc.detail) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m k2.platform.registry",
        description="Confluent-compatible schema registry (Avro only), backed by a log in --data-dir.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=8081, help="port to bind; 0 picks a free one")
    parser.add_argument("--data-dir", required=True, help="directory for the durable schema log")
    parser.add_argument(
        "--compatibility",
        default="BACKWARD",
        type=_level,
        help="default compatibility level until PUT /config changes it (default: BACKWARD)",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default: INFO)")
    return parser


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    if not _is_loopback(args.host):
        log.warning("binding %s: the registry has no authentication; anyone who can reach it can change it", args.host)
    try:
        server = RegistryServer(args.data_dir, host=args.host, port=args.port, default_level=args.compatibility)
    except PlatformError as exc:
        log.error("%s", exc)
        return 2

    def _stop(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info("ready on %s", server.url)
    try:
        server.serve_forever()
    finally:
        server.close()
        log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
