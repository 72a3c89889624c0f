"""Dynamic channel gating in the style of Feature Boosting and Suppression (FBS). Taught in chapter 2.

A cheap saliency predictor looks at the globally pooled input of a convolution and keeps, for
each input, only the `k` most salient output channels, scaled by their saliency. A channel
switched off is neither computed nor read by the next layer, so the model's sparse execution
(`execution = "sparse"`) runs each layer on the gathered active channels only, and
`FlopCounterMode` charges exactly what ran.
"""

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dyn_helpers.checks import check_positive_ints
from dyn_helpers.data import MNIST1D_CLASSES, MNIST1D_LENGTH, MNIST1D_SHAPE
from dyn_helpers.layers import StaticCNN
from dyn_helpers.measure import TimingCase, timing_cases
from dyn_helpers.outputs import Mode, ModelOutput


def _check_keep(keep: float) -> None:
    if isinstance(keep, bool) or not isinstance(keep, int | float) or not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must be a fraction of channels in (0, 1], got {keep!r}")


def top_k_gate(saliency: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the `k` largest saliencies of each row (batch, channels) and zero the rest."""
    if saliency.dim() != 2:
        raise ValueError(f"saliency must have shape (batch, channels), got {tuple(saliency.shape)}")
    if not 1 <= k <= saliency.shape[1]:
        raise ValueError(f"k must be in [1, {saliency.shape[1]}], got {k}")
    index = saliency.topk(k, dim=1).indices
    mask = torch.zeros_like(saliency).scatter_(1, index, 1.0)
    return saliency * mask


class GatedConvBlock(nn.Module):
    """Conv1d -> BatchNorm1d -> scale by the top-k saliency gate -> ReLU.

    The saliency is g(x) = ReLU(W mean_t abs(x_t) + b), one value per output channel; the gate
    keeps the `k = round(keep * c_out)` largest. With `gated=False` every channel is kept
    with gate 1, which is the plain `conv_block`.
    """

    def __init__(self, c_in: int, c_out: int, keep: float, kernel_size: int = 5, gated: bool = True) -> None:
        super().__init__()
        _check_keep(keep)
        check_positive_ints(c_in=c_in, c_out=c_out, kernel_size=kernel_size)
        self.conv = nn.Conv1d(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm1d(c_out)
        self.gated = gated
        self.k = max(1, round(keep * c_out)) if gated else c_out
        self.saliency = nn.Linear(c_in, c_out) if gated else None
        if self.saliency is not None:
            nn.init.constant_(self.saliency.bias, 1.0)  # every channel starts salient

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The per-input channel gate (batch, c_out): saliency on the kept channels, 0 elsewhere."""
        if self.saliency is None:
            return torch.ones(x.shape[0], self.bn.num_features, dtype=x.dtype, device=x.device)
        return top_k_gate(F.relu(self.saliency(x.abs().mean(dim=2))), self.k)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Dense execution (for training): every channel is computed, then gated. Returns (y, gate)."""
        gate = self.gate(x)
        return F.relu(self.bn(self.conv(x)) * gate[:, :, None]), gate


class ChannelGatedCNN(nn.Module):
    """A stack of `GatedConvBlock` layers and a linear classifier on the flattened features.

    `gate_first=False` leaves the first block ungated (its input has a single channel, so
    there is little for a predictor to see and nothing to save on the input side).
    `forward` returns a `ModelOutput`: the logits and `decisions["channels"]`, the channels whose
    gate is non-zero (N, sum of widths, block after block). `execution` (settable later) says how
    it runs: "dense" (the default, for training) computes every channel, multiplies the switched-off
    ones by 0 and gives each block's gate (N, width) in `extras["gates"]`; "sparse" (evaluation
    mode only) runs each input alone and computes only its kept channels, listed in `executed`.
    """

    execution = Mode("dense", "sparse")

    def __init__(
        self,
        widths: Sequence[int] = (48, 48, 48, 48),
        keep: float = 0.5,
        *,
        gate_first: bool = True,
        n_classes: int = MNIST1D_CLASSES,
        length: int = MNIST1D_LENGTH,
        kernel_size: int = 5,
        execution: str = "dense",
    ) -> None:
        super().__init__()
        _check_keep(keep)
        if len(widths) < 1 or any(int(w) < 1 for w in widths):
            raise ValueError(f"widths must be a non-empty sequence of positive ints, got {list(widths)}")
        c_in = [1, *(int(w) for w in widths[:-1])]
        self.blocks = nn.ModuleList(
            GatedConvBlock(c, int(w), keep, kernel_size, gated=gate_first or i > 0)
            for i, (c, w) in enumerate(zip(c_in, widths, strict=True))
        )
        self.head = nn.Linear(int(widths[-1]) * length, n_classes)
        self.length = length
        self.execution = execution

    def forward(self, x: torch.Tensor) -> ModelOutput:
        """The logits and the channels kept, run as `execution` says."""
        if self.execution == "sparse":
            return self._sparse(x)
        gates = []
        for block in self.blocks:
            x, gate = block(x)
            gates.append(gate)
        kept = torch.cat([gate > 0 for gate in gates], dim=1)
        return ModelOutput(self.head(x.flatten(1)), decisions={"channels": kept}, extras={"gates": gates})

    def _sparse(self, x: torch.Tensor) -> ModelOutput:
        if self.training:
            raise RuntimeError(
                'execution = "sparse" uses BatchNorm\'s running statistics: call model.eval() first'
            )
        if len(x) == 1:
            logits, channels, ran = self._sparse_one(x)
        else:
            rows = [self._sparse_one(x[i : i + 1]) for i in range(len(x))]
            logits, channels, ran = (torch.cat(parts) for parts in zip(*rows, strict=True))
        return ModelOutput(logits, decisions={"channels": channels}, executed=ran)

    def _sparse_one(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One input: each layer's saliency predictor and convolution read only the channels the
        previous layer kept, the convolution computes only the channels this layer keeps, and the
        classifier reads only the last layer's kept channels. The same logits as dense execution."""
        active, first = torch.arange(x.shape[1], device=x.device), 0
        computed, scales = [], []  # per block: the channels computed (numbered across blocks), their gates
        for block in self.blocks:
            if block.saliency is None:
                keep = torch.arange(block.bn.num_features, device=x.device)
                scale = torch.ones(len(keep), device=x.device)
            else:
                pooled = x.abs().mean(dim=2)
                saliency = F.relu(F.linear(pooled, block.saliency.weight[:, active], block.saliency.bias))[0]
                scale, keep = saliency.topk(block.k)
            weight = block.conv.weight[keep][:, active]
            y = F.conv1d(x, weight, padding=block.conv.padding)
            bn = block.bn
            y = F.batch_norm(
                y,
                bn.running_mean[keep],
                bn.running_var[keep],
                bn.weight[keep],
                bn.bias[keep],
                False,
                0.0,
                bn.eps,
            )
            x, active = F.relu(y * scale[None, :, None]), keep
            computed.append(keep + first)
            scales.append(scale)
            first += bn.num_features
        head_weight = self.head.weight.view(self.head.out_features, -1, self.length)[:, active]
        logits = F.linear(x.flatten(1), head_weight.flatten(1), self.head.bias)
        index = torch.cat(computed)
        ran = torch.zeros(1, first, dtype=torch.bool, device=x.device).index_fill_(1, index, True)
        channels = torch.zeros_like(ran).index_copy_(1, index, torch.cat(scales)[None] > 0)
        return logits, channels, ran


