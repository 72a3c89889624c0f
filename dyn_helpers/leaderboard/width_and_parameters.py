"""Leaderboard entries for dynamic width, routing and dynamic parameters on the 1-D board.

Each entry trains the model its notebook teaches, from the book's kit, once per seed with the
board's budget (`Task.fit`, all of `task.epochs`), and derives its operating points from that one
model. Every conv network here is 4 blocks of width `WIDTH` = 32, not the static front's 48: at
width 48 the dynamic layers (per-input grouped convolutions, gates) train too slowly for the
board's time budget; 32 is also the width of the channel gating notebook.

- `channel_gating` (channel_gating.ipynb): `ChannelGatedCNN`, every block gated, trained keeping
  `TRAIN_KEEP` of the channels (the notebook's main setting); the knob is the number of channels
  kept per block at test, `TEST_KEEPS`. Accuracy comes from the dense (masked) execution; FLOPs
  are counted on the sparse execution, which computes only the kept channels (the same logits).
- `mixture_of_experts` (mixture_of_experts.ipynb): `MoEClassifier` with `N_EXPERTS` experts of the
  notebook's sizes on a stem of width `WIDTH`, trained top-`TRAIN_K` with the balancing weight the
  notebook chooses (`BALANCE`); the knob is k at test, `TEST_KS`.
- `routing_tree` (routing_trees.ipynb): `SoftDecisionTree` of depth `TREE_DEPTH` on the raw
  sequence (the notebook's tree reads raw 8x8 digits), trained soft with the balance penalty of
  strength `TREE_STRENGTH` at the board's lr, not the notebook's 3e-2; the points are the soft
  tree and hard routing along one path.
- `dynamic_convolution` (dynamic_convolution.ipynb): `CondConvCNN` with `N_KERNELS` kernels per
  CondConv layer; no knob, one point.
- `weight_prediction` (weight_prediction.ipynb): the notebook's dynamic filter layer
  (`DynamicFilterConv2d`) has no 1-D form in the kit, so `DynamicFilterConv1d` repeats it in 1-D
  (W(x) = W_0 + G(mean x), generator of `FILTER_HIDDEN` units, last layer starting at zero) in
  every block after the first, as `CondConvCNN` places its dynamic layers (the notebook's 2-D
  network has one dynamic middle layer); no knob, one point.
- `feature_attention` (feature_attention.ipynb): `AttentionCNN` with squeeze-and-excitation after
  every block (reduction 4); no knob, one point.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from dyn_helpers.checks import check_positive_ints
from dyn_helpers.data import MNIST1D_CLASSES, MNIST1D_LENGTH
from dyn_helpers.layers import ExitHead, conv_block
from dyn_helpers.leaderboard.board import Point, Task, entry, point
from dyn_helpers.leaderboard.static import MNIST1D
from dyn_helpers.outputs import ModelOutput
from dyn_helpers.sample_wise.attention import AttentionCNN
from dyn_helpers.sample_wise.channel_gating import ChannelGatedCNN
from dyn_helpers.sample_wise.dynamic_params import CondConvCNN
from dyn_helpers.sample_wise.moe import MoEClassifier, moe_loss
from dyn_helpers.sample_wise.trees import SoftDecisionTree, tree_loss

WIDTH = 32
DEPTH = 4
TRAIN_KEEP = 0.5
TEST_KEEPS = (0.25, 0.375, 0.5, 0.625, 0.75, 1.0)
N_EXPERTS = 8
TRAIN_K = 2
TEST_KS = (1, 2, 4, 8)
BALANCE = 0.1
TREE_DEPTH = 4
TREE_STRENGTH = 0.1
N_KERNELS = 4
FILTER_HIDDEN = 16


def _gated_at(model: ChannelGatedCNN, keep: float, execution: str) -> ChannelGatedCNN:
    """A copy of the trained `model` keeping `round(keep * width)` channels per block, run as `execution`."""
    copied = copy.deepcopy(model).eval()
    for block in copied.blocks:
        block.k = max(1, round(keep * block.bn.num_features))
    copied.execution = execution
    return copied


@entry(
    "channel_gating",
    label=f"channel gating, top-k channels per block (FBS), width {WIDTH}",
    family="width",
    board=MNIST1D,
    notebook="channel_gating",
)
def channel_gating(task: Task, seed: int) -> list[Point]:
    """FBS channel gating trained keeping half the channels; points keep `TEST_KEEPS` of them at test."""
    model = ChannelGatedCNN((WIDTH,) * DEPTH, TRAIN_KEEP)
    task.fit(model, seed, desc="channel gating")
    return [
        point(
            task,
            f"keep {max(1, round(keep * WIDTH))} of {WIDTH} channels",
            _gated_at(model, keep, "dense"),
            counted=_gated_at(model, keep, "sparse"),
        )
        for keep in TEST_KEEPS
    ]


@entry(
    "mixture_of_experts",
    label=f"mixture of experts, top-k of {N_EXPERTS} MLP experts (Switch balancing)",
    family="routing",
    board=MNIST1D,
    notebook="mixture_of_experts",
)
def mixture_of_experts(task: Task, seed: int) -> list[Point]:
    """An MoE classifier trained top-2 with the balancing loss; points route each input to its top-k experts."""
    model = MoEClassifier(N_EXPERTS, TRAIN_K, width=WIDTH)
    task.fit(model, seed, loss_fn=moe_loss(BALANCE), desc="mixture of experts")
    points = []
    for k in TEST_KS:
        routed = copy.deepcopy(model).eval()
        routed.moe.k = k
        points.append(point(task, f"top-{k} of {N_EXPERTS} experts", routed))
    return points


@entry(
    "routing_tree",
    label=f"soft decision tree of depth {TREE_DEPTH} on the raw sequence, soft or hard routing",
    family="routing",
    board=MNIST1D,
    notebook="routing_trees",
)
def routing_tree(task: Task, seed: int) -> list[Point]:
    """A soft decision tree trained with its balance penalty; points: every leaf mixed, or one path followed."""
    tree = SoftDecisionTree(MNIST1D_LENGTH, MNIST1D_CLASSES, TREE_DEPTH)
    task.fit(tree, seed, loss_fn=tree_loss(TREE_STRENGTH), desc="routing tree")
    hard = copy.deepcopy(tree).eval()
    hard.hard_routing = True
    return [
        point(task, f"hard routing, {TREE_DEPTH} of {2**TREE_DEPTH - 1} routers", hard),
        point(task, "soft tree, every router and leaf", tree.eval()),
    ]


@entry(
    "dynamic_convolution",
    label=f"dynamic convolution, {N_KERNELS} kernels mixed per input (CondConv), width {WIDTH}",
    family="parameters",
    board=MNIST1D,
    notebook="dynamic_convolution",
)
def dynamic_convolution(task: Task, seed: int) -> list[Point]:
    """A CondConv CNN (blocks after the first mix `N_KERNELS` kernels per input); one point."""
    model = CondConvCNN(WIDTH, DEPTH, n_kernels=N_KERNELS)
    task.fit(model, seed, desc="dynamic convolution")
    return [point(task, f"{N_KERNELS} kernels", model.eval())]


class DynamicFilterConv1d(nn.Module):
    """`DynamicFilterConv2d` in 1-D: W(x) = W_0 + reshape(G(mean_t x)), G a two-layer MLP whose last
    layer starts at zero, so training starts from the static convolution W_0."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 5, hidden: int = FILTER_HIDDEN) -> None:
        super().__init__()
        check_positive_ints(c_in=c_in, c_out=c_out, kernel_size=kernel_size, hidden=hidden)
        self.base = nn.Parameter(torch.empty(c_out, c_in, kernel_size))
        nn.init.kaiming_uniform_(self.base, a=math.sqrt(5))
        self.generator = nn.Sequential(
            nn.Linear(c_in, hidden), nn.ReLU(), nn.Linear(hidden, c_out * c_in * kernel_size)
        )
        nn.init.zeros_(self.generator[-1].weight)
        nn.init.zeros_(self.generator[-1].bias)
        self.padding = kernel_size // 2

    def filters(self, x: torch.Tensor) -> torch.Tensor:
        """The predicted filters W(x), shape (batch, c_out, c_in, kernel_size)."""
        if x.dim() != 3 or x.shape[1] != self.base.shape[1]:
            raise ValueError(f"x must have shape (batch, {self.base.shape[1]}, length), got {tuple(x.shape)}")
        return self.base + self.generator(x.mean(dim=2)).view(len(x), *self.base.shape)

    def forward(self, x: torch.Tensor, filters: torch.Tensor | None = None) -> torch.Tensor:
        """Convolve each input with its own filters (default: `filters(x)`) in one grouped convolution."""
        w = self.filters(x) if filters is None else filters
        if w.shape != (len(x), *self.base.shape):
            raise ValueError(f"filters must have shape {(len(x), *self.base.shape)}, got {tuple(w.shape)}")
        out = F.conv1d(x.reshape(1, -1, x.shape[2]), w.flatten(0, 1), padding=self.padding, groups=len(x))
        return out.view(len(x), w.shape[1], x.shape[2])


