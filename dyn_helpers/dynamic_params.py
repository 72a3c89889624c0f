"""Dynamic parameters: weights that depend on the input. Taught in chapter 2.

`CondConv1d` mixes n kernels per input with softmax routing, as DynamicConv does (the name is
CondConv's, whose sigmoid routing weights do not sum to one; dynamic_convolution.ipynb);
`DynamicFilterConv2d` predicts a layer's filters from the input and `DeformableConv2d` moves
its sampling points with predicted offsets (weight_prediction.ipynb). `FlopCounterMode` does
not count `grid_sample`; `flops_with_sampling` adds the sampling work explicitly.
"""

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from dyn_helpers.early_exit import ExitHead, StaticCNN, conv_block
from dyn_helpers.measure import TimingCase, count_flops, timing_cases

# Explicit cost of bilinear sampling (FlopCounterMode does not count grid_sample): per sampling
# point, the fractional parts and the four corner weights; per sampled value (each channel),
# four multiplications and three additions.
FLOPS_PER_SAMPLING_POINT = 8
FLOPS_PER_SAMPLED_VALUE = 7


def _check_positive(**sizes: int) -> None:
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


class CondConv1d(nn.Module):
    """n kernels mixed per input: W(x) = sum_i alpha_i(x) W_i, alpha(x) = softmax(A mean(x) / T).

    The mixed kernel is applied as one grouped convolution (one group per sample), so an
    input pays for one convolution plus the routing and the mixing.
    """

    def __init__(
        self, c_in: int, c_out: int, kernel_size: int = 5, n_kernels: int = 4, temperature: float = 1.0
    ):
        super().__init__()
        _check_positive(c_in=c_in, c_out=c_out, kernel_size=kernel_size, n_kernels=n_kernels)
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.weight = nn.Parameter(torch.empty(n_kernels, c_out, c_in, kernel_size))
        for w in self.weight:
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))
        self.router = nn.Linear(c_in, n_kernels)
        self.temperature = temperature
        self.padding = kernel_size // 2

    def routing(self, x: torch.Tensor) -> torch.Tensor:
        """Mixing weights r(x), shape (batch, n_kernels), from the input averaged over positions."""
        if x.dim() != 3 or x.shape[1] != self.weight.shape[2]:
            raise ValueError(
                f"x must have shape (batch, {self.weight.shape[2]}, length), got {tuple(x.shape)}"
            )
        return F.softmax(self.router(x.mean(dim=2)) / self.temperature, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mix the kernels for each input, then convolve once: (batch, c_in, L) -> (batch, c_out, L)."""
        r = self.routing(x)
        n_kernels, c_out, c_in, size = self.weight.shape
        mixed = (r @ self.weight.view(n_kernels, -1)).view(-1, c_in, size)  # (batch * c_out, c_in, size)
        out = F.conv1d(x.reshape(1, -1, x.shape[2]), mixed, padding=self.padding, groups=len(x))
        return out.view(len(x), c_out, -1)

    def forward_mixing_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """The same map computed the expensive way: K convolutions, then mix their outputs."""
        r = self.routing(x)
        outs = torch.stack([F.conv1d(x, w, padding=self.padding) for w in self.weight], dim=1)
        return torch.einsum("bk,bkol->bol", r, outs)


class CondConvCNN(nn.Module):
    """A 1-D CNN whose blocks after the first use `CondConv1d` (then BatchNorm and ReLU).

    The first block stays static: averaged over positions, a one-channel input gives the
    router a single number. Compare with `early_exit.StaticCNN` of near-equal FLOPs.
    """

    def __init__(
        self,
        width: int,
        depth: int = 4,
        n_kernels: int = 4,
        n_classes: int = 10,
        length: int = 40,
        kernel_size: int = 5,
    ):
        super().__init__()
        _check_positive(width=width, depth=depth, n_classes=n_classes, length=length)
        dynamic = [
            nn.Sequential(
                CondConv1d(width, width, kernel_size, n_kernels), nn.BatchNorm1d(width), nn.ReLU(inplace=True)
            )
            for _ in range(depth - 1)
        ]
        self.blocks = nn.Sequential(conv_block(1, width, kernel_size), *dynamic)
        self.head = ExitHead(width, length, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (batch, n_classes)."""
        return self.head(self.blocks(x))

    def routing(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each CondConv layer's mixing weights for `x`, in layer order (evaluation mode)."""
        weights = []
        for block in self.blocks:
            if isinstance(block[0], CondConv1d):
                weights.append(block[0].routing(x))
            x = block(x)
        return weights


class DynamicFilterConv2d(nn.Module):
    """Filters predicted from the input: W(x) = W_0 + reshape(G(mean(x))), G a two-layer MLP.

    A dynamic filter network layer; the generator's last layer starts at zero, so training
    starts from the static convolution W_0.
    """

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3, hidden: int = 16):
        super().__init__()
        _check_positive(c_in=c_in, c_out=c_out, kernel_size=kernel_size, hidden=hidden)
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve each input with its own filters (one grouped convolution)."""
        w = self.filters(x)
        batch, c_out = w.shape[:2]
        out = F.conv2d(x.reshape(1, -1, *x.shape[2:]), w.flatten(0, 1), padding=self.padding, groups=batch)
        return out.view(batch, c_out, *x.shape[2:])


class DeformableConv2d(nn.Module):
    """Deformable convolution: y(p) = sum_n w_n x(p + p_n + dp_n(x)), x read by bilinear sampling.

    The offsets dp come from a plain convolution on the input (2 per kernel tap), starting at
    zero so the layer starts as an ordinary convolution with 'same' padding.
    """

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3):
        super().__init__()
        _check_positive(c_in=c_in, c_out=c_out, kernel_size=kernel_size)
        self.kernel_size = kernel_size
        self.offset = nn.Conv2d(c_in, 2 * kernel_size**2, kernel_size, padding=kernel_size // 2)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)
        weight = torch.empty(c_out, c_in, kernel_size, kernel_size)
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
        self.weight = nn.Parameter(weight.flatten(1))  # (c_out, c_in * k * k), taps in conv2d order

    def sampling_points(self, x: torch.Tensor) -> torch.Tensor:
        """Where each tap reads, in pixels: shape (batch, k*k, H, W, 2) holding (row, column)."""
        if x.dim() != 4 or x.shape[1] * self.kernel_size**2 != self.weight.shape[1]:
            raise ValueError(
                f"x must have shape (batch, c_in, H, W) matching the layer, got {tuple(x.shape)}"
            )
        batch, _, height, width = x.shape
        k, half = self.kernel_size, self.kernel_size // 2
        taps = torch.stack(
            torch.meshgrid(torch.arange(k) - half, torch.arange(k) - half, indexing="ij"), dim=-1
        ).view(k * k, 1, 1, 2)
        grid = torch.stack(torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij"), dim=-1)
        offsets = self.offset(x).view(batch, k * k, 2, height, width).permute(0, 1, 3, 4, 2)
        return grid.to(x) + taps.to(x) + offsets

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Sample the input at the shifted taps, then one matrix product with the weights."""
        batch, c_in, height, width = x.shape
        points = self.sampling_points(x)
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
    """

    def __init__(self, width: int, middle: str = "plain", n_classes: int = 10, size: int = 16):
        super().__init__()
        _check_positive(width=width, n_classes=n_classes)
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (batch, n_classes) for images (batch, 1, size, size)."""
        return self.head(self.features(x).flatten(1))


@timing_cases("dynamic_convolution")
def _dynamic_convolution_timing_cases(device: torch.device) -> dict[str, TimingCase]:
    """CondConv CNNs of widths 8 and 16 (4 kernels) and their static twins, the notebook's widths 9 and 17."""
    x = torch.randn(256, 1, 40)
    cases = {}
    for width, twin in ((8, 9), (16, 17)):  # twin: the narrowest static CNN with at least CondConv's FLOPs
        cases[f"condconv_width_{width}"] = TimingCase(CondConvCNN(width, n_kernels=4).to(device).eval(), x)
        cases[f"static_width_{twin}"] = TimingCase(StaticCNN(4, (twin,) * 4).to(device).eval(), x)
    return cases


@timing_cases("weight_prediction")
def _weight_prediction_timing_cases(device: torch.device) -> dict[str, TimingCase]:
    """Width-12 digit CNNs with each middle layer, and the notebook's plain twins of widths 19 and 14."""
    x = torch.randn(256, 1, 16, 16)
    # 19 and 14: the narrowest plain CNNs with at least the deformable and the dynamic-filter CNN's FLOPs
    widths = {"plain_width_12": 12, "plain_width_19": 19, "plain_width_14": 14}
    models = {name: DigitCNN(width) for name, width in widths.items()}
    models |= {f"{m.replace(' ', '_')}_width_12": DigitCNN(12, m) for m in ("deformable", "dynamic filter")}
    return {name: TimingCase(model.to(device).eval(), x) for name, model in models.items()}
