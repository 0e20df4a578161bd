"""Figures of a soak run: each scenario's, the checks on them, the table and the JSON.

A figure is `zero` (a loss: must be 0), `bound` (must stay under `limit`) or `info`
(reported only). The run fails when any zero or bound figure does not hold.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Kind = Literal["zero", "bound", "info"]


@dataclass
class Figure:
    name: str
    value: float | int | str
    kind: Kind = "info"
    limit: float | None = None  # bound: value < limit
    unit: str = ""

    @property
    def ok(self) -> bool | None:
        if self.kind == "zero":
            return self.value == 0
        if self.kind == "bound" and self.limit is not None and isinstance(self.value, int | float):
            return self.value < self.limit
        return None

    @property
    def rule(self) -> str:
        if self.kind == "zero":
            return "0"
        if self.kind == "bound":
            return f"< {_fmt(self.limit)}{self.unit}"
        return ""


@dataclass
class Result:
    key: str  # a .. g
    title: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None  # the scenario itself failed to run
    wall_s: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    def info(self, name: str, value: float | int | str, unit: str = "") -> None:
        self.figures.append(Figure(name, value, "info", unit=unit))

    def zero(self, name: str, value: int) -> None:
        self.figures.append(Figure(name, value, "zero"))

    def bound(self, name: str, value: float, limit: float, unit: str = "") -> None:
        self.figures.append(Figure(name, value, "bound", limit, unit))

    def note(self, text: str) -> None:
        if len(self.notes) < 12:
            self.notes.append(text)

    @property
    def ok(self) -> bool:
        return self.error is None and all(f.ok is not False for f in self.figures)


def _fmt(value: float | int | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return f"{value:,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if abs(value) >= 0.01 or value == 0 else f"{value:.2g}"


def table(results: list[Result]) -> str:
    lines = ["| Scenario | Figure | Value | Must be | |", "|---|---|---|---|---|"]
    for res in results:
        title = f"({res.key}) {res.title}"
        if res.error is not None:
            lines.append(f"| {title} | **did not run to its end** | {res.error[:150]} | | ✗ |")
        for fig in res.figures:
            mark = {True: "✓", False: "**✗**", None: ""}[fig.ok]
            value = _fmt(fig.value) + (fig.unit if not isinstance(fig.value, str) else "")
            lines.append(f"| {title} | {fig.name} | {value} | {fig.rule} | {mark} |")
            title = ""
    return "\n".join(lines)


def render(result: dict[str, Any], results: list[Result]) -> str:
    m = result["machine"]
    out = [
        f"## Soak ({result['mode']}, {result['wall_s']:.0f} s wall)",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), Python {m['python']}, "
        f"Envoy {m['envoy']}; {result['workers']} ext_proc workers, one Envoy worker.",
        "",
        table(results),
        "",
    ]
    for res in results:
        out += [f"* ({res.key}) {note}" for note in res.notes]
    verdict = "every figure holds" if result["ok"] else "**FAILED**: see the ✗ rows"
    out += ["", f"Result: {verdict}."]
    return "\n".join(out)


def to_json(res: Result) -> dict[str, Any]:
    figures = [{**asdict(f), "ok": f.ok} for f in res.figures]
    return {
        "title": res.title,
        "ok": res.ok,
        "error": res.error,
        "wall_s": res.wall_s,
        "figures": figures,
        "notes": res.notes,
        "details": res.details,
    }


def must_be_zero(results: list[Result]) -> dict[str, float | int | str]:
    """Every loss figure of the run, `<key>: <name>` -> value."""
    return {f"{r.key}: {f.name}": f.value for r in results for f in r.figures if f.kind == "zero"}


def write_json(result: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(path)
