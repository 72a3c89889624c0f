"""Leaderboard entries of chapters 6 and 7 on the 1-D board: early exits beyond the chain of chapter 2.

Every entry trains one multi-exit network per seed with the summed exit loss
(`training.exit_objectives.summed_exit_loss`) for the task's whole budget, counts the FLOPs of
reaching each exit once on one input, and derives its operating points from that one network:

- `risk_controlled_exit` (guaranteed_exits): the book's `MultiExitCNN` (4 blocks of 48); its
  confidence threshold is the one Learn-then-Test certifies on the validation split
  (`open_problems.risk_control.guaranteed_threshold`: disagreement with the last exit, binomial
  bound, delta = `DELTA`, the notebook's grid), one setting per risk level epsilon in `EPSILONS`.
  Where nothing is certified the full network answers.
- `dense_exits` (exit_interference): `open_problems.architecture.DenseExitCNN` at the board's scale,
  4 blocks of 48 channels (the notebook uses 16 to provoke interference), exiting early at each
  confidence threshold of `THRESHOLDS`; `dense_exit_early` is that batched early exit, since the
  kit's model only runs every exit (or up to a fixed one).
- `exit_transformer_confidence` and `exit_transformer_patience` (early_exit_transformer): the kit's
  `applications.text.ExitTransformer` (4 blocks of width 48, 2 heads, MLP ratio 2) reading
  MNIST-1D as 10 tokens, each a patch of 4 samples embedded linearly (`SignalExitTransformer`, a
  thin embedding around the kit's blocks and exits); the confidence rule (DeeBERT) at each of
  `THRESHOLDS`, the patience rule (PABEE) at each patience from 1 to 3 (3 always runs every block).
  The board's batch size (128) replaces the notebook's 64.
- `anytime_deadline` (anytime_deadline): the book's `MultiExitCNN` answered by the controller of
  `applications.deadline` on the deterministic FLOPs clock (`SimulatedClock`), with step estimates
  so that no step is started that would end after the deadline; the knob is one deadline shared by
  every input, `DEADLINES` in blocks (the full network's FLOPs over its depth), as in the
  notebook's idle-CPU table (its background load, a random slow-down per input, is left out). A
  deadline shared by every input sends them all to the same exit, so its points are those of the
  multi-exit network cut at a fixed exit (blocks and classifiers 1 to k): those of `anytime_exit`
  (budgeted_inference), here reached through the deadline controller.

Every knob above is fixed here, for every seed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from torch import nn

from dyn_helpers import train
from dyn_helpers.applications.deadline import SimulatedClock, answer_by_deadline, simulated_exits
from dyn_helpers.applications.text import ExitTransformer
from dyn_helpers.data import MNIST1D_CLASSES, MNIST1D_LENGTH
from dyn_helpers.decisions.confidence import exits_max_probability, exits_patience
from dyn_helpers.leaderboard.board import Point, Task, entry, point
from dyn_helpers.leaderboard.static import MNIST1D
from dyn_helpers.open_problems.architecture import DenseExitCNN, dense_exit_flops
from dyn_helpers.open_problems.risk_control import guaranteed_threshold, sweep_thresholds
from dyn_helpers.outputs import ModelOutput
from dyn_helpers.sample_wise.early_exit import BOOK_ARCHITECTURE, MultiExitCNN, exit_flops
from dyn_helpers.training.exit_objectives import summed_exit_loss

# Risk levels (tolerated disagreement with the last exit) and the confidence of the guarantee.
EPSILONS = (0.01, 0.02, 0.05, 0.1, 0.2)
DELTA = 0.1
# The guaranteed_exits notebook's threshold grid, strict to loose: fine near 1, then by 0.02.
RISK_GRID = tuple(
    round(t, 4) for t in [1 - 0.005 * i for i in range(20)] + [0.9 - 0.02 * i for i in range(46)]
)
# Confidence thresholds of the dense network and the transformer, cheap to dear.
THRESHOLDS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999)
PATIENCES = (1, 2, 3)
# The deadlines of the anytime entry, in blocks: the full network's FLOPs divided by its depth.
DEADLINES = (1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0)
# The transformer: MNIST-1D's 40 samples as 10 tokens of 4 samples each.
PATCH = 4
TRANSFORMER = {"depth": 4, "width": 48, "heads": 2, "mlp_ratio": 2}

Run = Callable[[torch.Tensor], object]  # a real batched execution at one setting
Rule = Callable[[torch.Tensor], torch.Tensor]  # every exit's logits (K, N, classes) -> each input's exit


def _fit_multi_exit(task: Task, model: nn.Module, seed: int, desc: str) -> nn.Module:
    """Train `model` with the summed exit loss for the task's whole budget; return it in eval mode."""
    task.fit(model, seed, loss_fn=summed_exit_loss, desc=desc)
    return model.eval()


