"""Resolution-adaptive inference in the style of RANet: low resolution first. Taught in chapter 3.

`ResolutionAdaptiveNet` has two sub-networks. The first reads the canvas averaged over squares of
`downsample` x `downsample` pixels and answers with its own classifier; the second reads the canvas
at full resolution and reuses the first one's feature maps, concatenated to its own at the same
scale (upsampled where the scales differ), as RANet's high-resolution sub-networks do. With its
mode `exit_threshold` set, an input whose first answer has a top softmax probability of at least
the threshold stops there; only the others run the second sub-network, so FLOPs counted for a
batch are those that ran. `ResolutionCNN` is the static network of one resolution the chapter
compares it with, and `two_scale_digits` the canvases where the choice of resolution matters:
digits at two sizes, large ones legible at low resolution, small ones not.
"""

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dyn_helpers.checks import check_positive_ints, check_unit_interval
from dyn_helpers.data import DIGITS_CLASSES, Split, Splits, cluttered_digits
from dyn_helpers.measure import TimingCase, count_flops, timing_cases
from dyn_helpers.outputs import ModelOutput

LOW, FULL = 1, 2  # exit numbers: the low-resolution answer, the full-resolution answer


def two_scale_digits(
    canvas_size: int = 24,
    n_clutter: int = 3,
    noise: float = 0.1,
    seed: int = 0,
    *,
    large_share: float = 0.5,
) -> Splits:
    """Cluttered canvases (`dyn_helpers.data.cluttered_digits`) whose digit is small (8 x 8 pixels) or
    large (16 x 16, the same digit magnified twice), chosen per canvas by a generator seeded with `seed`.

    A share `large_share` of the canvases, on average, holds a large digit. Each split's `box` is
    the digit's square, so `box[:, 2] // 8` is its scale (1 or 2); `difficulty` is 1 for a small
    digit and 0 for a large one. Deterministic for `seed`, like every data set of the book.
    """
    if isinstance(large_share, bool) or not isinstance(large_share, int | float) or not 0 <= large_share <= 1:
        raise ValueError(f"large_share must be a fraction in [0, 1], got {large_share!r}")
    small = cluttered_digits(canvas_size, n_clutter, noise, seed, scale=1)
    large = cluttered_digits(canvas_size, n_clutter, noise, seed + 1, scale=2)
    rng = np.random.default_rng([seed, 2])
    parts = []
    for name in ("train", "val", "test"):
        a, b = getattr(small, name), getattr(large, name)
        is_large = torch.as_tensor(rng.random(len(a)) < large_share)
        parts.append(
            replace(
                a,
                x=torch.where(is_large[:, None, None, None], b.x, a.x),
                box=torch.where(is_large[:, None], b.box, a.box),
                difficulty=(~is_large).float(),
            )
        )
    return Splits("cluttered digits at two scales", *parts, n_classes=small.n_classes)


def digit_scale(split: Split) -> torch.Tensor:
    """The magnification of each canvas's digit (1: 8 x 8 pixels, 2: 16 x 16), read from its box."""
    if not isinstance(split, Split) or split.box is None:
        raise ValueError("split must be a dyn_helpers.data.Split with boxes, such as two_scale_digits gives")
    return split.box[:, 2] // 8


def check_images(x: object, downsample: int = 1) -> None:
    """Raise unless `x` is a batch of one-channel images (N, 1, H, W) whose sides `downsample`
    divides into at least 4 pixels (the networks' layers halve them twice)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a tensor of images (N, 1, H, W), got {type(x).__name__}")
    if x.dim() != 4 or x.shape[1] != 1 or len(x) == 0:
        raise ValueError(
            f"x must be a non-empty batch of one-channel images (N, 1, H, W), got {tuple(x.shape)}"
        )
    height, width = x.shape[-2:]
    if height % downsample or width % downsample:
        raise ValueError(f"downsample {downsample} must divide the {height}x{width} canvas")
    if min(height, width) // downsample < 4:
        raise ValueError(f"the {height}x{width} canvas at 1/{downsample} resolution is under 4 pixels a side")


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """A 3x3 convolution (same padding, `stride`), BatchNorm and ReLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


