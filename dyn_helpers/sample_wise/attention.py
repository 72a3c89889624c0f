"""Dynamic features: channel attention (squeeze-and-excitation) and spatial attention. Taught in chapter 2.

Both rescale a block's features by weights computed from the features themselves. Scaling
output channel c by a_c(x) is the same as scaling that channel's filter, so channel attention
is a dynamic-parameter method: `rescaled_weight` gives the per-input filters it amounts to.
`AttentionCNN` returns a `ModelOutput` whose decisions are each block's attention weights.
"""

from collections.abc import Sequence

import torch
from torch import nn

from dyn_helpers.checks import check_positive_ints
from dyn_helpers.data import MNIST1D_CLASSES, MNIST1D_LENGTH, MNIST1D_SHAPE
from dyn_helpers.layers import ExitHead, StaticCNN, conv_stack
from dyn_helpers.measure import TimingCase, timing_cases
from dyn_helpers.outputs import ModelOutput

ATTENTIONS = ("se", "spatial")


class SqueezeExcitation(nn.Module):
    """Channel attention: a(x) = sigmoid(W2 ReLU(W1 mean_t x)), features scaled per channel by a(x)."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        check_positive_ints(channels=channels, reduction=reduction)
        if reduction > channels:
            raise ValueError(f"reduction must be at most channels ({channels}), got {reduction}")
        self.squeeze = nn.Linear(channels, channels // reduction)
        self.excite = nn.Linear(channels // reduction, channels)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """The attention weights a(x), shape (batch, channels), each in (0, 1)."""
        return torch.sigmoid(self.excite(torch.relu(self.squeeze(x.mean(dim=2)))))

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """Features (batch, channels, length) rescaled per channel by `weights` (default: `weights(x)`)."""
        a = self.weights(x) if weights is None else weights
        if a.shape != x.shape[:2]:
            raise ValueError(f"weights must have shape {tuple(x.shape[:2])}, got {tuple(a.shape)}")
        return x * a[:, :, None]


class SpatialAttention(nn.Module):
    """Spatial attention (CBAM's spatial branch): a(x) = sigmoid(conv([mean_c x; max_c x])), one weight per position."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        check_positive_ints(kernel_size=kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.conv = nn.Conv1d(2, 1, kernel_size, padding=kernel_size // 2)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """The attention weights a(x), shape (batch, length), each in (0, 1)."""
        pooled = torch.stack([x.mean(dim=1), x.amax(dim=1)], dim=1)
        return torch.sigmoid(self.conv(pooled))[:, 0]

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """Features (batch, channels, length) rescaled per position by `weights` (default: `weights(x)`)."""
        a = self.weights(x) if weights is None else weights
        if a.shape != (len(x), x.shape[2]):
            raise ValueError(f"weights must have shape {(len(x), x.shape[2])}, got {tuple(a.shape)}")
        return x * a[:, None, :]


class AttentionCNN(nn.Module):
    """A `conv_stack` with an attention module after each block, and a linear classifier (the `StaticCNN` head).

    `forward` returns a `ModelOutput`: the logits, and one decision per block,
    `decisions["attention_1"]`, ..., `decisions["attention_B"]` for B blocks, that block's
    attention weights, (N, channels) for SE and (N, length) for spatial attention; everything
    runs (`executed` is None).
    """

    def __init__(
        self,
        attention: str,
        widths: Sequence[int] = (16, 16, 16, 16),
        *,
        n_classes: int = MNIST1D_CLASSES,
        length: int = MNIST1D_LENGTH,
        kernel_size: int = 5,
        reduction: int = 4,
    ) -> None:
        super().__init__()
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
        self.blocks = conv_stack(widths, kernel_size)
        self.attention = nn.ModuleList(
            SqueezeExcitation(int(w), reduction) if attention == "se" else SpatialAttention() for w in widths
        )
        self.head = ExitHead(int(widths[-1]), length, n_classes)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        """The logits, and the attention weights of each block."""
        decisions = {}
        for i, (block, attend) in enumerate(zip(self.blocks, self.attention, strict=True), start=1):
            x = block(x)
            decisions[f"attention_{i}"] = attend.weights(x)
            x = attend(x, decisions[f"attention_{i}"])
        return ModelOutput(self.head(x), decisions)


def rescaled_weight(weight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Per-input filters W_c a_c: a conv weight (out, in, k) scaled per output channel by scale (batch, out).

    Returns (batch, out, in, k). Convolving input n with filters [n] equals convolving with
    `weight` and then scaling output channel c by scale[n, c].
    """
    if weight.dim() != 3:
        raise ValueError(f"weight must be a Conv1d weight (out, in, kernel), got shape {tuple(weight.shape)}")
    if scale.dim() != 2 or scale.shape[1] != weight.shape[0]:
        raise ValueError(f"scale must have shape (batch, {weight.shape[0]}), got {tuple(scale.shape)}")
    return weight[None] * scale[:, :, None, None]


@timing_cases("feature_attention")
def _timing_cases(device: torch.device) -> dict[str, TimingCase]:
    """Squeeze-and-excitation and spatial attention CNNs of width 16, and static CNNs of widths 16 and 17."""
    x = torch.randn(256, *MNIST1D_SHAPE)
    models = {
        "static_width_16": StaticCNN(4, widths=(16,) * 4),
        "static_width_17": StaticCNN(4, widths=(17,) * 4),
        "squeeze_excitation": AttentionCNN("se", (16,) * 4),
        "spatial_attention": AttentionCNN("spatial", (16,) * 4),
    }
    return {
        name: TimingCase(
            model.to(device).eval(), x, reference=None if name.startswith("static") else "static_width_16"
        )
        for name, model in models.items()
    }
