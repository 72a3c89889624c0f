"""Halting: Adaptive Computation Time over residual blocks (Graves, 2016; Figurnov et al., 2017).

Taught in chapter 2 (halting.ipynb). After residual block l each input gets a halting score
h_l in [0, 1]; it stops at the first block N whose scores sum to at least 1 - epsilon (the last
block always halts), answers from the halting-weighted sum of the block outputs, and pays the
ponder cost N + R, where R = 1 - (h_1 + ... + h_{N-1}) is the remainder.
"""

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from dyn_helpers.checks import check_positive_ints
from dyn_helpers.data import MNIST1D_CLASSES, MNIST1D_LENGTH, MNIST1D_SHAPE
from dyn_helpers.layers import ExitHead, add_residual_on_rows, conv_block
from dyn_helpers.measure import TimingCase, timing_cases
from dyn_helpers.outputs import ModelOutput
from dyn_helpers.sample_wise.gates import GatedResidualCNN


class Halting(NamedTuple):
    """Per input: the weight p_l of each block's output, the step count N and the remainder R."""

    weights: torch.Tensor
    steps: torch.Tensor
    remainder: torch.Tensor


def _check_epsilon(epsilon: float) -> None:
    if isinstance(epsilon, bool) or not isinstance(epsilon, int | float) or not 0 < epsilon < 1:
        raise ValueError(f"epsilon must be a number in (0, 1), got {epsilon!r}")


def halting_weights(scores: torch.Tensor, epsilon: float = 0.01) -> Halting:
    """ACT's halting distribution from scores h of shape (batch, L), each in [0, 1].

    N is the first l with h_1 + ... + h_l >= 1 - epsilon (L if none; the last score is ignored
    and treated as 1), R = 1 - (h_1 + ... + h_{N-1}), p_l = h_l for l < N, p_N = R, p_l = 0 after N.
    """
    _check_epsilon(epsilon)
    if not isinstance(scores, torch.Tensor) or scores.dim() != 2 or scores.shape[1] < 1:
        raise ValueError(
            f"scores must be a tensor of shape (batch, L) with L >= 1, got {getattr(scores, 'shape', scores)}"
        )
    if ((scores < 0) | (scores > 1)).any():
        raise ValueError("halting scores must lie in [0, 1]")
    n_blocks = scores.shape[1]
    before = torch.cumsum(scores, dim=1) - scores  # sum of the scores of the earlier blocks
    reached = (before + scores >= 1 - epsilon)[:, :-1]
    last = torch.ones(len(scores), 1, dtype=torch.bool, device=scores.device)
    halts_at = torch.cat([reached, last], dim=1).int().argmax(dim=1)  # first block reaching 1 - epsilon
    position = torch.arange(n_blocks, device=scores.device)
    remainder = 1 - before.gather(1, halts_at[:, None]).squeeze(1)
    weights = torch.where(position < halts_at[:, None], scores, torch.zeros_like(scores))
    weights = weights + F.one_hot(halts_at, n_blocks).to(scores.dtype) * remainder[:, None]
    return Halting(weights, halts_at + 1, remainder)


