"""Chapter 5 on the 1-D board: decision rules and training objectives of dynamic networks.

Each entry trains the kit its notebook teaches, with the board's budget, and derives its operating
points from one trained model per seed. The multi-exit entries use `MultiExitCNN(**BOOK_ARCHITECTURE)`,
the static front's largest network (4 blocks of width 48) with an exit after each block; the gated
entries a `GatedResidualCNN` of width 48 with the notebooks' 4 gated residual blocks after a stem, one
convolution more than the front's 4 blocks.

- `exit_entropy_criterion`, `exit_patience_criterion` (confidence_criteria.ipynb): the notebook's
  comparison of a confidence score with patience, on the summed-loss multi-exit CNN. Points: the
  normalised entropy at most tau, tau in `ENTROPY_THRESHOLDS`, and PABEE's patience t = 1, 2, 3 (3 is
  the last exit). The kit has a real early exit for the maximum probability only (`exit_threshold`:
  the `early_exit` entry); `RuleExit` runs the same blocks for any rule of the exits seen so far and
  stops each input at its first exit that may answer.
- `budgeted_batch_exit`, `anytime_exit` (budgeted_inference.ipynb): its two settings. Budgeted batch:
  for each budget in `BUDGET_FRACTIONS` (of the last exit's cost) the largest max-probability
  threshold within it on the validation split (`confidence.threshold_for_budget`), run as real early
  exit. Anytime: with a budget per input every input answers with the deepest exit within it, so
  its points are the exits, each charged the blocks and classifiers up to it (`exit_flops`).
- `exit_self_distillation` (multi_exit_objectives.ipynb): the objective the notebook finds best for
  the early exits, self-distillation from the last exit (T = 1, beta = 0.5). Points: the
  maximum-probability thresholds `EXIT_THRESHOLDS` and the last exit alone.
- `gates_gumbel_target_rate` (gradient_estimators.ipynb): the gated network trained from scratch with
  hard Gumbel gates (T = 1, ConvNet-AIG's estimator) and the target-rate loss (r = 1/2, lambda = 4).
- `gates_usage_penalty` (efficiency_losses.ipynb): the same network with Gumbel gates trained with the
  expected-usage penalty at `USAGE_WEIGHT`, the middle of the notebook's five weights.
- `policy_reinforce` (policy_vs_gates.ipynb): the notebook's protocol: the backbone without gates
  for half the budget, then a `PolicyDrivenCNN` on it fine-tuned with REINFORCE on BlockDrop's
  reward (gamma = 1, leave-one-out baseline) plus the cross-entropy for the rest. Points: the
  policy's logit threshold set on the validation split to keep a share `POLICY_USAGES` of the
  blocks (`threshold_for_usage`, as the notebook matches cost), and its own threshold 0.

The gated notebooks sweep a training knob (the weight, the estimator) with one training per value;
here each gated entry is trained once and its points are the gates' opening threshold at test
time: a gate opens when its probability exceeds t (the notebooks: t = 1/2), t in `GATE_THRESHOLDS`.
The notebooks train for 5 or 7 epochs at width 16 or 48; here every entry gets the board's budget.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from dyn_helpers import train
from dyn_helpers.decisions import confidence
from dyn_helpers.decisions.policy import PolicyDrivenCNN, PolicyNetwork, blockdrop_reward, threshold_for_usage
from dyn_helpers.leaderboard.board import EVAL_BATCH, Point, Task, entry, point
from dyn_helpers.leaderboard.static import MNIST1D
from dyn_helpers.measure import count_flops
from dyn_helpers.outputs import ModelOutput
from dyn_helpers.sample_wise.early_exit import BOOK_ARCHITECTURE, MultiExitCNN, exit_flops
from dyn_helpers.sample_wise.gates import GatedResidualCNN
from dyn_helpers.training.efficiency import expected_usage, target_rate_loss
from dyn_helpers.training.estimators import leave_one_out_baseline, reinforce_surrogate
from dyn_helpers.training.exit_objectives import distilled_exit_loss, summed_exit_loss

BLOCKS, WIDTH = len(BOOK_ARCHITECTURE["widths"]), BOOK_ARCHITECTURE["widths"][-1]
EXIT_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
ENTROPY_THRESHOLDS = (0.6, 0.45, 0.3, 0.2, 0.1, 0.05)
PATIENCES = (1, 2, 3)
BUDGET_FRACTIONS = (0.2, 0.35, 0.5, 0.65, 0.8, 1.0)
DISTILL_TEMPERATURE, DISTILL_BETA = 1.0, 0.5  # multi_exit_objectives.ipynb
GATE_THRESHOLDS = (0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95)
TARGET, TARGET_WEIGHT = 0.5, 4.0  # gradient_estimators.ipynb's target rate and its weight
USAGE_WEIGHT = 0.3  # efficiency_losses.ipynb sweeps 0, 0.1, 0.3, 1 and 3
GAMMA = 1.0  # policy_vs_gates.ipynb's price of a mistake in BlockDrop's reward
POLICY_USAGES = (0.3, 0.45, 0.6, 0.75, 0.9)


class RuleExit(nn.Module):
    """Real early exit of a trained `MultiExitCNN` under a stopping rule.

    `stop(logits)` reads the logits of the exits an input has reached so far, shape (k, n, classes),
    and says which of the n inputs may answer at exit k. Each block runs only on the inputs still
    in the network; `decisions["exit"]` holds each input's exit, from 1. The last exit always answers.
    """

    def __init__(self, model: MultiExitCNN, stop: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        if not isinstance(model, MultiExitCNN):
            raise TypeError(f"model must be a MultiExitCNN, got {type(model).__name__}")
        if not callable(stop):
            raise TypeError("stop must be callable on the logits of the exits so far")
        self.model, self.stop = model, stop

    def forward(self, x: torch.Tensor) -> ModelOutput:
        """Each input's answer at its first exit that the rule lets answer."""
        n, rows, seen = len(x), torch.arange(len(x), device=x.device), []
        answer = exits = None
        for k, (block, head) in enumerate(zip(self.model.blocks, self.model.exits, strict=True), start=1):
            x = block(x)
            seen.append(head(x))
            if answer is None:
                answer = seen[-1].new_empty(n, seen[-1].shape[1])
                exits = torch.zeros(n, dtype=torch.long, device=x.device)
            done = torch.ones(len(x), dtype=torch.bool, device=x.device)
            if k < self.model.depth:
                done = self.stop(torch.stack(seen)).to(torch.bool)
            answer[rows[done]], exits[rows[done]] = seen[-1][done], k
            if done.all():
                break
            rows, x, seen = rows[~done], x[~done], [logits[~done] for logits in seen]
        return ModelOutput(answer, decisions={"exit": exits})


