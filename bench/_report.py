"""The shared report format of the benchmark scripts: one row per measurement with its
baseline of the same run, a table, and one explanation line per row."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Row:
    name: str
    n: int
    seconds: float
    baseline: str
    baseline_seconds: float
    subject_text: str  # what is measured, for the explanation line
    baseline_text: str
    note: str  # where the difference comes from
    unit: str = "item"

    @property
    def rate(self) -> float:
        return self.n / self.seconds

    @property
    def baseline_rate(self) -> float:
        return self.n / self.baseline_seconds

    @property
    def ratio(self) -> float:
        return self.rate / self.baseline_rate

    def explanation(self) -> str:
        ratio = self.ratio
        pace = (
            f"runs {ratio:.2f}x as fast as"
            if ratio >= 1
            else f"takes {1 / ratio:.2f}x the time per {self.unit} of"
        )
        head = f"{self.name} vs {self.baseline}, ratio {ratio:.3f}"
        return f"{head}: {self.subject_text} {pace} {self.baseline_text}; {self.note}."


def print_table(rows: Sequence[Row], unit: str = "items") -> None:
    header = ("benchmark", "n", f"rate ({unit}/s)", "baseline", "baseline rate", "ratio")
    cells = [
        (
            row.name,
            f"{row.n:,}",
            f"{row.rate:,.0f}",
            row.baseline,
            f"{row.baseline_rate:,.0f}",
            f"{row.ratio:.3f}",
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in (header, *cells)) for i in range(len(header))]
    left = {0, 3}

    def render(line: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(width) if i in left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        )

    print(render(header))  # noqa: T201
    print(render(["-" * width for width in widths]))  # noqa: T201
    for line in cells:
        print(render(line))  # noqa: T201
    print()  # noqa: T201
    for row in rows:
        print(f"- {row.explanation()}")  # noqa: T201


@dataclass(frozen=True, slots=True)
class Sample:
    """Repeated measurements, the first repetition included (imports, caches: what a user's
    one run meets): the median is the figure, min-max its spread."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        ordered = sorted(self.values)
        middle = len(ordered) // 2
        if len(ordered) % 2:
            return ordered[middle]
        return (ordered[middle - 1] + ordered[middle]) / 2

    def text(self, unit: str = "s", digits: int = 2) -> str:
        low, high = min(self.values), max(self.values)
        return (
            f"{self.median:.{digits}f} {unit}"
            f" ({low:.{digits}f}-{high:.{digits}f}, n={len(self.values)})"
        )
