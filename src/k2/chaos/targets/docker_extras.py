"""The docker backend's conditional primitives: traffic shaping with `tc` inside the container, and
filling the container's data volume.

Shaping needs three things, checked in this order so the message names the real obstacle: a host
kernel with the qdisc (netem for latency; tbf for bandwidth), the NET_ADMIN capability, and a `tc`
binary in the image. Filling a disk writes one file into the volume's directory on this machine,
so it needs the engine to run here.
"""

from __future__ import annotations

import errno
import gzip
import os
import platform
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from k2.chaos.errors import InvalidFault, UnsafeTarget, Unsupported
from k2.chaos.units import parse_size

__all__ = ["FILL_PREFIX", "fill_file", "netem_in_kernel", "pick_mount", "shape_commands", "shaping_obstacle"]

FILL_PREFIX = ".k2-chaos-fill-"
_SLACK = 16 << 20  # room for the filesystem's own blocks when allocating most of it
_CHUNK = 8 << 20

PROXY_ROUTE = (
    "use the stack's fault-proxy service instead: declare the service's proxy target in the session "
    "(ChaosSession(..., network={{'{name}': <the stack's ProxyTarget for {name}>}})) and inject_latency, "
    "limit_bandwidth and network_partition go through it, with no privilege and on any kernel"
)


# -- shaping ----------------------------------------------------------------------------------


def netem_in_kernel() -> bool | None:
    """Whether this kernel can run the netem qdisc: True, False, or None when it cannot tell."""
    try:
        with gzip.open("/proc/config.gz", "rt") as config:
            for line in config:
                if line.startswith("CONFIG_NET_SCH_NETEM="):
                    return line.strip().endswith(("=y", "=m"))
                if line.startswith("# CONFIG_NET_SCH_NETEM is not set"):
                    return False
    except OSError:
        pass
    try:
        if "sch_netem" in Path("/proc/modules").read_text():
            return True
    except OSError:
        pass
    modules = Path("/lib/modules") / platform.release()
    if modules.is_dir():
        builtin = modules / "modules.builtin"
        if builtin.is_file() and "sch_netem" in builtin.read_text():
            return True
        return any(modules.rglob("sch_netem.ko*"))
    return None


def shape_commands(toxic: str, attributes: Mapping[str, Any], interface: str) -> list[str]:
    """The `tc` argv that applies one toxic on `interface` (egress = the service's responses)."""
    if toxic == "latency":
        latency, jitter = int(attributes.get("latency", 0)), int(attributes.get("jitter", 0))
        if latency <= 0:
            raise InvalidFault(f"latency={latency} ms: give a positive latency")
        return ["tc", "qdisc", "replace", "dev", interface, "root", "netem", "delay", f"{latency}ms", f"{jitter}ms"]
    if toxic == "bandwidth":
        rate = int(attributes.get("rate", 0))  # KB/s, as the fault proxy's bandwidth toxic takes it
        if rate <= 0:
            raise InvalidFault(f"rate={rate} KB/s: give a positive bandwidth")
        return ["tc", "qdisc", "replace", "dev", interface, "root", "tbf", "rate", f"{rate * 8}kbit",
                "burst", "32kbit", "latency", "400ms"]  # fmt: skip
    raise Unsupported(f"toxic {toxic!r} has no tc equivalent")


def shaping_obstacle(
    name: str, toxic: str, stream: str, toxicity: float, clients: object, host_config: Mapping[str, Any], local: bool
) -> str | None:
    """Why shaping cannot be done in this container, or None. Exec-time checks (tc present) come later."""
    route = PROXY_ROUTE.format(name=name)
    if toxic not in ("latency", "bandwidth"):
        return f"{name}: the {toxic!r} toxic exists only in the fault proxy; {route}"
    if stream != "downstream" or toxicity < 1.0 or clients:
        return (
            f"{name}: tc in the container shapes its outgoing traffic for every client (stream='downstream', "
            f"toxicity=1.0, no clients); for stream={stream!r}, toxicity={toxicity}, clients={clients!r} {route}"
        )
    if toxic == "latency" and local and netem_in_kernel() is False:
        return (
            f"{name}: latency needs the netem qdisc and this kernel ({platform.release()}) has none "
            f"(CONFIG_NET_SCH_NETEM is not set); {route}"
        )
    caps = {str(c).upper().removeprefix("CAP_") for c in host_config.get("CapAdd") or []}
    if not host_config.get("Privileged") and not caps & {"NET_ADMIN", "ALL"}:
        return (
            f"{name}: tc needs the NET_ADMIN capability, which the container lacks: add `cap_add: [NET_ADMIN]` "
            f"to the service in the compose file and recreate it, or {route}"
        )
    return None


