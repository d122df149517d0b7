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
        target, met = "", None
        if p50_max is not None and p99_max is not None:
            target = f"p50 <= {p50_max:g} ms, p99 <= {p99_max:g} ms"
            met = p50 <= p50_max and p99 <= p99_max
        elif p50_max is not None:
            target, met = f"p50 <= {p50_max:g} ms", p50 <= p50_max
        self.add(measure, f"p50 {p50:.1f} ms, p99 {p99:.1f} ms (n={len(samples)})", target, met)

    def add(self, measure: str, value: str, target: str = "", met: bool | None = None) -> None:
        self.rows.append(Row(measure, value, target, met))
        print(f"  {measure}: {value}", flush=True)

    def markdown(self) -> str:
        lines = ["| Measure | Result | Target | Met |", "| --- | --- | --- | --- |"]
        for row in self.rows:
            met = "" if row.met is None else ("yes" if row.met else "**no**")
            lines.append(f"| {row.measure} | {row.value} | {row.target} | {met} |")
        return "\n".join(lines)
