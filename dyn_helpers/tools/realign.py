"""Move a notebook's output calibration onto its current code cells, without re-running it.

The calibration record (`dyn_helpers.tools.calibrate`) keys the spread of every compared output
by the ordinal of its code cell. Inserting a cell that computes nothing trained (a diagram of the
mechanism, a worked example), splitting a cell, or removing one shifts those ordinals although no
calibrated number changed. After re-executing the notebook (`make notebooks NOTEBOOKS=...`),
`python -m dyn_helpers.tools.realign NOTEBOOK ...` matches the stored outputs, cell by cell and in
order, to the calibrated ones of the same shape and moves their rows to the new ordinals.

A cell whose outputs match no calibrated cell is refused, unless `--exact-new` says that its
numbers do not depend on the seed or the processor (the cell trains nothing): they are then
recorded with spread 0 and compared as printed. A cell that prints the same numbers in a new
layout (an f-string table turned into a `harness.Table`) is matched with `--reformatted-from
OLD.ipynb`, the executed notebook the record was calibrated on: each new output whose numbers are
exactly a run of one old cell's numbers, in order, takes their calibrated spread. Anything else
needs `make calibrate`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import nbformat

from dyn_helpers.tools import calibrate, runs


def _by_cell(rows: Sequence[Mapping[str, Any]]) -> list[tuple[int, list[Mapping[str, Any]]]]:
    """Rows grouped by cell ordinal, in order; within a cell, by field and index."""
    groups: dict[int, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["cell"], []).append(row)
    return [
        (cell, sorted(group, key=lambda r: (r["field"], r["index"])))
        for cell, group in sorted(groups.items())
    ]


def _row_matches(row: Mapping[str, Any], out: Mapping[str, Any]) -> bool:
    if (row["field"], row["index"]) != (out["field"], out["index"]):
        return False
    if row.get("varies"):
        return set(out["skeleton"].split("\n")) <= set(row.get("line_skeletons", []))
    return row.get("skeleton") == out["skeleton"]


def _cell_matches(rows: Sequence[Mapping[str, Any]], outs: Sequence[Mapping[str, Any]]) -> bool:
    """Every output of a cell has a calibrated row of its shape (a calibrated cell may have printed
    more, such as a warning seen under some seeds only)."""
    return all(any(_row_matches(row, out) for row in rows) for out in outs)


def _calibrated_numbers(
    previous: nbformat.NotebookNode, old: Sequence[tuple[int, list[Mapping[str, Any]]]]
) -> dict[int, tuple[list[float], list[float]]]:
    """The numbers each calibrated cell printed in `previous`, in order, with their spreads.

    Raises `ValueError` where `previous` does not print what the record calibrated.
    """
    printed = _by_cell(calibrate.output_numbers(previous, calibrate.sanitizer()))
    printed_by_cell = dict(printed)
    numbers = {}
    for cell, rows in old:
        by_key = {(r["field"], r["index"]): r for r in rows}
        values: list[float] = []
        spreads: list[float] = []
        for out in printed_by_cell.get(cell, []):
            row = by_key.get((out["field"], out["index"]))
            if row is not None and row.get("varies"):
                values, spreads = [], []  # an output whose shape varies is never reformatted
                break
            if row is None or row.get("skeleton") != out["skeleton"]:
                raise ValueError(
                    f"code cell {cell} of the previous notebook does not print what the record "
                    "calibrated; pass the executed notebook the record was calibrated on"
                )
            if out["field"] not in ("text/markdown", "text/html"):  # these repeat text/plain
                values += out["values"]
                spreads += row["sd"]
        numbers[cell] = (values, spreads)
    return numbers


def _printed(previous: nbformat.NotebookNode) -> dict[int, dict[tuple[str, int], list[float]]]:
    """The numbers of each output of `previous`, by cell ordinal, then field and index."""
    printed: dict[int, dict[tuple[str, int], list[float]]] = {}
    for out in calibrate.output_numbers(previous, calibrate.sanitizer()):
        printed.setdefault(out["cell"], {})[(out["field"], out["index"])] = out["values"]
    return printed


def _same_numbers(
    printed: Mapping[tuple[str, int], list[float]] | None, outs: Sequence[Mapping[str, Any]]
) -> bool:
    """Whether outputs of the same shape also print the numbers the previous notebook printed
    there (always, without a previous notebook); this tells apart cells of one shape, such as
    hidden glue cells, that a re-run on the same platform leaves unchanged."""
    if printed is None:
        return True
    return all(printed.get((out["field"], out["index"])) == out["values"] for out in outs)


def _reformatted(
    outs: Sequence[Mapping[str, Any]], numbers: tuple[list[float], list[float]]
) -> list[dict[str, Any]] | None:
    """Rows for outputs whose numbers each form one run of a calibrated cell's numbers, or None.

    A run that occurs more than once must carry the same spreads wherever it occurs.
    """
    values, spreads = numbers
    rows = []
    for out in outs:
        n = len(out["values"])
        starts = [i for i in range(len(values) - n + 1) if values[i : i + n] == out["values"]]
        found = {tuple(spreads[i : i + n]) for i in starts}
        if n == 0 or len(found) != 1:
            return None
        rows.append({**{k: out[k] for k in ("field", "index", "skeleton")}, "sd": list(found.pop())})
    return rows


def realigned_outputs(
    nb: nbformat.NotebookNode,
    record: Mapping[str, Any],
    exact_new: bool = False,
    previous: nbformat.NotebookNode | None = None,
) -> list[dict[str, Any]]:
    """The record's output rows moved onto the ordinals of `nb`'s stored outputs.

    Raises `ValueError` for a cell whose outputs match no calibrated cell after the previous
    match, unless `previous` (the notebook the record was calibrated on) shows the same numbers
    in an old layout, or `exact_new`, which records its numbers with spread 0.
    """
    old = _by_cell(record.get("outputs", []))
    new = _by_cell(calibrate.output_numbers(nb, calibrate.sanitizer()))
    numbers = None if previous is None else _calibrated_numbers(previous, old)
    printed = {} if previous is None else _printed(previous)
    moved: list[dict[str, Any]] = []
    start = 0
    for cell, outs in new:
        found = next(
            (
                k
                for k in range(start, len(old))
                if _cell_matches(old[k][1], outs) and _same_numbers(printed.get(old[k][0]), outs)
            ),
            None,
        )
        reformatted = None
        if found is None and numbers is not None:
            for k in range(start, len(old)):
                reformatted = _reformatted(outs, numbers[old[k][0]])
                if reformatted is not None:
                    start = k
                    break
        if found is not None:
            moved += [{**row, "cell": cell} for row in old[found][1]]
            start = found  # a calibrated cell may be split into consecutive cells
        elif reformatted is not None:
            moved += [{**row, "cell": cell} for row in reformatted]
        elif exact_new:
            moved += [
                {
                    "cell": cell,
                    "field": out["field"],
                    "index": out["index"],
                    "skeleton": out["skeleton"],
                    "sd": [0.0] * len(out["values"]),
                    "exact": True,
                }
                for out in outs
            ]
        else:
            raise ValueError(
                f"code cell {cell}: its outputs match no calibrated cell; if it prints calibrated "
                "numbers in a new layout, pass --reformatted-from; if it trains nothing, pass "
                "--exact-new; otherwise run `make calibrate`"
            )
    return moved


def realign(
    paths: Sequence[str | os.PathLike[str]],
    exact_new: bool = False,
    previous: Sequence[str | os.PathLike[str]] | None = None,
) -> None:
    """Rewrite the output calibration of each notebook in `paths` for its current cells.

    `previous`, one per path, names the executed notebooks the records were calibrated on.
    """
    if previous is not None and len(previous) != len(paths):
        raise ValueError(f"give one previous notebook per notebook: {len(previous)} for {len(paths)}")
    for i, path in enumerate(paths):
        notebook = runs.check_notebook(path)
        key = runs.record_key(notebook)
        record = calibrate.load_record(key)
        if not record:
            raise ValueError(f"{key} has no calibration record to realign; run `make calibrate`")
        nb = nbformat.read(notebook, as_version=4)
        old = nbformat.read(previous[i], as_version=4) if previous else None
        record = {**record, "outputs": realigned_outputs(nb, record, exact_new, old)}
        calibrate.record_file(key).write_text(
            json.dumps(record, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        print(f"{key}: {len(record['outputs'])} calibrated outputs realigned")


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m dyn_helpers.tools.realign", description=__doc__.split("\n")[0]
    )
    parser.add_argument("notebooks", nargs="+", help="notebooks whose record to realign (.ipynb)")
    parser.add_argument(
        "--exact-new",
        action="store_true",
        help="record the outputs of new cells with spread 0 (only for cells that train nothing)",
    )
    parser.add_argument(
        "--reformatted-from",
        nargs="+",
        metavar="OLD",
        help="the executed notebooks the records were calibrated on, one per notebook, for cells "
        "that print the same numbers in a new layout",
    )
    args = parser.parse_args(argv)
    realign(args.notebooks, args.exact_new, args.reformatted_from)
    return 0


if __name__ == "__main__":
    sys.exit(main())