def channel_usage(model: ChannelGatedCNN, x: torch.Tensor) -> list[torch.Tensor]:
    """For each block, which channels each input keeps: a list of bool tensors (N, channels)."""
    if not isinstance(model, ChannelGatedCNN):
        raise TypeError(f"model must be a ChannelGatedCNN, got {type(model).__name__}")
    model.eval()
    with torch.no_grad():
        kept = model(x).decisions["channels"]
    return list(kept.split([block.bn.num_features for block in model.blocks], dim=1))


@timing_cases("channel_gating")
def _timing_cases(device: torch.device) -> dict[str, TimingCase]:
    """Executed paths keeping 1/2 and 3/4 of 32 channels, the first also run densely; static widths 16, 32."""
    x = torch.randn(256, *MNIST1D_SHAPE)
    half, three_quarters = (
        ChannelGatedCNN((32,) * 4, keep, execution="sparse").to(device).eval() for keep in (0.5, 0.75)
    )
    half_dense = copy.deepcopy(half)
    half_dense.execution = "dense"
    static = {width: StaticCNN(4, widths=(width,) * 4).to(device).eval() for width in (16, 32)}
    return {
        "gated_half_executed": TimingCase(half, x[:64], batch_sizes=(1,), reference="static_width_32"),
        "gated_3_4_executed": TimingCase(
            three_quarters, x[:64], batch_sizes=(1,), reference="static_width_32"
        ),
        "gated_half_dense": TimingCase(
            half_dense, x, reference="static_width_32", counted_by="gated_half_executed"
        ),
        "static_width_16": TimingCase(static[16], x),
        "static_width_32": TimingCase(static[32], x),
    }
