"""The local backend: a process tree K2 started, faulted with signals, cgroups or rlimits.

Safety rule: a pid is only touched while its /proc start time matches the one recorded for it
(signals go through a pidfd opened before the check, so a reused pid is never signalled).
The tree is the leader, every descendant found by walking /proc, and (if the leader leads its
session, as K2's stack arranges) its session's later processes. Limit: a process that
double-forks away from the leader AND leaves its session (setsid) is not part of the tree and
is not faulted.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

from k2.chaos.effects import Frozen, Limited, Started, Stopped, Thawed, Unlimited, measure
from k2.chaos.errors import InjectionFailed, InvalidFault, RestoreFailed, UnsafeTarget, Unsupported
from k2.chaos.local.common import TreeState
from k2.chaos.local.tree import OLD_DESCRIPTIONS, LocalFaults
from k2.chaos.procfs import ProcStat, is_alive, proc_stat, process_tree, send_signal
from k2.chaos.targets.base import CPU_PERIOD_US, LimitValues, Probe, wait_until
from k2.chaos.targets.capabilities import Capability
from k2.chaos.units import parse_duration, parse_signal

__all__ = ["PidSource", "ProcStat", "ProcessSpec", "ProcessTarget", "is_alive", "proc_stat", "process_tree"]
__all__ += ["send_signal"]  # from k2.chaos.procfs, where they live

PidSource = Callable[[], "tuple[int, int | None] | None"]
"""Returns the service's current (pid, starttime or None), or None if it is not running."""
Restarter = Callable[[], object]
"""Starts the service again from the calling process; returns once it is healthy, raises if it cannot."""

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Signals whose default action does not end a process: a stop with one of them never finishes.
_NON_TERMINATING = frozenset(
    {signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGCONT, signal.SIGCHLD}
    | {signal.SIGWINCH, signal.SIGURG}
)


