"""Pixel-level dynamic sparse convolution in the style of DynConv, SBNet and SACT. Taught in chapter 3.

Before each residual block a `MaskUnit` reads the block's input and decides, at each position or at
each square block of `block_size` x `block_size` positions (SBNet's tiles), whether the block's branch
runs there. `SparseResidualCNN` runs one trained model three ways, its `execution` mode:

- "masked": every position is computed and the branch is multiplied by the mask, as training does
  (the mask's straight-through gradient flows through the product). FLOPs a paper would count as
  saved are computed all the same.
- "sparse" (evaluation only): the active positions or blocks are gathered, the branch runs on them
  alone and its output is scattered back into the residual stream: what is saved is skipped.
- "dense": no mask at all, every branch runs everywhere.

The branch has one 3x3 convolution, reading the dense stream, and pointwise layers after it, so
computing it at a set of positions needs the stream around them and nothing else: one gather and one
scatter per residual block. `torch.utils.flop_counter` does not see gathers and scatters; the
sparse execution reports the bytes they move in `extras["bytes_moved"]`.
"""

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from dyn_helpers.checks import check_positive_ints
from dyn_helpers.data import DIGITS_CLASSES
from dyn_helpers.measure import TimingCase, count_flops, flops_per_sample, timing_cases
from dyn_helpers.outputs import Mode, ModelOutput
from dyn_helpers.training.estimators import binary_concrete, check_temperature


def check_density(density: float | None) -> None:
    """Raise `ValueError` unless `density` is None or a fraction of positions in (0, 1]."""
    if density is None:
        return
    if isinstance(density, bool) or not isinstance(density, int | float) or not 0.0 < density <= 1.0:
        raise ValueError(f"density must be a fraction of positions in (0, 1], got {density!r}")


class FoldedBranch(NamedTuple):
    """The branch's weights with BatchNorm folded in, as convolutions and as matrices."""

    w1: torch.Tensor  # (hidden, C, 3, 3)
    b1: torch.Tensor  # (hidden,)
    w2: torch.Tensor  # (C, hidden, 1, 1)
    b2: torch.Tensor  # (C,)
    m1: torch.Tensor  # (9 C, hidden): rows ordered (row offset, column offset, channel)
    m2: torch.Tensor  # (hidden, C)


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return conv.weight * scale[:, None, None, None], bn.bias - bn.running_mean * scale