def entropy_rule(threshold: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """Stop at an exit whose normalised entropy is at most `threshold` (`confidence.exits_entropy`)."""
    return lambda logits: confidence.normalised_entropy(logits[-1:])[0] <= threshold


def patience_rule(patience: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Stop once the last `patience` + 1 exits predict the same class (`confidence.exits_patience`)."""

    def stop(logits: torch.Tensor) -> torch.Tensor:
        predictions = logits.argmax(dim=-1)  # (k, n)
        if len(predictions) <= patience:
            return torch.zeros(predictions.shape[1], dtype=torch.bool, device=logits.device)
        return (predictions[-patience - 1 :] == predictions[-1]).all(dim=0)

    return stop


class FirstExits(nn.Module):
    """The anytime answer of a `MultiExitCNN` whose budget reaches exit `k`: blocks and classifiers
    1 to k run (each answer is ready when the budget runs out), and exit k answers."""

    def __init__(self, model: MultiExitCNN, k: int) -> None:
        super().__init__()
        if not 1 <= k <= model.depth:
            raise ValueError(f"k must be an exit number in [1, {model.depth}], got {k}")
        self.model, self.k = model, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Exit k's logits, every earlier exit computed on the way."""
        for block, head in zip(self.model.blocks[: self.k], self.model.exits[: self.k], strict=True):
            x = block(x)
            logits = head(x)
        return logits


@torch.no_grad()
def _decided(run: nn.Module, x: torch.Tensor, key: str) -> torch.Tensor:
    """The decisions `key` of the real execution `run` on every input of `x`, in batches."""
    return torch.cat([run(batch).decisions[key] for batch in torch.split(x, EVAL_BATCH)])


def _charged(task: Task, setting: str, run: nn.Module, key: str, cost: Callable) -> Point:
    """The point of `run`, each input charged `cost(decisions)` for the decisions `key` it takes."""
    return point(task, setting, run, flops_each=lambda x: cost(_decided(run, x, key)))


@torch.no_grad()
def _exit_logits(model: MultiExitCNN, x: torch.Tensor) -> torch.Tensor:
    """Every exit's logits on `x`, shape (exits, N, classes)."""
    model = copy.deepcopy(model).eval()
    model.exit_threshold = None
    return torch.stack(train.predict(model, x).extras["exit_logits"])


def _multi_exit(task: Task, seed: int, loss_fn: Callable, desc: str) -> tuple[MultiExitCNN, torch.Tensor]:
    """The multi-exit CNN trained with `loss_fn` for the whole budget, and its FLOPs to each exit."""
    model = MultiExitCNN(**BOOK_ARCHITECTURE)
    task.fit(model, seed, loss_fn=loss_fn, desc=desc)
    model.eval()
    return model, torch.tensor(exit_flops(model, task.splits.test.x[:1]), dtype=torch.float64)


def _thresholded(
    task: Task, model: MultiExitCNN, cost: torch.Tensor, thresholds: dict[str, float]
) -> list[Point]:
    """One point per max-probability threshold: a copy of `model` exiting early at it."""
    points = []
    for setting, threshold in thresholds.items():
        run = copy.deepcopy(model).eval()
        run.exit_threshold = threshold
        points.append(_charged(task, setting, run, "exit", lambda exits: cost[exits - 1]))
    return points


def _rule_points(
    task: Task, model: MultiExitCNN, cost: torch.Tensor, rules: dict[str, Callable]
) -> list[Point]:
    return [
        _charged(task, s, RuleExit(model, rule), "exit", lambda e: cost[e - 1]) for s, rule in rules.items()
    ]


@entry(
    "exit_entropy_criterion",
    label="early exit, entropy criterion",
    family="depth",
    board=MNIST1D,
    notebook="confidence_criteria",
)
def train_exit_entropy(task: Task, seed: int) -> list[Point]:
    """The summed-loss multi-exit CNN; points: the normalised entropy thresholds and the last exit."""
    model, cost = _multi_exit(task, seed, summed_exit_loss, "multi-exit, summed loss")
    rules = {f"entropy at most {t:g}": entropy_rule(t) for t in ENTROPY_THRESHOLDS}
    return [*_rule_points(task, model, cost, rules), point(task, "last exit", FirstExits(model, BLOCKS))]


@entry(
    "exit_patience_criterion",
    label="early exit, patience criterion (PABEE)",
    family="depth",
    board=MNIST1D,
    notebook="confidence_criteria",
)
def train_exit_patience(task: Task, seed: int) -> list[Point]:
    """The summed-loss multi-exit CNN; points: patience 1, 2 and 3 (the last exit)."""
    model, cost = _multi_exit(task, seed, summed_exit_loss, "multi-exit, summed loss")
    return _rule_points(task, model, cost, {f"patience {t}": patience_rule(t) for t in PATIENCES})


@entry(
    "budgeted_batch_exit",
    label="early exit, threshold set on validation for a FLOPs budget (budgeted batch)",
    family="depth",
    board=MNIST1D,
    notebook="budgeted_inference",
)
def train_budgeted_batch(task: Task, seed: int) -> list[Point]:
    """The summed-loss multi-exit CNN; points: the largest threshold within each budget on validation."""
    model, cost = _multi_exit(task, seed, summed_exit_loss, "multi-exit, summed loss")
    val_logits = _exit_logits(model, task.splits.val.x)
    thresholds = {
        f"budget {f:.0%} of the last exit": confidence.threshold_for_budget(
            val_logits, cost.tolist(), f * cost[-1].item()
        )
        for f in BUDGET_FRACTIONS
    }
    return _thresholded(task, model, cost, thresholds)


@entry(
    "anytime_exit",
    label="anytime prediction, the deepest exit within a budget per input",
    family="depth",
    board=MNIST1D,
    notebook="budgeted_inference",
)
def train_anytime(task: Task, seed: int) -> list[Point]:
    """The summed-loss multi-exit CNN; points: the budget reaching each exit."""
    model, _ = _multi_exit(task, seed, summed_exit_loss, "multi-exit, summed loss")
    return [point(task, f"budget up to exit {k}", FirstExits(model, k)) for k in range(1, BLOCKS + 1)]


@entry(
    "exit_self_distillation",
    label="early exit, trained with self-distillation from the last exit",
    family="depth",
    board=MNIST1D,
    notebook="multi_exit_objectives",
)
def train_self_distillation(task: Task, seed: int) -> list[Point]:
    """The multi-exit CNN trained with `distilled_exit_loss`; points: confidence thresholds and the last exit."""

    def loss_fn(output: ModelOutput, y: torch.Tensor) -> torch.Tensor:
        return distilled_exit_loss(output, y, temperature=DISTILL_TEMPERATURE, beta=DISTILL_BETA)

    model, cost = _multi_exit(task, seed, loss_fn, "multi-exit, self-distillation")
    points = _thresholded(task, model, cost, {f"threshold {t:g}": t for t in EXIT_THRESHOLDS})
    return [*points, point(task, "last exit", FirstExits(model, BLOCKS))]


def _residual_costs(x_one: torch.Tensor) -> tuple[int, int]:
    """FLOPs of a width-`WIDTH` residual CNN's stem and classifier, and of one of its blocks."""
    stem_head = count_flops(GatedResidualCNN(0, WIDTH, estimator=None).eval(), x_one)
    return stem_head, count_flops(GatedResidualCNN(1, WIDTH, estimator=None).eval(), x_one) - stem_head


def _gate_thresholds(task: Task, gated: GatedResidualCNN) -> list[Point]:
    """One point per opening threshold t: a copy of `gated` whose gates open when their probability
    exceeds t (each gate's bias lowered by logit(t)), run sparse and charged the blocks that ran."""
    x_one = task.splits.test.x[:1]
    stem_head, block = _residual_costs(x_one)
    gates = BLOCKS * count_flops(gated.gates[0].eval(), x_one.new_zeros(1, WIDTH))

    def cost(plan: torch.Tensor) -> torch.Tensor:
        return stem_head + gates + block * plan.double().sum(dim=1)

    points = []
    for t in GATE_THRESHOLDS:
        run = copy.deepcopy(gated).eval()
        with torch.no_grad():
            for gate in run.gates:
                gate.logit.bias -= math.log(t / (1 - t))
        points.append(_charged(task, f"gate opens above {t:g}", run, "gates", cost))
    return points


def _gated(task: Task, seed: int, penalty: Callable[[ModelOutput], torch.Tensor], desc: str) -> list[Point]:
    """A Gumbel-gated residual CNN trained from scratch on the cross-entropy plus `penalty`."""
    torch.manual_seed(seed)
    gated = GatedResidualCNN(BLOCKS, WIDTH, estimator="gumbel")
    task.fit(gated, seed, loss_fn=lambda out, y: train.cross_entropy(out, y) + penalty(out), desc=desc)
    return _gate_thresholds(task, gated)


@entry(
    "gates_gumbel_target_rate",
    label="layer skipping from scratch, Gumbel gates with a target rate",
    family="depth",
    board=MNIST1D,
    notebook="gradient_estimators",
)
def train_gates_gumbel(task: Task, seed: int) -> list[Point]:
    """Gumbel gates trained with the target-rate loss (r = 1/2, lambda = 4); points: opening thresholds."""
    return _gated(
        task, seed, lambda out: TARGET_WEIGHT * target_rate_loss(out.extras["probs"], TARGET), "Gumbel gates"
    )


@entry(
    "gates_usage_penalty",
    label="layer skipping from scratch, Gumbel gates with a FLOPs penalty",
    family="depth",
    board=MNIST1D,
    notebook="efficiency_losses",
)
def train_gates_usage(task: Task, seed: int) -> list[Point]:
    """Gumbel gates trained with the expected-usage penalty at `USAGE_WEIGHT`; points: opening thresholds."""
    return _gated(task, seed, lambda out: USAGE_WEIGHT * expected_usage(out.extras["probs"]), "usage penalty")


def policy_loss(output: ModelOutput, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy plus REINFORCE on BlockDrop's reward with a leave-one-out baseline (policy_vs_gates.ipynb)."""
    ce = F.cross_entropy(output.logits, y, reduction="none")
    cost = -blockdrop_reward(output.logits.argmax(dim=1) == y, output.decisions["gates"].mean(dim=1), GAMMA)
    surrogate = reinforce_surrogate(output.extras["log_probs"].sum(dim=1), cost, leave_one_out_baseline(cost))
    return ce.mean() + surrogate.mean()


@entry(
    "policy_reinforce",
    label="policy network plans the blocks, REINFORCE with a leave-one-out baseline",
    family="depth",
    board=MNIST1D,
    notebook="policy_vs_gates",
)
def train_policy(task: Task, seed: int) -> list[Point]:
    """A residual backbone, then a policy network trained with it by REINFORCE; points: usages set on validation."""
    if task.epochs < 2:
        raise ValueError(
            f"the policy needs a budget of at least 2 epochs (backbone, then policy), got {task.epochs}"
        )
    first = task.epochs // 2
    backbone = GatedResidualCNN(BLOCKS, WIDTH, estimator=None)
    task.fit(backbone, seed, epochs=first, desc="backbone")
    torch.manual_seed(seed)
    model = PolicyDrivenCNN(backbone, PolicyNetwork(BLOCKS))
    task.fit(model, seed, epochs=task.epochs - first, loss_fn=policy_loss, desc="policy")
    model.eval()
    x_one = task.splits.test.x[:1]
    stem_head, block = _residual_costs(x_one)
    base = stem_head + count_flops(model.policy, x_one)
    with torch.no_grad():
        val_logits = model.policy(task.splits.val.x)
    thresholds = {
        f"keeps {u:.0%} of blocks on validation": threshold_for_usage(val_logits, u) for u in POLICY_USAGES
    }
    points = []
    for setting, threshold in {**thresholds, "its own threshold 0": 0.0}.items():
        run = copy.deepcopy(model).eval()
        run.threshold_logit = threshold
        points.append(
            _charged(task, setting, run, "gates", lambda plan: base + block * plan.double().sum(dim=1))
        )
    return points