# -- disk -------------------------------------------------------------------------------------


def pick_mount(mounts: list[Mapping[str, Any]], path: str | None, name: str) -> Mapping[str, Any]:
    """The mount to fill: the one at `path`, else the first volume (the data volume), else the first bind."""
    if path is not None:
        for mount in mounts:
            if mount.get("Destination") == path:
                return mount
        known = [m.get("Destination") for m in mounts]
        raise InvalidFault(f"{name}: no volume or bind mount at {path!r} in the container (mounts: {known})")
    for kind in ("volume", "bind"):
        for mount in mounts:
            if mount.get("Type") == kind and mount.get("RW", True):
                return mount
    raise Unsupported(
        f"{name}: the container has no writable volume or bind mount to fill; its root filesystem is the "
        "engine's storage, shared with every container: mount a data volume for the service"
    )


def fill_file(
    directory: Path, size: object, fullness: object, *, shared_ok: bool, name: str
) -> tuple[Path, int, dict[str, int]]:
    """Write one file into `directory` until `size` bytes or `fullness` (0..1) of its filesystem is
    used; returns (file, bytes written, df before). A full disk is the goal, so ENOSPC ends the write."""
    if (size is None) == (fullness is None):
        raise InvalidFault(f"{name}: fill_disk takes size (e.g. '100m') or fullness (0 < f <= 1), one of them")
    if not directory.is_dir():
        raise Unsupported(
            f"{name}: the volume's directory {directory} is not visible here: filling a disk needs the Docker "
            "engine on this machine"
        )
    if not shared_ok and os.stat(directory).st_dev == os.stat("/").st_dev:
        raise UnsafeTarget(
            f"{name}: {directory} is on this machine's root filesystem, so filling it would fill the host's disk "
            "too; use a volume on its own filesystem (e.g. a tmpfs or size-limited volume) or pass shared_ok=True"
        )
    before = df(directory)
    if size is not None:
        want = parse_size(size, what="size", minimum=1)
    else:
        if isinstance(fullness, bool) or not isinstance(fullness, int | float) or not 0 < fullness <= 1:
            raise InvalidFault(f"{name}: fullness={fullness!r}: give a fraction of the filesystem, 0 < f <= 1")
        want = max(0, int(before["total"] * fullness) - before["used"])
    target = directory / f"{FILL_PREFIX}{uuid.uuid4().hex[:8]}"
    written = 0
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            if want:
                os.posix_fallocate(fd, 0, want)
            written = want
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            os.ftruncate(fd, 0)
            if exc.errno == errno.ENOSPC:  # the whole free space: the filesystem keeps some blocks for itself
                written = _reserve_most(fd, directory, want)
            zeros = bytes(_CHUNK)
            try:  # a filesystem without fallocate, or one too small for the whole size: write until full
                while written < want:
                    written += os.write(fd, zeros[: min(_CHUNK, want - written)])
            except OSError as full:
                if full.errno != errno.ENOSPC:
                    raise
        os.fsync(fd)
    finally:
        os.close(fd)
    return target, written, before


def _reserve_most(fd: int, directory: Path, want: int) -> int:
    """Allocate at once all but the last `_SLACK` bytes the filesystem calls available (the rest is then written
    until it refuses: writing a whole 1 GiB disk took 6 s); returns the bytes allocated, 0 if it refused."""
    bulk = min(want, df(directory)["avail"] - _SLACK)
    if bulk <= 0:
        return 0
    try:
        os.posix_fallocate(fd, 0, bulk)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        os.ftruncate(fd, 0)
        return 0
    os.lseek(fd, bulk, os.SEEK_SET)
    return bulk


def df(directory: Path) -> dict[str, int]:
    """The filesystem's total, used and available bytes, as `df` reports them."""
    st = os.statvfs(directory)
    total = st.f_blocks * st.f_frsize
    return {"total": total, "used": total - st.f_bfree * st.f_frsize, "avail": st.f_bavail * st.f_frsize}
