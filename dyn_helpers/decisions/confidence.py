"""Decision making for multi-exit networks: exit criteria, budgets and anytime answers. Taught in chapter 5.

Every function works on the logits of all exits at once: the list a `MultiExitCNN` returns in
`output.extras["exit_logits"]` (K tensors of shape (N, classes)), or one tensor of shape
(K, N, classes), for K exits and N samples. Exit numbers count from 1, like
`dyn_helpers.sample_wise.early_exit.exits_at_threshold` and the model's `decisions["exit"]`. The last exit
always answers.
"""

import math
from collections.abc import Sequence

import torch

from dyn_helpers.checks import check_positive_ints, check_unit_interval
from dyn_helpers.outputs import ModelOutput
from dyn_helpers.sample_wise.early_exit import exits_at_threshold

Logits = torch.Tensor | Sequence[torch.Tensor]


def stack_logits(logits: Logits) -> torch.Tensor:
    """All exits' logits as one float tensor of shape (K, N, classes)."""
    if isinstance(logits, ModelOutput):
        raise TypeError("pass the list of every exit's logits, output.extras['exit_logits'], not the output")
    stacked = torch.stack(list(logits)) if not isinstance(logits, torch.Tensor) else logits
    if stacked.dim() != 3 or 0 in stacked.shape:
        raise ValueError(f"logits must have shape (exits, samples, classes), got {tuple(stacked.shape)}")
    return stacked.float()


def _first_stop(stop: torch.Tensor) -> torch.Tensor:
    """The first exit (1-based) where `stop` (K, N) holds, the last exit where none does."""
    stop = stop.clone()
    stop[-1] = True
    return stop.float().argmax(dim=0) + 1


def exits_max_probability(logits: Logits, threshold: float) -> torch.Tensor:
    """Exit at the first exit whose top softmax probability is at least `threshold`."""
    return exits_at_threshold(list(stack_logits(logits)), threshold)


def normalised_entropy(logits: Logits) -> torch.Tensor:
    """Entropy of each exit's softmax divided by log(classes): shape (K, N), values in [0, 1]."""
    stacked = stack_logits(logits)
    if stacked.shape[-1] < 2:
        raise ValueError(f"entropy needs at least 2 classes, got {stacked.shape[-1]}")
    log_p = stacked.log_softmax(dim=-1)
    entropy = -(log_p.exp() * log_p).sum(dim=-1)
    return (entropy / math.log(stacked.shape[-1])).clamp(0.0, 1.0)


def exits_entropy(logits: Logits, threshold: float) -> torch.Tensor:
    """Exit at the first exit whose normalised entropy is at most `threshold`."""
    check_unit_interval(threshold, "threshold")
    return _first_stop(normalised_entropy(logits) <= threshold)


def top2_margin(logits: Logits) -> torch.Tensor:
    """Top softmax probability minus the second: shape (K, N), values in [0, 1]."""
    stacked = stack_logits(logits)
    if stacked.shape[-1] < 2:
        raise ValueError(f"a margin needs at least 2 classes, got {stacked.shape[-1]}")
    top2 = stacked.softmax(dim=-1).topk(2, dim=-1).values
    return top2[..., 0] - top2[..., 1]


def exits_margin(logits: Logits, threshold: float) -> torch.Tensor:
    """Exit at the first exit whose top-two probability margin is at least `threshold`."""
    check_unit_interval(threshold, "threshold")
    return _first_stop(top2_margin(logits) >= threshold)


def exits_patience(logits: Logits, patience: int) -> torch.Tensor:
    """PABEE's rule: exit once the predicted class has stayed the same for `patience` consecutive exits.

    Exit k answers when exits k - patience, ..., k all predict the same class, so the earliest
    possible exit is patience + 1; a patience of K - 1 or more always runs to the last exit.
    """
    check_positive_ints(patience=patience)
    predictions = stack_logits(logits).argmax(dim=-1)  # (K, N)
    streak = torch.zeros_like(predictions)
    for k in range(1, len(predictions)):
        same = predictions[k] == predictions[k - 1]
        streak[k] = torch.where(same, streak[k - 1] + 1, torch.zeros_like(streak[k]))
    return _first_stop(streak >= patience)


