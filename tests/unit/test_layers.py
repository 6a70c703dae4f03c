"""The package layering README's architecture section promises, checked on the source: `k2.chaos` imports
neither `k2.stack` nor `k2.platform` (nor the composing layers above it), `k2.stack` does not compose chaos
sessions, `k2.platform` knows no chaos. Function-level imports count; `if TYPE_CHECKING:` blocks do not."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

FORBIDDEN = {
    "k2.chaos": ("k2.stack", "k2.platform", "k2.scenarios", "k2.testing"),
    "k2.stack": ("k2.testing", "k2.scenarios", "k2.platform", "k2.chaos.session", "k2.chaos.faults"),
    "k2.platform": ("k2.chaos", "k2.stack", "k2.scenarios", "k2.testing"),
}


def runtime_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    typing_only = {
        id(sub)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for sub in ast.walk(node)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_nothing_above_or_beside_it(package: str) -> None:
    root = SRC.joinpath(*package.split("."))
    wrong = sorted(
        f"{path.relative_to(SRC)} imports {name}"
        for path in root.rglob("*.py")
        for name in runtime_imports(path)
        if any(name == banned or name.startswith(banned + ".") for banned in FORBIDDEN[package])
    )
    assert wrong == []
