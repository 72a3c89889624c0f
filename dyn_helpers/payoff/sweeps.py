"""The harness of "when dynamic networks pay": sweep one property of the data, and at each value
measure how far a dynamic model lies above or below the static front of its family.

A `Sweep` (registered with `sweep`) names a family (depth, spatial, temporal), the property it
varies and its values, how to build the `Task` at a value, how to train the dynamic method (its
operating points) and how to train its static family (one point each). For every value and seed
(`SEEDS`) `run_value` trains both, lets the leaderboard's rule pick the dynamic model's point on
validation (`board.choose`) and records the *gap*: its test accuracy minus the static front at its
counted FLOPs (`board.front_at`, the upper convex hull of the static points, which a random mix of
static networks reaches). Points are scored by `board.point`, so every FLOP count is verified by
the counter. One record per family (`book/results/payoff/<family>.json`), with a fingerprint of
the sources it used, the provenance and the elapsed seconds; `python -m dyn_helpers.tools.payoff`
makes them.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dyn_helpers.devices import provenance
from dyn_helpers.leaderboard.board import VAL_TOLERANCE, Point, Task, choose, front_at
from dyn_helpers.recorded import RESULTS_DIR
from dyn_helpers.repro import seed_everything
from dyn_helpers.tools.fingerprint import LOCK_FILE, helper_modules, module_file

# The training seeds of every sweep: spread apart, none of them a notebook's or the leaderboard's.
SEEDS = (17, 2531, 5059, 7589)
FAMILIES = ("depth", "spatial", "temporal")
RECORDS_DIR = RESULTS_DIR / "payoff"
COMMAND = "python -m dyn_helpers.tools.payoff"

TrainFn = Callable[[Task, int], Sequence[Point]]


@dataclass(frozen=True)
class Sweep:
    """One property of the data swept for one family: at each of `values`, `task(value)` is the data and
    budget, `dynamic(task, seed)` the method's operating points, `statics(task, seed)` its static family."""

    family: str
    name: str
    prop: str
    values: tuple[float, ...]
    method: str
    notebook: str
    task: Callable[[float], Task] = field(compare=False, repr=False)
    dynamic: TrainFn = field(compare=False, repr=False)
    statics: TrainFn = field(compare=False, repr=False)


_SWEEPS: dict[str, list[Sweep]] = {}


def sweep(
    family: str,
    name: str,
    *,
    prop: str,
    values: Sequence[float],
    method: str,
    notebook: str,
    task: Callable[[float], Task],
    dynamic: TrainFn,
    statics: TrainFn,
) -> Sweep:
    """Register the sweep `name` of `family` over `values` of the property described by `prop`."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    values = tuple(float(v) for v in values)
    if not values or list(values) != sorted(set(values)):
        raise ValueError(f"values must be a non-empty increasing sequence, got {values}")
    if not all(callable(f) for f in (task, dynamic, statics)):
        raise TypeError("task, dynamic and statics must be callable")
    registered = _SWEEPS.setdefault(family, [])
    if any(s.name == name for s in registered):
        raise ValueError(f"sweep {name!r} of {family!r} is registered twice")
    made = Sweep(family, name, prop, values, method, notebook, task, dynamic, statics)
    registered.append(made)
    return made


def sweeps(family: str) -> list[Sweep]:
    """The sweeps registered by the module `dyn_helpers.payoff.<family>`, in registration order."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    importlib.import_module(f"dyn_helpers.payoff.{family}")
    return list(_SWEEPS.get(family, []))


def gap(dynamic: Point, statics: Sequence[Point]) -> float:
    """Test accuracy of `dynamic` minus the static front at its test FLOPs, in points (%).

    Below the cheapest static network the front is that network's accuracy (generous to the statics).
    """
    if not statics:
        raise ValueError("statics must hold at least one point")
    front = front_at([(p.test_flops, p.test_acc) for p in statics], dynamic.test_flops)
    if front is None:
        front = min(statics, key=lambda p: p.test_flops).test_acc
    return 100 * (dynamic.test_acc - front)


def run_value(s: Sweep, task: Task, seed: int) -> dict:
    """Train the dynamic method and the static family of `s` on `task` under `seed`; score the gap."""
    seed_everything(seed)
    dynamic = list(s.dynamic(task, seed))
    seed_everything(seed)
    statics = list(s.statics(task, seed))
    chosen = choose(dynamic)
    return {
        "seed": seed,
        "chosen": chosen.setting,
        "gap": gap(chosen, statics),
        "best_gap": max(gap(p, statics) for p in dynamic),
        "dynamic": [p.as_dict() for p in dynamic],
        "statics": [p.as_dict() for p in statics],
    }


def run_sweep(s: Sweep, seeds: Sequence[int] = SEEDS) -> dict:
    """Every value of the sweep under every seed: the points and gaps (see `run_value`)."""
    rows = []
    for value in s.values:
        task = s.task(value)
        budget = {"epochs": task.epochs, "lr": task.lr, "batch_size": task.batch_size}
        runs = [run_value(s, task, seed) for seed in seeds]
        rows.append({"value": value, "task": task.title, "budget": budget, "runs": runs})
    return {"sweep": s.name, "property": s.prop, "method": s.method, "notebook": s.notebook, "values": rows}


def fingerprint(family: str) -> str:
    """SHA-256 over the sources the family's module uses, the lock file, the seeds and the rule."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    digest = hashlib.sha256()
    relative = f"payoff.{family}"
    sources = [module_file(relative).read_text(encoding="utf-8"), "import dyn_helpers." + relative]
    for name in helper_modules(sources):
        digest.update(name.encode() + b"\0" + module_file(name).read_bytes() + b"\0")
    digest.update(Path(LOCK_FILE).read_bytes())
    digest.update(repr((SEEDS, VAL_TOLERANCE)).encode())
    return digest.hexdigest()


def run_family(family: str, seeds: Sequence[int] = SEEDS) -> dict:
    """The record of `family`: every sweep under `seeds`, with fingerprint, elapsed seconds and provenance."""
    start = time.perf_counter()
    swept = [run_sweep(s, seeds) for s in sweeps(family)]
    return {
        "family": family,
        "seeds": list(seeds),
        "sweeps": swept,
        "fingerprint": fingerprint(family),
        "elapsed_s": round(time.perf_counter() - start, 1),
        "command": COMMAND,
        "provenance": provenance("cpu"),
    }


def record_path(family: str, records_dir: Path = RECORDS_DIR) -> Path:
    """Where the record of `family` is stored."""
    return records_dir / f"{family}.json"


def load(family: str, records_dir: Path = RECORDS_DIR) -> dict | None:
    """The stored record of `family`, or None if there is none."""
    path = record_path(family, records_dir)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def is_current(family: str, records_dir: Path = RECORDS_DIR) -> bool:
    """Whether `family` has a record made from today's code, lock and seeds."""
    record = load(family, records_dir)
    return (
        record is not None
        and record.get("fingerprint") == fingerprint(family)
        and record["seeds"] == list(SEEDS)
    )
