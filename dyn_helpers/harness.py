"""The experiment harness: seeds, the static comparison chosen on validation, and result tables.

Every chapter compares a dynamic model with static models of the same average cost, and does it
the same way: train and measure every model for several seeds (`over_seeds`); among the static
models that cost at most the dynamic model's FLOPs, take the best on validation as its twin
(`choose_static`); show the numbers as one table (`Table`), printed or displayed. Timing several
models interleaved is `dyn_helpers.measure.compare_latency`.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any

from dyn_helpers.repro import seed_everything

MAX_DECIMALS = 4
_SPEC_PRECISION = re.compile(r"\.(\d+)([a-zA-Z%]?)$")
_TOO_PRECISE = re.compile(rf"\d\.\d{{{MAX_DECIMALS + 1},}}")
_MARKDOWN_SPECIAL = re.compile(r"([\\|*_`<\[\]~])")


def over_seeds(run: Callable[[int], Any], seeds: Sequence[int]) -> dict[int, Any]:
    """`run(seed)` for each seed, each after `repro.seed_everything(seed)`; the results keyed by seed, in order."""
    if not callable(run):
        raise TypeError(f"run must be callable as run(seed), got {type(run).__name__}")
    if isinstance(seeds, str | bytes) or not isinstance(seeds, Sequence):
        raise TypeError(f"seeds must be a sequence of ints, got {type(seeds).__name__}")
    if not seeds:
        raise ValueError("seeds must name at least one seed")
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seeds must be ints, got {seed!r} ({type(seed).__name__})")
        if seed < 0:
            raise ValueError(f"seeds must be non-negative, got {seed}")
    repeated = sorted(s for s, n in Counter(seeds).items() if n > 1)
    if repeated:
        raise ValueError(f"seeds must be distinct, got {repeated} more than once")
    results = {}
    for seed in seeds:
        seed_everything(seed)
        results[seed] = run(seed)
    return results


def _number(name: str, x: object, positive: bool = False) -> float:
    """`x` as a finite, non-negative (or positive) float; a 0-d tensor or array counts, a bool does not."""
    if hasattr(x, "item") and getattr(x, "ndim", None) == 0:
        x = x.item()
    if isinstance(x, bool) or not isinstance(x, Real):
        raise TypeError(f"{name} must be a real number, got {type(x).__name__}")
    if not math.isfinite(x) or x < 0 or (positive and x == 0):
        raise ValueError(f"{name} must be finite and {'positive' if positive else 'non-negative'}, got {x}")
    return float(x)


@dataclass(frozen=True)
class Candidate:
    """A trained static model: its name, average FLOPs per input, validation and test accuracy.

    `extra` holds anything else the notebook wants to keep with it (the model, per-seed values).
    """

    name: str
    flops: float
    val_acc: float
    test_acc: float
    extra: dict = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"a candidate needs a non-empty name, got {self.name!r}")
        for attr in ("flops", "val_acc", "test_acc"):
            object.__setattr__(self, attr, _number(f"{attr} of {self.name!r}", getattr(self, attr)))
        if not isinstance(self.extra, dict):
            raise TypeError(f"extra of {self.name!r} must be a dict, got {type(self.extra).__name__}")


def _flops(x: float) -> str:
    """FLOPs as text: whole with thousands separators, one decimal if not whole (an average)."""
    return f"{x:,.0f}" if x == round(x) else f"{x:,.1f}"


@dataclass(frozen=True)
class StaticChoice:
    """The static models a dynamic model of average cost `budget` (FLOPs per input) is compared with.

    `twin` is the candidate with the best validation accuracy at or below the budget; `cheaper`
    the most expensive candidate at or below it; `dearer` the cheapest above it, or None.
    `candidates` are all of them, cheapest first.
    """

    budget: float
    twin: Candidate
    cheaper: Candidate
    dearer: Candidate | None
    candidates: tuple[Candidate, ...]

    def describe(self) -> str:
        """One sentence for the page: which static models are compared, and why."""
        within = sum(c.flops <= self.budget for c in self.candidates)
        dearer = (
            f"{self.dearer.name} ({_flops(self.dearer.flops)} FLOPs), the cheapest above it"
            if self.dearer
            else "no static model above it"
        )
        return (
            f"The static twin is {self.twin.name} ({_flops(self.twin.flops)} FLOPs per input), the best "
            f"on validation of the {within} static model{'s' if within != 1 else ''} costing at most the "
            f"dynamic model's {_flops(self.budget)} FLOPs per input; its neighbours in cost are "
            f"{self.cheaper.name} ({_flops(self.cheaper.flops)} FLOPs), the dearest within that budget, "
            f"and {dearer}."
        )

    def table(self, acc_format: str | Callable[[Any], str] = ".4f") -> Table:
        """The twin and the cheaper and dearer neighbours: FLOPs, validation and test accuracy."""
        roles = [("twin", self.twin), ("cheaper neighbour", self.cheaper), ("dearer neighbour", self.dearer)]
        return Table(
            ["role", "static model", "FLOPs per input", "val acc", "test acc"],
            [[role, c.name, c.flops, c.val_acc, c.test_acc] for role, c in roles if c is not None],
            {"FLOPs per input": ",.0f", "val acc": acc_format, "test acc": acc_format},
        )


def choose_static(candidates: Iterable[Candidate], budget: float) -> StaticChoice:
    """Choose, on validation, the static models to compare with a dynamic model of average cost `budget`.

    The twin has the best validation accuracy among the candidates with `flops <= budget`; ties
    go to fewer FLOPs, then to the name. Test accuracy plays no part in the choice.
    """
    candidates = tuple(candidates)
    if not candidates:
        raise ValueError("candidates must hold at least one static model")
    for c in candidates:
        if not isinstance(c, Candidate):
            raise TypeError(f"candidates must be harness.Candidate, got {type(c).__name__}")
    repeated = sorted(name for name, n in Counter(c.name for c in candidates).items() if n > 1)
    if repeated:
        raise ValueError(f"candidate names must be distinct, got {repeated} more than once")
    budget = _number("budget (FLOPs per input)", budget, positive=True)
    by_cost = tuple(sorted(candidates, key=lambda c: (c.flops, -c.val_acc, c.name)))
    within = [c for c in by_cost if c.flops <= budget]
    if not within:
        raise ValueError(
            f"no static model costs at most the budget: the cheapest, {by_cost[0].name!r}, costs "
            f"{_flops(by_cost[0].flops)} FLOPs per input, above the budget of {_flops(budget)}; "
            "add a cheaper static model to the candidates"
        )
    twin = min(within, key=lambda c: (-c.val_acc, c.flops, c.name))
    cheaper = next(c for c in within if c.flops == within[-1].flops)
    dearer = next((c for c in by_cost if c.flops > budget), None)
    return StaticChoice(budget, twin, cheaper, dearer, by_cost)


def _check_format(column: str, spec: object) -> None:
    if callable(spec):
        return
    if not isinstance(spec, str):
        raise TypeError(f"the format of column {column!r} must be a format spec or a callable, got {spec!r}")
    match = _SPEC_PRECISION.search(spec)
    if match and match.group(2) != "s" and int(match.group(1)) > MAX_DECIMALS:
        raise ValueError(
            f"the format {spec!r} of column {column!r} prints {match.group(1)} decimals; "
            f"the book prints numbers with at most {MAX_DECIMALS}"
        )


def _cell(column: str, value: object, spec: str | Callable[[Any], str] | None) -> tuple[str, bool]:
    """The text of one cell and whether it holds a number."""
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        value = value.item()
    if value is None:
        return "", False
    numeric = isinstance(value, Real) and not isinstance(value, bool)
    try:
        if callable(spec):
            text = spec(value)
        elif spec is not None:
            text = format(value, spec)
        elif isinstance(value, Integral) and numeric:
            text = str(int(value))
        else:
            text = f"{value:.{MAX_DECIMALS}f}" if numeric else str(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"column {column!r} cannot format {value!r} with {spec!r}: {error}") from None
    if not isinstance(text, str):
        raise TypeError(f"the format of column {column!r} must return str, got {type(text).__name__}")
    if numeric and _TOO_PRECISE.search(text):
        raise ValueError(
            f"column {column!r} prints {text!r}, more than {MAX_DECIMALS} decimals; "
            "the book prints numbers with at most 4 (give the column a format such as '.4f')"
        )
    return text, numeric


class Table:
    """Rows under named columns: `print(table)` gives aligned plain text, `display(table)` a Markdown table.

    `formats` maps a column to a format spec (`'.2f'`, `',.0f'`, `'+.2f'`) or a callable
    returning the cell's text; unformatted floats get 4 decimals, the most the book prints. Text
    is left-aligned, a column of numbers right-aligned; None is an empty cell. The Markdown form
    is unpadded, so its text around the numbers stays the same when a number gains a digit; the
    plain text's padding does not, which the output tests notice, so give a column whose numbers
    may change sign or length a format that keeps it (`'+.2f'`). The table keeps `columns`,
    `rows` (the values) and `cells` (their text).
    """

    def __init__(
        self,
        columns: Sequence[str],
        rows: Iterable[Sequence[Any]],
        formats: Mapping[str, str | Callable[[Any], str]] | None = None,
    ) -> None:
        if isinstance(columns, str) or not isinstance(columns, Sequence) or not columns:
            raise ValueError(f"columns must be a non-empty sequence of names, got {columns!r}")
        if not all(isinstance(c, str) and c for c in columns) or len(set(columns)) != len(columns):
            raise ValueError(f"column names must be distinct non-empty strings, got {list(columns)}")
        formats = dict(formats or {})
        unknown = sorted(set(formats) - set(columns))
        if unknown:
            raise ValueError(f"formats name columns the table does not have: {unknown}")
        for column, spec in formats.items():
            _check_format(column, spec)
        self.columns = tuple(columns)
        self.rows = tuple(tuple(row) for row in self._checked(rows))
        cells = [
            [_cell(c, v, formats.get(c)) for c, v in zip(self.columns, row, strict=True)] for row in self.rows
        ]
        self.cells = tuple(tuple(text for text, _ in row) for row in cells)
        self._numeric = tuple(
            any(row[j][1] for row in cells) and all(row[j][1] or not row[j][0] for row in cells)
            for j in range(len(self.columns))
        )

    def _checked(self, rows: Iterable[Sequence[Any]]) -> Iterable[Sequence[Any]]:
        for i, row in enumerate(rows):
            if isinstance(row, str) or not isinstance(row, Sequence):
                raise TypeError(f"row {i} must be a sequence of values, got {type(row).__name__}")
            if len(row) != len(self.columns):
                raise ValueError(f"row {i} has {len(row)} values for {len(self.columns)} columns")
            yield row

    @classmethod
    def from_records(
        cls,
        records: Sequence[Mapping[str, Any]],
        columns: Sequence[str] | None = None,
        formats: Mapping[str, str | Callable[[Any], str]] | None = None,
    ) -> Table:
        """A table of one row per dict; the columns default to the keys in the order first seen.

        A record without a column's key gets an empty cell; keys outside `columns` are left out.
        """
        if isinstance(records, Mapping) or not isinstance(records, Sequence):
            raise TypeError(f"records must be a sequence of dicts, got {type(records).__name__}")
        for i, record in enumerate(records):
            if not isinstance(record, Mapping):
                raise TypeError(f"record {i} must be a dict, got {type(record).__name__}")
        if columns is None:
            if not records:
                raise ValueError("records are empty: pass columns to make a table without rows")
            columns = list(dict.fromkeys(key for record in records for key in record))
        return cls(columns, [[record.get(c) for c in columns] for record in records], formats)

    def __str__(self) -> str:
        widths = [
            max(len(t) for t in [c, *(row[j] for row in self.cells)]) for j, c in enumerate(self.columns)
        ]

        def line(texts: Sequence[str]) -> str:
            padded = (
                t.rjust(w) if numeric else t.ljust(w)
                for t, w, numeric in zip(texts, widths, self._numeric, strict=True)
            )
            return "  ".join(padded).rstrip()

        return "\n".join(line(texts) for texts in [self.columns, *self.cells])

    __repr__ = __str__

    def _repr_markdown_(self) -> str:
        """The table in GitHub-flavoured Markdown, as `display` shows it in the built book."""

        def line(texts: Sequence[str]) -> str:
            return "| " + " | ".join(_MARKDOWN_SPECIAL.sub(r"\\\1", t) for t in texts) + " |"

        rule = "|" + "|".join("---:" if numeric else ":---" for numeric in self._numeric) + "|"
        return "\n".join([line(self.columns), rule, *(line(row) for row in self.cells)])
