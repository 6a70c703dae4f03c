"""`python -m k2.platform.api`: the query API as a process (the stack's `api` service runs this).

Where storage is comes from the `k2 stack env` variables (credentials stay out of the command line,
which every local user can read); limits and timeouts from the options.
"""

from __future__ import annotations

import argparse
import logging
import sys

from k2.platform.api.app import ApiSettings, create_app
from k2.platform.config import ENV_VARS, PlatformConfig

# the API reads the lakehouse only: it needs no Kafka and no registry
_UNUSED = {"kafka_bootstrap": "-", "schema_registry_url": "-"}


def main(argv: list[str] | None = None) -> int:
    defaults = ApiSettings()
    parser = argparse.ArgumentParser(prog="python -m k2.platform.api", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--rate", type=float, default=defaults.rate, help="requests a second per client")
    parser.add_argument("--burst", type=int, default=defaults.burst, help="requests a client may send at once")
    parser.add_argument("--breaker-failures", type=int, default=defaults.failure_threshold,
                        help="consecutive storage failures that open the circuit")  # fmt: skip
    parser.add_argument("--breaker-reset", type=float, default=defaults.reset_timeout,
                        help="seconds the circuit stays open before one probe goes through")  # fmt: skip
    parser.add_argument("--query-timeout", type=float, default=defaults.query_timeout)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        config = PlatformConfig.from_env(None, **{k: v for k, v in _UNUSED.items() if not _env_has(k)})
        settings = ApiSettings(rate=args.rate, burst=args.burst, failure_threshold=args.breaker_failures,
                               reset_timeout=args.breaker_reset, query_timeout=args.query_timeout)  # fmt: skip
        app = create_app(config, settings)
    except (KeyError, ValueError) as exc:
        print(f"query API: {exc.args[0]}", file=sys.stderr)
        return 2
    import uvicorn

    print(f"query API: listening on {args.host}:{args.port} (namespace {config.namespace})", file=sys.stderr,
          flush=True)  # fmt: skip
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False,
                timeout_graceful_shutdown=5)  # fmt: skip
    return 0


def _env_has(field: str) -> bool:
    import os

    return bool(os.environ.get(ENV_VARS[field]))


if __name__ == "__main__":
    sys.exit(main())