def _exit_points(
    task: Task, model: nn.Module, settings: Sequence[tuple[str, Run, Rule]], exit_costs: Sequence[int]
) -> list[Point]:
    """One point per (setting, run, rule): `run` is the real early exit; `rule` maps every exit's
    logits (K, N, classes), computed once per split with `model` running every exit, to each input's
    exit, which is charged the FLOPs of reaching it."""
    costs = torch.tensor(exit_costs, dtype=torch.float64)
    every = {}  # id of a split's inputs -> (the inputs, every exit's logits on them)

    def every_exit_logits(x: torch.Tensor) -> torch.Tensor:
        if id(x) not in every:
            with torch.no_grad():
                every[id(x)] = (x, torch.stack(train.predict(model, x).extras["exit_logits"]))
        return every[id(x)][1]

    def charged(rule: Rule) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda x: costs[rule(every_exit_logits(x)) - 1]

    return [point(task, setting, run, flops_each=charged(rule)) for setting, run, rule in settings]


@entry(
    "risk_controlled_exit",
    label=f"early exit, threshold certified by Learn-then-Test (risk ε of disagreement, δ = {DELTA:g})",
    family="depth",
    board=MNIST1D,
    notebook="guaranteed_exits",
)
def train_risk_controlled_exit(task: Task, seed: int) -> list[Point]:
    """The multi-exit CNN at the loosest threshold certified on validation for each risk level."""
    model = _fit_multi_exit(task, MultiExitCNN(**BOOK_ARCHITECTURE), seed, "risk-controlled exit")
    val = task.splits.val
    with torch.no_grad():
        val_logits = train.predict(model, val.x).extras["exit_logits"]
    sweep = sweep_thresholds(val_logits, val.y, RISK_GRID, "disagreement")
    settings = []
    for epsilon in EPSILONS:
        at = copy.deepcopy(model)
        at.exit_threshold = guaranteed_threshold(sweep, epsilon, DELTA)  # None: the full network
        settings.append((f"ε = {epsilon:g}", at, _confidence_rule(at.exit_threshold)))
    return _exit_points(task, model, settings, exit_flops(model, task.splits.test.x[:1]))


def _confidence_rule(threshold: float | None) -> Rule:
    """Each input's exit from every exit's logits: the first as confident as `threshold`; None: the last."""
    if threshold is None:
        return lambda logits: torch.full((logits.shape[1],), len(logits))
    return lambda logits: exits_max_probability(logits, threshold)


