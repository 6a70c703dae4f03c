"""The docker target's state-changing primitives beyond lifecycle: limit/unlimit, isolate/rejoin,
shape/unshape, fill_disk/free_disk. A mixin of `DockerTarget`, kept apart to keep modules short.

Each inject records in `self.applied` what it is doing before it does it, verifies the effect
from outside (inspect, cgroup files, TCP connections, df) and undoes itself when the effect did
not take; each inverse restores the baseline recorded in `self.baseline` and verifies it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from k2.chaos.cgroups_v1 import CPU, MEMORY, Cgroup, cgroup_of, read_counters
from k2.chaos.effects import Effect, Filled, Freed, Healed, Limited, Partitioned, Shaped, Unlimited
from k2.chaos.errors import ChaosError, InjectionFailed, InvalidFault, RestoreFailed, Unsupported
from k2.chaos.targets.base import CPU_PERIOD_US, LimitValues, Probe, probe_rtt_ms, wait_until
from k2.chaos.targets.docker_engine import api_error, cgroup_values, host_pid, reach
from k2.chaos.targets.docker_extras import (
    FILL_PREFIX,
    PROXY_ROUTE,
    df,
    fill_file,
    pick_mount,
    shape_commands,
    shaping_obstacle,
)
from k2.chaos.targets.docker_limits import (
    PAGE,
    cgroup_mismatch,
    effective,
    limit_update,
    limits_mismatch,
    resources,
    restore_update,
)
from k2.chaos.targets.docker_net import (
    disconnect,
    exposed_tcp_ports,
    published_addresses,
    reconnect,
    rejoin_mismatches,
    snapshot,
)

if TYPE_CHECKING:
    import docker

log = logging.getLogger(__name__)

PARTITION_MODES = ("refuse", "blackhole")
E = TypeVar("E", bound=Effect)


class FaultsMixin:
    if TYPE_CHECKING:  # provided by DockerTarget
        name: str
        container_id: str
        client: docker.DockerClient
        baseline: dict[str, Any]
        applied: dict[str, Any]

        def _attrs(self) -> dict[str, Any]: ...
        def _inspect(self) -> dict[str, Any] | None: ...
        def _running(self, primitive: str, *, paused_ok: bool = False) -> dict[str, Any]: ...
        def _engine_info(self) -> dict[str, Any]: ...
        def _refresh_baseline(self, attrs: Mapping[str, Any] | None = None) -> None: ...
        def _effect(self, cls: type[E], primitive: str, t0: float, wall: float, **fields: Any) -> E: ...

    # -- limit / unlimit ---------------------------------------------------------------------------

    def limit(
        self,
        cpu_quota: int | None = None,
        mem_limit: str | int | None = None,
        *,
        cpu_period: int = CPU_PERIOD_US,
        memswap_limit: str | int | None = None,
        timeout: float = 10.0,
    ) -> Limited:
        """Live `docker update` of cpu_quota/cpu_period and mem_limit/memswap_limit (memswap defaults
        to mem_limit: no swap on top). Verified with inspect and, when the engine runs here, the cgroup
        files. A memory limit below what the container uses is refused by the kernel (InjectionFailed)."""
        import docker.errors

        t0, wall = time.monotonic(), time.time()
        info = self._engine_info()
        limits = LimitValues.build(cpu_quota, mem_limit, cpu_period=cpu_period, cores=info.get("NCPU"),
                              mem_total=info.get("MemTotal"))  # fmt: skip
        attrs = self._attrs()
        if self.applied["limited"]:
            raise InjectionFailed(f"{self.name}: already limited by K2 ({self.applied['limited']}); unlimit it first")
        self._refresh_baseline(attrs)
        current = resources(attrs)
        if limits.cpu_quota_us is not None and current["NanoCpus"]:
            raise Unsupported(
                f"{self.name}: the container's CPU is limited with `cpus:` (NanoCpus={current['NanoCpus']}), which "
                "Docker cannot combine with cpu_quota; limit memory only, or drop `cpus:` from the service"
            )
        update = limit_update(current, limits.cpu_quota_us, limits.cpu_period_us, limits.mem_bytes, memswap_limit)
        self.applied["limited"] = dict(update)
        try:
            self.client.api.update_container(self.container_id, **update)
            after = self._attrs()
            wrong: dict[str, Any] = limits_mismatch(after, update)
            cgroup = cgroup_values(host_pid(after))
            want_cg = {
                "cpu.cfs_quota_us": update.get("cpu_quota"),
                "cpu.cfs_period_us": update.get("cpu_period"),
                "memory.limit_in_bytes": None if limits.mem_bytes is None else limits.mem_bytes // PAGE * PAGE,
            }
            wrong |= {
                k: (v, cgroup[k]) for k, v in want_cg.items() if v is not None and k in cgroup and cgroup[k] != str(v)
            }
            if wrong:
                raise InjectionFailed(f"{self.name}: limits did not read back as set: {wrong} (want, got)")
        except (docker.errors.APIError, InjectionFailed) as exc:
            self.unlimit(timeout)
            if isinstance(exc, InjectionFailed):
                raise
            raise InjectionFailed(f"{self.name}: the engine refused limits {update}: {api_error(exc)}") from exc
        now = resources(after)
        detail = {"requested": update, "inspect": now, "cgroup": cgroup, "original": self.baseline.get("resources")}
        return self._effect(Limited, "limit", t0, wall,
                            cpu_quota_us=now["CpuQuota"] if "cpu_quota" in update else None,
                            cpu_period_us=effective(now)["CpuPeriod"] if "cpu_quota" in update else None,
                            mem_bytes=now["Memory"] if "mem_limit" in update else None, detail=detail)  # fmt: skip

    def unlimit(self, timeout: float = 10.0) -> Unlimited:
        """Restore the baseline limits (see docker_limits for how "no limit" is written back) and
        verify them with inspect and the cgroup files; records the hold's throttling and memory peak."""
        import docker.errors

        t0, wall = time.monotonic(), time.time()
        attrs = self._inspect()
        original = self.baseline.get("resources")
        if attrs is None or not original:
            self.applied["limited"] = None
            return self._effect(Unlimited, "unlimit", t0, wall, changed=False, detail={"container_gone": attrs is None})
        held = _hold_counters(host_pid(attrs), attrs)
        update = restore_update(resources(attrs), original)
        try:
            if update:
                self.client.api.update_container(self.container_id, **update)
        except docker.errors.APIError as exc:
            raise RestoreFailed(
                f"{self.name}: restoring limits {update} failed: {api_error(exc)}; `k2 chaos recover` retries"
            ) from exc
        after = self._attrs()
        want, got = effective(original), effective(resources(after))
        wrong: dict[str, Any] = {k: (want[k], got[k]) for k in want if want[k] != got[k]}
        cgroup = cgroup_values(host_pid(after))
        if cgroup and self.baseline.get("cgroup"):
            wrong |= cgroup_mismatch(self.baseline["cgroup"], cgroup)
        if wrong:
            raise RestoreFailed(f"{self.name}: limits not restored: {wrong}; `k2 chaos recover` retries")
        self.applied["limited"] = None
        cpu, memory = held.get("cpu", {}).get("counters", {}), held.get("memory", {}).get("counters", {})
        return self._effect(
            Unlimited,
            "unlimit",
            t0,
            wall,
            restored=True,
            throttled_periods=cpu.get("nr_throttled"),
            throttled_ns=cpu.get("throttled_time"),
            oom_kills=memory.get("oom_kill"),
            peak_mem_bytes=memory.get("max_usage_in_bytes"),
            changed=bool(update),
            detail={"update": update, "inspect": resources(after), "cgroup": cgroup, **held},
        )

    # -- isolate / rejoin --------------------------------------------------------------------------

    def isolate(
        self,
        mode: str = "refuse",
        direction: str = "both",
        clients: Sequence[str] | None = None,
        probe: Probe | None = None,
        *,
        networks: Sequence[str] | None = None,
        verify_timeout: float = 0.3,
    ) -> Partitioned:
        """Partition: disconnect the container from its networks (all, or the named ones), cutting it
        off from every peer both ways. Verified: inspect lists none of them, and (engine here) TCP
        connections to its former addresses and published ports fail; `probe` unanswered."""
        import docker.errors

        t0, wall = time.monotonic(), time.time()
        if mode not in PARTITION_MODES:
            raise InvalidFault(f"isolate: unknown mode {mode!r}; use one of {', '.join(PARTITION_MODES)}")
        if direction != "both" or clients is not None:
            raise Unsupported(
                f"{self.name}: disconnecting a container cuts every peer both ways; a one-way or per-client "
                f"partition needs the fault proxy: {PROXY_ROUTE.format(name=self.name)}"
            )
        attrs = self._running("isolate", paused_ok=True)
        net_mode = str(attrs["HostConfig"].get("NetworkMode") or "")
        if net_mode in ("host", "none") or net_mode.startswith("container:"):
            raise Unsupported(f"{self.name}: network_mode {net_mode!r} has no Docker network to disconnect from")
        if self.applied["isolated"]:
            raise InjectionFailed(f"{self.name}: already isolated from {self.applied['isolated']}; rejoin it first")
        self._refresh_baseline(attrs)
        entries = [e for e in self.baseline.get("networks", []) if networks is None or e["name"] in networks]
        unknown = sorted(set(networks or []) - {e["name"] for e in entries})
        if unknown or not entries:
            raise InvalidFault(f"{self.name}: not attached to {unknown or 'any network'}; attached: "
                               f"{[e['name'] for e in self.baseline.get('networks', [])]}")  # fmt: skip
        full = len(entries) == len(self.baseline["networks"])
        local = host_pid(attrs) is not None
        addresses = [(e["ipv4"], p) for e in entries if e["ipv4"] for p in exposed_tcp_ports(attrs)] if local else []
        addresses += published_addresses(attrs) if full else []
        self.applied["isolated"] = [e["name"] for e in entries]
        try:
            disconnect(self.client, self.container_id, entries)
            disconnect_s = time.monotonic() - t0
            left = set(self._attrs()["NetworkSettings"].get("Networks") or {}) & set(self.applied["isolated"])
            attempts = reach(addresses, verify_timeout)
            answered = None if probe is None or not full else probe(1.0)
            if left or "connected" in attempts.values() or answered:
                raise InjectionFailed(f"{self.name}: partition did not take: still on {sorted(left)}, connections "
                                      f"{attempts}, probe answered={answered}")  # fmt: skip
        except (docker.errors.APIError, InjectionFailed) as exc:
            self.rejoin(timeout=10.0)
            if isinstance(exc, InjectionFailed):
                raise
            raise InjectionFailed(f"{self.name}: docker network disconnect failed: {api_error(exc)}") from exc
        detail = {
            "networks": {e["name"]: {"ipv4": e["ipv4"], "aliases": e["aliases"]} for e in entries},
            "disconnect_s": disconnect_s,
            "connect_attempts": attempts,
        }
        seen = sorted(set(attempts.values()))
        return self._effect(Partitioned, "isolate", t0, wall, mode=mode, direction=direction,
                            new_connections=", ".join(seen) or None, answered=answered, detail=detail)  # fmt: skip

    def rejoin(self, timeout: float = 10.0, probe: Probe | None = None) -> Healed:
        """Reconnect every recorded network the container is not on, with the same aliases, links
        and addresses (see docker_net for auto-assigned subnets). Idempotent."""
        t0, wall = time.monotonic(), time.time()
        attrs = self._inspect()
        entries = self.baseline.get("networks", [])
        if attrs is None:
            self.applied["isolated"] = []
            return self._effect(Healed, "rejoin", t0, wall, changed=False, detail={"container_gone": True})
        connected = set(attrs["NetworkSettings"].get("Networks") or {})
        how = reconnect(self.client, self.container_id, entries, connected)
        after = self._attrs()
        wrong = rejoin_mismatches(after, entries)
        if wrong["missing"] or wrong["aliases"]:
            raise RestoreFailed(f"{self.name}: networks not restored: {wrong}; `k2 chaos recover` retries")
        if wrong["addresses"]:
            log.warning("%s: rejoined with different addresses %s (Docker chose them)", self.name, wrong["addresses"])
        answered = None
        if probe is not None:
            answered = wait_until(lambda: probe(1.0), timeout, cap=0.2)
            if not answered:
                raise RestoreFailed(f"{self.name}: reconnected, but the probe got no answer within {timeout:g}s")
        self.applied["isolated"] = []
        detail = {"reconnected": how, "addresses": {e["name"]: e["ipv4"] for e in snapshot(after)},
                  "addresses_changed": wrong["addresses"], "published": published_addresses(after)}  # fmt: skip
        return self._effect(Healed, "rejoin", t0, wall, answered=answered, changed=bool(how), detail=detail)

    # -- shape / unshape ---------------------------------------------------------------------------

    def shape(
        self,
        toxic: str = "latency",
        stream: str = "downstream",
        toxicity: float = 1.0,
        attributes: Mapping[str, Any] | None = None,
        clients: Sequence[str] | None = None,
        probe: Probe | None = None,
    ) -> Shaped:
        """`tc` inside the container on each of its interfaces: netem delay for latency, tbf for
        bandwidth. Raises `Unsupported` naming the obstacle (no netem, no NET_ADMIN, no tc) and the
        fault-proxy route when the container cannot do it."""
        t0, wall = time.monotonic(), time.time()
        attrs = self._running("shape")
        local = host_pid(attrs) is not None
        obstacle = shaping_obstacle(self.name, toxic, stream, toxicity, clients, attrs["HostConfig"], local)
        if obstacle:
            raise Unsupported(obstacle)
        interfaces = [f"eth{i}" for i in range(len(attrs["NetworkSettings"].get("Networks") or {}))]
        commands = [shape_commands(toxic, attributes or {}, i) for i in interfaces]
        baseline_ms = probe_rtt_ms(probe)
        self.applied["shaped"] = interfaces
        for command in commands:
            code, out = self._exec(command)
            if code != 0:
                self.unshape()
                raise self._tc_error(out, code)
        shown = self._exec(["tc", "qdisc", "show", "dev", interfaces[0]])[1] if interfaces else ""
        return self._effect(Shaped, "shape", t0, wall, toxic=toxic, stream=stream, attributes=dict(attributes or {}),
                            rtt_ms_before=baseline_ms, rtt_ms_with=probe_rtt_ms(probe),
                            detail={"commands": commands, "qdisc": shown})  # fmt: skip

    def unshape(self) -> Healed:
        """Delete the root qdisc K2 put on each interface (netem or tbf only). Idempotent."""
        t0, wall = time.monotonic(), time.time()
        attrs = self._inspect()
        removed: list[str] = []
        if attrs is not None and attrs["State"].get("Running") and not attrs["State"].get("Paused"):
            count = len(attrs["NetworkSettings"].get("Networks") or {})
            for interface in self.applied["shaped"] or [f"eth{i}" for i in range(count)]:
                code, shown = self._exec(["tc", "qdisc", "show", "dev", interface])
                if code == 0 and any(f"qdisc {k} " in shown and " root " in shown for k in ("netem", "tbf")):
                    code, out = self._exec(["tc", "qdisc", "del", "dev", interface, "root"])
                    if code != 0:
                        raise RestoreFailed(f"{self.name}: tc qdisc del on {interface} failed: {out.strip()}")
                    removed.append(interface)
        self.applied["shaped"] = []
        return self._effect(Healed, "unshape", t0, wall, changed=bool(removed), detail={"removed_from": removed})

    def _exec(self, argv: list[str]) -> tuple[int, str]:
        import docker.errors

        try:
            exec_id = self.client.api.exec_create(self.container_id, argv)["Id"]
            out = self.client.api.exec_start(exec_id).decode(errors="replace")
            return int(self.client.api.exec_inspect(exec_id).get("ExitCode") or 0), out
        except docker.errors.APIError as exc:  # e.g. the binary is not in the image
            return 127, api_error(exc)

    def _tc_error(self, out: str, code: int) -> ChaosError:
        route = PROXY_ROUTE.format(name=self.name)
        if "not found" in out or "no such file" in out.lower() or code == 127:
            return Unsupported(f"{self.name}: the image has no `tc` (iproute2): add it to the image, or {route}")
        if "qdisc kind is unknown" in out:
            return Unsupported(f"{self.name}: the engine's kernel has no such qdisc ({out.strip()}); {route}")
        if "Operation not permitted" in out:
            return Unsupported(f"{self.name}: tc was refused ({out.strip()}): add cap_add: [NET_ADMIN], or {route}")
        return InjectionFailed(f"{self.name}: tc failed with {code}: {out.strip()}")

    # -- fill_disk / free_disk ---------------------------------------------------------------------

    def fill_disk(
        self, size: str | int | None = None, fullness: float | None = None, *, path: str | None = None,
        shared_ok: bool = False,
    ) -> Filled:  # fmt: skip
        """Write one file into the container's data volume (the mount at `path`, else the first
        volume) until `size` bytes or `fullness` of its filesystem is used; verified with df."""
        t0, wall = time.monotonic(), time.time()
        attrs = self._attrs()
        mount = pick_mount(attrs.get("Mounts") or [], path, self.name)
        directory = Path(mount["Source"])
        self.applied["filled"] = sorted({*self.applied["filled"], str(directory)})
        file, written, before = fill_file(directory, size, fullness, shared_ok=shared_ok, name=self.name)
        after = df(directory)
        if after["used"] - before["used"] < min(written, before["avail"]) * 0.9:
            file.unlink(missing_ok=True)
            raise InjectionFailed(f"{self.name}: wrote {written} bytes to {file} but df shows {after} (was {before})")
        return self._effect(Filled, "fill_disk", t0, wall, path=str(directory), file=str(file), bytes_written=written,
                            fullness=round(after["used"] / max(1, after["total"]), 4), avail_bytes=after["avail"],
                            detail={"mount": mount["Destination"], "df_before": before, "df_after": after})  # fmt: skip

    def free_disk(self) -> Freed:
        """Remove every fill file K2 wrote into the container's mounts. Idempotent."""
        t0, wall = time.monotonic(), time.time()
        attrs = self._inspect()
        dirs = set(self.applied["filled"]) | {m["Source"] for m in (attrs or {}).get("Mounts") or [] if m.get("Source")}
        removed, free = [], {}
        for directory in map(Path, sorted(dirs)):
            if directory.is_dir():
                for file in directory.glob(f"{FILL_PREFIX}*"):
                    file.unlink(missing_ok=True)
                    removed.append(str(file))
                free[str(directory)] = df(directory)
        self.applied["filled"] = []
        return self._effect(Freed, "free_disk", t0, wall, removed=tuple(removed), changed=bool(removed),
                            detail={"df_after": free})  # fmt: skip


def _hold_counters(pid: int | None, attrs: Mapping[str, Any]) -> dict[str, Any]:
    """What the limits did while held, shaped like the local backend's: {"cpu": {"counters": cpu.stat},
    "memory": {"counters": oom_control, peak, failcnt}}. A container the kernel OOM-killed has no cgroup
    left to read: Docker's OOMKilled flag then stands for the oom_kill counter."""
    readers: list[tuple[str, str, Callable[[Cgroup], dict[str, int]]]] = [
        ("cpu", CPU, lambda g: read_counters(g, "cpu.stat")),
        ("memory", MEMORY, lambda g: read_counters(g, "memory.oom_control")
         | {k: g.read_int(f"memory.{k}") for k in ("max_usage_in_bytes", "failcnt")}),
    ]  # fmt: skip
    held: dict[str, Any] = {}
    for key, controller, read in readers:
        try:
            path = cgroup_of(pid, controller) if pid is not None else None
            if path is not None:
                held[key] = {"counters": read(Cgroup(controller, path))}
        except (OSError, ValueError, ChaosError):
            continue
    if "memory" not in held and attrs.get("State", {}).get("OOMKilled"):
        held["memory"] = {"counters": {"oom_kill": 1}}
    return held
