"""Theory against practice: what a dynamic model saves on paper, in FLOPs run, and on the clock.

Taught in chapter 7 (theory_vs_practice.ipynb). Every chapter registers timing cases
(`dyn_helpers.measure.timing_cases`); a dynamic model's case names its `reference`, the same
network run without its decisions. `python -m dyn_helpers.tools.bench` (`make bench`) times every
case on one device and records, with each time, the FLOPs run per input. From such a record,
`practice_rows` gives each dynamic case, relative to its reference:

- *counted*: the FLOPs each input's decisions allow, each input run alone, as a paper reports them;
- *executed*: the FLOPs its execution runs per input at a batch size (a mask multiplied into a
  dense result executes everything);
- *clock*: its time per batch at that batch size, over the reference's timed in alternation with it.

`PracticeRow.realised` is the share of the counted saving that the clock keeps: 1 when time falls
as the counted FLOPs do, 0 when no time is saved, negative when the dynamic model is slower.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from dyn_helpers.harness import Table
from dyn_helpers.measure import check_references, registered_timing_cases
from dyn_helpers.recorded import RESULTS_DIR, load_records

# Points of % (of the reference) beyond which a gap between two columns gets a reason.
GAP_POINTS = 10.0


@dataclass(frozen=True)
class PracticeRow:
    """One dynamic case against its reference, from one timing record, in % of the reference.

    `executed` and `clock` map each batch size to a value, or to None where the execution does
    not run at that batch size (one that serves one input at a time).
    """

    case: str
    reference: str
    counted: float
    executed: dict[int, float | None] = field(default_factory=dict)
    clock: dict[int, float | None] = field(default_factory=dict)

    @property
    def chapter(self) -> str:
        """The notebook whose model this is."""
        return self.case.split("/")[0]

    def realised(self, batch_size: int) -> float | None:
        """The share of the counted saving kept by the clock at `batch_size`: (100 - clock) /
        (100 - counted); None where nothing is counted as saved or the batch size did not run."""
        clock = self.clock.get(batch_size)
        if clock is None or self.counted >= 100.0 - 1e-9:
            return None
        return (100.0 - clock) / (100.0 - self.counted)

    def reason(self, batch_size: int) -> str:
        """Why the clock departs from the counted FLOPs at `batch_size`, read from the numbers."""
        executed, clock = self.executed.get(batch_size), self.clock.get(batch_size)
        if executed is None or clock is None:
            return "runs one input at a time"
        reasons = []
        if executed > self.counted + GAP_POINTS:
            reasons.append("executes work its decisions skip")
        if clock > executed + GAP_POINTS:
            reasons.append("time beyond its FLOPs")
        elif clock < executed - GAP_POINTS:
            reasons.append("faster than its FLOPs")
        return "; ".join(reasons) or "clock follows the FLOPs"


def _check_record(record: Mapping) -> None:
    if not isinstance(record, Mapping) or "measurements" not in record or "provenance" not in record:
        raise ValueError(
            "record must be a timing record of dyn_helpers.tools.bench (provenance, measurements)"
        )


def practice_rows(record: Mapping, batch_sizes: Sequence[int] = (1, 256)) -> list[PracticeRow]:
    """Every dynamic case of a timing `record` against its reference, in the record's order."""
    _check_record(record)
    if not batch_sizes or any(not isinstance(b, int) or b < 1 for b in batch_sizes):
        raise ValueError(f"batch_sizes must be positive integers, got {batch_sizes!r}")
    by_case: dict[str, dict[int, dict]] = {}
    for m in record["measurements"]:
        by_case.setdefault(m["case"], {})[m["batch_size"]] = m
    rows = []
    for case, runs in by_case.items():
        first = next(iter(runs.values()))
        if "reference" not in first:
            continue
        reference = by_case.get(first["reference"])
        if reference is None or 1 not in reference:
            raise ValueError(f"{case}: its reference {first['reference']} is not in the record at batch 1")
        executed, clock = {}, {}
        for b in batch_sizes:
            ours, theirs = runs.get(b), reference.get(b)
            if ours is None or theirs is None:
                executed[b] = clock[b] = None
                continue
            executed[b] = 100.0 * ours["flops_per_input"] / theirs["flops_per_input"]
            # Timed in alternation with the reference where the record kept that pairing.
            clock[b] = 100.0 * ours["median_s"] / ours.get("reference_median_s", theirs["median_s"])
        counted = 100.0 * first["counted_flops"] / reference[1]["flops_per_input"]
        rows.append(PracticeRow(case, first["reference"], counted, executed, clock))
    return rows


