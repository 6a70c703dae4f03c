"""libfaketime, armed once at process start and driven through a file: how K2 skews a process's clock.

A process started with `arm_env(clock_dir)` (LD_PRELOAD of libfaketime, FAKETIME_TIMESTAMP_FILE,
FAKETIME_NO_CACHE, FAKETIME_DONT_FAKE_MONOTONIC) reads its wall-clock offset from `clock_dir/offset` on
every wall-clock read, so a clock fault is one atomic file write and takes effect at once; "+0" is the
true time. Monotonic clocks stay true (timeouts and sleeps keep working).

Why these choices (measured, see README):
- The library is the one the PyPI `libfaketime` package ships (a fixed 0.9.x build): Debian bookworm's
  0.9.10 breaks Python's `time.sleep` (EINVAL) with FAKETIME_DONT_FAKE_MONOTONIC.
- Each clock domain gets its own copy of the library in its clock dir, readable by any user (PostgreSQL
  runs as `k2pg`, which cannot read a venv under /root), and the path tells which processes follow which
  file: a process that mapped `clock_dir/libfaketime.so.1` is armed for that domain (/proc/PID/maps).
- NO_CACHE costs a file read per wall-clock read (~19 µs instead of ~0.5 µs; monotonic reads untouched);
  a 1 s cache would delay every fault and restore by up to 2 s.
- glibc's C11 `cnd_timedwait` (librdkafka's timed waits) waits inside libc where libfaketime cannot
  translate it: a process skewed forward by N s would sleep N s in every timed wait (a Kafka client stalls).
  A 15-line shim (faketime_c11.c, built with `cc` into the clock dir) routes it through the
  pthread_cond_timedwait that libfaketime does translate. Without a C compiler the shim is left out.
- It reaches dynamically linked processes only: tansu (static-pie Rust) and weed (static Go) never load
  it, so their clocks cannot be skewed this way.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import subprocess
import time
from importlib.util import find_spec
from pathlib import Path

from k2.chaos.errors import ChaosError, Unsupported

__all__ = ["LIBRARY", "OFFSET", "arm_env", "armed_pids", "measure_offset", "prepare", "read_offset", "write_offset"]

log = logging.getLogger(__name__)

LIBRARY = "libfaketime.so.1"
SHIM = "k2-c11-wait.so"
SHIM_SOURCE = Path(__file__).with_name("faketime_c11.c")
OFFSET = "offset"
MAX_OFFSET_S = 20 * 365 * 86400  # what a chaos clock fault may ask for: 20 years either way


def source_library() -> Path:
    """The libfaketime build shipped by the PyPI `libfaketime` package."""
    spec = find_spec("libfaketime")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        library = Path(location) / "vendor" / "libfaketime" / "src" / LIBRARY
        if library.is_file():
            return library
    raise Unsupported(
        "clock faults need libfaketime, which the `libfaketime` package ships: "
        "`pip install 'libfaketime>=3'` (k2 installs it by default)"
    )


def arm_env(clock_dir: Path) -> dict[str, str]:
    """The environment that makes a process follow `clock_dir/offset` from its start."""
    preload = [str(clock_dir / SHIM)] if (clock_dir / SHIM).is_file() else []
    return {
        "LD_PRELOAD": ":".join([*preload, str(clock_dir / LIBRARY)]),
        "FAKETIME_TIMESTAMP_FILE": str(clock_dir / OFFSET),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


def prepare(clock_dir: Path) -> None:
    """Create the clock dir with its own copy of the library and a true-time offset file (idempotent;
    an offset left by a fault stays: the journal, not a restart, restores it)."""
    clock_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    dir_fd = _open_dir(clock_dir)
    try:
        source = source_library()
        target = clock_dir / LIBRARY
        if not _same_file_content(source, target):
            tmp = f".{LIBRARY}.{secrets.token_hex(4)}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                         dir_fd=dir_fd)  # fmt: skip
            with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
                shutil.copyfileobj(src, out)
                os.fchmod(out.fileno(), 0o644)
            os.rename(tmp, LIBRARY, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        _build_shim(clock_dir, dir_fd)
        try:
            os.stat(OFFSET, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            _replace(dir_fd, "+0.000000\n")
    finally:
        os.close(dir_fd)


def write_offset(clock_dir: Path, seconds: float) -> None:
    """Atomically set the domain's offset: armed processes see it on their next wall-clock read."""
    if not -MAX_OFFSET_S <= seconds <= MAX_OFFSET_S:
        raise ChaosError(f"clock offset {seconds} s is beyond 20 years; give a smaller one")
    dir_fd = _open_dir(clock_dir)
    try:
        _replace(dir_fd, f"{seconds:+.6f}\n")
    finally:
        os.close(dir_fd)