class DynamicFilterCNN(nn.Module):
    """A 1-D CNN whose blocks after the first predict their filters from their input (`DynamicFilterConv1d`,
    then BatchNorm and ReLU); `forward` returns a `ModelOutput`: the logits and `decisions["filters"]`,
    (N, depth - 1, width, width, kernel_size), each dynamic layer's filters in layer order; everything runs."""

    def __init__(self, width: int, depth: int = DEPTH) -> None:
        super().__init__()
        check_positive_ints(width=width)
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 2:
            raise ValueError(
                f"depth must be an int of at least 2 (one static block, then dynamic), got {depth!r}"
            )
        dynamic = [
            nn.Sequential(DynamicFilterConv1d(width, width), nn.BatchNorm1d(width), nn.ReLU(inplace=True))
            for _ in range(depth - 1)
        ]
        self.blocks = nn.Sequential(conv_block(1, width), *dynamic)
        self.head = ExitHead(width, MNIST1D_LENGTH, MNIST1D_CLASSES)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        """The logits (batch, classes) and the filters each dynamic layer predicted."""
        filters = []
        for block in self.blocks:
            for layer in block:
                if isinstance(layer, DynamicFilterConv1d):
                    filters.append(layer.filters(x))
                    x = layer(x, filters[-1])
                else:
                    x = layer(x)
        return ModelOutput(self.head(x), {"filters": torch.stack(filters, dim=1)})


@entry(
    "weight_prediction",
    label=f"weight prediction, filters predicted per input (dynamic filter), width {WIDTH}",
    family="parameters",
    board=MNIST1D,
    notebook="weight_prediction",
)
def weight_prediction(task: Task, seed: int) -> list[Point]:
    """A CNN whose blocks after the first predict their filters from the input; one point."""
    model = DynamicFilterCNN(WIDTH)
    task.fit(model, seed, desc="weight prediction")
    return [point(task, f"filters predicted in {DEPTH - 1} blocks", model.eval())]


@entry(
    "feature_attention",
    label=f"feature attention, squeeze-and-excitation after every block, width {WIDTH}",
    family="parameters",
    board=MNIST1D,
    notebook="feature_attention",
)
def feature_attention(task: Task, seed: int) -> list[Point]:
    """A CNN with squeeze-and-excitation channel attention after every block; one point."""
    model = AttentionCNN("se", (WIDTH,) * DEPTH)
    task.fit(model, seed, desc="feature attention")
    return [point(task, "squeeze-and-excitation", model.eval())]