def registered_references(device: str | torch.device = "cpu") -> dict[str, str]:
    """Every registered dynamic case and its reference, as 'chapter/case' names."""
    found = {}
    for chapter, build in registered_timing_cases().items():
        cases = build(torch.device(device))
        check_references(chapter, cases)
        found |= {
            f"{chapter}/{name}": f"{chapter}/{case.reference}"
            for name, case in cases.items()
            if case.reference is not None
        }
    return found


def check_current(record: Mapping, references: Mapping[str, str]) -> None:
    """Fail unless the record holds exactly the dynamic cases and references registered now
    (`registered_references()`): a record made before a model was added or changed is stale."""
    _check_record(record)
    recorded = {m["case"]: m["reference"] for m in record["measurements"] if "reference" in m}
    if recorded != dict(references):
        missing = sorted(set(references) - set(recorded))
        extra = sorted(set(recorded) - set(references))
        raise ValueError(
            f"the timing record is stale: run `make bench` (missing {missing}, no longer registered {extra})"
        )


def practice_table(rows: Sequence[PracticeRow], batch_sizes: Sequence[int] = (1, 256)) -> Table:
    """One row per dynamic case: counted, and executed, clock and realised share at each batch size."""
    columns = ["case", "reference", "counted (%)"]
    formats: dict[str, str] = {"counted (%)": ".1f"}
    for b in batch_sizes:
        names = [f"executed, batch {b} (%)", f"clock, batch {b} (%)", f"realised, batch {b}"]
        columns += names
        formats |= dict(zip(names, (".1f", ".0f", "+.2f"), strict=True))
    table_rows = []
    for row in rows:
        cells = [row.case, row.reference.split("/")[1], row.counted]
        for b in batch_sizes:
            cells += [row.executed.get(b), row.clock.get(b), row.realised(b)]
        table_rows.append(cells)
    return Table(columns, table_rows, formats)


@dataclass(frozen=True)
class PracticeSummary:
    """How the dynamic cases of a record fare at one batch size."""

    batch_size: int
    n_run: int  # cases that run at this batch size
    n_saving: int  # of those, cases whose decisions are counted as saving FLOPs
    n_half_kept: int  # of those, cases whose clock keeps at least half the counted saving
    n_slower: int  # cases that run, slower than their reference
    n_executing_skipped: int  # cases that run, executing at least GAP_POINTS more than they count


def summarise(rows: Sequence[PracticeRow], batch_size: int) -> PracticeSummary:
    """Counts of cases at `batch_size`: run, counted as saving, keeping half of it, slower, over-executing."""
    ran = [r for r in rows if r.clock.get(batch_size) is not None]
    saving = [r for r in ran if r.realised(batch_size) is not None]
    return PracticeSummary(
        batch_size,
        len(ran),
        len(saving),
        sum(r.realised(batch_size) >= 0.5 for r in saving),
        sum(r.clock[batch_size] > 100.0 for r in ran),
        sum(r.executed[batch_size] > r.counted + GAP_POINTS for r in ran),
    )


def describe_record(record: Mapping) -> str:
    """Where a timing record comes from, in one line: device, torch, threads, date and command."""
    _check_record(record)
    p = record["provenance"]
    threads = sorted({m.get("threads") for m in record["measurements"] if m.get("threads") is not None})
    thread_text = f", {'/'.join(map(str, threads))} thread{'s' if threads != [1] else ''}" if threads else ""
    return f"{p['device_name']} ({p['device']}), torch {p.get('torch', '?')}{thread_text}; {p.get('date', '?')}, by {p.get('command', '?')}"


def latest_record(device_type: str = "cpu", results_dir=RESULTS_DIR) -> dict | None:
    """The most recent timing record made on a device of `device_type` ('cpu' or 'cuda'), or None."""
    if device_type not in ("cpu", "cuda"):
        raise ValueError(f"device_type must be 'cpu' or 'cuda', got {device_type!r}")
    found = [r for r in load_records(results_dir) if r["provenance"]["device"].split(":")[0] == device_type]
    return max(found, key=lambda r: r["provenance"]["date"]) if found else None
