"""The fault proxy as a daemon: `python -m k2.chaos.proxy --api 127.0.0.1:PORT --config proxies.json`.

The stack runs it as its `fault-proxy` service, so every client reaches every service through it and
network faults are plain calls to its Toxiproxy-compatible API, from the runner or from its watchdog.
The config is JSON: {"proxies": [{"name", "listen", "upstream", "kafka_client_ids": {client.id: label},
"owner_only": true, "refuse_as": "http"}]}; an owner-only proxy admits only the daemon's own user and root,
turning others away with a reset or (`"refuse_as": "http"`) an HTTP 403 (see `Proxy`).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import resource
import signal
import sys
import threading
from pathlib import Path

from k2.chaos.errors import ChaosError
from k2.chaos.proxy.classify import KafkaClientId
from k2.chaos.proxy.reactor import MAX_LOOPS, use_loops
from k2.chaos.proxy.server import ProxyServer

# Measured on 2 cores, interleaved (1,000 connections x 100 round trips, 10 runs each): one loop 2.72 s with a
# p99 of 40 ms per round trip, two loops 2.77 s and 55 ms: the second loop mostly waits for the interpreter lock.
DEFAULT_LOOPS = 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m k2.chaos.proxy", description=__doc__)
    parser.add_argument("--api", default="127.0.0.1:8474", help="where the Toxiproxy-compatible API listens")
    parser.add_argument("--config", type=Path, required=True, help="JSON file listing the proxies")
    parser.add_argument("--seed", type=int, default=None, help="seed for toxicity rolls")
    parser.add_argument(
        "--loops", type=int, default=DEFAULT_LOOPS,
        help=f"event loops carrying connections, 1-{MAX_LOOPS} (default {DEFAULT_LOOPS}: on 2 cores a second loop "
        "raised the tail latency with many connections; try more on a host with cores to spare)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:
        use_loops(args.loops)
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _raise_fd_limit()
    try:
        specs = json.loads(args.config.read_text())["proxies"]
        server = ProxyServer(api=args.api, seed=args.seed).start()
        for spec in specs:
            gate = {"owner_only": spec.get("owner_only", False), "refuse_as": spec.get("refuse_as", "reset")}
            proxy = server.create(spec["name"], spec["upstream"], spec["listen"], pinned=True, **gate)
            if spec.get("kafka_client_ids"):
                proxy.classify_clients(KafkaClientId(spec["kafka_client_ids"]))
    except (OSError, ValueError, KeyError, ChaosError) as exc:
        print(f"fault proxy: cannot start from {args.config}: {exc}", file=sys.stderr)
        return 2
    gc.freeze()  # what start-up made lives as long as the daemon: later collections need not walk it
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"ready on {server.api_url} with {len(specs)} proxies", flush=True)
    stop.wait()
    server.stop()
    return 0


def _raise_fd_limit() -> None:
    """Two descriptors per proxied connection: take the soft limit up to the hard one (as Go's runtime does
    for Toxiproxy), so a thousand connections are not refused at the default 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 1 << 20, hard))


def _without_tls() -> None:
    """The daemon speaks plain HTTP on loopback and never TLS, but `http.server` imports `http.client`,
    which imports `ssl` (libssl and libcrypto: 4 MiB of the idle daemon). Mark `ssl` as absent before
    the API starts; `http.client` is written to work without it. Only in the daemon's own process."""
    if "ssl" not in sys.modules:
        sys.modules["ssl"] = None  # type: ignore[assignment]


if __name__ == "__main__":
    _without_tls()
    raise SystemExit(main())