# Each layer of a sub-network: (channels in multiples of its width, stride). The maps end at 1/4 of
# the sub-network's resolution with 4 x width channels.
LAYERS = ((1, 1), (2, 2), (2, 1), (4, 2), (4, 1))
# The full-resolution sub-network's layers that also read a map of the low one: layer -> low map.
# Its third layer reads the low sub-network's first map, which has the same scale at downsample 2.
FUSED = {2: 0}


class ResolutionCNN(nn.Module):
    """The static network of one resolution: the canvas averaged over `downsample` x `downsample`
    squares, five 3x3 convolutions (`LAYERS`: `width`, 2 `width` of stride 2, 2 `width`, 4 `width` of
    stride 2, 4 `width`), global average pooling and a linear classifier. `forward` returns the logits.
    """

    def __init__(self, width: int = 8, downsample: int = 1, n_classes: int = DIGITS_CLASSES) -> None:
        super().__init__()
        check_positive_ints(width=width, downsample=downsample, n_classes=n_classes)
        self.width, self.downsample = width, downsample
        channels = [1] + [k * width for k, _ in LAYERS]
        self.layers = nn.ModuleList(
            _conv(c_in, c_out, stride)
            for c_in, c_out, (_, stride) in zip(channels[:-1], channels[1:], LAYERS, strict=True)
        )
        self.head = nn.Linear(channels[-1], n_classes)

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's feature map of a batch of canvases (N, 1, H, W), first layer first."""
        check_images(x, self.downsample)
        h = F.avg_pool2d(x, self.downsample) if self.downsample > 1 else x
        maps = []
        for layer in self.layers:
            h = layer(h)
            maps.append(h)
        return maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The logits."""
        return self.head(self.feature_maps(x)[-1].mean(dim=(2, 3)))


def _at(h: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """The map `h` at the spatial `size`: itself, or upsampled by repeating pixels (no FLOPs)."""
    return h if h.shape[-2:] == size else F.interpolate(h, size=size, mode="nearest")


class ResolutionAdaptiveNet(nn.Module):
    """Two sub-networks, low resolution first (RANet's idea at its smallest).

    `low` is a `ResolutionCNN` of width `widths[0]` at 1/`downsample` resolution, with its own
    classifier (exit 1). The full-resolution sub-network (exit 2) has the same five layers at
    width `widths[1]` on the canvas itself, and reuses the low one's work: its third layer
    (`FUSED`) reads its input concatenated with the low sub-network's first map, which has the
    same scale at `downsample` 2 (upsampled otherwise), and its classifier reads the means of its
    last map and of the low sub-network's.

    `forward` returns a `ModelOutput`. Mode `exit_threshold` None (training, and the reference):
    every input runs both, the logits are exit 2's and `extras["exit_logits"]` holds both exits'
    logits. Set to a confidence in [0, 1]: an input whose exit-1 top softmax probability is at
    least the threshold answers there and the rest run the second sub-network alone, on the rows
    still in; `decisions["exit"]` (N,) holds 1 or 2 and `executed` (N, 2) marks the sub-networks
    that ran.
    """

    def __init__(
        self,
        widths: Sequence[int] = (8, 6),
        downsample: int = 2,
        n_classes: int = DIGITS_CLASSES,
        exit_threshold: float | None = None,
    ) -> None:
        super().__init__()
        if isinstance(widths, str | bytes) or not isinstance(widths, Sequence) or len(widths) != 2:
            raise ValueError(f"widths must be two widths (low, full resolution), got {widths!r}")
        low_width, width = widths
        check_positive_ints(low_width=low_width, width=width, downsample=downsample, n_classes=n_classes)
        if downsample < 2:
            raise ValueError(
                f"downsample must be at least 2 (the first sub-network's lower resolution), got {downsample}"
            )
        self.downsample = downsample
        self.low = ResolutionCNN(low_width, downsample, n_classes)
        channels = [1] + [k * width for k, _ in LAYERS]
        reused = [LAYERS[FUSED[i]][0] * low_width if i in FUSED else 0 for i in range(len(LAYERS))]
        self.layers = nn.ModuleList(
            _conv(c_in + extra, c_out, stride)
            for c_in, c_out, extra, (_, stride) in zip(
                channels[:-1], channels[1:], reused, LAYERS, strict=True
            )
        )
        self.head = nn.Linear(channels[-1] + LAYERS[-1][0] * low_width, n_classes)
        self.register_buffer("paths", torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]), persistent=False)
        self.exit_threshold = exit_threshold

    @property
    def exit_threshold(self) -> float | None:
        """The confidence at which an input answers at low resolution, or None to run both for all."""
        return self._exit_threshold

    @exit_threshold.setter
    def exit_threshold(self, threshold: float | None) -> None:
        check_unit_interval(threshold, "threshold", none_ok=True)
        self._exit_threshold = threshold

    def first(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Exit 1: the low-resolution logits, and the feature maps the second sub-network reuses."""
        maps = self.low.feature_maps(x)
        return self.low.head(maps[-1].mean(dim=(2, 3))), maps

    def second(self, x: torch.Tensor, maps: Sequence[torch.Tensor]) -> torch.Tensor:
        """Exit 2: the full-resolution logits of the canvases `x`, given their low-resolution `maps`."""
        h = x
        for i, layer in enumerate(self.layers):
            if i in FUSED:
                h = torch.cat([h, _at(maps[FUSED[i]], h.shape[-2:])], dim=1)
            h = layer(h)
        return self.head(torch.cat([h.mean(dim=(2, 3)), maps[-1].mean(dim=(2, 3))], dim=1))

    def forward(self, x: torch.Tensor) -> ModelOutput:
        """Both exits' logits, or, with `exit_threshold` set, low resolution first (see the class)."""
        logits_low, maps = self.first(x)
        if self.exit_threshold is None:
            logits = self.second(x, maps)
            return ModelOutput(logits, extras={"exit_logits": [logits_low, logits]})
        # s_1(x) as Python floats, compared with the threshold in float64 as `exits_at` compares
        sure = [s >= self.exit_threshold for s in logits_low.softmax(dim=1).amax(dim=1).tolist()]
        exits = torch.tensor([LOW if s else FULL for s in sure], device=x.device)
        if all(sure):
            logits = logits_low
        elif not any(sure):  # a batch that goes on whole needs no gather (batch size 1, for one)
            logits = self.second(x, maps)
        else:
            rows = (exits == FULL).nonzero().squeeze(1)
            rest = self.second(x.index_select(0, rows), [m.index_select(0, rows) for m in maps])
            logits = logits_low.index_copy(0, rows, rest)
        return ModelOutput(logits, decisions={"exit": exits}, executed=self.paths[exits])


def exit_costs(model: ResolutionAdaptiveNet, x: torch.Tensor) -> tuple[int, int]:
    """FLOPs of one canvas `x` (batch size 1) that answers at low resolution, and of one that goes on."""
    if not isinstance(model, ResolutionAdaptiveNet):
        raise TypeError(f"model must be a ResolutionAdaptiveNet, got {type(model).__name__}")
    check_images(x, model.downsample)
    if len(x) != 1:
        raise ValueError(f"x must be one canvas (batch size 1), got batch size {len(x)}")
    threshold, training = model.exit_threshold, model.training
    model.eval()
    try:
        model.exit_threshold = 0.0
        low = count_flops(model, x)
        model.exit_threshold = None
        both = count_flops(model, x)
    finally:
        model.exit_threshold = threshold
        model.train(training)
    return low, both


def exits_at(low_logits: torch.Tensor, threshold: float) -> torch.Tensor:
    """The exit (1 or 2) of each input at `threshold`, from exit 1's logits (N, classes) already at
    hand: the rule of `ResolutionAdaptiveNet`'s `exit_threshold` mode, to sweep thresholds cheaply."""
    check_unit_interval(threshold, "threshold", none_ok=True)
    if threshold is None:
        raise ValueError("threshold must be a confidence in [0, 1], got None")
    if not isinstance(low_logits, torch.Tensor) or low_logits.dim() != 2 or 0 in low_logits.shape:
        shape = tuple(low_logits.shape) if isinstance(low_logits, torch.Tensor) else type(low_logits).__name__
        raise ValueError(f"low_logits must have shape (N, classes), got {shape}")
    sure = low_logits.softmax(dim=1).amax(dim=1).double() >= threshold
    return torch.where(sure, LOW, FULL)


def choose_threshold(
    exit_logits: Sequence[torch.Tensor], y: torch.Tensor, thresholds: Sequence[float], tolerance: float
) -> float:
    """The lowest of `thresholds` whose accuracy on (`exit_logits`, `y`) is within `tolerance` points
    of sending every input to full resolution: chosen on validation data, never on test data."""
    if len(exit_logits) != 2:
        raise ValueError(f"exit_logits must hold the two exits' logits, got {len(exit_logits)}")
    low, full = exit_logits
    if low.shape != full.shape or low.dim() != 2 or len(low) != len(y):
        raise ValueError(
            f"both exits' logits must have shape (N, classes) with N = len(y) = {len(y)}, "
            f"got {tuple(low.shape)} and {tuple(full.shape)}"
        )
    if not thresholds:
        raise ValueError("thresholds must hold at least one threshold")
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or tolerance < 0:
        raise ValueError(f"tolerance must be a non-negative number of points, got {tolerance!r}")
    reference = (full.argmax(1) == y).double().mean().item() * 100
    for threshold in sorted(thresholds):
        exits = exits_at(low, threshold)
        answer = torch.where(exits[:, None] == LOW, low, full).argmax(1)
        if (answer == y).double().mean().item() * 100 >= reference - tolerance:
            return float(threshold)
    return float(max(thresholds))


def static_family(
    widths: Sequence[int], downsamples: Sequence[int] = (1, 2), n_classes: int = DIGITS_CLASSES
) -> dict[str, ResolutionCNN]:
    """Static networks of one resolution to choose a twin from (`dyn_helpers.harness.choose_static`),
    by name: one `ResolutionCNN` for each width and each downsampling (1: full resolution)."""
    if not widths or not downsamples:
        raise ValueError(f"widths and downsamples must be non-empty, got {widths!r} and {downsamples!r}")
    family = {}
    for d in downsamples:
        for w in widths:
            family[f"width {w}" if d == 1 else f"width {w}, 1/{d} resolution"] = ResolutionCNN(
                w, d, n_classes
            )
    return family


@timing_cases("resolution_adaptive")
def _timing_cases(device: torch.device) -> dict[str, TimingCase]:
    """The two-resolution network answering every canvas at low resolution, sending every one on,
    and with both sub-networks run for all (the reference); static networks at full and half resolution."""
    x = torch.rand(256, 1, 24, 24)
    cases = {}
    for threshold, name in ((0.0, "all_low"), (1.0, "all_full"), (None, "reference")):
        model = ResolutionAdaptiveNet((8, 6), 2, exit_threshold=threshold)
        cases[name] = TimingCase(
            model.to(device).eval(), x, reference=None if threshold is None else "reference"
        )
    for name, model in static_family([6, 8], (1, 2)).items():
        cases[f"static_{name.replace(', 1/2 resolution', '_half').replace(' ', '_')}"] = TimingCase(
            model.to(device).eval(), x
        )
    return cases
