"""The seed's chaos suites live in the package (k2.scenarios.suites) so `k2 chaos run` ships them;
this directory runs them with `pytest tests/chaos/ -m chaos`. Fault functions are importable from
here as in the seed's "Writing New Chaos Tests" example."""

from k2.chaos.faults import (  # noqa: F401
    inject_latency,
    network_partition,
    resource_limit,
    service_failure,
)
