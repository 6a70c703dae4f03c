"""The platform's query API (REST over the query engine) with per-client rate limiting and a circuit
breaker around storage; `python -m k2.platform.api` runs it, the stack runs it as the `api` service."""

from k2.platform.api.app import ApiSettings, create_app

__all__ = ["ApiSettings", "create_app"]