class ResidualBranch(nn.Module):
    """The branch F(x) = BN(conv1x1(ReLU(BN(conv3x3(x))))) of a residual block x + F(x).

    In evaluation it runs with BatchNorm folded into the convolutions (the same function), in every
    execution alike, so that dense, masked and sparse execution are timed on equal terms.
    """

    def __init__(self, channels: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = channels if hidden is None else hidden
        check_positive_ints(channels=channels, hidden=hidden)
        self.conv1 = nn.Conv2d(channels, hidden, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.conv2 = nn.Conv2d(hidden, channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self._cache: tuple[tuple, FoldedBranch] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """F(x) at every position."""
        if self.training:
            return self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        w1, b1, w2, b2 = self.folded()[:4]
        return F.conv2d(F.relu(F.conv2d(x, w1, b1, padding=1)), w2, b2)

    def folded(self) -> FoldedBranch:
        """The weights with BatchNorm's running statistics folded in; cached while they do not change."""
        modules = (self.conv1, self.bn1, self.conv2, self.bn2)
        tensors = [t for m in modules for t in (*m._parameters.values(), *m._buffers.values())]
        key = tuple((id(t), t.data_ptr(), t._version) for t in tensors if t is not None)
        if self._cache is not None and self._cache[0] == key and not torch.is_grad_enabled():
            return self._cache[1]
        w1, b1 = _fold(self.conv1, self.bn1)
        w2, b2 = _fold(self.conv2, self.bn2)
        folded = FoldedBranch(
            w1, b1, w2, b2, w1.permute(2, 3, 1, 0).reshape(-1, w1.shape[0]), w2.flatten(1).T
        )
        if not torch.is_grad_enabled():
            self._cache = (key, folded)
        return folded

    def train(self, mode: bool = True) -> "ResidualBranch":
        """Set training or evaluation mode, as for any module, and drop the folded weights."""
        self._cache = None
        return super().train(mode)


def _block_size(mask: torch.Tensor, x: torch.Tensor) -> int:
    """The block size that makes `mask` (N, 1, H / b, W / b) tile the map `x` (N, C, H, W)."""
    n, _, height, width = x.shape
    if mask.dim() == 4 and mask.shape[:2] == (n, 1) and mask.shape[2] > 0 and mask.shape[3] > 0:
        b = height // mask.shape[2]
        if b * mask.shape[2] == height and b * mask.shape[3] == width:
            return b
    raise ValueError(
        f"mask must have shape ({n}, 1, {height} / b, {width} / b) for a block size b that divides the "
        f"{height}x{width} map, got {tuple(mask.shape)}"
    )


def expand_mask(mask: torch.Tensor, block_size: int) -> torch.Tensor:
    """A block mask (N, 1, h, w) at position resolution (N, 1, h * b, w * b): each block's value repeated."""
    check_positive_ints(block_size=block_size)
    if block_size == 1:
        return mask
    return mask.repeat_interleave(block_size, dim=2).repeat_interleave(block_size, dim=3)


def dense_residual(branch: ResidualBranch, x: torch.Tensor) -> torch.Tensor:
    """x + F(x): the branch runs at every position."""
    return x + branch(x)


def masked_residual(branch: ResidualBranch, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x + m * F(x): the branch is computed at every position and multiplied by the mask.

    `mask` (N, 1, H / b, W / b) holds one value per block of b x b positions (b = 1: per position).
    """
    return x + expand_mask(mask, _block_size(mask, x)) * branch(x)


@lru_cache(maxsize=32)
def _windows(
    n: int, height: int, width: int, b: int, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each block of the maps (numbered n, row, column): the rows of the flattened maps its branch
    reads, (b + 2)^2 with the one-position border, whether each lies on the map, and the b^2 rows it writes."""
    rows, cols = height // b, width // b
    grid = torch.meshgrid(torch.arange(n), torch.arange(rows), torch.arange(cols), indexing="ij")
    image, i, j = (t.reshape(-1) for t in grid)
    offsets = torch.arange(-1, b + 1)
    r = (i * b)[:, None, None] + offsets[None, :, None]
    c = (j * b)[:, None, None] + offsets[None, None, :]
    inside = ((r >= 0) & (r < height) & (c >= 0) & (c < width)).flatten(1)
    base = image[:, None, None] * height * width
    reads = (base + r.clamp(0, height - 1) * width + c.clamp(0, width - 1)).flatten(1)
    writes = (base + r[:, 1:-1] * width + c[:, :, 1:-1]).flatten(1)
    return reads.to(device), inside.to(device, dtype).unsqueeze(-1), writes.to(device)


GATHERS = ("tiles", "positions")


def _check_gather(gather: str) -> None:
    if gather not in GATHERS:
        raise ValueError(f"gather must be one of {GATHERS}, got {gather!r}")


class _Plan(NamedTuple):
    """Where a mask says to run: the active blocks and, for each, the rows it reads and writes."""

    block_size: int
    reads: torch.Tensor  # (K * window,) rows of the flattened map
    inside: torch.Tensor  # (K, window, 1): 1 where the row read lies on the map, else 0
    writes: torch.Tensor  # (K * b^2,)


def _plan(mask: torch.Tensor, x: torch.Tensor, gather: str) -> _Plan | None:
    """The plan of a checked mask on the map `x`, gathering as `gather` says; None when nothing runs."""
    b = _block_size(mask, x)
    if b > 1 and gather == "positions":
        mask, b = expand_mask(mask, b), 1
    cells = mask.reshape(-1).nonzero().squeeze(1)
    if len(cells) == 0:
        return None
    n, _, height, width = x.shape
    reads, inside, writes = _windows(n, height, width, b, x.device, x.dtype)
    targets = cells if b == 1 else writes.index_select(0, cells).view(-1)  # a position writes its own row
    return _Plan(b, reads.index_select(0, cells).view(-1), inside.index_select(0, cells), targets)


def _run(branch: ResidualBranch, out: torch.Tensor, plan: _Plan) -> None:
    """Add F to the channels-last map `out` where `plan` says: gather, compute, scatter."""
    channels, b, k = out.shape[1], plan.block_size, len(plan.inside)
    stream = out.permute(0, 2, 3, 1).reshape(-1, channels)  # a view: rows are positions
    patches = stream.index_select(0, plan.reads).view(k, -1, channels).mul_(plan.inside)
    w1, b1, w2, b2, m1, m2 = branch.folded()
    if b == 1:
        hidden = F.relu(torch.addmm(b1, patches.view(k, -1), m1))
    else:
        tiles = patches.view(k, b + 2, b + 2, channels).permute(0, 3, 1, 2)
        hidden = F.relu(F.conv2d(tiles, w1, b1)).permute(0, 2, 3, 1).reshape(-1, m2.shape[0])
    stream.index_add_(0, plan.writes, torch.addmm(b2, hidden, m2))  # the 1x1 convolution on rows


def sparse_residual(
    branch: ResidualBranch,
    x: torch.Tensor,
    mask: torch.Tensor,
    *,
    gather: str = "tiles",
    inplace: bool = False,
) -> torch.Tensor:
    """x + m * F(x) computed only where the mask is on: gather, compute, scatter. Evaluation only.

    `mask` (N, 1, H / b, W / b) holds one 0/1 value per block of b x b positions. Per position
    (b = 1, or `gather="positions"`), each active position's 3x3 neighbourhood is gathered and the
    branch is two matrix products. With `gather="tiles"` and b > 1, each active block is gathered
    with a one-position border and the 3x3 convolution runs on the stack of tiles (SBNet). The
    result is stored channels-last; with `inplace=True` it is written into `x`, which must be
    channels-last already.
    """
    if branch.training:
        raise RuntimeError("sparse execution uses BatchNorm's running statistics: call .eval() first")
    _check_gather(gather)
    plan = _plan(mask, x, gather)
    if inplace and not x.is_contiguous(memory_format=torch.channels_last):
        raise ValueError("inplace=True needs x in channels-last memory format")
    out = x if inplace else x.contiguous(memory_format=torch.channels_last)
    if not inplace and out.data_ptr() == x.data_ptr():
        out = out.clone(memory_format=torch.channels_last)
    if plan is not None:
        _run(branch, out, plan)
    return out


def gather_scatter_only(x: torch.Tensor, mask: torch.Tensor, *, gather: str = "tiles") -> torch.Tensor:
    """The data movement of `sparse_residual` without its branch, to time it apart.

    Plans the mask, gathers the same rows and scatters as many rows back (zeros, so the result
    equals `x`, stored channels-last): what remains of `sparse_residual` when the branch costs
    nothing. `gather_scatter_bytes` counts the bytes it moves.
    """
    _check_gather(gather)
    plan = _plan(mask, x, gather)
    out = x.contiguous(memory_format=torch.channels_last)
    if out.data_ptr() == x.data_ptr():
        out = out.clone(memory_format=torch.channels_last)
    if plan is not None:
        channels = out.shape[1]
        stream = out.permute(0, 2, 3, 1).reshape(-1, channels)
        patches = stream.index_select(0, plan.reads).view(len(plan.inside), -1, channels).mul_(plan.inside)
        stream.index_add_(0, plan.writes, patches.new_zeros(len(plan.writes), channels))
    return out


def gather_scatter_bytes(
    active: torch.Tensor, block_size: int, channels: int, element_size: int = 4, gather: str = "tiles"
) -> torch.Tensor:
    """Bytes of feature data that `sparse_residual` copies for `active` blocks (a count per input).

    Each block gathers (b + 2)^2 positions of `channels` values as a tile, or 9 b^2 as the 3x3
    neighbourhoods of its positions (`gather="positions"`), and scatters b^2 back; index tensors
    and the dense map itself are not counted.
    """
    check_positive_ints(block_size=block_size, channels=channels, element_size=element_size)
    _check_gather(gather)
    b = block_size
    gathered = (b + 2) ** 2 if gather == "tiles" and b > 1 else 9 * b * b
    return active.to(torch.int64) * (gathered + b * b) * channels * element_size


class MaskOutput(NamedTuple):
    """A mask unit's decision per block (N, 1, h, w), 0 or 1, and its probability of being on."""

    mask: torch.Tensor
    prob: torch.Tensor


class MaskUnit(nn.Module):
    """Per-position or per-block execution mask: a convolution gives a logit at each position, the
    logits are averaged over blocks of `block_size` x `block_size`, and each block is on or off.

    Training samples the mask with Gumbel noise and passes the gradient straight through (hard
    binary concrete at `temperature`). Evaluation is deterministic: on where the logit is
    positive, or, when `density` is set, in the `round(density * blocks)` blocks (at least one)
    with the largest logits of each input, which sweeps the density of a trained model.
    """

    def __init__(
        self,
        channels: int,
        *,
        kernel_size: int = 1,
        block_size: int = 1,
        temperature: float = 1.0,
        density: float | None = None,
    ) -> None:
        super().__init__()
        check_positive_ints(channels=channels, kernel_size=kernel_size, block_size=block_size)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        check_temperature(temperature)
        self.conv = nn.Conv2d(channels, 1, kernel_size, padding=kernel_size // 2)
        nn.init.constant_(self.conv.bias, 2.0)  # start mostly on (probability about 0.88)
        self.block_size, self.temperature = block_size, temperature
        self.density = density

    @property
    def density(self) -> float | None:
        """The fraction of blocks kept in evaluation, or None to keep those with a positive logit."""
        return self._density

    @density.setter
    def density(self, value: float | None) -> None:
        check_density(value)
        self._density = value

    def forward(self, x: torch.Tensor) -> MaskOutput:
        """The mask of each input of `x` (N, C, H, W), one value per block."""
        height, width = x.shape[-2:]
        b = self.block_size
        if height % b or width % b:
            raise ValueError(f"block_size {b} does not divide the {height}x{width} feature map")
        if self.conv.kernel_size == (1, 1) and x.is_contiguous(memory_format=torch.channels_last):
            rows = x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])  # the 1x1 convolution, on rows
            logits = torch.addmm(self.conv.bias, rows, self.conv.weight.flatten(1).T)
            logits = logits.view(len(x), height, width, 1).permute(0, 3, 1, 2)
        else:
            logits = self.conv(x)
        if b > 1:
            logits = F.avg_pool2d(logits, b)
        if self.training:
            mask = binary_concrete(logits, self.temperature, hard=True)
        elif self.density is None:
            mask = (logits > 0).to(logits.dtype)
        else:
            flat = logits.flatten(1)
            k = max(1, round(self.density * flat.shape[1]))
            mask = torch.zeros_like(flat).scatter_(1, flat.topk(k, dim=1).indices, 1.0).view_as(logits)
        return MaskOutput(mask, torch.sigmoid(logits))


class ResidualCNN(nn.Module):
    """A stem (3x3 convolution of stride `stem_stride`, BatchNorm, ReLU), `n_blocks` residual blocks
    x + F(x) of `width` channels (`ResidualBranch`), global average pooling and a linear classifier.

    The static network of the chapter: `forward` returns the logits. `downsample` > 1 averages the
    input over squares of that side first, the static network at lower resolution.
    """

    def __init__(
        self,
        width: int = 16,
        n_blocks: int = 3,
        *,
        hidden: int | None = None,
        stem_stride: int = 1,
        downsample: int = 1,
        n_classes: int = DIGITS_CLASSES,
    ) -> None:
        super().__init__()
        check_positive_ints(
            width=width,
            n_blocks=n_blocks,
            stem_stride=stem_stride,
            downsample=downsample,
            n_classes=n_classes,
        )
        self.downsample = downsample
        self.stem = nn.Sequential(
            nn.Conv2d(1, width, 3, stride=stem_stride, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        self.blocks = nn.ModuleList(ResidualBranch(width, hidden) for _ in range(n_blocks))
        self.head = nn.Linear(width, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The stem's feature map of a batch of canvases (N, 1, H, W)."""
        if x.dim() != 4 or x.shape[1] != 1:
            raise ValueError(f"x must be a batch of one-channel images (N, 1, H, W), got {tuple(x.shape)}")
        if self.downsample > 1:
            x = F.avg_pool2d(x, self.downsample)
        return self.stem(x)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """The logits from the last feature map: its mean over positions, then the linear layer."""
        return self.head(x.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The logits."""
        x = self.features(x)
        for branch in self.blocks:
            x = dense_residual(branch, x)
        return self.classify(x)


class SparseResidualCNN(ResidualCNN):
    """`ResidualCNN` with a `MaskUnit` before each residual block: block l computes x + m_l * F_l(x).

    With `shared_mask=True` one mask unit reads the stem's output and its mask serves every block
    (as SBNet reuses one mask across a stage), which costs one mask unit and one plan of the gathers
    instead of one per block. `forward` returns a `ModelOutput`. In "masked" and "sparse"
    execution: `decisions["masks"]` (N, n_blocks, H, W), each block's mask at the feature map's
    positions; `extras["densities"]` (N, n_blocks), the fraction of positions each block runs at
    (straight-through gradient in training, for `dyn_helpers.training.efficiency.target_rate_loss`);
    `extras["probs"]` (N, n_blocks, H / b, W / b), the mask probabilities. "sparse" adds
    `executed`, the masks flattened (N, n_blocks * H * W), and `extras["bytes_moved"]` (N,), the
    bytes its gathers and scatters copy. "dense" runs every block everywhere without masks and
    returns the logits alone in its `ModelOutput`. Setting `density` sets every mask unit's
    evaluation density. `gather` (a mode, "tiles" or "positions") says how sparse execution
    gathers blocks larger than one position (`sparse_residual`).
    """

    execution = Mode("masked", "sparse", "dense")
    gather = Mode(*GATHERS)

    def __init__(
        self,
        width: int = 16,
        n_blocks: int = 3,
        *,
        block_size: int = 1,
        mask_kernel: int = 1,
        shared_mask: bool = False,
        temperature: float = 1.0,
        density: float | None = None,
        execution: str = "masked",
        gather: str = "tiles",
        **static: int,
    ) -> None:
        super().__init__(width, n_blocks, **static)
        if not isinstance(shared_mask, bool):
            raise TypeError(f"shared_mask must be a bool, got {type(shared_mask).__name__}")
        self.masks = nn.ModuleList(
            MaskUnit(width, kernel_size=mask_kernel, block_size=block_size, temperature=temperature)
            for _ in range(1 if shared_mask else n_blocks)
        )
        self.block_size, self.shared_mask = block_size, shared_mask
        self.density = density
        self.execution, self.gather = execution, gather

    @property
    def density(self) -> float | None:
        """Every mask unit's evaluation density (None: keep the blocks with a positive logit)."""
        return self.masks[0].density

    @density.setter
    def density(self, value: float | None) -> None:
        check_density(value)
        for unit in self.masks:
            unit.density = value

    def forward(self, x: torch.Tensor) -> ModelOutput:
        """The logits, and the masks, densities and probabilities of every block, run as `execution` says."""
        x = self.features(x)
        if self.execution == "dense":
            for branch in self.blocks:
                x = dense_residual(branch, x)
            return ModelOutput(self.classify(x))
        sparse = self.execution == "sparse"
        if sparse:
            if self.training:
                raise RuntimeError(
                    'execution = "sparse" uses BatchNorm\'s running statistics: call model.eval() first'
                )
            # the stream is updated in place where autograd does not need it, else copied per block
            x = x.contiguous(memory_format=torch.channels_last)
            inplace = not torch.is_grad_enabled()
        decisions, plan = [], None
        for i, branch in enumerate(self.blocks):
            if i == 0 or not self.shared_mask:
                decision = self.masks[i](x)
                plan = _plan(decision.mask, x, self.gather) if sparse else None
            decisions.append(decision)
            if not sparse:
                x = masked_residual(branch, x, decision.mask)
            elif plan is not None:
                if not inplace:
                    x = x.clone(memory_format=torch.channels_last)
                _run(branch, x, plan)
        block_masks = torch.cat([d.mask for d in decisions], dim=1)  # (N, n_blocks, h, w)
        at_positions = expand_mask(block_masks, self.block_size)
        extras = {
            "densities": block_masks.mean(dim=(2, 3)),
            "probs": torch.cat([d.prob for d in decisions], dim=1),
        }
        executed = None
        if sparse:
            active = block_masks.detach().sum(dim=(1, 2, 3))
            extras["bytes_moved"] = gather_scatter_bytes(
                active, self.block_size, x.shape[1], x.element_size(), self.gather
            )
            executed = at_positions.flatten(1)
        return ModelOutput(self.classify(x), {"masks": at_positions}, executed, extras)


@dataclass(frozen=True)
class SpatialCost:
    """What one model costs per input, three ways, and what its sparse execution moves.

    `flops_executed` (N,): FLOPs that ran in sparse execution, each input alone, which is also what
    masked execution's accounting counts. `flops_masked` and `flops_dense`: FLOPs that masked and
    dense execution compute for every input. `bytes_moved` (N,): bytes gathered and scattered,
    which the FLOPs counter does not see. `density` (N,): fraction of positions run, over blocks.
    """

    flops_executed: torch.Tensor
    flops_masked: int
    flops_dense: int
    bytes_moved: torch.Tensor
    density: torch.Tensor

    @property
    def flops_counted_as_saved(self) -> torch.Tensor:
        """Per input, the FLOPs masked execution counts as saved though it computes them."""
        return self.flops_masked - self.flops_executed


def spatial_cost(model: SparseResidualCNN, x: torch.Tensor) -> SpatialCost:
    """The FLOPs and bytes of `model` on the inputs `x`, in evaluation mode; the model's mode is restored."""
    if not isinstance(model, SparseResidualCNN):
        raise TypeError(f"model must be a SparseResidualCNN, got {type(model).__name__}")
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or len(x) == 0:
        raise ValueError("x must be a non-empty batch of images (N, 1, H, W)")
    execution, training = model.execution, model.training
    model.eval()
    try:
        model.execution = "sparse"
        executed = flops_per_sample(model, x)
        with torch.no_grad():
            output = model(x)
        model.execution = "masked"
        masked = count_flops(model, x[:1])
        model.execution = "dense"
        dense = count_flops(model, x[:1])
    finally:
        model.execution = execution
        model.train(training)
    return SpatialCost(
        executed, masked, dense, output.extras["bytes_moved"], output.extras["densities"].mean(dim=1)
    )


def static_family(
    widths: Sequence[int], downsamples: Sequence[int] = (1, 2), **kwargs: int
) -> dict[str, ResidualCNN]:
    """Static networks to choose a twin from (`dyn_helpers.harness.choose_static`), by name.

    One `ResidualCNN` for each width and each input downsampling (1: full resolution), all with
    the same `kwargs` (n_blocks, hidden, stem_stride, n_classes).
    """
    if not widths or not downsamples:
        raise ValueError(f"widths and downsamples must be non-empty, got {widths!r} and {downsamples!r}")
    family = {}
    for d in downsamples:
        for w in widths:
            name = f"width {w}" if d == 1 else f"width {w}, 1/{d} resolution"
            family[name] = ResidualCNN(w, downsample=d, **kwargs)
    return family


@timing_cases("sparse_convolution")
def _timing_cases(device: torch.device) -> dict[str, TimingCase]:
    """One masked CNN of width 16 keeping 20% of positions, run sparse (per position, per 4x4 block
    gathered as tiles and as positions, and with one mask shared by its blocks), masked and dense;
    the static CNNs of width 8 and of width 16 at half resolution."""
    x = torch.rand(256, 1, 32, 32)
    positions = SparseResidualCNN(16, 3, density=0.2, execution="sparse")
    tiles = SparseResidualCNN(16, 3, block_size=4, density=0.2, execution="sparse")
    tiles_by_position = copy.deepcopy(tiles)
    tiles_by_position.gather = "positions"
    shared = SparseResidualCNN(16, 3, shared_mask=True, density=0.2, execution="sparse")
    masked, dense = copy.deepcopy(positions), copy.deepcopy(positions)
    masked.execution, dense.execution = "masked", "dense"
    models = {
        "sparse_positions_20": positions,
        "sparse_tiles_4_20": tiles,
        "sparse_blocks_4_by_position_20": tiles_by_position,
        "sparse_shared_mask_20": shared,
        "masked_20": masked,
        "dense": dense,
        "static_width_8": ResidualCNN(8, 3),
        "static_half_resolution": ResidualCNN(16, 3, downsample=2),
    }
    reference = {name: "dense" for name in models if name.startswith(("sparse", "masked"))}
    return {
        name: TimingCase(
            model.to(device).eval(),
            x,
            reference=reference.get(name),
            counted_by="sparse_positions_20" if name == "masked_20" else None,
        )
        for name, model in models.items()
    }