@dataclass(frozen=True)
class ProcessSpec:
    """JSON-able description of a local service: enough for another process to find and restart it.

    `restart_argv` starts the service again with the same data and returns once it is healthy.
    Afterwards the new pid is read from `state_file` (JSON {"services": {service: {"pid": int,
    "starttime": int}}}), else from `pid_file`, else from a `pid_source` callable given to the target.
    """

    name: str
    pid: int
    starttime: int
    restart_argv: tuple[str, ...] = ()
    restart_cwd: str | None = None
    stop_signal: str = "SIGTERM"
    state_file: str | None = None
    service: str | None = None  # key in state_file; defaults to name
    pid_file: str | None = None
    run_id: str = ""  # names K2's cgroups; generated when empty
    stop_timeout: float = 30.0
    start_timeout: float = 120.0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProcessSpec:
        """Validate a spec dict; raises `InvalidFault` naming the bad field."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise InvalidFault(f"process target spec: unknown field(s) {sorted(unknown)}; known: {sorted(known)}")
        values = dict(data)
        name = values.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise InvalidFault(f"process target name={name!r}: use letters, digits, '.', '_', '-' (max 64)")
        for key in ("pid", "starttime"):
            value = values.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise InvalidFault(f"process target {name!r}: {key}={value!r} must be a positive int")
        run_id = values.get("run_id") or uuid.uuid4().hex[:12]
        if not isinstance(run_id, str) or not _NAME_RE.match(run_id):
            raise InvalidFault(f"process target {name!r}: run_id={run_id!r}: use letters, digits, '.', '_', '-'")
        values["run_id"] = run_id
        sig = parse_signal(values.get("stop_signal", "SIGTERM"), what=f"{name}.stop_signal")
        if sig in _NON_TERMINATING:
            raise InvalidFault(f"{name}.stop_signal={sig.name} does not end a process: use SIGTERM or SIGINT")
        values["stop_signal"] = sig.name
        argv = values.get("restart_argv", ())
        if not isinstance(argv, list | tuple) or not all(isinstance(a, str) for a in argv):
            raise InvalidFault(f"{name}.restart_argv must be a list of strings, e.g. ['k2', 'stack', 'start', ...]")
        values["restart_argv"] = tuple(argv)
        for key in ("restart_cwd", "state_file", "service", "pid_file"):
            if not isinstance(values.get(key), str | None):
                raise InvalidFault(f"{name}.{key}={values[key]!r} must be a path or name string")
        for key in ("stop_timeout", "start_timeout"):
            if key in values:
                values[key] = parse_duration(values[key], what=f"{name}.{key}", allow_zero=False)
        return cls(**values)

    @classmethod
    def for_pid(cls, name: str, pid: int, **fields_: Any) -> ProcessSpec:
        """A spec for a process K2 has just started, reading its start time from /proc now."""
        st = proc_stat(pid)
        if st is None:
            raise UnsafeTarget(f"process target {name!r}: pid {pid} is not running; start the service first")
        return cls.from_dict({"name": name, "pid": pid, "starttime": st.starttime, **fields_})

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["restart_argv"] = list(self.restart_argv)
        return data


class ProcessTarget:
    """A local process tree K2 started (see `ProcessSpec`); implements the `Target` primitives.

    Pause and limits use the mechanism this host and user allow, chosen per capability and named in
    every effect: cgroup v1 or v2 (K2's own groups nested under the tree's), else SIGSTOP/SIGCONT,
    duty-cycled SIGSTOP and rlimits (see `k2.chaos.local`; K2_CGROUP overrides the choice).
    """

    kind = "process"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.LIFECYCLE, Capability.FREEZE, Capability.LIMITS}
    )
    limitations: ClassVar[dict[str, str]] = {
        "service_failure": "pause: a cgroup freezer (v1 as root, v2 where writable), else SIGSTOP, which the "
        "tree can observe",
        "resource_limit": "cgroup limits as root, else a duty-cycled CPU cap and an rlimit memory cap (per "
        "process; refused below what a process already maps)",
    }

    def __init__(
        self,
        spec: ProcessSpec | Mapping[str, Any],
        *,
        pid_source: PidSource | None = None,
        restarter: Restarter | None = None,
        home: Mapping[str, str] | None = None,
        previous: Mapping[str, Mapping[int, str]] | None = None,
        previous_values: Mapping[str, Mapping[str, Any]] | None = None,
        local: Mapping[str, Any] | None = None,
        _stale_ok: bool = False,
    ) -> None:
        self.spec = spec if isinstance(spec, ProcessSpec) else ProcessSpec.from_dict(spec)
        self.name = self.spec.name
        self.pid: int | None = self.spec.pid
        self.starttime: int | None = self.spec.starttime
        self._pid_source = pid_source
        # The owner's own way to restart (no interpreter to start, nothing to import again): `start` uses it in
        # this process; `restart_argv` stays what another process (the watchdog, `k2 chaos recover`) runs.
        self._restarter = restarter
        self._stop_signal = parse_signal(self.spec.stop_signal)
        # What an exact undo needs (groups before K2, mechanisms chosen, limits before); describe() records it.
        previous_ = {c: dict(m) for c, m in (previous or {}).items()}
        values = {c: dict(v) for c, v in (previous_values or {}).items()}
        state = TreeState.build(dict(home or {}), previous_, values, dict(local or {}))
        self._local = LocalFaults(self.name, self.spec.run_id, self.members, state)
        st = proc_stat(self.spec.pid)
        if st is not None and st.state not in ("Z", "X") and st.starttime != self.spec.starttime:
            if not _stale_ok:
                raise UnsafeTarget(
                    f"process target {self.name!r}: pid {self.spec.pid} now belongs to another process "
                    f"(start time {st.starttime}, expected {self.spec.starttime}); refusing to touch it. "
                    "Re-read the service's pid from the stack's state file"
                )
            self.pid = self.starttime = None
        self._learn_home()

    @classmethod
    def from_description(cls, desc: Mapping[str, Any]) -> ProcessTarget:
        """Rebuild from `describe()` output (e.g. by the journal in another process).

        A recorded pid that was reused is dropped (the target is treated as not running) and the
        state file is consulted, so inverses still find K2's cgroups and the restart command.
        """
        if desc.get("kind") != cls.kind:
            raise InvalidFault(f"not a process target description: kind={desc.get('kind')!r}")
        previous = {c: {int(p): path for p, path in m.items()} for c, m in desc.get("previous", {}).items()}
        values, local = desc.get("previous_values"), desc.get("local", OLD_DESCRIPTIONS)
        target = cls(desc["spec"], home=desc.get("home"), previous=previous, previous_values=values, local=local,
                     _stale_ok=True)  # fmt: skip
        if not target.running:
            target._adopt_from_source()
        return target

    def describe(self) -> dict[str, Any]:
        spec = self.spec.to_dict()
        spec.update(pid=self.pid or self.spec.pid, starttime=self.starttime or self.spec.starttime)
        state = self._local.state
        local = self._local.describe()
        return {
            "kind": self.kind,
            "name": self.name,
            "spec": spec,
            "home": dict(state.home),
            "previous": {c: {str(p): path for p, path in m.items()} for c, m in state.previous.items()},
            "previous_values": {c: dict(v) for c, v in state.prev_values.items()},
            "local": local,
        }

    def __repr__(self) -> str:
        return f"ProcessTarget({self.name!r}, pid={self.pid}, run_id={self.spec.run_id!r})"

    @property
    def running(self) -> bool:
        return self.pid is not None and self.starttime is not None and is_alive(self.pid, self.starttime)

    def members(self) -> list[tuple[int, int]]:
        """The (pid, starttime) of the tree now, leader first."""
        if self.pid is None or self.starttime is None:
            return []
        return process_tree(self.pid, self.starttime)

    # -- stop / kill / start -------------------------------------------------------------

    def stop(self, timeout: float | None = None) -> Stopped:
        """Send the stop signal to the leader, wait for it to exit, SIGKILL the tree after `timeout`.

        Descendants still alive after the leader exited are SIGKILLed too: a stopped service
        leaves nothing behind holding its ports or data directory.
        """
        return self._end("stop", self._stop_signal, timeout or self.spec.stop_timeout)

    def kill(self, timeout: float | None = None) -> Stopped:
        """SIGKILL every process of the tree at once and wait until all are gone."""
        return self._end("kill", signal.SIGKILL, timeout or 10.0)

    def _end(self, primitive: str, sig: signal.Signals, timeout: float) -> Stopped:
        t0, wall = time.monotonic(), time.time()
        members = self._require_members(primitive)
        if self._frozen():
            raise InjectionFailed(
                f"{self.name}: {primitive} while paused cannot work (a frozen process acts on no signal, "
                "not even SIGKILL): resume it first"
            )
        leader = members[0]
        for member in members if sig == signal.SIGKILL else [leader]:
            send_signal(*member, sig)
        exited = wait_until(lambda: not is_alive(*leader), timeout)
        exit_s = time.monotonic() - t0
        leftovers = [m for m in members if is_alive(*m)]
        for member in leftovers:
            send_signal(*member, signal.SIGKILL)
        if not wait_until(lambda: not any(is_alive(*m) for m in members), 10.0):
            alive = [p for p, s in members if is_alive(p, s)]
            raise InjectionFailed(f"{self.name}: pids {alive} survived SIGKILL for 10 s; check `ps` for 'D' state")
        detail = {"pids": [p for p, _ in members], "exited_on_signal": exited, "sigkilled": [p for p, _ in leftovers]}
        return measure(Stopped, primitive, self.name, self.kind, t0, wall, signal=sig.name, gone=True,
                       escalated=bool(leftovers) and sig != signal.SIGKILL, exit_s=round(exit_s, 4),
                       detail=detail)  # fmt: skip

    def _require_members(self, primitive: str) -> list[tuple[int, int]]:
        members = self.members()
        if not members:
            raise InjectionFailed(
                f"{self.name}: pid {self.pid} is not running, so {primitive} would have no effect: "
                "start the service first (or check why it died)"
            )
        return members

    def start(self, timeout: float | None = None, probe: Probe | None = None) -> Started:
        """Run `restart_argv` (in its own session, with a deadline), or the owner's restarter, and re-read the
        new pid.

        A no-op if the service already runs, so recovery can call it after any crash.
        """
        t0, wall = time.monotonic(), time.time()
        previous = self.pid
        if self.running or self._adopt_from_source():
            return measure(Started, "start", self.name, self.kind, t0, wall, already_running=True, pid=self.pid,
                           changed=False)  # fmt: skip
        if not self.spec.restart_argv:
            raise Unsupported(
                f"{self.name}: cannot start it again, its spec has no restart_argv: give the command "
                "that starts the service with the same data (e.g. k2 stack start <service> --data-dir ...)"
            )
        deadline = timeout or self.spec.start_timeout
        argv = list(self.spec.restart_argv)
        if self._restarter is not None:
            self._restart_here()
        else:
            self._run_restart_argv(deadline, argv)
        if not self._adopt_from_source():
            raise RestoreFailed(
                f"{self.name}: restart command succeeded but no running pid could be read from "
                f"{self._source_name()}; make the command record the new pid there"
            )
        restart_s = round(time.monotonic() - t0, 4)
        answered = None
        if probe is not None:
            left = max(1.0, deadline - (time.monotonic() - t0))
            if not wait_until(lambda: probe(1.0), left, cap=0.2):
                raise RestoreFailed(f"{self.name}: restarted, but the probe got no answer within {left:.0f}s")
            answered = True
        return measure(Started, "start", self.name, self.kind, t0, wall, ready_s=round(time.monotonic() - t0, 4),
                       answered=answered, pid=self.pid, previous_pid=previous,
                       detail={"restart_s": restart_s, "in_process": self._restarter is not None})  # fmt: skip

    def _restart_here(self) -> None:
        assert self._restarter is not None
        try:
            self._restarter()
        except Exception as exc:
            raise RestoreFailed(
                f"{self.name}: restarting it failed: {type(exc).__name__}: {exc}. Run "
                f"`{' '.join(self.spec.restart_argv)}` by hand to see why, then `k2 chaos recover`"
            ) from exc

    def _run_restart_argv(self, deadline: float, argv: list[str]) -> None:
        # Output goes to a file, not a pipe: a daemon that inherits a pipe would keep it open
        # and make us wait for it rather than for the command.
        with tempfile.TemporaryFile() as out:
            try:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=self.spec.restart_cwd,
                    start_new_session=True,  # the service must not share the runner's Ctrl-C
                )
            except OSError as exc:
                raise RestoreFailed(f"{self.name}: cannot run restart command {argv}: {exc}; fix the spec") from exc
            try:
                code = proc.wait(deadline)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                code = None
            out.seek(0)
            tail = out.read()[-2000:].decode(errors="replace").strip()
        if code != 0:
            what = f"timed out after {deadline:g}s" if code is None else f"exited with {code}"
            raise RestoreFailed(
                f"{self.name}: restart command {argv} {what}; output: {tail or '(none)'}. "
                "Run it by hand to see why, then `k2 chaos recover`"
            )

    def _source_name(self) -> str:
        if self._pid_source is not None:
            return "the pid_source callable"
        if self.spec.state_file:
            return f"state file {self.spec.state_file} (service {self.spec.service or self.name!r})"
        return f"pid file {self.spec.pid_file}" if self.spec.pid_file else "nowhere (no state_file or pid_file)"

    def _read_source(self) -> tuple[int, int | None] | None:
        if self._pid_source is not None:
            return self._pid_source()
        try:
            if self.spec.state_file:
                doc = json.loads(Path(self.spec.state_file).read_text())
                entry = doc["services"][self.spec.service or self.name]
                return int(entry["pid"]), (int(entry["starttime"]) if entry.get("starttime") else None)
            if self.spec.pid_file:
                return int(Path(self.spec.pid_file).read_text().split()[0]), None
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return None
        return None

    def _adopt_from_source(self) -> bool:
        """Take the pid the state source names if that process runs; True if it does."""
        found = self._read_source()
        if found is None:
            return False
        pid, starttime = found
        st = proc_stat(pid)
        if st is None or st.state in ("Z", "X") or (starttime is not None and st.starttime != starttime):
            return False
        # Without a recorded start time we can only trust that the source is fresh.
        self.pid, self.starttime = pid, st.starttime
        self._learn_home()
        return True

    def _learn_home(self) -> None:
        if self.running:
            assert self.pid is not None
            self._local.learn_home(self.pid)

    # -- pause / resume, limit / unlimit: the mechanisms are k2.chaos.local's ----------------

    def _frozen(self) -> bool:
        return self._local.frozen()

    def pause(self, timeout: float = 10.0, probe: Probe | None = None) -> Frozen:
        """Freeze the tree: the v1 freezer (FROZEN, every thread 'D'), the v2 freezer (cgroup.events
        `frozen 1`) or SIGSTOP (every thread 'T'), and `probe` (if given) unanswered; `mechanism` says
        which. On failure it resumes again and raises `InjectionFailed`."""
        t0, wall = time.monotonic(), time.time()
        members = self._require_members("pause")
        if self._frozen():
            raise InjectionFailed(f"{self.name}: already paused by run {self.spec.run_id}; resume it first")
        measured = self._local.freeze(members, timeout, probe)
        return measure(Frozen, "pause", self.name, self.kind, t0, wall, frozen=True,
                       freezer_state=measured.pop("freezer_state"), answered=measured.pop("probe_answered"),
                       mechanism=measured.pop("mechanism"), detail=measured)  # fmt: skip

    def resume(self, timeout: float = 10.0, probe: Probe | None = None) -> Thawed:
        """Thaw (or SIGCONT), move every pid back to its previous group, remove K2's group. Idempotent."""
        t0, wall = time.monotonic(), time.time()
        measured = self._local.thaw(timeout, probe) or {}
        return measure(Thawed, "resume", self.name, self.kind, t0, wall, freezer_state="THAWED" if measured else None,
                       answered=measured.pop("probe_answered", None), mechanism=measured.pop("mechanism", None),
                       changed=bool(measured), detail=measured)  # fmt: skip

    def limit(
        self,
        cpu_quota: int | None = None,
        mem_limit: str | int | None = None,
        *,
        cpu_period: int = CPU_PERIOD_US,
        timeout: float = 10.0,
        observe_s: float = 0.0,
    ) -> Limited:
        """Cap the tree's CPU and/or memory and read the caps back (`cpu_mechanism` and `mem_mechanism` say
        how: K2's cgroup v1 or v2 groups, a duty-cycle loop, rlimits).

        Validated before anything is touched. `observe_s` > 0 records the tree's CPU share and the
        throttling counters over that window. Memory charged before a cgroup limit stays with the
        previous group (Linux 6.x, and always on v2), so a limit below current usage is refused
        (`InjectionFailed`), as docker refuses it; an rlimit below what a process already maps is
        `Unsupported`.
        """
        t0, wall = time.monotonic(), time.time()
        limits = LimitValues.build(cpu_quota, mem_limit, cpu_period=cpu_period, mem_total=_mem_total())
        members = self._require_members("limit")
        measured = self._local.limit(members, limits.cpu_quota_us, limits.cpu_period_us, limits.mem_bytes, observe_s)
        cpu, mem = measured.get("cpu", {}), measured.get("memory", {})
        return measure(Limited, "limit", self.name, self.kind, t0, wall, cpu_quota_us=cpu.get("quota_us"),
                       cpu_period_us=cpu.get("period_us"), mem_bytes=mem.get("mem_bytes"),
                       cpu_mechanism=cpu.get("mechanism"), mem_mechanism=mem.get("mechanism"),
                       detail=measured)  # fmt: skip

    def unlimit(self, timeout: float = 10.0) -> Unlimited:
        """Lift the caps (the tree back in its previous groups, the loop ended and the tree running, the
        rlimits before) and verify the limits are those in force before; records the hold's throttling,
        CPU share, peak memory and OOM-kill counters where the mechanism can see them. Idempotent."""
        t0, wall = time.monotonic(), time.time()
        measured = self._local.unlimit(timeout) or {}
        cpu_part, mem_part = measured.get("cpu", {}), measured.get("memory", {})
        cpu, memory = cpu_part.get("counters", {}), mem_part.get("counters", {})
        return measure(Unlimited, "unlimit", self.name, self.kind, t0, wall,
                       restored=all(m.get("restored", True) for m in measured.values()),
                       throttled_periods=cpu.get("nr_throttled"), throttled_ns=cpu.get("throttled_time"),
                       oom_kills=memory.get("oom_kill"), peak_mem_bytes=memory.get("max_usage_in_bytes"),
                       cpu_mechanism=cpu_part.get("mechanism"), mem_mechanism=mem_part.get("mechanism"),
                       changed=bool(measured), detail=measured)  # fmt: skip


def _mem_total() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
