"""One registry instance: durable store + Confluent-compatible service + HTTP server."""

from __future__ import annotations

import logging
import os
from types import TracebackType

from k2.platform.errors import RegistryProcessError
from k2.platform.registry.compat import CompatibilityLevel
from k2.platform.registry.http import RegistryHTTPServer
from k2.platform.registry.service import SchemaRegistry
from k2.platform.registry.store import Store

__all__ = ["RegistryServer"]

log = logging.getLogger(__name__)


class RegistryServer:
    """Opens the data dir (replaying its log) and binds the port; `start()` or `serve_forever()` serves.

    Used in-process by tests and benchmarks, and by `python -m k2.platform.registry`.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        default_level: CompatibilityLevel = CompatibilityLevel.BACKWARD,
    ) -> None:
        self.store = Store(data_dir)
        self.registry = SchemaRegistry(self.store, default_level)
        try:
            self.http = RegistryHTTPServer(self.registry, host, port)
        except OSError as exc:
            self.store.close()
            raise RegistryProcessError(
                f"cannot listen on {host}:{port}: {exc}",
                remedy="pick a free port (or 0 for any), or stop whatever holds this one",
            ) from exc

    @property
    def url(self) -> str:
        return self.http.url

    @property
    def port(self) -> int:
        return int(self.http.server_address[1])

    def start(self) -> RegistryServer:
        """Serve on a background daemon thread and return at once."""
        self.http.start_background()
        return self

    def serve_forever(self) -> None:
        """Serve on this thread until `shutdown()` is called from another one."""
        self.http.serve_forever(poll_interval=0.1)

    def shutdown(self) -> None:
        self.http.shutdown()

    def close(self) -> None:
        """Stop serving, close the socket and release the data dir."""
        self.http.stop()
        self.store.close()

    def __enter__(self) -> RegistryServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
