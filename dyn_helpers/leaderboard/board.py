"""The leaderboard's harness: one common task per board, one training budget, one set of seeds,
one measurement, and one record per method.

A *board* is a task every method on it is trained and measured on (`Task`, registered with
`register_board`). An *entry* is one method of the book (`Entry`, registered with `entry`): a function
`train(task, seed)` that trains the method with the task's budget and returns its *operating
points* (`Point`), one per setting of its knob (a threshold, a budget, a number of tokens). Every
point is scored the same way by `point`: accuracy on the validation and test splits, and the FLOPs
counted for each input, checked against `torch.utils.flop_counter` on inputs run one at a time.

The board then chooses one operating point per seed by one rule (`choose`): the cheapest point
whose validation accuracy is within `VAL_TOLERANCE` of the best of the method's points. The
static entries of a board (family "static") draw its *front*: the upper convex hull of their
(FLOPs, accuracy) points, since a random mix of two static networks reaches any point between
them (`front_at`). `python -m dyn_helpers.tools.leaderboard` (`make leaderboard`) writes the
records; the chapter's leaderboard page reads them.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import pkgutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import torch

from dyn_helpers import train
from dyn_helpers.data import Splits
from dyn_helpers.devices import provenance
from dyn_helpers.measure import count_flops, flops_per_input, flops_per_sample, latency
from dyn_helpers.outputs import logits_of
from dyn_helpers.recorded import RESULTS_DIR
from dyn_helpers.repro import seed_everything
from dyn_helpers.tools.fingerprint import LOCK_FILE, helper_modules, module_file

# The seeds every entry is trained under: spread apart, none of them a notebook's default.
SEEDS = (11, 1601, 3203, 4801, 6421)
# A point is chosen if its validation accuracy is at most this far (a fraction) below the best.
VAL_TOLERANCE = 0.01
# How many test inputs of each chosen point are re-counted one at a time by the FLOP counter.
CHECKED_INPUTS = 24
FAMILIES = ("static", "depth", "width", "routing", "parameters", "spatial", "temporal")
RECORDS_DIR = RESULTS_DIR / "leaderboard"
EVAL_BATCH = 256
# Executed FLOPs are counted on one batch of this size; latency is timed at each of TIMED_BATCHES
# on the first TIMED_INPUTS test inputs.
EXECUTED_BATCH = 256
TIMED_BATCHES = (1, 16, 256)
TIMED_INPUTS = 512
COMMAND = "python -m dyn_helpers.tools.leaderboard"


@dataclass(frozen=True)
class Task:
    """A board's common task: its data and the training budget every entry on it gets.

    `epochs` is the whole budget: a method trained in stages splits it between them.
    """

    name: str
    title: str
    splits: Splits
    epochs: int
    lr: float = 1e-2
    batch_size: int = 128

    def fit(self, model: torch.nn.Module, seed: int, *, epochs: int | None = None, **kwargs) -> list[float]:
        """`dyn_helpers.train.fit` on the training split with this task's budget (or `epochs` of it)."""
        epochs = self.epochs if epochs is None else epochs
        if not 1 <= epochs <= self.epochs:
            raise ValueError(f"epochs must lie in [1, {self.epochs}] (the task's budget), got {epochs}")
        kwargs.setdefault("desc", self.name)
        return train.fit(
            model,
            self.splits.train,
            epochs=epochs,
            lr=self.lr,
            batch_size=self.batch_size,
            seed=seed,
            **kwargs,
        )


@dataclass(frozen=True)
class Point:
    """One operating point of a trained method, scored on the validation and test splits.

    `run` is the real batched execution at this setting (inputs to logits or a `ModelOutput`);
    it is what the leaderboard times and counts as *executed*. FLOPs are means per input of what
    each input's decisions allow (*counted*).
    """

    setting: str
    val_acc: float
    test_acc: float
    val_flops: float
    test_flops: float
    run: Callable[[torch.Tensor], object] = field(compare=False, repr=False)

    def as_dict(self) -> dict:
        """The point's numbers, JSON-ready (accuracies in %)."""
        return {
            "setting": self.setting,
            "val_acc": 100 * self.val_acc,
            "test_acc": 100 * self.test_acc,
            "val_flops": self.val_flops,
            "test_flops": self.test_flops,
        }