def dense_exit_early(model: DenseExitCNN, x: torch.Tensor, threshold: float) -> ModelOutput:
    """Early exiting in a `DenseExitCNN`, block by block: an input leaves the batch at the first exit
    whose top softmax probability reaches `threshold` (the last exit always answers), as in
    `MultiExitCNN`; `decisions["exit"]` holds each input's exit, from 1."""
    if not isinstance(model, DenseExitCNN):
        raise TypeError(f"model must be a DenseExitCNN, got {type(model).__name__}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold!r}")
    n = len(x)
    rows, exits = torch.arange(n), torch.full((n,), model.depth)
    answer = x.new_zeros(n, model.exits[0].out_features)
    features = [x]
    for k, (block, head) in enumerate(zip(model.blocks, model.exits, strict=True), start=1):
        features.append(block(torch.cat(features, dim=1)))
        logits = head(features[-1])
        if k == model.depth:
            stop = torch.ones(len(logits), dtype=torch.bool)
        else:  # compared in float64, as MultiExitCNN does
            stop = logits.softmax(dim=1).amax(dim=1).double() >= threshold
        answer[rows[stop]], exits[rows[stop]] = logits[stop], k
        if bool(stop.all()):
            break
        features, rows = [f[~stop] for f in features], rows[~stop]
    return ModelOutput(answer, {"exit": exits})


@entry(
    "dense_exits",
    label="early exit with dense connections (MSDNet-style), confidence threshold",
    family="depth",
    board=MNIST1D,
    notebook="exit_interference",
)
def train_dense_exits(task: Task, seed: int) -> list[Point]:
    """The dense multi-exit CNN (4 blocks of 48) at each confidence threshold of `THRESHOLDS`."""
    model = _fit_multi_exit(task, DenseExitCNN(BOOK_ARCHITECTURE["widths"]), seed, "dense exits")
    settings = [
        (f"τ = {t:g}", lambda x, t=t: dense_exit_early(model, x, t), _confidence_rule(t)) for t in THRESHOLDS
    ]
    return _exit_points(task, model, settings, dense_exit_flops(model, task.splits.test.x[:1]))


class PatchEmbedding(nn.Module):
    """A signal (N, 1, length) as tokens (N, length / patch, width): each patch of samples embedded linearly."""

    def __init__(self, patch: int, width: int) -> None:
        super().__init__()
        self.patch = patch
        self.linear = nn.Linear(patch, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.reshape(len(x), -1, self.patch))


class SignalExitTransformer(ExitTransformer):
    """The kit's `ExitTransformer` reading a one-channel signal instead of token ids.

    The word embedding is replaced by `PatchEmbedding`; blocks, exits, positions and the exit rules
    are the kit's.
    """

    def __init__(
        self, patch: int = PATCH, signal_length: int = MNIST1D_LENGTH, n_classes: int = MNIST1D_CLASSES, **kit
    ) -> None:
        if isinstance(patch, bool) or not isinstance(patch, int) or patch < 1 or signal_length % patch:
            raise ValueError(f"patch must be a positive int dividing {signal_length}, got {patch!r}")
        super().__init__(length=signal_length // patch, n_classes=n_classes, **kit)
        self.signal_length = signal_length
        self.embed = PatchEmbedding(patch, self.pos.shape[-1])

    def _check(self, x: object) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"x must be a float tensor of signals, got {getattr(x, 'dtype', type(x))}")
        if x.dim() != 3 or x.shape[1:] != (1, self.signal_length) or len(x) == 0:
            raise ValueError(
                f"x must have shape (N, 1, {self.signal_length}) with N >= 1, got {tuple(x.shape)}"
            )
        return x


def _train_transformer(task: Task, seed: int) -> SignalExitTransformer:
    return _fit_multi_exit(task, SignalExitTransformer(**TRANSFORMER), seed, "exit transformer")


def _with_rule(model: ExitTransformer, rule: str, **knob) -> ExitTransformer:
    at = copy.deepcopy(model)
    at.rule = rule
    if "threshold" in knob:
        at.set_threshold(knob["threshold"])
    if "patience" in knob:
        at.set_patience(knob["patience"])
    return at


