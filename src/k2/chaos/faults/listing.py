"""`k2 chaos list`: the catalogue as tables (kinds and parameters; backend support) or as JSON."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from k2.chaos.faults.catalogue import BACKENDS, CATALOGUE, support

__all__ = ["catalogue_json", "catalogue_tables"]


def catalogue_json() -> dict[str, Any]:
    """Every kind with its parameters and, per backend, which variants it supports and why not."""
    kinds = {}
    for entry in CATALOGUE.values():
        params = [
            {"name": p.name, "type": p.kind, "default": p.default, "help": p.help, "minimum": p.minimum,
             "maximum": p.maximum, "choices": list(p.choices), "optional": p.optional,
             "explore": list(p.explore) if p.explore else None}
            for p in entry.params
        ]  # fmt: skip
        backends = {}
        for backend in BACKENDS:
            found = support(entry.name, backend)
            backends[backend] = {"variants": dict(found.variants), "note": found.note}
        kinds[entry.name] = {
            "help": entry.help,
            "duration_s": entry.duration_default,
            "capabilities": {variant or entry.name: str(c) for variant, c in entry.capabilities.items()},
            "params": params,
            "backends": backends,
        }
    return {"backends": list(BACKENDS), "kinds": kinds}


def _cell(variants: dict[str, bool]) -> str:
    if list(variants) == [""]:
        return "[green]yes[/]" if variants[""] else "[dim]no[/]"
    yes = [v for v, ok in variants.items() if ok]
    if len(yes) == len(variants):
        return "[green]yes[/]"
    return f"[yellow]{', '.join(yes)}[/]" if yes else "[dim]no[/]"


def catalogue_tables() -> list[Table]:
    kinds = Table("kind", "parameters [valid range]", "needs", "what it does", title="Fault kinds")
    matrix = Table("kind", *BACKENDS, title="Which backend supports what (notes below)")
    notes: list[str] = []
    for entry in CATALOGUE.values():
        duration = f"duration={entry.duration_default:g}s" if entry.duration_default else "duration=until exit"
        params = "\n".join([duration, *(p.describe() for p in entry.params)])
        needs = ", ".join(sorted({str(c) for c in entry.capabilities.values()}))
        kinds.add_row(entry.name, params, needs, entry.help)
        cells = []
        for backend in BACKENDS:
            found = support(entry.name, backend)
            mark = ""
            if found.note and found.any:
                notes.append(f"{entry.name} on {backend}: {found.note}")
                mark = f" [{len(notes)}]"
            cells.append(_cell(dict(found.variants)) + mark if found.installed else "[dim]n/a[/]")
        matrix.add_row(entry.name, *cells)
    matrix.caption = "\n".join(f"[{i}] {note}" for i, note in enumerate(notes, 1))
    matrix.caption_justify = "left"
    return [kinds, matrix]
