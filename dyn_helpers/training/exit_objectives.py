"""Training objectives of a multi-exit network: summed, weighted and self-distilled exit losses.

Taught in chapter 5 (section 5.2; multi_exit_objectives.ipynb); early_exiting.ipynb trains with
the summed loss. Each loss takes a `MultiExitCNN`'s output with every exit's logits and the labels.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from dyn_helpers.outputs import ModelOutput
from dyn_helpers.sample_wise.early_exit import every_exit_logits


def summed_exit_loss(output: ModelOutput, y: torch.Tensor) -> torch.Tensor:
    """The multi-exit training loss: the sum over exits of each exit's cross-entropy."""
    return sum(F.cross_entropy(logits, y) for logits in every_exit_logits(output))


def weighted_exit_loss(output: ModelOutput, y: torch.Tensor, weights: Sequence[float]) -> torch.Tensor:
    """The sum over exits of each exit's cross-entropy times its weight. Taught in chapter 5."""
    exit_logits = every_exit_logits(output)
    if len(weights) != len(exit_logits):
        raise ValueError(f"weights must give one weight per exit ({len(exit_logits)}), got {len(weights)}")
    if any(w < 0 for w in weights):
        raise ValueError(f"weights must be non-negative, got {list(weights)}")
    return sum(w * F.cross_entropy(logits, y) for w, logits in zip(weights, exit_logits, strict=True))


def distilled_exit_loss(
    output: ModelOutput, y: torch.Tensor, temperature: float = 1.0, beta: float = 0.5
) -> torch.Tensor:
    """Self-distillation: the last exit learns from the labels; every earlier exit learns from
    the labels (weight 1 - beta) and from the last exit's softened prediction (weight beta).

    The distillation term is T^2 KL(softmax(z_K / T) || softmax(z_k / T)) with the last
    exit's logits z_K detached, so the teacher is not pulled towards its students.
    """
    exit_logits = every_exit_logits(output)
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    teacher = F.softmax(exit_logits[-1].detach() / temperature, dim=1)
    loss = F.cross_entropy(exit_logits[-1], y)
    for logits in exit_logits[:-1]:
        student = F.log_softmax(logits / temperature, dim=1)
        distill = F.kl_div(student, teacher, reduction="batchmean") * temperature**2
        loss = loss + (1 - beta) * F.cross_entropy(logits, y) + beta * distill
    return loss