@torch.no_grad()
def _logits(run: Callable[[torch.Tensor], object], x: torch.Tensor) -> torch.Tensor:
    return torch.cat([logits_of(run(batch)) for batch in torch.split(x, EVAL_BATCH)])


def point(
    task: Task,
    setting: str,
    run: Callable[[torch.Tensor], object],
    *,
    flops_each: Callable[[torch.Tensor], torch.Tensor] | None = None,
    counted: Callable[[torch.Tensor], object] | None = None,
) -> Point:
    """Score one operating point of a trained method on `task`.

    `flops_each(x)` gives the FLOPs each input of `x` is charged (a tensor of length len(x)),
    computed from the method's decisions; None means the cost is the same for every input (a
    static network) and is counted once. Either way the first `CHECKED_INPUTS` test inputs are
    re-counted one at a time by the FLOP counter through `counted` (default `run`: an execution
    that really skips), and a mismatch over 1% is an error: the leaderboard's FLOPs are counted,
    never assumed.
    """
    if not isinstance(setting, str) or not setting.strip():
        raise ValueError(f"setting must be a non-empty string, got {setting!r}")
    if not callable(run) or (counted is not None and not callable(counted)):
        raise TypeError("run (and counted, if given) must be callable on a batch of inputs")
    splits = task.splits
    counter = run if counted is None else counted
    if flops_each is None:
        fixed = float(count_flops(counter, splits.test.x[:1]))
        val_flops = test_flops = fixed
        claimed = torch.full((CHECKED_INPUTS,), fixed)
    else:
        val_each, test_each = flops_each(splits.val.x), flops_each(splits.test.x)
        for name, each, x in (("val", val_each, splits.val.x), ("test", test_each, splits.test.x)):
            if not isinstance(each, torch.Tensor) or each.shape != (len(x),):
                raise ValueError(f"flops_each must return one value per input ({len(x)}) on {name}")
        val_flops, test_flops = val_each.double().mean().item(), test_each.double().mean().item()
        claimed = test_each[:CHECKED_INPUTS].double()
    measured = flops_per_sample(counter, splits.test.x[:CHECKED_INPUTS]).double()
    off = (claimed - measured).abs() > 0.01 * measured.clamp(min=1)
    if off.any():
        i = int(off.nonzero()[0])
        raise ValueError(
            f"{setting}: test input {i} is charged {claimed[i]:.0f} FLOPs, but the counter measures "
            f"{measured[i]:.0f} when it runs alone"
        )
    _, val_acc = train.loss_and_accuracy(_logits(run, splits.val.x), splits.val.y)
    _, test_acc = train.loss_and_accuracy(_logits(run, splits.test.x), splits.test.y)
    return Point(setting.strip(), val_acc, test_acc, val_flops, test_flops, run)


def choose(points: Sequence[Point]) -> Point:
    """The board's one rule: the cheapest point (validation FLOPs) within `VAL_TOLERANCE` of the best validation accuracy."""
    if not points or not all(isinstance(p, Point) for p in points):
        raise ValueError("points must be a non-empty sequence of Point")
    settings = [p.setting for p in points]
    if len(set(settings)) != len(settings):
        raise ValueError(f"settings must be distinct, got {settings}")
    best = max(p.val_acc for p in points)
    return min(
        (p for p in points if p.val_acc >= best - VAL_TOLERANCE), key=lambda p: (p.val_flops, -p.val_acc)
    )


