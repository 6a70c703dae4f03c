"""junit.xml for CI: an outcome the scenario did not expect is a failure (HANG, CRASH and DATA_LOSS always);
an expected FAILED_GRACEFULLY passes with a note.

Properties carry the seed and the stack versions so a red CI run can be replayed exactly; each testcase carries
its full pytest node id (classname and name as pytest's own junitxml spells them, and a `nodeid` property).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

from k2.chaos.outcome import Outcome
from k2.chaos.report.model import RunReport, ScenarioResult, iso

__all__ = ["to_junit", "write_junit"]

# characters XML 1.0 cannot carry (stack dumps may hold ANSI escapes and other control bytes)
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _clean(text: object) -> str:
    return _INVALID_XML.sub("?", str(text))


def _properties(parent: ET.Element, run: RunReport) -> None:
    props = ET.SubElement(parent, "properties")
    items = {"seed": run.seed, "backend": run.backend, **{f"version.{k}": v for k, v in run.versions.items()}}
    for name, value in items.items():
        ET.SubElement(props, "property", name=_clean(name), value=_clean("" if value is None else value))


def _expected(s: ScenarioResult) -> str:
    return " or ".join(Outcome(o).label for o in s.expected)


def _details(s: ScenarioResult) -> str:
    parts = [f"outcome: {s.outcome.label} - {s.reason}", f"expected: {_expected(s)}", f"action: {s.action}"]
    if s.error:
        parts.append(f"error: {s.error}")
    if s.check:
        parts.append(f"check: {s.check.get('summary', '')}")
    for fault in s.faults:
        parts.append(f"fault: {fault.get('kind')} {fault.get('target')} effect={fault.get('effect')}")
    if s.stack_dump:
        parts.append("stacks:\n" + s.stack_dump)
    return "\n".join(parts)


def _names(s: ScenarioResult) -> tuple[str, str]:
    """(classname, name) from the node id as pytest's junitxml spells them: path.to.module.Class, test[params]."""
    if not s.nodeid:
        return s.suite, s.name
    path, *rest = s.nodeid.split("::")
    parts = [path.removesuffix(".py").replace("/", "."), *rest]
    return ".".join(parts[:-1]), parts[-1]


def _testcase(suite_el: ET.Element, s: ScenarioResult) -> None:
    classname, name = _names(s)
    case = ET.SubElement(
        suite_el, "testcase", name=_clean(name), classname=_clean(classname), time=f"{s.duration_s:.3f}"
    )
    if s.nodeid:
        props = ET.SubElement(case, "properties")
        ET.SubElement(props, "property", name="nodeid", value=_clean(s.nodeid))
    if s.failure:
        head = s.outcome.label + ("" if s.outcome.info.failure else f" (expected {_expected(s)})")
        failure = ET.SubElement(case, "failure", message=_clean(f"{head}: {s.reason}"[:500]), type=s.outcome.value)
        failure.text = _clean(_details(s))
    elif s.outcome is Outcome.FAILED_GRACEFULLY:
        out = ET.SubElement(case, "system-out")
        out.text = _clean("FAILED GRACEFULLY, as expected (counted as passed): " + _details(s))


def to_junit(run: RunReport) -> ET.ElementTree:
    root = ET.Element(
        "testsuites",
        name=_clean(run.title),
        tests=str(len(run.scenarios)),
        failures=str(sum(s.failure for s in run.scenarios)),
        errors="0",
        time=f"{run.duration_s:.3f}",
    )
    by_suite: dict[str, list[ScenarioResult]] = defaultdict(list)
    for s in run.scenarios:
        by_suite[s.suite or "chaos"].append(s)
    for suite, scenarios in by_suite.items():
        suite_el = ET.SubElement(
            root,
            "testsuite",
            name=_clean(suite),
            tests=str(len(scenarios)),
            failures=str(sum(s.failure for s in scenarios)),
            errors="0",
            skipped="0",
            time=f"{sum(s.duration_s for s in scenarios):.3f}",
            timestamp=iso(run.started_at) or "",
        )
        _properties(suite_el, run)
        for s in scenarios:
            _testcase(suite_el, s)
    ET.indent(root)
    return ET.ElementTree(root)


def write_junit(run: RunReport, path: str | Path) -> Path:
    path = Path(path)
    to_junit(run).write(path, encoding="utf-8", xml_declaration=True)
    return path
