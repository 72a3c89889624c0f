"""Mixture of experts: a top-k routed layer, Switch's balancing loss and routing statistics.

Taught in chapter 2 (mixture of experts, survey section 2.1.2). Each token (a row of the input)
goes to the `k` experts with the largest router probabilities, and only those experts run on
it, so a layer with more experts has more parameters but the same cost per token.
`dyn_helpers.sample_wise.moe_distributed` spreads the same layer's experts over processes.
"""

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from dyn_helpers.checks import check_positive_ints
from dyn_helpers.data import MNIST1D_CLASSES, MNIST1D_LENGTH, MNIST1D_SHAPE
from dyn_helpers.layers import conv_block
from dyn_helpers.measure import TimingCase, timing_cases
from dyn_helpers.outputs import ModelOutput


class Routing(NamedTuple):
    """The router's decision for N tokens: probabilities (N, E), chosen experts (N, k), their gates (N, k)."""

    probs: torch.Tensor
    experts: torch.Tensor
    gates: torch.Tensor


def route(logits: torch.Tensor, k: int) -> Routing:
    """Top-k routing: softmax over experts, keep the k most probable.

    With k = 1 the gate is the chosen expert's probability (Switch), so the router learns
    through it; with k > 1 the k probabilities are renormalised to sum to 1 (Shazeer et al.).
    """
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        raise ValueError("logits must be a tensor of shape (tokens, experts)")
    check_positive_ints(k=k)
    if k > logits.shape[1]:
        raise ValueError(f"k must be at most the number of experts ({logits.shape[1]}), got {k}")
    probs = logits.softmax(dim=1)
    top_probs, experts = probs.topk(k, dim=1)
    gates = top_probs if k == 1 else top_probs / top_probs.sum(dim=1, keepdim=True)
    return Routing(probs, experts, gates)


class Expert(nn.Sequential):
    """One expert: a two-layer MLP d_model -> d_hidden -> d_model with a ReLU."""

    def __init__(self, d_model: int, d_hidden: int) -> None:
        check_positive_ints(d_model=d_model, d_hidden=d_hidden)
        super().__init__(nn.Linear(d_model, d_hidden), nn.ReLU(), nn.Linear(d_hidden, d_model))


