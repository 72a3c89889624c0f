"""The canvas board (cluttered digits at two scales) and chapter 3's spatial methods on it.

The task: `spatial.resolution.two_scale_digits` on 32x32 canvases with four clutter fragments, so
the digit (8x8 or 16x16 pixels, half the canvases each) covers a quarter of the canvas at most:
most positions, tokens and crops hold clutter or noise, which is what spatial methods skip. The
budget is the chapter's: 10 epochs of Adam one-cycle at lr 1e-2, batch 64, for every entry
(transformers at `TRANSFORMER_LR`, below).

The entries, each the notebook's model and decision rule at the notebook's size:

- `sparse_convolution` (sparse_convolution.ipynb): `SparseResidualCNN` of width 16, three blocks,
  one shared mask, trained with the target-rate loss (r = 0.2, lambda = 0.5). Departure: the stem
  has stride 2 (a 16x16 map), which keeps one seed's training within the board's time.
  Points: the mask where the logit is positive, and the top 5% to 50% of positions. The executed
  run is the sparse (gathered) execution, which skips what the mask leaves out.
- `glance_and_focus` (glance_and_focus.ipynb): `GlanceFocus` of width 16, glance at 1/2
  resolution, up to two 16x16 glimpses; points: exit thresholds, glance only, and two glimpses.
- `resolution_adaptive` (resolution_adaptive.ipynb): `ResolutionAdaptiveNet` of widths (8, 6) at
  1/2 and full resolution, summed exit loss; points: exit thresholds, and full resolution for all.
- `token_keeping` and `token_merging` (token_reduction.ipynb): `TinyViT` with patches of 4 pixels
  (the notebook's 8x8 grid of 64 tokens on this larger canvas), keeping (EViT, fused) or merging
  (ToMe) r tokens per block; points: r from 0 (the plain ViT) to 20. The one departure from the
  board's budget: the transformers, the plain ViT of the front included, train at the notebook's
  peak learning rate, `TRANSFORMER_LR`; at the board's 1e-2 Adam does not train them (about 21%,
  near chance on ten classes). Epochs and batch size are the board's.

The static front (`canvas_static_*`) holds each method's twins: the residual CNN at 1/2
resolution and with a stride-2 stem (the dense execution of `sparse_convolution`), the glimpse CNN
at 1/2 resolution (the glance alone) and at full resolution, the resolution CNN at 1/2 and at full
resolution, and the plain ViT.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from dyn_helpers.leaderboard.board import Point, Task, entry, point, register_board
from dyn_helpers.measure import count_flops
from dyn_helpers.outputs import ModelOutput
from dyn_helpers.spatial.glimpses import GlanceFocus, GlimpseCNN, glance_focus_loss
from dyn_helpers.spatial.resolution import (
    LOW,
    ResolutionAdaptiveNet,
    ResolutionCNN,
    exit_costs,
    exits_at,
    two_scale_digits,
)
from dyn_helpers.spatial.sparse_conv import ResidualCNN, SparseResidualCNN
from dyn_helpers.spatial.tokens import TinyViT
from dyn_helpers.training.efficiency import target_rate_loss
from dyn_helpers.training.exit_objectives import summed_exit_loss

CANVAS = "canvas"
CANVAS_SIZE = 32
N_CLUTTER = 4
NOISE = 0.1
EPOCHS, LR, BATCH = 10, 1e-2, 64
# sparse_convolution: target density and weight of the target-rate loss; evaluation densities
TARGET, LAMBDA = 0.2, 0.5
DENSITIES = (0.05, 0.1, 0.2, 0.3, 0.5)
# glance_and_focus and resolution_adaptive: confidence thresholds to exit
GLANCE_THRESHOLDS = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95)
RESOLUTION_THRESHOLDS = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99)
# token_keeping and token_merging: patch size and tokens removed in each block
PATCH = 4
TOKENS_REMOVED = (0, 4, 8, 12, 16, 20)
# The peak learning rate of every transformer on the board (token_reduction.ipynb's).
TRANSFORMER_LR = 3e-3


@register_board(CANVAS)
def cluttered_canvas() -> Task:
    """Cluttered digits at two scales (8x8 or 16x16) on 32x32 canvases; the chapter's budget."""
    splits = two_scale_digits(CANVAS_SIZE, n_clutter=N_CLUTTER, noise=NOISE)
    title = f"cluttered digits, 8x8 or 16x16 on {CANVAS_SIZE}x{CANVAS_SIZE} canvases, {N_CLUTTER} fragments"
    return Task(CANVAS, title, splits, epochs=EPOCHS, lr=LR, batch_size=BATCH)


