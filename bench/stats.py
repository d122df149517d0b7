"""Latency statistics and the result table."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def percentile_ms(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples) * 1000.0, q)) if samples else float("nan")


@dataclass
class Row:
    measure: str
    value: str
    target: str = ""
    met: bool | None = None


@dataclass
class Table:
    rows: list[Row] = field(default_factory=list)

    def latency(self, measure: str, samples: list[float], p50_max: float | None = None,
                p99_max: float | None = None) -> None:
        p50, p99 = percentile_ms(samples, 50), percentile_ms(samples, 99)
        limits = [(name, value, limit) for name, value, limit in
                  (("p50", p50, p50_max), ("p99", p99, p99_max)) if limit is not None]
        target = ", ".join(f"{name} <= {limit:g} ms" for name, _, limit in limits)
        met = all(value <= limit for _, value, limit in limits) if limits else None
        self.add(measure, f"p50 {p50:.1f} ms, p99 {p99:.1f} ms (n={len(samples)})", target, met)

    def add(self, measure: str, value: str, target: str = "", met: bool | None = None) -> None:
        self.rows.append(Row(measure, value, target, met))
        print(f"  {measure}: {value}", flush=True)

    def markdown(self) -> str:
        return markdown_table(["Measure", "Result", "Target", "Met"],
                              [[row.measure, row.value, row.target, met_cell(row.met)]
                               for row in self.rows])


def met_cell(met: bool | None) -> str:
    return "" if met is None else ("yes" if met else "**no**")


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
