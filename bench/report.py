"""Figures and the goals they answer to: how `tasksync bench` and `tasksync soak` print their
results as a table and write them as JSON.

A `Figure` is one measured value with its unit and, when an issue set one, its `Goal`; a figure
without a goal is reported so a reader can see what bounds the others (a service's own rate, a
process's memory). `met` is None when there is no goal or the value could not be measured.
"""

from __future__ import annotations

import json
import operator
import os
import platform
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

RESULTS_DIR: Final = Path(__file__).resolve().parent / "results"

_COMPARISONS: Final[dict[str, Callable[[float, float], bool]]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
}


@dataclass(frozen=True)
class Goal:
    """`value <op> target`, and the issue that set it."""

    op: str
    target: float
    source: str

    def met_by(self, value: float) -> bool:
        return _COMPARISONS[self.op](value, self.target)

    def describe(self) -> str:
        return f"{self.op} {self.target:g}"


@dataclass(frozen=True)
class Figure:
    key: str
    title: str
    value: float | None
    unit: str
    goal: Goal | None = None

    @property
    def met(self) -> bool | None:
        if self.goal is None or self.value is None:
            return None
        return self.goal.met_by(self.value)

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "value": self.value,
            "unit": self.unit,
            "goal": None
            if self.goal is None
            else {"op": self.goal.op, "target": self.goal.target, "source": self.goal.source},
            "met": self.met,
        }


def _value_text(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    text = f"{value:,.0f}" if abs(value) >= 100 or float(value).is_integer() else f"{value:,.2f}"
    return f"{text} {unit}".rstrip()


def table(figures: Iterable[Figure]) -> str:
    """The figures as an aligned text table: what, value, goal, verdict."""
    rows = [("figure", "value", "goal", "")]
    for figure in figures:
        verdict = {True: "met", False: "MISSED", None: ""}[figure.met]
        goal = "" if figure.goal is None else f"{figure.goal.describe()} {figure.unit}".rstrip()
        rows.append((figure.title, _value_text(figure.value, figure.unit), goal, verdict))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for index, row in enumerate(rows):
        line = f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]}"
        lines.append(line.rstrip())
        if index == 0:
            lines.append("-" * (sum(widths) + 10))
    return "\n".join(lines)


def machine(broker_versions: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What the figures were measured on, so runs on different machines are not compared."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "cpu_model": model or platform.processor(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "rabbitmq": (broker_versions or {}).get("rabbitmq"),
        "erlang": (broker_versions or {}).get("erlang"),
        "commit": _git_commit(),
    }


def _git_commit() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except OSError:
        return None
    return result.stdout.strip() or None


def write_json(path: Path, document: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    temporary.replace(path)


def cpu_busy_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine so far, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    return total - idle, total
