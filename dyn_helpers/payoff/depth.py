"""Depth: when does early exiting beat a mix of static depths? Stands for chapter 2's early_exiting.

The book's multi-exit CNN (`sample_wise.early_exit.MultiExitCNN`, trained with the summed loss over
its exits, `training.exit_objectives.summed_exit_loss`) exits at the first exit whose top softmax
probability reaches a threshold; its points are `THRESHOLDS`, all derived from one trained model.
The static family is `layers.StaticCNN` of depth 1 to 4. Two properties of MNIST-1D are swept:

- "spread": the noise strength of each sequence is uniform in [MEAN - s/2, MEAN + s/2]
  (`data.with_noise_difficulty`), from s = 0 (every sequence equally hard) to 2 * MEAN, at a fixed mean;
- "mix": a share of the sequences carries noise of `HARD_NOISE` training standard deviations and the
  rest none (`hard_mix`), the easy/hard mix of the pilot in issue 13.

Departures from the notebook, fixed for every value and seed: blocks of width `WIDTH` (not 48) and
`EPOCHS` epochs (not 7 or 10), so that a family's record takes about 5 minutes on one core.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import torch

from dyn_helpers import data
from dyn_helpers.data import Splits
from dyn_helpers.layers import StaticCNN
from dyn_helpers.leaderboard.board import Point, Task, point
from dyn_helpers.payoff.sweeps import sweep
from dyn_helpers.sample_wise.early_exit import MultiExitCNN, every_exit_logits, exit_flops, exits_at_threshold
from dyn_helpers.training.exit_objectives import summed_exit_loss

WIDTH = 24
DEPTH = 4
EPOCHS = 5
THRESHOLDS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
MEAN = 0.5
SPREADS = (0.0, 0.5, 1.0)
HARD_NOISE = 1.25
HARD_SHARES = (0.0, 0.4, 0.8)


def hard_mix(splits: Splits, share: float, noise: float = HARD_NOISE, seed: int = 0) -> Splits:
    """A copy of `splits` in which each sequence, with probability `share`, gets Gaussian noise of standard
    deviation `noise` and otherwise none; the noise is stored as each sequence's `difficulty`."""
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
        raise ValueError(f"share must be a fraction in [0, 1], got {share!r}")
    if isinstance(noise, bool) or not isinstance(noise, int | float) or not noise >= 0:
        raise ValueError(f"noise must be a non-negative standard deviation, got {noise!r}")
    generator = torch.Generator().manual_seed(seed)

    def mixed(part: data.Split) -> data.Split:
        sigma = noise * (torch.rand(len(part), generator=generator) < share).float()
        noisy = part.x + torch.randn(part.x.shape, generator=generator) * sigma[:, None, None]
        return replace(part, x=noisy, difficulty=sigma)

    parts = {name: mixed(getattr(splits, name)) for name in ("train", "val", "test")}
    return replace(splits, name=f"{splits.name}, {share:.0%} at noise {noise:g}", **parts)


def spread_task(spread: float) -> Task:
    """MNIST-1D with noise strength uniform in [MEAN - spread/2, MEAN + spread/2]."""
    splits = data.with_noise_difficulty(data.mnist1d(), mean=MEAN, spread=spread)
    return Task("depth-spread", f"MNIST-1D, noise {MEAN:g} ± {spread / 2:g}", splits, epochs=EPOCHS)


def mix_task(share: float) -> Task:
    """MNIST-1D with a share `share` of the sequences at noise `HARD_NOISE`, the rest clean."""
    splits = hard_mix(data.mnist1d(), share)
    return Task("depth-mix", f"MNIST-1D, {share:.0%} at noise {HARD_NOISE:g}", splits, epochs=EPOCHS)


def early_exit_points(task: Task, seed: int) -> list[Point]:
    """Train one multi-exit CNN and score it at every threshold of `THRESHOLDS`."""
    model = MultiExitCNN(widths=(WIDTH,) * DEPTH)
    task.fit(model, seed, loss_fn=summed_exit_loss, desc="early exit")
    model.eval()
    cost = torch.tensor(exit_flops(model, task.splits.test.x[:1]), dtype=torch.float64)

    @torch.no_grad()
    def exit_logits(x: torch.Tensor) -> list[torch.Tensor]:
        return every_exit_logits(model(x))

    points = []
    for threshold in THRESHOLDS:
        early = copy.deepcopy(model)
        early.exit_threshold = threshold

        def flops_each(x: torch.Tensor, threshold: float = threshold) -> torch.Tensor:
            return cost[exits_at_threshold(exit_logits(x), threshold) - 1]

        points.append(point(task, f"threshold {threshold:g}", early, flops_each=flops_each))
    return points


def static_points(task: Task, seed: int) -> list[Point]:
    """Train `StaticCNN` of every depth from 1 to `DEPTH`, one point each."""
    points = []
    for depth in range(1, DEPTH + 1):
        model = StaticCNN(depth, widths=(WIDTH,) * DEPTH)
        task.fit(model, seed, desc=f"static depth {depth}")
        points.append(point(task, f"static depth {depth}", model.eval()))
    return points


METHOD = f"early exit, confidence threshold, {DEPTH} blocks of width {WIDTH}"
sweep(
    "depth",
    "spread",
    prop=f"spread of the noise strength at mean {MEAN:g} (training sd)",
    values=SPREADS,
    method=METHOD,
    notebook="early_exiting",
    task=spread_task,
    dynamic=early_exit_points,
    statics=static_points,
)
sweep(
    "depth",
    "mix",
    prop=f"share of sequences at noise {HARD_NOISE:g} (the rest clean)",
    values=HARD_SHARES,
    method=METHOD,
    notebook="early_exiting",
    task=mix_task,
    dynamic=early_exit_points,
    statics=static_points,
)
