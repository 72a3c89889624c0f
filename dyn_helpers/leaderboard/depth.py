"""Dynamic depth on the 1-D board: the methods of chapter 2 that choose how many blocks an input runs.

Each entry trains the kit its notebook teaches, at the scale of the static front's largest
network (4 blocks of width 48), with the board's budget; its operating points come from one
trained model per seed.

- `early_exit` (early_exiting.ipynb): `MultiExitCNN(**BOOK_ARCHITECTURE)` trained with the summed
  loss over exits for the whole budget. Points: the confidence thresholds `EXIT_THRESHOLDS`, run
  as real batched early exit (`exit_threshold`) and charged `exit_flops` at each input's exit, and
  the last exit alone (its 4 blocks and last classifier, a static network).
- `layer_skipping` (layer_skipping.ipynb): a `GatedResidualCNN` of 4 blocks of width 48 (a stem
  and 4 residual blocks: one convolution more than the static front's 4 blocks). The backbone is
  trained without gates for `STAGE_SHARE` of the budget, then the Gumbel gates with the target-rate
  loss (the notebook's `TARGET` and `WEIGHT`) for the rest. Points: a gate opens when its
  probability exceeds t (the notebook: t = 1/2), t in `GATE_THRESHOLDS`, run sparse.
- `blockdrop` (blockdrop.ipynb): the same backbone trained with stochastic depth (last survival
  0.8), then a `PolicyDrivenCNN` on a copy of it trained with self-critical REINFORCE on
  `blockdrop_reward` (penalty 7), both as the notebook does, through `Task.fit`. Points: the greedy
  plan (a block is kept when its keep-probability exceeds 1/2, as the notebook does), and the
  logit thresholds (`threshold_logit`) that keep a share u in `KEEP_USAGES` of the validation
  inputs' blocks (`threshold_for_usage`), run sparse: the trained policy's probabilities sit
  near 0 and 1, so thresholds on them alone would give one plan.
- `halting` (halting.ipynb, ACT): the same backbone trained without halting units, then an
  `ACTResidualCNN` on its blocks (halting bias -1) fine-tuned with `ponder_loss(ACT_TAU)`, the
  middle of the notebook's three ponder costs. Points: the halting slack epsilon in `EPSILONS`
  (an input halts once its scores sum to 1 - epsilon; the notebook: 0.01).

The notebooks sweep a training knob (the ponder cost, the target rate) with one training per
value; here the knob sweep is the decision rule's threshold at test time, so that every point
comes from one training. Staged methods split the budget evenly, as the notebooks do.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from torch import nn

from dyn_helpers import train
from dyn_helpers.decisions.policy import PolicyDrivenCNN, PolicyNetwork, blockdrop_reward, threshold_for_usage
from dyn_helpers.layers import StaticCNN
from dyn_helpers.leaderboard.board import EVAL_BATCH, Point, Task, entry, point
from dyn_helpers.leaderboard.static import MNIST1D
from dyn_helpers.measure import count_flops
from dyn_helpers.outputs import ModelOutput
from dyn_helpers.sample_wise.early_exit import BOOK_ARCHITECTURE, MultiExitCNN, exit_flops, exits_at_threshold
from dyn_helpers.sample_wise.gates import GatedResidualCNN
from dyn_helpers.sample_wise.halting import ACTResidualCNN, ponder_loss
from dyn_helpers.sample_wise.skipping import StochasticDepthCNN
from dyn_helpers.training.efficiency import target_rate_loss
from dyn_helpers.training.estimators import reinforce_surrogate
from dyn_helpers.training.exit_objectives import summed_exit_loss

BLOCKS, WIDTH = len(BOOK_ARCHITECTURE["widths"]), BOOK_ARCHITECTURE["widths"][-1]
# The share of a staged method's budget spent on its first stage (the backbone).
STAGE_SHARE = 0.5
EXIT_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
GATE_THRESHOLDS = (0.2, 0.35, 0.5, 0.65, 0.8)
TARGET, WEIGHT = 0.525, 4.0  # layer_skipping.ipynb's target rate and its weight
KEEP_USAGES = (0.25, 0.4, 0.55, 0.7, 0.85)
LAST_SURVIVAL, GAMMA = 0.8, 7.0  # blockdrop.ipynb's stochastic depth and reward penalty
EPSILONS = (0.01, 0.1, 0.2, 0.35, 0.5, 0.7)
ACT_TAU, HALTING_BIAS = 0.1, -1.0  # halting.ipynb's middle ponder cost and its halting units' bias


def stages(task: Task) -> tuple[int, int]:
    """The epochs of a two-stage method: `STAGE_SHARE` of the budget for the first, the rest for the second."""
    if task.epochs < 2:
        raise ValueError(f"a two-stage method needs a budget of at least 2 epochs, got {task.epochs}")
    first = min(max(1, round(task.epochs * STAGE_SHARE)), task.epochs - 1)
    return first, task.epochs - first


def _remembered(fn: Callable[[torch.Tensor], object]) -> Callable[[torch.Tensor], object]:
    """`fn` computed once per input tensor (the board's validation and test inputs), under no_grad."""
    seen: dict[int, tuple[torch.Tensor, object]] = {}

    def remembered(x: torch.Tensor) -> object:
        if id(x) not in seen or seen[id(x)][0] is not x:
            with torch.no_grad():
                seen[id(x)] = (x, fn(x))
        return seen[id(x)][1]

    return remembered


def _own_decisions(key: str) -> Callable[[nn.Module, torch.Tensor], torch.Tensor]:
    """The decisions `key` that the real execution `run` takes on each input of `x`, in batches."""

    @torch.no_grad()
    def decided(run: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([run(batch).decisions[key] for batch in torch.split(x, EVAL_BATCH)])

    return decided


def _residual_costs(x_one: torch.Tensor) -> tuple[int, int]:
    """FLOPs of a width-`WIDTH` residual CNN's stem and classifier, and of one of its blocks."""
    stem_head = count_flops(GatedResidualCNN(0, WIDTH, estimator=None).eval(), x_one)
    return stem_head, count_flops(GatedResidualCNN(1, WIDTH, estimator=None).eval(), x_one) - stem_head


def _backbone(task: Task, seed: int, epochs: int, stochastic_depth: bool = False) -> GatedResidualCNN:
    """The residual backbone without gates, trained for `epochs` (with stochastic depth if asked)."""
    backbone = GatedResidualCNN(BLOCKS, WIDTH, estimator=None)
    model = StochasticDepthCNN(backbone, LAST_SURVIVAL) if stochastic_depth else backbone
    task.fit(model, seed, epochs=epochs, desc="backbone")
    return backbone


def _sweep(
    task: Task,
    model: nn.Module,
    settings: dict[str, Callable[[nn.Module], None]],
    decide: Callable[[nn.Module, torch.Tensor], torch.Tensor],
    cost: Callable[[torch.Tensor], torch.Tensor],
) -> list[Point]:
    """One point per setting: a copy of `model` in evaluation mode, set by the setting's function,
    each input charged `cost(decisions)` for the decisions `decide(run, x)` it takes."""
    points = []
    for name, configure in settings.items():
        run = copy.deepcopy(model).eval()
        configure(run)
        points.append(point(task, name, run, flops_each=lambda x, run=run: cost(decide(run, x))))
    return points


@entry(
    "early_exit",
    label="early exit, confidence threshold (BranchyNet)",
    family="depth",
    board=MNIST1D,
    notebook="early_exiting",
)
def train_early_exit(task: Task, seed: int) -> list[Point]:
    """A multi-exit CNN trained with the summed exit loss; points: confidence thresholds and the last exit alone."""
    model = MultiExitCNN(**BOOK_ARCHITECTURE)
    task.fit(model, seed, loss_fn=summed_exit_loss, desc="early exit")
    model.eval()
    cost = torch.tensor(exit_flops(model, task.splits.test.x[:1]), dtype=torch.float64)
    last = StaticCNN(model.depth, **BOOK_ARCHITECTURE).eval()
    last.blocks, last.head = model.blocks, model.exits[-1]  # shared, not copied
    settings = {
        f"threshold {t:g}": lambda run, t=t: setattr(run, "exit_threshold", t) for t in EXIT_THRESHOLDS
    }
    every_exit = _remembered(lambda x: train.predict(model, x).extras["exit_logits"])

    def decide(run: MultiExitCNN, x: torch.Tensor) -> torch.Tensor:  # the exits, from every exit's logits
        return exits_at_threshold(every_exit(x), run.exit_threshold)

    points = _sweep(task, model, settings, decide, lambda exits: cost[exits - 1])
    return [*points, point(task, "last exit only", last)]


def _gates_loss(output: ModelOutput, y: torch.Tensor) -> torch.Tensor:
    return train.cross_entropy(output, y) + WEIGHT * target_rate_loss(output.extras["probs"], TARGET)


def _open_above(threshold: float) -> Callable[[GatedResidualCNN], None]:
    """Make each gate open when its probability exceeds `threshold`: sigmoid(theta) > t iff theta - logit(t) > 0."""

    def configure(model: GatedResidualCNN) -> None:
        with torch.no_grad():
            for gate in model.gates:
                gate.logit.bias -= math.log(threshold / (1 - threshold))

    return configure


@entry(
    "layer_skipping",
    label="layer skipping, Gumbel gates with a target rate (ConvNet-AIG)",
    family="depth",
    board=MNIST1D,
    notebook="layer_skipping",
)
def train_layer_skipping(task: Task, seed: int) -> list[Point]:
    """A pre-trained residual backbone, then per-block Gumbel gates; points: the gates' opening thresholds."""
    first, second = stages(task)
    backbone = _backbone(task, seed, first)
    torch.manual_seed(seed)
    gated = GatedResidualCNN(BLOCKS, WIDTH, estimator="gumbel")
    gated.load_state_dict(backbone.state_dict(), strict=False)  # all but the gates
    task.fit(gated, seed, epochs=second, loss_fn=_gates_loss, desc="gates")
    x_one = task.splits.test.x[:1]
    stem_head, block = _residual_costs(x_one)
    gates = BLOCKS * count_flops(gated.gates[0].eval(), x_one.new_zeros(1, WIDTH))
    settings = {f"gate opens above {t:g}": _open_above(t) for t in GATE_THRESHOLDS}
    return _sweep(
        task,
        gated,
        settings,
        _own_decisions("gates"),
        lambda plan: stem_head + gates + block * plan.double().sum(dim=1),
    )


class SelfCritical(nn.Module):
    """BlockDrop's training wrapper (blockdrop.ipynb): the sampled plan's output, with the greedy
    plan's logits and plan (no gradient) in its extras, the baseline of self-critical REINFORCE."""

    def __init__(self, model: PolicyDrivenCNN) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> ModelOutput:
        """The sampled plan's output with `greedy_logits` and `greedy_gates` added to its extras."""
        sampled = self.model(x)
        with torch.no_grad():
            self.model.eval()
            greedy = self.model(x)
            self.model.train(self.training)
        sampled.extras["greedy_logits"] = greedy.logits
        sampled.extras["greedy_gates"] = greedy.decisions["gates"]
        return sampled


def blockdrop_loss(output: ModelOutput, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy plus the self-critical REINFORCE surrogate of `blockdrop_reward` (blockdrop.ipynb)."""
    plan, extras = output.decisions["gates"], output.extras
    reward = blockdrop_reward(output.logits.argmax(dim=1) == y, plan.mean(dim=1), GAMMA)
    baseline = blockdrop_reward(
        extras["greedy_logits"].argmax(dim=1) == y, extras["greedy_gates"].mean(dim=1), GAMMA
    )
    policy = reinforce_surrogate(extras["log_probs"].sum(dim=1), -reward, -baseline).mean()
    return train.cross_entropy(output, y) + policy


@entry(
    "blockdrop",
    label="BlockDrop, a policy network plans the blocks (REINFORCE)",
    family="depth",
    board=MNIST1D,
    notebook="blockdrop",
)
def train_blockdrop(task: Task, seed: int) -> list[Point]:
    """A stochastic-depth backbone, then a policy network trained by REINFORCE; points: keep thresholds."""
    first, second = stages(task)
    backbone = _backbone(task, seed, first, stochastic_depth=True)
    torch.manual_seed(seed)
    model = PolicyDrivenCNN(copy.deepcopy(backbone), PolicyNetwork(BLOCKS))
    task.fit(SelfCritical(model), seed, epochs=second, loss_fn=blockdrop_loss, desc="BlockDrop")
    x_one = task.splits.test.x[:1]
    stem_head, block = _residual_costs(x_one)
    base = stem_head + count_flops(model.policy.eval(), x_one)
    policy_logits = _remembered(lambda x: train.predict(model.policy, x))
    thresholds = {"keep above 1/2": 0.0} | {
        f"keep {100 * u:g}% on validation": threshold_for_usage(policy_logits(task.splits.val.x), u)
        for u in KEEP_USAGES
    }
    settings = {name: lambda run, t=t: setattr(run, "threshold_logit", t) for name, t in thresholds.items()}

    def decide(run: PolicyDrivenCNN, x: torch.Tensor) -> torch.Tensor:  # the plan, from the policy alone
        return policy_logits(x) > run.threshold_logit

    return _sweep(task, model, settings, decide, lambda plan: base + block * plan.double().sum(dim=1))


@entry(
    "halting",
    label="adaptive computation time over residual blocks (ACT)",
    family="depth",
    board=MNIST1D,
    notebook="halting",
)
def train_halting(task: Task, seed: int) -> list[Point]:
    """A pre-trained residual backbone, then ACT halting units fine-tuned with a ponder cost; points: the slack epsilon."""
    first, second = stages(task)
    backbone = _backbone(task, seed, first)
    torch.manual_seed(seed)
    act = ACTResidualCNN(BLOCKS, WIDTH, halting_bias=HALTING_BIAS)
    act.load_state_dict(backbone.state_dict(), strict=False)  # all but the halting units
    task.fit(act, seed, epochs=second, loss_fn=ponder_loss(ACT_TAU), desc="ACT")
    x_one = task.splits.test.x[:1]
    stem_head, block = _residual_costs(x_one)
    halt = count_flops(act.halt[0].eval(), x_one.new_zeros(1, WIDTH))

    def cost(steps: torch.Tensor) -> torch.Tensor:  # the last block's halting unit never runs
        steps = steps.double()
        return stem_head + block * steps + halt * steps.clamp(max=BLOCKS - 1)

    settings = {f"epsilon {e:g}": lambda run, e=e: setattr(run, "epsilon", e) for e in EPSILONS}
    return _sweep(task, act, settings, _own_decisions("steps"), cost)