def _fit(task: Task, model: nn.Module, seed: int, desc: str) -> None:
    """The board's budget; a transformer at `TRANSFORMER_LR`, every other network at the board's lr."""
    lr = TRANSFORMER_LR if isinstance(model, TinyViT) else task.lr
    replace(task, lr=lr).fit(model, seed, desc=desc)


def _static(name: str, label: str, notebook: str, make: Callable[[], nn.Module]) -> None:
    @entry(f"canvas_static_{name}", label=label, family="static", board=CANVAS, notebook=notebook)
    def train_static(task: Task, seed: int) -> list[Point]:
        model = make()
        _fit(task, model, seed, f"static {name}")
        return [point(task, label, model.eval())]


# name: (label, notebook, model); each notebook's static network, at the sizes of its twins
STATICS: dict[str, tuple[str, str, Callable[[], nn.Module]]] = {
    "residual_w16_half": (
        "static residual CNN, width 16, 1/2 resolution",
        "sparse_convolution",
        lambda: ResidualCNN(16, 3, downsample=2),
    ),
    "residual_w16_stride2": (
        "static residual CNN, width 16, stride-2 stem",
        "sparse_convolution",
        lambda: ResidualCNN(16, 3, stem_stride=2),
    ),
    "glimpse_w16_half": (
        "static glimpse CNN, width 16, 1/2 resolution",
        "glance_and_focus",
        lambda: GlimpseCNN(16, downsample=2),
    ),
    "glimpse_w16": (
        "static glimpse CNN, width 16, full resolution",
        "glance_and_focus",
        lambda: GlimpseCNN(16),
    ),
    "resolution_w8_half": (
        "static resolution CNN, width 8, 1/2 resolution",
        "resolution_adaptive",
        lambda: ResolutionCNN(8, 2),
    ),
    "resolution_w6": (
        "static resolution CNN, width 6, full resolution",
        "resolution_adaptive",
        lambda: ResolutionCNN(6, 1),
    ),
    "vit": (
        "static ViT, patch 4 (64 tokens), no reduction",
        "token_reduction",
        lambda: TinyViT(CANVAS_SIZE, patch=PATCH),
    ),
}
for _name, (_label, _notebook, _make) in STATICS.items():
    _static(_name, _label, _notebook, _make)


def _affine_in(counts: Sequence[tuple[float, int]]) -> tuple[float, float]:
    """(a, b) with flops = a + b * units through two measured (units, flops) pairs."""
    (u0, f0), (u1, f1) = counts
    if u1 == u0:
        raise ValueError(f"the two calibrations must differ in units, got {u0} twice")
    b = (f1 - f0) / (u1 - u0)
    return f0 - b * u0, b


