"""Efficiency losses: the costs that stop gates from collapsing to always-on.

Taught in chapter 5 (section 5.2; efficiency_losses.ipynb) and used in layer_skipping.ipynb:
the expected usage of gated blocks (a ponder-like cost) and the target-rate loss.
"""

import torch

from dyn_helpers.training.estimators import check_probs


def _check_target(target: float) -> None:
    if not 0.0 <= target <= 1.0:
        raise ValueError(f"target rate must be in [0, 1], got {target}")


def expected_usage(probs: torch.Tensor) -> torch.Tensor:
    """The expected fraction of gated blocks that run: the mean gate probability (a ponder-like cost)."""
    check_probs(probs)
    return probs.mean()


def target_rate_loss(rates: torch.Tensor, target: float) -> torch.Tensor:
    """The target-rate loss: the mean over gates of (batch-mean rate of gate l - target)^2.

    `rates` has shape (batch, n_gates), each in [0, 1]. ConvNet-AIG applies it to the hard
    straight-through decisions (a gated model's `decisions["gates"]`); the book applies it to the
    gate probabilities (`extras["probs"]`), a variant whose expectation lacks the decisions'
    variance term sum p(1 - p) (taught in layer_skipping.ipynb).
    """
    _check_target(target)
    check_probs(rates, "rates")
    if rates.dim() != 2:
        raise ValueError(f"rates must have shape (batch, n_gates), got {tuple(rates.shape)}")
    return ((rates.mean(dim=0) - target) ** 2).mean()
