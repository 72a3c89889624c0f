"""Shared layers: the block, stack and classifier every 1-D model of the book is built from, the
static twins, and a residual block run only on the inputs that need it. Taught in chapter 2.
"""

from collections.abc import Sequence

import torch
from torch import nn

from dyn_helpers.data import MNIST1D_CLASSES, MNIST1D_LENGTH


def conv_block(c_in: int, c_out: int, kernel_size: int = 5) -> nn.Sequential:
    """The one block used everywhere: Conv1d (same padding) -> BatchNorm1d -> ReLU."""
    return nn.Sequential(
        nn.Conv1d(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm1d(c_out),
        nn.ReLU(inplace=True),
    )


class ExitHead(nn.Linear):
    """Classifier on a feature map: flatten, then one linear layer."""

    def __init__(self, channels: int, length: int, n_classes: int) -> None:
        super().__init__(channels * length, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map features (batch, channels, length) to logits (batch, n_classes)."""
        return super().forward(x.flatten(1))


def conv_stack(widths: Sequence[int], kernel_size: int = 5) -> nn.ModuleList:
    """`conv_block` layers with the given output widths, each reading the previous one (the input has 1 channel)."""
    if len(widths) < 1 or any(int(w) < 1 for w in widths):
        raise ValueError(f"widths must be a non-empty sequence of positive ints, got {list(widths)}")
    c_in = [1, *(int(w) for w in widths[:-1])]
    return nn.ModuleList(conv_block(c, int(w), kernel_size) for c, w in zip(c_in, widths, strict=True))


class StaticCNN(nn.Module):
    """The first `depth` blocks of the same stack, with one classifier at the end."""

    def __init__(
        self,
        depth: int,
        widths: Sequence[int] = (48, 48, 48, 48),
        n_classes: int = MNIST1D_CLASSES,
        length: int = MNIST1D_LENGTH,
        kernel_size: int = 5,
    ) -> None:
        super().__init__()
        ok = isinstance(depth, int) and not isinstance(depth, bool)
        if not ok or not 1 <= depth <= len(widths):
            raise ValueError(f"depth must be an int in [1, {len(widths)}], got {depth!r}")
        self.blocks = conv_stack(list(widths)[:depth], kernel_size)
        self.head = ExitHead(int(widths[depth - 1]), length, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The logits of the single classifier."""
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def add_residual_on_rows(block: nn.Module, x: torch.Tensor, run: torch.Tensor) -> torch.Tensor:
    """`x + block(x)` for the inputs where `run` is true (bool or 0/1, shape (N,)); the others pass
    unchanged. Only the selected rows are computed: real sparse execution of a skipped block."""
    if run.shape != (len(x),):
        raise ValueError(f"run must have shape ({len(x)},), got {tuple(run.shape)}")
    x = x.clone()
    rows = run.nonzero().squeeze(1)
    if len(rows):
        x[rows] = x[rows] + block(x[rows])
    return x