def _sparse_loss(output: ModelOutput, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy plus LAMBDA times the target-rate loss on the mask's density (the notebook's loss)."""
    return F.cross_entropy(output.logits, y) + LAMBDA * target_rate_loss(output.extras["densities"], TARGET)


@entry(
    "sparse_convolution",
    label="sparse convolution, shared pixel mask (DynConv)",
    family="spatial",
    board=CANVAS,
    notebook="sparse_convolution",
)
def train_sparse_convolution(task: Task, seed: int) -> list[Point]:
    """Train the masked CNN once; each point is its sparse execution at one mask density (or the mask's sign)."""
    model = SparseResidualCNN(16, 3, shared_mask=True, stem_stride=2)
    task.fit(model, seed, loss_fn=_sparse_loss, desc="sparse convolution")
    model.eval()
    model.execution = "sparse"
    x_one = task.splits.test.x[:1]

    def at(density: float | None) -> SparseResidualCNN:
        runner = copy.deepcopy(model)
        runner.density = density
        return runner

    def active(runner: SparseResidualCNN, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            masks = torch.cat([runner(batch).decisions["masks"] for batch in torch.split(x, 256)])
        return masks.flatten(1).sum(dim=1).double()  # positions run, summed over the blocks

    calibration = [at(1e-9), at(1.0)]  # one position per block (the least `MaskUnit` keeps), and all
    a, b = _affine_in([(float(active(m, x_one)), count_flops(m, x_one)) for m in calibration])
    points = []
    for density in (None, *DENSITIES):
        runner = at(density)
        setting = "mask where the logit > 0" if density is None else f"top {density:.0%} of positions"
        points.append(point(task, setting, runner, flops_each=lambda x, m=runner: a + b * active(m, x)))
    return points


@entry(
    "glance_and_focus",
    label="glance and focus, confidence threshold (GFNet)",
    family="spatial",
    board=CANVAS,
    notebook="glance_and_focus",
)
def train_glance_and_focus(task: Task, seed: int) -> list[Point]:
    """Train glance and focus once; each point exits at one confidence threshold (0: the glance alone)."""
    model = GlanceFocus(GlimpseCNN(16, downsample=2), GlimpseCNN(16), crop=16, max_glimpses=2)
    task.fit(model, seed, loss_fn=glance_focus_loss, desc="glance and focus")
    model.eval()
    x_one = task.splits.test.x[:1]
    model.threshold = 0.0
    glance = count_flops(model, x_one)
    model.threshold, model.max_glimpses = None, 1
    glimpse = count_flops(model, x_one) - glance
    model.max_glimpses = 2

    def glimpses(runner: GlanceFocus, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([runner(batch).decisions["glimpses"] for batch in torch.split(x, 256)]).double()

    points = []
    for threshold in (*GLANCE_THRESHOLDS, None):
        runner = copy.deepcopy(model)
        runner.threshold = threshold
        setting = {0.0: "glance only", None: "two glimpses for every canvas"}.get(
            threshold, f"τ = {threshold}"
        )
        flops_each = lambda x, m=runner: glance + glimpse * glimpses(m, x)  # noqa: E731
        points.append(point(task, setting, runner, flops_each=flops_each))
    return points


@entry(
    "resolution_adaptive",
    label="low resolution first, confidence threshold (RANet)",
    family="spatial",
    board=CANVAS,
    notebook="resolution_adaptive",
)
def train_resolution_adaptive(task: Task, seed: int) -> list[Point]:
    """Train the two-resolution network once; each point exits at low resolution above one threshold."""
    model = ResolutionAdaptiveNet((8, 6), 2)
    task.fit(model, seed, loss_fn=summed_exit_loss, desc="resolution adaptive")
    model.eval()
    low, both = exit_costs(model, task.splits.test.x[:1])

    def exit_cost(threshold: float, x: torch.Tensor) -> torch.Tensor:
        model.exit_threshold = None
        with torch.no_grad():
            first = torch.cat([model.first(batch)[0] for batch in torch.split(x, 256)])
        return torch.where(exits_at(first, threshold) == LOW, low, both).double()

    points = []
    for threshold in RESOLUTION_THRESHOLDS:
        runner = copy.deepcopy(model)
        runner.exit_threshold = threshold
        setting = "low resolution only" if threshold == 0.0 else f"τ = {threshold}"
        points.append(point(task, setting, runner, flops_each=lambda x, t=threshold: exit_cost(t, x)))
    model.exit_threshold = None
    points.append(point(task, "both resolutions for every canvas", model))
    return points


def _token_points(task: Task, seed: int, reduction: str) -> list[Point]:
    """Train the ViT once; each point removes r tokens per block by `reduction` (r = 0: the plain ViT)."""
    model = TinyViT(CANVAS_SIZE, patch=PATCH)
    _fit(task, model, seed, f"ViT, {reduction}")
    model.eval()
    points = []
    for r in TOKENS_REMOVED:
        runner = copy.deepcopy(model)
        runner.reduction = reduction if r else "none"
        runner.set_r(r)
        points.append(point(task, f"r = {r} tokens per block", runner))
    return points


@entry(
    "token_keeping",
    label="token keeping, CLS attention (EViT)",
    family="spatial",
    board=CANVAS,
    notebook="token_reduction",
)
def train_token_keeping(task: Task, seed: int) -> list[Point]:
    """The ViT keeping the tokens its CLS token attends to most, the rest fused into one."""
    return _token_points(task, seed, "keep")


@entry(
    "token_merging",
    label="token merging, bipartite matching (ToMe)",
    family="spatial",
    board=CANVAS,
    notebook="token_reduction",
)
def train_token_merging(task: Task, seed: int) -> list[Point]:
    """The ViT merging its most similar tokens by bipartite soft matching."""
    return _token_points(task, seed, "merge")