def read_offset(clock_dir: Path) -> float:
    text = (clock_dir / OFFSET).read_text().strip()
    return float(text) if text else 0.0


def armed_pids(clock_dir: Path) -> list[int]:
    """Live processes that loaded this domain's library (they follow its offset file)."""
    library = str(clock_dir / LIBRARY)
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            maps = (entry / "maps").read_text()
        except OSError:  # gone, or not ours to read
            continue
        if library in maps:
            pids.append(int(entry.name))
    return sorted(pids)


def measure_offset(clock_dir: Path) -> float:
    """The offset an armed process sees right now: `date` run under the domain's arming, against the
    true time around it (a real reading of the file through the library, not a parse of it)."""
    date = shutil.which("date") or "/bin/date"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **arm_env(clock_dir)}
    before = time.time()
    done = subprocess.run([date, "+%s.%N"], env=env, capture_output=True, text=True, timeout=10, check=False)
    after = time.time()
    if done.returncode != 0:
        raise ChaosError(f"reading the clock of domain {clock_dir} failed: {done.stderr.strip()}")
    return float(done.stdout.strip()) - (before + after) / 2


def _open_dir(clock_dir: Path) -> int:
    """The clock dir, never through a symlink, and only if this user owns it (we write into it as root)."""
    try:
        fd = os.open(clock_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise ChaosError(f"clock dir {clock_dir}: {exc.strerror}; it must be a real directory K2 created") from exc
    if os.fstat(fd).st_uid != os.geteuid():
        os.close(fd)
        raise ChaosError(f"clock dir {clock_dir} is not owned by this user; refusing to write into it")
    return fd


def _replace(dir_fd: int, text: str, name: str = OFFSET) -> None:
    tmp = f".{name}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dir_fd)
    try:
        os.write(fd, text.encode())
        os.fchmod(fd, 0o644)
    finally:
        os.close(fd)
    os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def _build_shim(clock_dir: Path, dir_fd: int) -> None:
    """Compile the C11 wait shim next to the library, once per source version (a stamp holds its source)."""
    stamp = clock_dir / (SHIM + ".c")
    if (clock_dir / SHIM).is_file() and _same_file_content(SHIM_SOURCE, stamp):
        return
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        log.warning(
            "clock dir %s: no C compiler (cc), so the C11 wait shim is not built: Kafka clients skewed "
            "forward will stall in timed waits. Remedy: install gcc, then restart the stack",
            clock_dir,
        )
        return
    tmp = f".{SHIM}.{secrets.token_hex(4)}"
    done = subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(clock_dir / tmp), str(SHIM_SOURCE),
                           "-lpthread"], capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    if done.returncode != 0:
        raise ChaosError(f"building the clock shim {SHIM_SOURCE} failed: {done.stderr.strip()[-500:]}")
    fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        os.fchmod(fd, 0o644)  # the service users (k2pg) must load it
    finally:
        os.close(fd)
    os.rename(tmp, SHIM, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    _replace(dir_fd, SHIM_SOURCE.read_text(), name=stamp.name)


def _same_file_content(a: Path, b: Path) -> bool:
    try:
        return b.stat().st_size == a.stat().st_size and b.read_bytes() == a.read_bytes()
    except FileNotFoundError:
        return False