def average_cost(exits: torch.Tensor, exit_costs: Sequence[float]) -> float:
    """Mean cost per sample when sample i stops at exit `exits[i]` and reaching exit k costs `exit_costs[k-1]`."""
    costs = torch.as_tensor(exit_costs, dtype=torch.float64)
    if exits.numel() == 0 or exits.min() < 1 or exits.max() > len(costs):
        raise ValueError(f"exits must be a non-empty tensor of exit numbers in [1, {len(costs)}]")
    return costs[exits - 1].mean().item()


def _check_costs(exit_costs: Sequence[float], n_exits: int) -> list[float]:
    costs = [float(c) for c in exit_costs]
    if len(costs) != n_exits:
        raise ValueError(f"exit_costs must give one cost per exit ({n_exits}), got {len(costs)}")
    if any(c <= 0 for c in costs) or costs != sorted(costs):
        raise ValueError(f"exit_costs must be positive and non-decreasing, got {costs}")
    return costs


def threshold_for_budget(val_logits: Logits, exit_costs: Sequence[float], budget: float) -> float:
    """The largest max-probability threshold whose average cost on `val_logits` is within `budget`.

    Raising the threshold only ever moves samples to later exits, so the average cost grows
    with it; the answer spends as much of the budget as possible without exceeding it. The
    budget must lie in the reachable range [cost of exit 1, cost of exit K].
    """
    stacked = stack_logits(val_logits)
    costs = _check_costs(exit_costs, len(stacked))
    if not costs[0] <= budget <= costs[-1]:
        raise ValueError(
            f"budget must lie in the reachable range [{costs[0]:g}, {costs[-1]:g}] (cost of the first "
            f"and of the last exit), got {budget:g}"
        )
    if len(stacked) == 1:
        return 1.0  # one exit: every threshold costs the same
    confidence = stacked[:-1].softmax(dim=-1).amax(dim=-1)  # (K - 1, N); the last exit always answers
    # A sample goes past exit k exactly when its running maximum confidence up to k is below the threshold.
    running = confidence.cummax(dim=0).values.sort(dim=1).values
    # The average cost only changes at the confidences themselves: they, 0 and 1 are the candidates.
    candidates = torch.cat([torch.tensor([0.0, 1.0]), confidence.flatten()]).unique()  # sorted
    going_on = torch.stack([torch.searchsorted(row, candidates) for row in running])  # counts
    steps = torch.tensor(costs, dtype=torch.float64).diff()  # cost of going from exit k to exit k + 1
    n = running.shape[1]
    total = costs[0] * n + (steps[:, None] * going_on.double()).sum(dim=0)  # exact for integer costs
    return float(candidates[total <= budget * n].max())


def anytime_exits(exit_costs: Sequence[float], budgets: Sequence[float]) -> torch.Tensor:
    """For each budget, the deepest exit whose cost fits in it: the answer available when it runs out.

    A budget below the first exit's cost leaves no answer and raises `ValueError`; a budget
    beyond the last exit's cost gets the last exit.
    """
    costs = torch.as_tensor([float(c) for c in exit_costs], dtype=torch.float64)
    if len(costs) == 0 or (costs <= 0).any() or (costs.diff() < 0).any():
        raise ValueError(f"exit_costs must be positive and non-decreasing, got {costs.tolist()}")
    budgets_t = torch.as_tensor([float(b) for b in budgets], dtype=torch.float64)
    if len(budgets_t) == 0 or (budgets_t < costs[0]).any():
        raise ValueError(
            f"budgets must be at least the first exit's cost {costs[0].item():g}, got {budgets_t.tolist()}"
        )
    return torch.searchsorted(costs, budgets_t, right=True)


def anytime_predictions(
    logits: Logits, exit_costs: Sequence[float], budgets: Sequence[float]
) -> torch.Tensor:
    """The class each sample has when the budget runs out: shape (len(budgets), N).

    Every sample computes exit after exit until the next exit would exceed the budget, and
    answers with the last exit it reached.
    """
    stacked = stack_logits(logits)
    _check_costs(exit_costs, len(stacked))
    return stacked[anytime_exits(exit_costs, budgets) - 1].argmax(dim=-1)