class ACTResidualCNN(nn.Module):
    """A stem, `n_blocks` residual conv blocks each followed by a halting unit, and a linear classifier.

    Block l computes x_l = x_{l-1} + f_l(x_{l-1}); its halting unit reads x_l averaged over positions,
    h_l = sigmoid(w_l . mean(x_l) + b_l). The classifier reads sum_l p_l x_l (`halting_weights`).
    The last block's score is 1 (its unit is unused). `forward` returns a `ModelOutput`: the logits,
    `decisions["steps"]` the step count N, `executed` the blocks run (N, n_blocks) and
    `extras["ponder"]` the ponder cost N + R. In evaluation mode an input that has halted runs no
    further block; in training every block runs on every input (`executed` is None). With
    `halting_bias` = -3 the scores start small, so training starts with every block running.
    """

    def __init__(
        self,
        n_blocks: int = 4,
        width: int = 32,
        *,
        epsilon: float = 0.01,
        halting_bias: float = -3.0,
        n_classes: int = MNIST1D_CLASSES,
        length: int = MNIST1D_LENGTH,
        kernel_size: int = 5,
    ) -> None:
        super().__init__()
        check_positive_ints(n_blocks=n_blocks, width=width)
        _check_epsilon(epsilon)
        self.epsilon = epsilon
        self.stem = conv_block(1, width, kernel_size)
        self.blocks = nn.ModuleList(conv_block(width, width, kernel_size) for _ in range(n_blocks))
        self.halt = nn.ModuleList(nn.Linear(width, 1) for _ in range(n_blocks))
        for unit in self.halt:
            nn.init.constant_(unit.bias, halting_bias)
        self.head = ExitHead(width, length, n_classes)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        """Logits, step count N, blocks run and ponder cost N + R for each input."""
        x = self.stem(x)
        batch = len(x)
        states, scores = [], []
        total = x.new_zeros(batch)  # sum of the halting scores so far
        for i, (block, halt) in enumerate(zip(self.blocks, self.halt, strict=True)):
            running = total < 1 - self.epsilon if i > 0 else torch.ones_like(total, dtype=torch.bool)
            if self.training:
                x = x + block(x)
            else:
                if not running.any():
                    break
                x = add_residual_on_rows(block, x, running)
            if i < len(self.blocks) - 1:
                h = torch.sigmoid(halt(x.mean(dim=-1))).squeeze(1) * running
            else:  # the last block always halts: its unit is not needed
                h = running.to(x.dtype)
            states.append(x)
            scores.append(h)
            total = total + h
        stacked = torch.stack(scores, dim=1)
        if stacked.shape[1] < len(self.blocks):  # every input halted early: the rest carry no weight
            stacked = F.pad(stacked, (0, len(self.blocks) - stacked.shape[1]))
        weights, steps, remainder = halting_weights(stacked, self.epsilon)
        mixed = sum(weights[:, i, None, None] * state for i, state in enumerate(states))
        ran = None if self.training else torch.arange(len(self.blocks), device=x.device) < steps[:, None]
        return ModelOutput(
            self.head(mixed),
            decisions={"steps": steps},
            executed=ran,
            extras={"ponder": steps.to(x.dtype) + remainder},
        )


def ponder_loss(tau: float) -> Callable[[ModelOutput, torch.Tensor], torch.Tensor]:
    """The ACT training loss for `train.fit`: cross-entropy + tau * mean ponder cost (N + R)."""
    if isinstance(tau, bool) or not isinstance(tau, int | float) or tau < 0:
        raise ValueError(f"tau must be a non-negative number, got {tau!r}")

    def loss(output: ModelOutput, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output.logits, y) + tau * output.extras["ponder"].mean()

    return loss


@timing_cases("halting")
def _timing_cases(device: torch.device) -> dict[str, TimingCase]:
    """ACT halting after its first block and after its last, and the static CNNs of 3 and 4 blocks."""
    x = torch.randn(256, *MNIST1D_SHAPE)
    act_first, act_all = ACTResidualCNN(4, 16, halting_bias=5.0), ACTResidualCNN(4, 16, halting_bias=-5.0)
    for model in (act_first, act_all):  # h_l = sigmoid(bias) for every input: 0.993 halts, 0.007 never
        for unit in model.halt:
            nn.init.zeros_(unit.weight)
    models = {
        "act_first_block": act_first,
        "act_all_blocks": act_all,
        "static_3_blocks": GatedResidualCNN(3, 16, estimator=None),
        "static_4_blocks": GatedResidualCNN(4, 16, estimator=None),
    }
    return {
        name: TimingCase(model.to(device).eval(), x, reference="static_4_blocks" if "act" in name else None)
        for name, model in models.items()
    }
