"""What the leaderboard page shows, read from the committed records: one row per method, each
board's static front on FLOPs and on the clock, and the sortable table.

A method's *gap* in a seed is its test accuracy at its chosen point minus the static front of that
seed at its counted FLOPs (`board.front_at`); a sign test over the seeds says whether it is ahead of
the front. On the clock, the front is drawn from the static networks' times per input at each batch
size, and a method's gap is read at its own time (`clock_gap`).
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from dyn_helpers import stats
from dyn_helpers.leaderboard import board as lb

# The notebooks that teach no method of their own to put on the board, and why.
NOT_ON_THE_BOARD = {
    "introduction": "the book's introduction: a static network's accuracy against its width",
    "slowdown_attacks": "an attack on early exits, measured on the early-exit network of the board",
    "theory_vs_practice": "measures how the other methods' FLOPs savings turn into time",
    "counterfactual_routing": "probes what the other methods' decisions follow",
    "leaderboard": "this page",
    "when_dynamic_pays": "sweeps of the data for the board's families",
}
ALPHA = 0.05


@dataclass(frozen=True)
class Row:
    """One entry's standing: accuracy, FLOPs counted and executed, gap to the front, time per input."""

    name: str
    label: str
    family: str
    board: str
    notebook: str
    accuracy: stats.Summary
    counted: float
    executed: float
    gaps: tuple[float, ...]
    seconds: Mapping[int, float]

    @property
    def is_static(self) -> bool:
        """Whether the row is one of the board's static networks."""
        return self.family == "static"

    @property
    def gap(self) -> stats.Summary | None:
        """The gap to the static front over the seeds, in points (None for a static row)."""
        return stats.summary(self.gaps) if self.gaps else None

    @property
    def ahead(self) -> stats.SignTest | None:
        """The sign test of the gaps being positive (None for a static row)."""
        return stats.sign_test(self.gaps, side="positive") if self.gaps else None

    @property
    def verdict(self) -> str:
        """'ahead of', 'behind' or 'level with' the static front, by one-sided sign tests over the seeds."""
        if not self.gaps:
            return "static"
        if self.ahead.p_value < ALPHA:
            return "ahead of"
        return "behind" if stats.sign_test(self.gaps, side="negative").p_value < ALPHA else "level with"


def _chosen(run: Mapping) -> Mapping:
    return next(p for p in run["points"] if p["setting"] == run["chosen"])


def load_records(records_dir: Path = lb.RECORDS_DIR) -> dict[str, dict]:
    """Every registered entry's record, by name; an entry without a current record is an error."""
    found, stale = {}, []
    for name, e in lb.entries().items():
        record = lb.load(e, records_dir)
        if (
            record is None
            or record.get("fingerprint") != lb.fingerprint(e)
            or record["seeds"] != list(lb.SEEDS)
        ):
            stale.append(name)
        else:
            found[name] = record
    if stale:
        raise RuntimeError(f"no current record for {stale}: run `make leaderboard`")
    return found


def load_timing(records: Mapping[str, Mapping], records_dir: Path = lb.RECORDS_DIR) -> dict:
    """The CPU timing record; it must time every entry of `records` from the same fingerprint."""
    path = lb.timing_path(records_dir)
    if not path.is_file():
        raise RuntimeError(f"no timing record at {path}: run `make leaderboard`")
    timing = json.loads(path.read_text(encoding="utf-8"))
    off = sorted(
        n for n, r in records.items() if timing["entries"].get(n, {}).get("fingerprint") != r["fingerprint"]
    )
    if off or set(timing["entries"]) != set(records):
        raise RuntimeError(
            f"the timing record is not current for {off or 'removed entries'}: run `make leaderboard`"
        )
    return timing


def statics_by_seed(records: Mapping[str, Mapping], board_name: str) -> dict[int, list[tuple[float, float]]]:
    """Each seed's static (counted FLOPs, test accuracy %) points on `board_name`."""
    points: dict[int, list[tuple[float, float]]] = {}
    for r in records.values():
        if r["board"] == board_name and r["family"] == "static":
            for run in r["runs"]:
                p = _chosen(run)
                points.setdefault(run["seed"], []).append((p["test_flops"], p["test_acc"]))
    return points


def rows(records: Mapping[str, Mapping], timing: Mapping) -> list[Row]:
    """One row per entry, in registration order."""
    fronts = {b: statics_by_seed(records, b) for b in {r["board"] for r in records.values()}}
    found = []
    for name, r in records.items():
        chosen = [_chosen(run) for run in r["runs"]]
        gaps = []
        if r["family"] != "static":
            for run, p in zip(r["runs"], chosen, strict=True):
                statics = fronts[r["board"]][run["seed"]]
                front = lb.front_at(statics, p["test_flops"])
                # Cheaper than every static network: measured against the cheapest, which costs more.
                gaps.append(p["test_acc"] - (front if front is not None else min(statics)[1]))
        found.append(
            Row(
                name,
                r["label"],
                r["family"],
                r["board"],
                r["notebook"],
                stats.summary([p["test_acc"] for p in chosen]),
                stats.summary([p["test_flops"] for p in chosen]).mean,
                stats.summary([run["executed_flops"] for run in r["runs"]]).mean,
                tuple(gaps),
                {int(b): s for b, s in timing["entries"][name]["s_per_input"].items()},
            )
        )
    return found