@entry(
    "exit_transformer_confidence",
    label="early-exit transformer on patches of 4 samples, confidence rule (DeeBERT)",
    family="depth",
    board=MNIST1D,
    notebook="early_exit_transformer",
)
def train_exit_transformer_confidence(task: Task, seed: int) -> list[Point]:
    """The transformer exiting at the first exit as confident as each threshold of `THRESHOLDS`."""
    model = _train_transformer(task, seed)
    settings = [
        (f"τ = {t:g}", _with_rule(model, "confidence", threshold=t), _confidence_rule(t)) for t in THRESHOLDS
    ]
    return _exit_points(task, model, settings, model.exit_flops(task.splits.test.x[:1]))


@entry(
    "exit_transformer_patience",
    label="early-exit transformer on patches of 4 samples, patience rule (PABEE)",
    family="depth",
    board=MNIST1D,
    notebook="early_exit_transformer",
)
def train_exit_transformer_patience(task: Task, seed: int) -> list[Point]:
    """The transformer exiting once its prediction has held for each patience of `PATIENCES`."""
    model = _train_transformer(task, seed)
    settings = [
        (f"π = {p}", _with_rule(model, "patience", patience=p), lambda z, p=p: exits_patience(z, p))
        for p in PATIENCES
    ]
    return _exit_points(task, model, settings, model.exit_flops(task.splits.test.x[:1]))


def answer_batch_by_deadline(
    model: MultiExitCNN, x: torch.Tensor, deadline: float, exit_costs: Sequence[float]
) -> ModelOutput:
    """`applications.deadline.answer_by_deadline` on a batch sharing one deadline and one
    `SimulatedClock(exit_costs)`: the batch runs step after step while the next step ends by the
    deadline, and answers with the latest exit (`decisions["exit"]`). Raises if no exit fits."""
    if not isinstance(model, MultiExitCNN):
        raise TypeError(f"model must be a MultiExitCNN, got {type(model).__name__}")
    clock, logits, reached = SimulatedClock(exit_costs), None, 0
    steps = torch.tensor(clock.exit_costs, dtype=torch.float64).diff(prepend=torch.zeros(1)).tolist()
    for k, (block, head) in enumerate(zip(model.blocks, model.exits, strict=True), start=1):
        if clock.now() + steps[k - 1] > deadline:
            break
        x = block(x)
        logits, reached = head(x), k
        clock.ran(k)
    if logits is None:
        raise ValueError(
            f"deadline {deadline:g} is shorter than the first exit's cost {clock.exit_costs[0]:g}"
        )
    return ModelOutput(logits, {"exit": torch.full((len(x),), reached)})


@entry(
    "anytime_deadline",
    label="anytime answer by a FLOPs deadline for every input (the points of anytime prediction: exit k's cost)",
    family="depth",
    board=MNIST1D,
    notebook="anytime_deadline",
)
def train_anytime_deadline(task: Task, seed: int) -> list[Point]:
    """The multi-exit CNN answered by the deadline controller, one setting per deadline of `DEADLINES`."""
    model = _fit_multi_exit(task, MultiExitCNN(**BOOK_ARCHITECTURE), seed, "anytime deadline")
    costs = exit_flops(model, task.splits.test.x[:1])
    unit = costs[-1] / model.depth
    steps = torch.tensor(costs, dtype=torch.float64).diff(prepend=torch.zeros(1)).tolist()
    points = []
    for blocks in DEADLINES:
        budget = blocks * unit
        (reached,) = simulated_exits(costs, [budget]).tolist()

        def counted(x: torch.Tensor, budget: float = budget) -> torch.Tensor:
            clock = SimulatedClock(costs)
            return answer_by_deadline(model, x, budget, clock=clock, step_times=steps).logits

        points.append(
            point(
                task,
                f"deadline {blocks:g} blocks",
                lambda x, budget=budget: answer_batch_by_deadline(model, x, budget, costs),
                flops_each=lambda x, c=float(costs[reached - 1]): torch.full((len(x),), c),
                counted=counted,
            )
        )
    return points
