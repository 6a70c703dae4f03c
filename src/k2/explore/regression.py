"""A shrunk schedule as a pytest scenario file, ready to commit as a regression test.

The file uses only public pieces: the fault functions of `k2.chaos.faults` (the seed's call shapes) and the
`explore_pipeline` fixture (the same workload an exploration drives, with its checker). Each fault starts at
its scheduled second and ends on its own timer, so overlapping faults are entered one after another on one
`ExitStack`. The test asserts a PASS: it fails while the bug is there and passes once it is fixed.

Everything taken from the schedule is either validated data (service names, parameter names, numbers,
short strings written with `repr`) or free text that is reduced to printable ASCII before it enters the file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from k2.explore.files import write_new_file
from k2.explore.planned import PlannedFault
from k2.explore.schedule import Schedule

__all__ = ["CALLS", "call", "regression_test", "write_regression_test"]

_IDENT = re.compile(r"[^a-z0-9_]+")
LINE = 120
# kind -> (its function in k2.chaos.faults, {catalogue parameter: that function's keyword}); the rest keep names
CALLS: dict[str, tuple[str, dict[str, str]]] = {
    "service_failure": ("service_failure", {}),
    "network_partition": ("network_partition", {}),
    "resource_limit": ("resource_limit", {}),
    "disk_fill": ("disk_fill", {}),
    "clock_skew": ("clock_skew", {}),
    "latency": ("inject_latency", {"latency": "latency_ms", "jitter": "jitter_ms"}),
    "bandwidth": ("limit_bandwidth", {"rate": "rate_kbps"}),
    "reset_peer": ("reset_connections", {"timeout": "timeout_ms"}),
    "timeout": ("timeout_connections", {"timeout": "timeout_ms"}),
    "slow_close": ("slow_close", {"delay": "delay_ms"}),
    "slicer": ("slice_stream", {"delay": "delay_us"}),
    "limit_data": ("limit_data", {"bytes": "max_bytes"}),
}


def call(fault: PlannedFault) -> tuple[str, dict[str, Any]]:
    """The public function that builds `fault` and its keyword arguments (duration_seconds included)."""
    function, renamed = CALLS[fault.kind]
    return function, {"duration_seconds": fault.duration_s, **{renamed.get(k, k): v for k, v in fault.params.items()}}


def _text(value: object, limit: int = 300) -> str:
    """Free text made safe for a docstring: printable ASCII, no backslash or triple quote, bounded."""
    text = re.sub(r"[^ -~]", "?", str(value)).replace("\\", "/").replace('"""', "'''")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _name(*parts: object) -> str:
    return _IDENT.sub("_", "_".join(str(p) for p in parts).lower()).strip("_")[:80]


def _py(value: object) -> str:
    """A Python literal for a validated schedule value, quoted as ruff formats it."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_py(v) for v in value) + "]"
    return repr(value)


def _joined(function: str, args: list[str], indent: str) -> str:
    """`function(a, b)` on one line when it fits, else one argument a line (ruff's exploded style)."""
    flat = f"{function}({', '.join(args)})"
    if len(indent) + len(flat) <= LINE:
        return flat
    inner = "".join(f"\n{indent}    {arg}," for arg in args)
    return f"{function}({inner}\n{indent})"


def _call(indent: str, function: str, args: list[str]) -> list[str]:
    flat = f"{indent}{function}({', '.join(args)})"
    if len(flat) <= LINE and "\n" not in flat:
        return [flat]
    return [f"{indent}{function}(", *(f"{indent}    {a}" for a in args), f"{indent})"]


def regression_test(schedule: Schedule, *, found: str, reason: str, shrunk: str, signature: str) -> str:
    """The test file's text. `found`: how the failure was found (the explore command); `reason`: the verdict's
    reason; `shrunk`: what the shrink did; `signature`: the failure it reproduces (e.g. data_loss:lost)."""
    functions = sorted({call(f)[0] for f in schedule.faults})
    workload = schedule.workload
    lines = [
        f'"""Regression test written by `k2 chaos shrink`: {_text(signature, 40)}.',
        "",
        f"Found by: {_text(found)}",
        f"Verdict then: {_text(reason)}",
        f"Shrunk: {_text(shrunk)}",
        "",
        "It replays the same workload with the faults below at the same seconds; it fails while the bug is there.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from contextlib import ExitStack",
        "",
        "import pytest",
        "",
    ]
    if functions:
        flat = f"from k2.chaos.faults import {', '.join(functions)}"
        lines += (
            [flat] if len(flat) <= LINE else ["from k2.chaos.faults import (", *(f"    {f}," for f in functions), ")"]
        )
        lines.append("")
    settings = {
        "seed": schedule.seed, "duration_s": schedule.duration_s, "warmup_s": schedule.warmup_s,
        "rate": workload.rate, "writers": workload.writers, "partitions": workload.partitions,
        "query_interval_s": workload.query_interval_s,
        "query_timeout_s": workload.query_timeout_s, "planted": list(workload.planted),
    }  # fmt: skip
    lines += [
        "",
        "@pytest.mark.chaos",
        "@pytest.mark.slow",
        f"def test_{_name('explore_seed', schedule.seed, signature)}(explore_pipeline) -> None:",
        "    run = explore_pipeline(",
        *(f"        {key}={_py(value)}," for key, value in settings.items()),
        "    )",
        "    with run, ExitStack() as faults:",
    ]
    for fault in schedule.faults:
        function, kwargs = call(fault)
        args = [_py(fault.target), *(f"{key}={_py(value)}" for key, value in kwargs.items())]
        lines.append(f"        run.until({_py(fault.at_s)})  # fault #{fault.index} of the explored schedule")
        lines += _call("        ", "faults.enter_context", [_joined(function, args, "            ")])
    lines += [
        f"        run.until({_py(schedule.duration_s)})",
        "    verdict = run.verdict()",
        '    assert verdict.outcome == "pass", verdict.reason',
        "",
    ]
    return "\n".join(lines)


def write_regression_test(path: str | Path, schedule: Schedule, **about: str) -> Path:
    """Write the file (a new file: an existing one, or a symlink in its place, is refused)."""
    return write_new_file(Path(path), regression_test(schedule, **about))