def front_at(statics: Sequence[tuple[float, float]], flops: float) -> float | None:
    """Accuracy of the static front at `flops`: the upper convex hull of the static (FLOPs, accuracy)
    points, read at `flops`; None below the cheapest static network.

    A random mix of two static networks that sends a share of the inputs to each reaches every
    point on the segment between them, so the hull, not the points, is what a dynamic model must beat.
    """
    if not statics:
        raise ValueError("statics must hold at least one (flops, accuracy) point")
    pts = sorted(statics)
    if flops < pts[0][0]:
        return None
    hull: list[tuple[float, float]] = []
    for p in pts:  # Andrew's monotone chain, upper half
        while len(hull) >= 2 and _cross(hull[-2], hull[-1], p) >= 0:
            hull.pop()
        hull.append(p)
    best = max(a for f, a in pts if f <= flops)
    for (f0, a0), (f1, a1) in zip(hull, hull[1:], strict=False):
        if f0 <= flops <= f1 and f1 > f0:
            best = max(best, a0 + (a1 - a0) * (flops - f0) / (f1 - f0))
    return best


def _cross(o: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


@dataclass(frozen=True)
class Entry:
    """A method on a board: what it is, where the book teaches it, and how to train it."""

    name: str
    label: str
    family: str
    board: str
    notebook: str
    train: Callable[[Task, int], Sequence[Point]] = field(compare=False, repr=False)
    module: str = ""

    @property
    def is_static(self) -> bool:
        """Whether the entry is one of the board's static networks (its front)."""
        return self.family == "static"


_BOARDS: dict[str, Callable[[], Task]] = {}
_ENTRIES: dict[str, Entry] = {}


def register_board(name: str) -> Callable[[Callable[[], Task]], Callable[[], Task]]:
    """Register `make()` as the task of the board called `name` (built once, on first use)."""

    def register(make: Callable[[], Task]) -> Callable[[], Task]:
        if name in _BOARDS:
            raise ValueError(f"board {name!r} is registered twice")
        _BOARDS[name] = cache(make)
        return make

    return register


def entry(
    name: str, *, label: str, family: str, board: str, notebook: str
) -> Callable[[Callable[[Task, int], Sequence[Point]]], Callable[[Task, int], Sequence[Point]]]:
    """Register `train(task, seed) -> points` as the entry `name` of `board`, taught in `notebook`."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")

    def register(fn: Callable[[Task, int], Sequence[Point]]) -> Callable[[Task, int], Sequence[Point]]:
        if name in _ENTRIES:
            raise ValueError(f"entry {name!r} is registered twice")
        _ENTRIES[name] = Entry(name, label, family, board, notebook, fn, fn.__module__)
        return fn

    return register


def _import_all() -> None:
    package = importlib.import_module("dyn_helpers.leaderboard")
    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"dyn_helpers.leaderboard.{info.name}")


def entries(board_name: str | None = None) -> dict[str, Entry]:
    """Every registered entry (of `board_name`, if given), by name, in registration order."""
    _import_all()
    if board_name is not None and board_name not in _BOARDS:
        raise ValueError(f"unknown board {board_name!r}; known: {sorted(_BOARDS)}")
    unknown = sorted({e.board for e in _ENTRIES.values()} - set(_BOARDS))
    if unknown:
        raise ValueError(f"entries name boards nobody registered: {unknown}")
    return {n: e for n, e in _ENTRIES.items() if board_name is None or e.board == board_name}


def task(board_name: str) -> Task:
    """The task of the board called `board_name`."""
    _import_all()
    if board_name not in _BOARDS:
        raise ValueError(f"unknown board {board_name!r}; known: {sorted(_BOARDS)}")
    return _BOARDS[board_name]()


def boards() -> list[str]:
    """The registered boards, in registration order."""
    _import_all()
    return list(_BOARDS)


def fingerprint(e: Entry) -> str:
    """SHA-256 over the sources the entry's module uses, the lock file, the seeds and the rule."""
    digest = hashlib.sha256()
    relative = e.module.removeprefix("dyn_helpers.")
    for name in helper_modules(
        [module_file(relative).read_text(encoding="utf-8"), "import dyn_helpers." + relative]
    ):
        digest.update(name.encode() + b"\0" + module_file(name).read_bytes() + b"\0")
    digest.update(Path(LOCK_FILE).read_bytes())
    digest.update(repr((SEEDS, VAL_TOLERANCE, CHECKED_INPUTS)).encode())
    return digest.hexdigest()


def record_path(e: Entry, records_dir: Path = RECORDS_DIR) -> Path:
    """Where the multi-seed record of entry `e` is stored."""
    return records_dir / e.board / f"{e.name}.json"


def train_points(e: Entry, seed: int) -> list[Point]:
    """Train entry `e` under `seed` (after `repro.seed_everything`) and return its operating points."""
    seed_everything(seed)
    points = list(e.train(task(e.board), seed))
    if not points or not all(isinstance(p, Point) for p in points):
        raise TypeError(
            f"entry {e.name!r} must return a non-empty list of Point (dyn_helpers.leaderboard.point)"
        )
    if e.is_static and len(points) != 1:
        raise ValueError(f"static entry {e.name!r} must return exactly one point, got {len(points)}")
    return points


def run_entry(e: Entry, seeds: Sequence[int] = SEEDS) -> dict:
    """The multi-seed record of entry `e`: every seed's points, the chosen one and its executed FLOPs."""
    t = task(e.board)
    start = time.perf_counter()
    runs = []
    for seed in seeds:
        points = train_points(e, seed)
        chosen = choose(points)
        executed = flops_per_input(chosen.run, t.splits.test.x, batch_size=EXECUTED_BATCH)
        runs.append(
            {
                "seed": seed,
                "points": [p.as_dict() for p in points],
                "chosen": chosen.setting,
                "executed_flops": executed,
            }
        )
    return {
        "entry": e.name,
        "label": e.label,
        "family": e.family,
        "board": e.board,
        "notebook": e.notebook,
        "task": t.title,
        "budget": {"epochs": t.epochs, "lr": t.lr, "batch_size": t.batch_size},
        "seeds": list(seeds),
        "runs": runs,
        "fingerprint": fingerprint(e),
        "elapsed_s": round(time.perf_counter() - start, 1),
        "command": COMMAND,
        "provenance": provenance("cpu"),
    }


def time_entry(e: Entry, record: dict, min_run_time: float = 0.5) -> dict:
    """CPU latency of entry `e` at its chosen point under the record's first seed, retrained.

    Training is deterministic for a seed on one machine, so the retrained model chooses the
    record's setting; a different choice is an error (the record was made elsewhere).
    """
    seed = record["seeds"][0]
    chosen = choose(train_points(e, seed))
    if chosen.setting != record["runs"][0]["chosen"]:
        raise RuntimeError(
            f"{e.name}: retrained under seed {seed} it chooses {chosen.setting!r}, the record "
            f"{record['runs'][0]['chosen']!r}; remake the record on this machine"
        )
    x = task(e.board).splits.test.x[:TIMED_INPUTS]
    times = {
        str(b): latency(chosen.run, x, batch_size=b, label=e.name, min_run_time=min_run_time).median_s / b
        for b in TIMED_BATCHES
    }
    return {
        "entry": e.name,
        "seed": seed,
        "setting": chosen.setting,
        "fingerprint": record["fingerprint"],
        "s_per_input": times,
    }


def load(e: Entry, records_dir: Path = RECORDS_DIR) -> dict | None:
    """The stored record of entry `e`, or None if there is none."""
    path = record_path(e, records_dir)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def is_current(e: Entry, records_dir: Path = RECORDS_DIR) -> bool:
    """Whether `e` has a record made from today's code, lock and seeds."""
    record = load(e, records_dir)
    return (
        record is not None and record.get("fingerprint") == fingerprint(e) and record["seeds"] == list(SEEDS)
    )


def timing_path(records_dir: Path = RECORDS_DIR) -> Path:
    """Where the CPU timing record of every entry is stored."""
    return records_dir / "timing-cpu.json"