def front_line(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The front's corners: the points of the upper convex hull that `front_at` reads, cheapest first."""
    corners = []
    for f, a in sorted(points):
        if lb.front_at(points, f) is not None and a >= lb.front_at(points, f) - 1e-9:
            corners.append((f, a))
    return corners


def clock_gap(row: Row, board_rows: Sequence[Row], batch_size: int) -> float:
    """`row`'s mean accuracy minus the static front on the clock at its time per input at `batch_size`.

    The front's points are the static rows' (time per input, mean accuracy); below the fastest
    static network the front is that network's accuracy.
    """
    statics = [
        (r.seconds[batch_size], r.accuracy.mean) for r in board_rows if r.is_static and r.board == row.board
    ]
    if not statics:
        raise ValueError(f"board {row.board!r} has no static rows")
    front = lb.front_at(statics, row.seconds[batch_size])
    return row.accuracy.mean - (front if front is not None else min(statics)[1])


def sortable_table(found: Sequence[Row], batch_sizes: Sequence[int] = (1, 256)) -> str:
    """The rows as an HTML table that the book's `sortable.js` sorts by any column (click its header),
    in a box that scrolls sideways on a narrow page."""
    head = [
        "Method",
        "Family",
        "Board",
        "Test accuracy (%)",
        "Counted MFLOPs",
        "Executed MFLOPs (batch 256)",
        "Gap to the static front (points)",
        "Seeds ahead",
        *(f"µs per input, batch {b}" for b in batch_sizes),
    ]
    lines = [
        '<div class="dyn-leaderboard-scroll">',
        '<table class="sortable dyn-leaderboard">',
        "<thead><tr>",
    ]
    lines += [f'<th scope="col">{html.escape(h)}</th>' for h in head]
    lines.append("</tr></thead><tbody>")
    for r in found:
        cells = [
            (r.label, f'<a href="../{_part(r.notebook)}/{r.notebook}.html">{html.escape(r.label)}</a>'),
            (r.family, html.escape(r.family)),
            (r.board, html.escape(r.board)),
            (r.accuracy.mean, f"{r.accuracy.mean:.1f} ± {r.accuracy.sd:.1f}"),
            (r.counted, f"{r.counted / 1e6:.3f}"),
            (r.executed, f"{r.executed / 1e6:.3f}"),
            (r.gap.mean if r.gap else "", f"{r.gap.mean:+.1f} ± {r.gap.sd:.1f}" if r.gap else "front"),
            (r.ahead.n_positive if r.ahead else "", f"{r.ahead.n_positive} of {r.gap.n}" if r.ahead else ""),
            *((r.seconds[b] * 1e6, f"{r.seconds[b] * 1e6:.0f}") for b in batch_sizes),
        ]
        lines.append(
            "<tr>" + "".join(f'<td data-sort="{html.escape(str(k))}">{v}</td>' for k, v in cells) + "</tr>"
        )
    lines.append("</tbody></table></div>")
    return "\n".join(lines)


def _part(notebook: str) -> str:
    matches = sorted(lb.RESULTS_DIR.parent.parent.glob(f"chapters/*/{notebook}.ipynb"))
    if len(matches) != 1:
        raise ValueError(f"no single chapter notebook is called {notebook!r}")
    return matches[0].parent.name


def check_coverage(chapters_dir: Path | None = None) -> list[str]:
    """Every chapter notebook is on the board or in `NOT_ON_THE_BOARD`; returns the notebooks on the board."""
    chapters_dir = chapters_dir or lb.RESULTS_DIR.parent.parent / "chapters"
    notebooks = {p.stem for p in chapters_dir.glob("*/*.ipynb")}
    on_board = {e.notebook for e in lb.entries().values()}
    unknown = sorted(on_board - notebooks)
    if unknown:
        raise ValueError(f"entries name notebooks that do not exist: {unknown}")
    missing = sorted(notebooks - on_board - set(NOT_ON_THE_BOARD))
    if missing:
        raise ValueError(f"notebooks with no entry on the board and no reason given: {missing}")
    both = sorted(on_board & set(NOT_ON_THE_BOARD))
    if both:
        raise ValueError(f"notebooks both on the board and listed as not on it: {both}")
    return sorted(on_board)