class Experts(nn.Module):
    """`n_experts` MLPs d_model -> d_hidden -> d_model with a ReLU, their weights stacked along dim 0.

    One tensor per weight (w1: n_experts x d_model x d_hidden, and so on) rather than one module per
    expert: the optimiser updates 4 tensors instead of 4 per expert, and a shard of experts is a
    slice. Each expert is initialised like `Expert`, whose arithmetic it repeats.
    """

    def __init__(self, n_experts: int, d_model: int, d_hidden: int) -> None:
        super().__init__()
        check_positive_ints(n_experts=n_experts, d_model=d_model, d_hidden=d_hidden)
        shapes = {"w1": (d_model, d_hidden), "b1": (d_hidden,), "w2": (d_hidden, d_model), "b2": (d_model,)}
        fan_in = {"w1": d_model, "b1": d_model, "w2": d_hidden, "b2": d_hidden}
        for name, shape in shapes.items():
            bound = 1 / math.sqrt(fan_in[name])
            self.register_parameter(
                name, nn.Parameter(torch.empty(n_experts, *shape).uniform_(-bound, bound))
            )

    def __len__(self) -> int:
        return len(self.w1)

    def forward(self, chunks: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Expert e applied to chunks[e], for every expert (an empty chunk costs nothing)."""
        if len(chunks) != len(self):
            raise ValueError(f"need one chunk of rows per expert ({len(self)}), got {len(chunks)}")
        w1, b1, w2, b2 = (p.unbind(0) for p in (self.w1, self.b1, self.w2, self.b2))
        return [torch.addmm(b2[e], F.relu(torch.addmm(b1[e], c, w1[e])), w2[e]) for e, c in enumerate(chunks)]

    def shard(self, experts: range) -> "Experts":
        """A copy of the experts in `experts` (a range of indices), with their own parameters."""
        if (
            not isinstance(experts, range)
            or experts.step != 1
            or not 0 <= experts.start < experts.stop <= len(self)
        ):
            raise ValueError(
                f"experts must be a non-empty range of indices in [0, {len(self)}), got {experts!r}"
            )
        part = Experts(len(experts), self.w1.shape[1], self.w1.shape[2]).to(self.w1.device)
        with torch.no_grad():
            for mine, full in zip(part.parameters(), self.parameters(), strict=True):
                mine.copy_(full[experts.start : experts.stop])
        return part


def combine_expert_outputs(
    experts: Experts, x: torch.Tensor, expert_ids: torch.Tensor, first: int = 0
) -> torch.Tensor:
    """Row i of the result is expert `expert_ids[i]` applied to row i of `x`.

    `experts` holds experts `first, first + 1, ...`. The rows are sorted by expert, each expert
    runs once on its contiguous chunk, and the rows are put back in their order. An expert with
    no rows runs on an empty chunk (zero FLOPs), so every expert's weights stay in the autograd
    graph, and in the expert-parallel layer every process takes part in the backward exchange.
    """
    local = expert_ids - first
    if len(local) and (local.min() < 0 or local.max() >= len(experts)):
        raise ValueError(f"expert_ids must lie in [{first}, {first + len(experts) - 1}]")
    order = local.argsort(stable=True)
    chunks = x[order].split(torch.bincount(local, minlength=len(experts)).tolist())
    return torch.cat(experts(chunks))[order.argsort()]


class MoELayer(nn.Module):
    """A sparsely-gated mixture of `n_experts` MLP experts with top-k routing.

    forward(x) for tokens x of shape (N, d_model) returns (y, routing) with
    y_i = sum over the k chosen experts e of gate_ie * E_e(x_i).
    """

    def __init__(self, d_model: int, d_hidden: int, n_experts: int, k: int = 1) -> None:
        super().__init__()
        check_positive_ints(d_model=d_model, d_hidden=d_hidden, n_experts=n_experts, k=k)
        if k > n_experts:
            raise ValueError(f"k must be at most n_experts ({n_experts}), got {k}")
        self.k = k
        self.router = nn.Linear(d_model, n_experts, bias=False)
        self.experts = Experts(n_experts, d_model, d_hidden)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Routing]:
        """Route each token to its k experts, run each expert on its tokens only, sum gated outputs."""
        if x.dim() != 2 or x.shape[1] != self.router.in_features:
            raise ValueError(f"x must have shape (tokens, {self.router.in_features}), got {tuple(x.shape)}")
        routing = route(self.router(x), self.k)
        token = torch.arange(len(x), device=x.device).repeat_interleave(self.k)  # one row per (token, slot)
        outputs = combine_expert_outputs(self.experts, x[token], routing.experts.flatten())
        y = torch.zeros_like(x).index_add(0, token, routing.gates.flatten()[:, None] * outputs)
        return y, routing


def switch_balancing_loss(probs: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
    """Switch Transformer's auxiliary loss E * sum_e f_e * P_e (1 when the load is uniform).

    f_e is the fraction of tokens whose first choice is expert e (not differentiable), P_e the
    mean router probability of e (differentiable), as in Fedus et al. (2022), eq. 4, without alpha.
    """
    if probs.dim() != 2 or experts.dim() != 2 or len(probs) != len(experts):
        raise ValueError("probs must have shape (tokens, experts) and experts shape (tokens, k)")
    n_experts = probs.shape[1]
    fraction = F.one_hot(experts[:, 0], n_experts).to(probs.dtype).mean(dim=0)
    return n_experts * (fraction * probs.mean(dim=0)).sum()


def _stem(width: int, d_model: int) -> nn.Sequential:
    """The shared feature extractor on mnist1d: two conv blocks with pooling, then a linear map."""
    return nn.Sequential(
        conv_block(1, width),
        nn.MaxPool1d(2),
        conv_block(width, width),
        nn.MaxPool1d(2),
        nn.Flatten(),
        nn.Linear(width * (MNIST1D_LENGTH // 4), d_model),  # two poolings: a quarter of the length
        nn.ReLU(),
    )


class MoEClassifier(nn.Module):
    """A conv stem gives one token per sequence; a residual MoE layer and a linear head classify it.

    `forward` returns a `ModelOutput`: the logits, `decisions["experts"]` the chosen experts
    (N, k), `executed` which experts ran for each input (N, n_experts), and
    `extras["router_probs"]` the router probabilities (N, n_experts) that the balancing loss needs.
    """

    def __init__(
        self, n_experts: int, k: int = 1, width: int = 16, d_model: int = 32, d_hidden: int = 32
    ) -> None:
        super().__init__()
        check_positive_ints(width=width)
        self.stem = _stem(width, d_model)
        self.moe = MoELayer(d_model, d_hidden, n_experts, k)
        self.head = nn.Linear(d_model, MNIST1D_CLASSES)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        """Logits, chosen experts (N, k), experts run (N, E) and router probabilities (N, E)."""
        z = self.stem(x)
        y, routing = self.moe(z)
        ran = torch.zeros_like(routing.probs, dtype=torch.bool).scatter_(1, routing.experts, True)
        return ModelOutput(
            self.head(z + y),
            decisions={"experts": routing.experts},
            executed=ran,
            extras={"router_probs": routing.probs},
        )


class DenseClassifier(nn.Module):
    """The static twin of `MoEClassifier`: the same stem and head around one expert of `d_hidden` units."""

    def __init__(self, width: int = 16, d_model: int = 32, d_hidden: int = 32) -> None:
        super().__init__()
        check_positive_ints(width=width)
        self.stem = _stem(width, d_model)
        self.expert = Expert(d_model, d_hidden)
        self.head = nn.Linear(d_model, MNIST1D_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits."""
        z = self.stem(x)
        return self.head(z + self.expert(z))


def moe_loss(balance_weight: float) -> Callable[[ModelOutput, torch.Tensor], torch.Tensor]:
    """A `train.fit` loss for `MoEClassifier`: cross-entropy + balance_weight * Switch balancing loss."""
    if not balance_weight >= 0:
        raise ValueError(f"balance_weight must be non-negative, got {balance_weight}")

    def loss(output: ModelOutput, y: torch.Tensor) -> torch.Tensor:
        task = F.cross_entropy(output.logits, y)
        if balance_weight == 0:
            return task
        return task + balance_weight * switch_balancing_loss(
            output.extras["router_probs"], output.decisions["experts"]
        )

    return loss


def expert_load(experts: torch.Tensor, n_experts: int) -> torch.Tensor:
    """The fraction of all dispatched (token, slot) pairs that each expert received; sums to 1."""
    check_positive_ints(n_experts=n_experts)
    if not isinstance(experts, torch.Tensor) or experts.numel() == 0:
        raise ValueError("experts must be a non-empty tensor of expert indices")
    if experts.min() < 0 or experts.max() >= n_experts:
        raise ValueError(f"expert indices must lie in [0, {n_experts - 1}]")
    counts = torch.bincount(experts.flatten(), minlength=n_experts).double()
    return counts / counts.sum()


def load_cv(load: torch.Tensor) -> float:
    """Coefficient of variation (population std / mean) of the expert load: 0 when uniform."""
    if not isinstance(load, torch.Tensor) or load.dim() != 1 or len(load) < 2:
        raise ValueError("load must be a 1-D tensor with one entry per expert (at least 2)")
    load = load.double()
    return float(load.std(unbiased=False) / load.mean())


@timing_cases("mixture_of_experts")
def _timing_cases(device: torch.device) -> dict[str, TimingCase]:
    """Top-1 and top-2 routing over 8 experts, every expert for every input (the reference), and the
    dense twins of 32 and 64 hidden units."""
    x = torch.randn(256, *MNIST1D_SHAPE)
    models = {
        "moe_top_1": MoEClassifier(8, 1),
        "moe_top_2": MoEClassifier(8, 2),
        "moe_all_8": MoEClassifier(8, 8),
        "dense_32_hidden": DenseClassifier(d_hidden=32),
        "dense_64_hidden": DenseClassifier(d_hidden=64),
    }
    reference = {"moe_top_1": "moe_all_8", "moe_top_2": "moe_all_8"}
    return {
        name: TimingCase(model.to(device).eval(), x, reference=reference.get(name))
        for name, model in models.items()
    }
