"""Layer skipping: a stochastic-depth backbone, fixed block subsets and their search, and a class-plan test.

Taught in chapter 2 (section 2.1.1, dynamic depth, layer skipping): `layer_skipping.ipynb`
(gates) and `blockdrop.ipynb` (a policy network). Both skip blocks of a
`GatedResidualCNN(estimator=None)` backbone and compare with the best *fixed* subset of its
blocks chosen on validation data; both ask whether the execution plan depends on the class.
"""

import itertools
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from dyn_helpers.checks import check_positive_ints
from dyn_helpers.data import Split
from dyn_helpers.measure import TimingCase, timing_cases
from dyn_helpers.sample_wise.gates import GatedResidualCNN, gated_timing_cases
from dyn_helpers.stats import entropy_bits, mutual_information_bits


def _check_backbone(backbone: object) -> None:
    if not isinstance(backbone, GatedResidualCNN) or backbone.gates is not None:
        raise TypeError(
            "backbone must be a GatedResidualCNN built with estimator=None, "
            f"got {type(backbone).__name__}"
            + (" with gates" if isinstance(backbone, GatedResidualCNN) else "")
        )


class StochasticDepthCNN(nn.Module):
    """A `GatedResidualCNN(estimator=None)` backbone trained with stochastic depth (Huang et al., 2016).

    In training, block l of each input runs with probability p_l, decaying linearly from 1 before
    the first block to `last_survival` at the last: x + b_l g_l(x), b_l ~ Bernoulli(p_l). Unlike the
    original, the output is not rescaled by p_l at test time, so that a block dropped at inference
    (BlockDrop, `blockdrop.ipynb`) leaves the features as training did. Evaluation runs every block.
    The forward pass returns logits only; the backbone is shared, not copied.
    """

    def __init__(self, backbone: GatedResidualCNN, last_survival: float = 0.5) -> None:
        super().__init__()
        _check_backbone(backbone)
        if not 0.0 < last_survival <= 1.0:
            raise ValueError(f"last_survival must be in (0, 1], got {last_survival}")
        self.backbone = backbone
        n = len(backbone.blocks)
        self.survival = [1.0 - (i + 1) / n * (1.0 - last_survival) for i in range(n)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, each block kept per input with its survival probability in training."""
        h = self.backbone.stem(x)
        for p, block in zip(self.survival, self.backbone.blocks, strict=True):
            if self.training:
                keep = torch.bernoulli(torch.full((len(x), 1, 1), p, dtype=h.dtype, device=h.device))
                h = h + keep * block(h)
            else:
                h = h + block(h)
        return self.backbone.head(h)


class SubsetCNN(nn.Module):
    """The backbone run with a fixed subset of its blocks, the same for every input: a static model.

    `keep` lists the indices of the blocks that run, in order; the others are never computed.
    The backbone is shared, not copied (deep-copy it first to fine-tune the subset alone).
    """

    def __init__(self, backbone: GatedResidualCNN, keep: Sequence[int]) -> None:
        super().__init__()
        _check_backbone(backbone)
        keep = tuple(keep)
        n = len(backbone.blocks)
        if any(isinstance(i, bool) or not isinstance(i, int) for i in keep):
            raise TypeError(f"keep must hold block indices (ints), got {keep!r}")
        if any(not 0 <= i < n for i in keep) or len(set(keep)) != len(keep):
            raise ValueError(f"keep must hold distinct block indices in [0, {n}), got {keep!r}")
        self.backbone, self.keep = backbone, tuple(sorted(keep))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits after the stem, the kept blocks and the classifier."""
        h = self.backbone.stem(x)
        for i in self.keep:
            h = h + self.backbone.blocks[i](h)
        return self.backbone.head(h)


class SubsetChoice(NamedTuple):
    """The chosen blocks and the validation accuracy (a fraction) of every subset tried."""

    keep: tuple[int, ...]
    accuracy: float
    tried: dict[tuple[int, ...], float]


@torch.no_grad()
def best_fixed_subset(backbone: GatedResidualCNN, val: Split, n_keep: int) -> SubsetChoice:
    """The subset of `n_keep` blocks whose `SubsetCNN` is most accurate on `val` (ties: the first found).

    Every one of the C(n_blocks, n_keep) subsets is evaluated: the static choice a dynamic
    block-skipping model must beat at the same number of blocks.
    """
    _check_backbone(backbone)
    if not isinstance(val, Split):
        raise TypeError(f"val must be a dyn_helpers.data.Split, got {type(val).__name__}")
    n = len(backbone.blocks)
    if isinstance(n_keep, bool) or not isinstance(n_keep, int) or not 0 <= n_keep <= n:
        raise ValueError(f"n_keep must be an int in [0, {n}], got {n_keep!r}")
    was_training = backbone.training
    backbone.eval()
    tried = {}
    for keep in itertools.combinations(range(n), n_keep):
        logits = SubsetCNN(backbone, keep)(val.x)
        tried[keep] = (logits.argmax(dim=1) == val.y).double().mean().item()
    backbone.train(was_training)
    keep = max(tried, key=tried.get)
    return SubsetChoice(keep, tried[keep], tried)


def _check_plans_and_labels(plans: torch.Tensor, labels: torch.Tensor) -> None:
    if not isinstance(plans, torch.Tensor) or plans.dim() != 2:
        raise ValueError("plans must be a 2-D tensor (inputs, blocks) of 0/1 decisions")
    if not isinstance(labels, torch.Tensor) or labels.shape != (len(plans),):
        raise ValueError(f"labels must be a 1-D tensor of {len(plans)} class indices, one per plan")
    if len(plans) == 0:
        raise ValueError("plans must hold at least one input")


def usage_by_class(plans: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """The fraction of inputs of each class that ran each block: shape (n_classes, n_blocks)."""
    _check_plans_and_labels(plans, labels)
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(f"labels must lie in [0, {n_classes}), got [{labels.min()}, {labels.max()}]")
    one_hot = torch.nn.functional.one_hot(labels.long(), n_classes).double()
    counts = one_hot.sum(dim=0)
    return (one_hot.T @ plans.double().round()) / counts.clamp(min=1).unsqueeze(1)


class DependenceTest(NamedTuple):
    """Mutual information between class and plan (bits), its largest possible value, and the permutation p-value."""

    mutual_information: float
    max_information: float
    p_value: float


def plan_class_dependence(
    plans: torch.Tensor, labels: torch.Tensor, n_permutations: int = 1000, seed: int = 0
) -> DependenceTest:
    """Test whether execution plans are independent of the class, by permuting the labels.

    The statistic is the mutual information I(class; plan) in bits, each distinct row of `plans`
    one plan. Under independence, shuffling labels does not change its distribution, so the
    p-value is (1 + #{shuffles with I >= observed}) / (1 + n_permutations). The largest possible
    value is min(H(class), H(plan)).
    """
    _check_plans_and_labels(plans, labels)
    check_positive_ints(n_permutations=n_permutations)
    plan_ids = torch.unique(plans.round().to(torch.int64), dim=0, return_inverse=True)[1]
    _, class_ids = torch.unique(labels, return_inverse=True)
    observed = mutual_information_bits(class_ids, plan_ids)
    generator = torch.Generator().manual_seed(seed)
    exceed = sum(
        mutual_information_bits(class_ids[torch.randperm(len(class_ids), generator=generator)], plan_ids)
        >= observed - 1e-12
        for _ in range(n_permutations)
    )

    bound = min(entropy_bits(class_ids), entropy_bits(plan_ids))
    return DependenceTest(observed, bound, (1 + exceed) / (1 + n_permutations))


@timing_cases("layer_skipping")
def _timing_cases(device: torch.device) -> dict[str, TimingCase]:
    """The chapter's gated CNN (width 32) and the static CNNs of 3 and 4 blocks."""
    return gated_timing_cases(device, width=32, static_blocks=(3, 4))
