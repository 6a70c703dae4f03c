"""The Kubernetes backend's own cost: translating a K2 fault to a Chaos Mesh object with the webhook checks
(µs), exporting the example scenario (ms), and inject + restore through the official client against the
FAKE API server of the tests (ms: K2's client side plus the fake's own strict schema check of each object, an
upper bound on K2's overhead; a live cluster adds the API server's and Chaos Mesh's time, not measured here:
not tested against a live cluster).

    .venv/bin/python -m benchmarks.bench_kubernetes
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.unit.chaos.kubernetes.fake_apiserver import FakeCluster, FakePod, fake_api_server

from benchmarks.common import summary, write
from k2.chaos.kubernetes import ChaosRequest, Placement, check_admission, translate
from k2.chaos.kubernetes.api import ClusterAccess
from k2.chaos.kubernetes.export import export_manifests, load_scenario
from k2.chaos.targets.kubernetes import KubernetesTarget

PLACEMENT = Placement("kafka", "shop", {"app": "kafka"}, container="broker", volume_path="/data",
                      clients={"producer": {"app": "producer"}})  # fmt: skip
REQUESTS = {
    "stop": ChaosRequest("stop", {}, "kafka", 30),
    "partition": ChaosRequest("isolate", {"mode": "blackhole", "direction": "upstream", "clients": ["producer"]},
                              "kafka", 30),
    "latency": ChaosRequest("shape", {"toxic": "latency", "attributes": {"latency": 200, "jitter": 50}}, "kafka", 30),
    "disk_full": ChaosRequest("fill_disk", {"fullness": 1.0}, "kafka", 30),
}  # fmt: skip


def timed(fn: Callable[[], Any], trials: int, scale: float) -> dict[str, float]:
    values = []
    for _ in range(trials):
        started = time.perf_counter()
        fn()
        values.append((time.perf_counter() - started) * scale)
    return summary(values)


def main() -> None:
    results: dict[str, Any] = {}
    for name, request in REQUESTS.items():
        results[f"translate_{name}_us"] = timed(
            lambda r=request: check_admission(translate(r, PLACEMENT, "bench01").manifest()), 2000, 1e6
        )
    example = Path(__file__).resolve().parents[1] / "examples" / "chaos-mesh" / "kafka-outage.yaml"
    results["export_example_ms"] = timed(lambda: export_manifests(load_scenario(example)), 50, 1e3)
    pods = [FakePod("shop", f"kafka-{i}", {"app": "kafka"}, ("broker",)) for i in range(3)]
    with tempfile.TemporaryDirectory() as tmp, fake_api_server(Path(tmp), FakeCluster(pods=pods)) as (_, kubeconfig):
        target = KubernetesTarget(PLACEMENT, cluster=ClusterAccess(str(kubeconfig)), run_id="bench01")
        target.stop(duration_s=30)
        target.start()  # connect once before measuring
        results["fake_api_stop_ms"] = timed(lambda: target.stop(duration_s=30), 50, 1e3)
        target.start()
        injected, restored = [], []
        for _ in range(50):
            started = time.perf_counter()
            target.isolate("blackhole")
            injected.append((time.perf_counter() - started) * 1e3)
            started = time.perf_counter()
            target.rejoin()
            restored.append((time.perf_counter() - started) * 1e3)
        results["fake_api_partition_inject_ms"], results["fake_api_partition_restore_ms"] = (
            summary(injected), summary(restored)
        )  # fmt: skip
        target.start()
    note = "fake API server: K2's client side plus the fake's schema check; not a live cluster"
    path = write("kubernetes", {"note": note, **results})
    for name, r in results.items():
        print(f"{name:34} median {r['median']:9.2f}  p99 {r['p99']:9.2f}")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
