"""Dynamic parameters: weights that depend on the input. Taught in chapter 2.

`CondConv1d` mixes n kernels per input with softmax routing, as DynamicConv does (the name is
CondConv's, whose sigmoid routing weights do not sum to one; dynamic_convolution.ipynb);
`DynamicFilterConv2d` predicts a layer's filters from the input and `DeformableConv2d` moves
its sampling points with predicted offsets (weight_prediction.ipynb). Each layer returns a
tensor and can be handed the weights it would predict; the dynamic networks return a
`ModelOutput` whose decisions are those weights. `FlopCounterMode` does not count
`grid_sample`; `flops_with_sampling` adds the sampling work explicitly.
"""

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from dyn_helpers.checks import check_positive_ints
from dyn_helpers.data import DIGITS_CLASSES, MNIST1D_CLASSES, MNIST1D_LENGTH, MNIST1D_SHAPE
from dyn_helpers.layers import ExitHead, StaticCNN, conv_block
from dyn_helpers.measure import TimingCase, count_flops, timing_cases
from dyn_helpers.outputs import Mode, ModelOutput

# Explicit cost of bilinear sampling (FlopCounterMode does not count grid_sample): per sampling
# point, the fractional parts and the four corner weights; per sampled value (each channel),
# four multiplications and three additions.
FLOPS_PER_SAMPLING_POINT = 8
FLOPS_PER_SAMPLED_VALUE = 7

MIXINGS = ("kernels", "outputs")


