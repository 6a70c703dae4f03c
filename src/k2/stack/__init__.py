"""k2.stack: the real services the platform runs on and the chaos framework breaks.

with LocalStack("/tmp/k2-stack") as stack:
    bootstrap = stack.endpoints().kafka_bootstrap
"""

from k2.stack.backends import BACKENDS, open_stack
from k2.stack.endpoints import Endpoints
from k2.stack.errors import (
    ConfigError,
    MissingBinary,
    NotRunning,
    PortTaken,
    ServiceFailed,
    StackError,
    StaleState,
)
from k2.stack.local import LocalStack, ServiceStatus

__all__ = [
    "BACKENDS",
    "ConfigError",
    "Endpoints",
    "LocalStack",
    "MissingBinary",
    "NotRunning",
    "PortTaken",
    "ServiceFailed",
    "ServiceStatus",
    "StackError",
    "StaleState",
    "open_stack",
]