class CondConv1d(nn.Module):
    """n kernels mixed per input: W(x) = sum_i alpha_i(x) W_i, alpha(x) = softmax(A mean(x) / T).

    Mode `mixing`: "kernels" (the default) mixes the kernels, then applies the mixed kernel as one
    grouped convolution (one group per sample), so an input pays for one convolution plus the
    routing and the mixing; "outputs" computes the same map the expensive way, n convolutions
    whose outputs are then mixed.
    """

    mixing = Mode(*MIXINGS)

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel_size: int = 5,
        n_kernels: int = 4,
        temperature: float = 1.0,
        mixing: str = "kernels",
    ):
        super().__init__()
        check_positive_ints(c_in=c_in, c_out=c_out, kernel_size=kernel_size, n_kernels=n_kernels)
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.weight = nn.Parameter(torch.empty(n_kernels, c_out, c_in, kernel_size))
        for w in self.weight:
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))
        self.router = nn.Linear(c_in, n_kernels)
        self.temperature = temperature
        self.padding = kernel_size // 2
        self.mixing = mixing

    def routing(self, x: torch.Tensor) -> torch.Tensor:
        """Mixing weights alpha(x), shape (batch, n_kernels), from the input averaged over positions."""
        if x.dim() != 3 or x.shape[1] != self.weight.shape[2]:
            raise ValueError(
                f"x must have shape (batch, {self.weight.shape[2]}, length), got {tuple(x.shape)}"
            )
        return F.softmax(self.router(x.mean(dim=2)) / self.temperature, dim=1)

    def forward(self, x: torch.Tensor, alpha: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, c_in, L) -> (batch, c_out, L) with the kernels mixed by `alpha` (default: `routing(x)`)."""
        alpha = self.routing(x) if alpha is None else alpha
        n_kernels, c_out, c_in, size = self.weight.shape
        if alpha.shape != (len(x), n_kernels):
            raise ValueError(f"alpha must have shape ({len(x)}, {n_kernels}), got {tuple(alpha.shape)}")
        if self.mixing == "outputs":
            outs = torch.stack([F.conv1d(x, w, padding=self.padding) for w in self.weight], dim=1)
            return torch.einsum("bk,bkol->bol", alpha, outs)
        mixed = (alpha @ self.weight.view(n_kernels, -1)).view(-1, c_in, size)  # (batch * c_out, c_in, size)
        out = F.conv1d(x.reshape(1, -1, x.shape[2]), mixed, padding=self.padding, groups=len(x))
        return out.view(len(x), c_out, -1)


class CondConvCNN(nn.Module):
    """A 1-D CNN whose blocks after the first use `CondConv1d` (then BatchNorm and ReLU).

    `forward` returns a `ModelOutput`: the logits, and `decisions["alpha"]` of shape
    (N, depth - 1, n_kernels), the mixing weights of each CondConv layer in layer order;
    everything runs (`executed` is None). Mode `mixing` sets every CondConv layer's mode.
    The first block stays static: averaged over positions, a one-channel input gives the router
    a single number. Compare with `layers.StaticCNN` of near-equal FLOPs.
    """

    def __init__(
        self,
        width: int,
        depth: int = 4,
        n_kernels: int = 4,
        n_classes: int = MNIST1D_CLASSES,
        length: int = MNIST1D_LENGTH,
        kernel_size: int = 5,
        mixing: str = "kernels",
    ):
        super().__init__()
        check_positive_ints(width=width, n_classes=n_classes, length=length)
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 2:
            raise ValueError(
                f"depth must be an int of at least 2 (one static block, then CondConv), got {depth!r}"
            )
        dynamic = [
            nn.Sequential(
                CondConv1d(width, width, kernel_size, n_kernels), nn.BatchNorm1d(width), nn.ReLU(inplace=True)
            )
            for _ in range(depth - 1)
        ]
        self.blocks = nn.Sequential(conv_block(1, width, kernel_size), *dynamic)
        self.head = ExitHead(width, length, n_classes)
        self.mixing = mixing

    @property
    def mixing(self) -> str:
        """The mode of every `CondConv1d` layer: "kernels" or "outputs"."""
        return self.blocks[1][0].mixing

    @mixing.setter
    def mixing(self, value: str) -> None:
        for block in self.blocks[1:]:
            block[0].mixing = value

    def forward(self, x: torch.Tensor) -> ModelOutput:
        """Logits (batch, n_classes) and the mixing weights each CondConv layer used."""
        alphas = []
        for block in self.blocks:
            for layer in block:
                if isinstance(layer, CondConv1d):
                    alphas.append(layer.routing(x))
                    x = layer(x, alphas[-1])
                else:
                    x = layer(x)
        return ModelOutput(self.head(x), {"alpha": torch.stack(alphas, dim=1)})


class DynamicFilterConv2d(nn.Module):
    """Filters predicted from the input: W(x) = W_0 + reshape(G(mean(x))), G a two-layer MLP.

    A dynamic filter network layer; the generator's last layer starts at zero, so training
    starts from the static convolution W_0.
    """

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3, hidden: int = 16):
        super().__init__()
        check_positive_ints(c_in=c_in, c_out=c_out, kernel_size=kernel_size, hidden=hidden)
        self.base = nn.Parameter(torch.empty(c_out, c_in, kernel_size, kernel_size))
        nn.init.kaiming_uniform_(self.base, a=math.sqrt(5))
        self.generator = nn.Sequential(
            nn.Linear(c_in, hidden), nn.ReLU(), nn.Linear(hidden, c_out * c_in * kernel_size**2)
        )
        nn.init.zeros_(self.generator[-1].weight)
        nn.init.zeros_(self.generator[-1].bias)
        self.padding = kernel_size // 2

    def filters(self, x: torch.Tensor) -> torch.Tensor:
        """The predicted filters W(x), shape (batch, c_out, c_in, k, k)."""
        if x.dim() != 4 or x.shape[1] != self.base.shape[1]:
            raise ValueError(f"x must have shape (batch, {self.base.shape[1]}, H, W), got {tuple(x.shape)}")
        delta = self.generator(x.mean(dim=(2, 3)))
        return self.base + delta.view(len(x), *self.base.shape)

    def forward(self, x: torch.Tensor, filters: torch.Tensor | None = None) -> torch.Tensor:
        """Convolve each input with its own filters (default: `filters(x)`) in one grouped convolution."""
        w = self.filters(x) if filters is None else filters
        if w.shape != (len(x), *self.base.shape):
            raise ValueError(f"filters must have shape {(len(x), *self.base.shape)}, got {tuple(w.shape)}")
        batch, c_out = w.shape[:2]
        out = F.conv2d(x.reshape(1, -1, *x.shape[2:]), w.flatten(0, 1), padding=self.padding, groups=batch)
        return out.view(batch, c_out, *x.shape[2:])


class DeformableConv2d(nn.Module):
    """Deformable convolution: y(p) = sum_n w_n x(p + p_n + dp_n(x)), x read by bilinear sampling.

    The offsets dp come from a plain convolution on the input, `offset_conv` (a (row, column)
    pair per kernel tap), starting at zero so the layer starts as an ordinary convolution with
    'same' padding.
    """

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3):
        super().__init__()
        check_positive_ints(c_in=c_in, c_out=c_out, kernel_size=kernel_size)
        self.kernel_size = kernel_size
        self.offset_conv = nn.Conv2d(c_in, 2 * kernel_size**2, kernel_size, padding=kernel_size // 2)
        nn.init.zeros_(self.offset_conv.weight)
        nn.init.zeros_(self.offset_conv.bias)
        weight = torch.empty(c_out, c_in, kernel_size, kernel_size)
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
        self.weight = nn.Parameter(weight.flatten(1))  # (c_out, c_in * k * k), taps in conv2d order

    def offsets(self, x: torch.Tensor) -> torch.Tensor:
        """The offsets dp(x), shape (batch, 2 k*k, H, W): channels 2j and 2j + 1 shift tap j's row and column."""
        if x.dim() != 4 or x.shape[1] * self.kernel_size**2 != self.weight.shape[1]:
            raise ValueError(
                f"x must have shape (batch, c_in, H, W) matching the layer, got {tuple(x.shape)}"
            )
        return self.offset_conv(x)

    def sampling_points(self, offsets: torch.Tensor) -> torch.Tensor:
        """Where each tap reads, in pixels, given the offsets: shape (batch, k*k, H, W, 2) holding (row, column)."""
        k, half = self.kernel_size, self.kernel_size // 2
        if offsets.dim() != 4 or offsets.shape[1] != 2 * k * k:
            raise ValueError(
                f"offsets must have shape (batch, {2 * k * k}, H, W), got {tuple(offsets.shape)}"
            )
        batch, _, height, width = offsets.shape
        taps = torch.stack(
            torch.meshgrid(torch.arange(k) - half, torch.arange(k) - half, indexing="ij"), dim=-1
        ).view(k * k, 1, 1, 2)
        grid = torch.stack(torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij"), dim=-1)
        shifts = offsets.view(batch, k * k, 2, height, width).permute(0, 1, 3, 4, 2)
        return grid.to(offsets) + taps.to(offsets) + shifts

    def forward(self, x: torch.Tensor, offsets: torch.Tensor | None = None) -> torch.Tensor:
        """Sample the input at the shifted taps (default offsets: `offsets(x)`), then one matrix product with the weights."""
        offsets = self.offsets(x) if offsets is None else offsets
        batch, c_in, height, width = x.shape
        if offsets.shape[0] != batch or offsets.shape[2:] != x.shape[2:]:
            raise ValueError(f"offsets must have shape (batch, 2 k*k, H, W) of x, got {tuple(offsets.shape)}")
        points = self.sampling_points(offsets)
        scale = torch.tensor([height - 1, width - 1], dtype=x.dtype, device=x.device).clamp(min=1)
        grid = (2 * points / scale - 1).flip(-1)  # grid_sample wants (x, y) in [-1, 1]
        grid = grid.view(batch, -1, width, 2)  # (batch, k*k*H, W, 2)
        sampled = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        columns = sampled.view(batch, c_in * self.kernel_size**2, height * width)
        return torch.einsum("oc,bcn->bon", self.weight, columns).view(batch, -1, height, width)

    def sampling_flops(self, x: torch.Tensor) -> int:
        """FLOPs of the bilinear sampling for input `x`, which `FlopCounterMode` does not count."""
        batch, c_in, height, width = x.shape
        points = batch * self.kernel_size**2 * height * width
        return points * (FLOPS_PER_SAMPLING_POINT + FLOPS_PER_SAMPLED_VALUE * c_in)


def flops_with_sampling(fn: Callable[[torch.Tensor], object], x: torch.Tensor) -> int:
    """`measure.count_flops` plus the grid_sample work of every `DeformableConv2d` that ran."""
    extra: list[int] = []

    def record(module: nn.Module, args: tuple) -> None:
        extra.append(module.sampling_flops(args[0]))

    modules = fn.modules() if isinstance(fn, nn.Module) else []
    handles = [m.register_forward_pre_hook(record) for m in modules if isinstance(m, DeformableConv2d)]
    try:
        counted = count_flops(fn, x)
    finally:
        for handle in handles:
            handle.remove()
    return counted + sum(extra)


MIDDLE_LAYERS = {
    "plain": lambda c: nn.Conv2d(c, c, 3, padding=1, bias=False),
    "deformable": lambda c: DeformableConv2d(c, c, 3),
    "dynamic filter": lambda c: DynamicFilterConv2d(c, c, 3),
}


class DigitCNN(nn.Module):
    """A small 2-D CNN for 16x16 digits whose middle convolution is plain, deformable or dynamic.

    conv 3x3 -> pool -> middle 3x3 -> pool -> conv 3x3 -> linear, each conv with BatchNorm and ReLU.
    With a plain middle layer the network is static and `forward` returns logits; otherwise a
    `ModelOutput` whose decisions hold what the middle layer predicted for each input:
    `"filters"` (N, width, width, 3, 3) or `"offsets"` (N, 18, size / 2, size / 2), see
    `DynamicFilterConv2d.filters` and `DeformableConv2d.offsets`; everything runs.
    """

    def __init__(self, width: int, middle: str = "plain", n_classes: int = DIGITS_CLASSES, size: int = 16):
        super().__init__()
        check_positive_ints(width=width, n_classes=n_classes)
        if middle not in MIDDLE_LAYERS:
            raise ValueError(f"middle must be one of {sorted(MIDDLE_LAYERS)}, got {middle!r}")
        if size % 4 != 0 or size < 4:
            raise ValueError(f"size must be a positive multiple of 4, got {size}")

        def bn_relu() -> list[nn.Module]:
            return [nn.BatchNorm2d(width), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1, bias=False),
            *bn_relu(),
            nn.MaxPool2d(2),
            MIDDLE_LAYERS[middle](width),
            *bn_relu(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            *bn_relu(),
        )
        self.head = nn.Linear(width * (size // 4) ** 2, n_classes)

    @property
    def middle(self) -> nn.Module:
        """The middle convolution (plain, deformable or dynamic filter)."""
        return self.features[4]

    def forward(self, x: torch.Tensor) -> torch.Tensor | ModelOutput:
        """Logits (batch, n_classes) for images (batch, 1, size, size), with the middle layer's predictions."""
        middle = self.middle
        if isinstance(middle, nn.Conv2d):
            return self.head(self.features(x).flatten(1))
        h = self.features[:4](x)
        if isinstance(middle, DynamicFilterConv2d):
            decisions = {"filters": middle.filters(h)}
            h = middle(h, filters=decisions["filters"])
        else:
            decisions = {"offsets": middle.offsets(h)}
            h = middle(h, offsets=decisions["offsets"])
        return ModelOutput(self.head(self.features[5:](h).flatten(1)), decisions)


@timing_cases("dynamic_convolution")
def _dynamic_convolution_timing_cases(device: torch.device) -> dict[str, TimingCase]:
    """CondConv CNNs of widths 8 and 16 (4 kernels), the static CNNs of their widths (the reference),
    their static twins of widths 9 and 17, and width 16 again in mode `mixing="outputs"`: the same
    map, computed the expensive way."""
    x = torch.randn(256, *MNIST1D_SHAPE)
    cases = {}
    for width, twin in ((8, 9), (16, 17)):  # twin: the narrowest static CNN with at least CondConv's FLOPs
        cases[f"condconv_width_{width}"] = TimingCase(
            CondConvCNN(width, n_kernels=4).to(device).eval(), x, reference=f"static_width_{width}"
        )
        for w in (width, twin):
            cases[f"static_width_{w}"] = TimingCase(StaticCNN(4, (w,) * 4).to(device).eval(), x)
    outputs_mixed = CondConvCNN(16, n_kernels=4, mixing="outputs")
    cases["condconv_mixing_outputs_width_16"] = TimingCase(
        outputs_mixed.to(device).eval(), x, reference="static_width_16", counted_by="condconv_width_16"
    )
    return cases


@timing_cases("weight_prediction")
def _weight_prediction_timing_cases(device: torch.device) -> dict[str, TimingCase]:
    """Width-12 digit CNNs with each middle layer, and the notebook's plain twins of widths 19 and 14."""
    x = torch.randn(256, 1, 16, 16)
    # 19 and 14: the narrowest plain CNNs with at least the deformable and the dynamic-filter CNN's FLOPs
    widths = {"plain_width_12": 12, "plain_width_19": 19, "plain_width_14": 14}
    models = {name: DigitCNN(width) for name, width in widths.items()}
    models |= {f"{m.replace(' ', '_')}_width_12": DigitCNN(12, m) for m in ("deformable", "dynamic filter")}
    return {
        name: TimingCase(
            model.to(device).eval(), x, reference=None if name.startswith("plain") else "plain_width_12"
        )
        for name, model in models.items()
    }
