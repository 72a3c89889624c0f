"""Gradients through discrete decisions, a hard gate, a gated residual CNN and efficiency losses.

Taught in chapter 5 (section 5.2, training dynamic networks): the straight-through estimator,
Gumbel-softmax (concrete) relaxations, the REINFORCE surrogate, the `Gate` that later chapters
reuse, and the penalties that stop gates from collapsing to always-on.
"""

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from dyn_helpers.layers import ExitHead, add_residual_on_rows, conv_block
from dyn_helpers.measure import TimingCase, timing_cases
from dyn_helpers.outputs import Mode, ModelOutput

ESTIMATORS = ("straight_through", "gumbel", "reinforce")


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")


def _check_probs(probs: torch.Tensor, name: str = "probs") -> None:
    if not isinstance(probs, torch.Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(probs).__name__}")
    if probs.numel() and not bool(((probs >= 0) & (probs <= 1)).all()):
        raise ValueError(
            f"{name} must lie in [0, 1], got values in [{probs.min().item():.4g}, {probs.max().item():.4g}]"
        )


def _check_target(target: float) -> None:
    if not 0.0 <= target <= 1.0:
        raise ValueError(f"target rate must be in [0, 1], got {target}")


def straight_through_bernoulli(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A hard sample z ~ Bernoulli(probs) whose gradient is passed straight through to `probs`.

    Forward: exactly 0 or 1. Backward: dz/dprobs = 1, so with probs = sigmoid(theta) the
    gradient with respect to theta is sigmoid'(theta) (Bengio et al., 2013).
    """
    _check_probs(probs)
    hard = torch.bernoulli(probs.detach(), generator=generator)
    return hard + (probs - probs.detach())


def straight_through_categorical(
    probs: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A one-hot sample from Categorical(probs) (last dimension) with a straight-through gradient."""
    _check_probs(probs)
    flat = probs.detach().reshape(-1, probs.shape[-1])
    index = torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:-1])
    hard = F.one_hot(index, probs.shape[-1]).to(probs.dtype)
    return hard + (probs - probs.detach())


def _uniform(shape: torch.Size, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    u = torch.rand(shape, generator=generator, dtype=like.dtype, device=like.device)
    tiny = torch.finfo(like.dtype).tiny
    return u.clamp(tiny, 1.0 - torch.finfo(like.dtype).eps)


def gumbel_softmax(
    logits: torch.Tensor,
    temperature: float,
    *,
    hard: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A Gumbel-softmax (concrete) sample over the last dimension: softmax((logits + g) / temperature).

    g is standard Gumbel noise (Jang et al., 2017; Maddison et al., 2017). With `hard=True` the
    forward value is the one-hot argmax and the gradient is the relaxed sample's (straight-through).
    """
    _check_temperature(temperature)
    gumbel = -torch.log(-torch.log(_uniform(logits.shape, logits, generator)))
    soft = torch.softmax((logits + gumbel) / temperature, dim=-1)
    if not hard:
        return soft
    one_hot = F.one_hot(soft.argmax(dim=-1), soft.shape[-1]).to(soft.dtype)
    return one_hot + (soft - soft.detach())


def binary_concrete(
    logits: torch.Tensor,
    temperature: float,
    *,
    hard: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The two-outcome Gumbel-softmax: sigmoid((logits + l) / temperature), l standard logistic noise.

    P(sample > 1/2) = sigmoid(logits) at every temperature. With `hard=True` the forward value is
    exactly 0 or 1 and the gradient is the relaxed sample's (straight-through Gumbel).
    """
    _check_temperature(temperature)
    u = _uniform(logits.shape, logits, generator)
    soft = torch.sigmoid((logits + torch.log(u) - torch.log1p(-u)) / temperature)
    if not hard:
        return soft
    return (soft > 0.5).to(soft.dtype) + (soft - soft.detach())


def reinforce_surrogate(
    log_prob: torch.Tensor, cost: torch.Tensor, baseline: torch.Tensor | float = 0.0
) -> torch.Tensor:
    """Per-sample REINFORCE surrogate (cost - baseline) * log_prob, cost and baseline held constant.

    Its gradient is (f(z) - b) * grad log p(z), an unbiased estimate of grad E[f(z)] when the
    baseline b does not depend on the sample z (Williams, 1992). Average it over the batch.
    """
    if log_prob.shape != cost.shape:
        raise ValueError(
            f"log_prob and cost must have the same shape, got {tuple(log_prob.shape)} and {tuple(cost.shape)}"
        )
    advantage = cost.detach() - (baseline.detach() if isinstance(baseline, torch.Tensor) else baseline)
    return advantage * log_prob


def leave_one_out_baseline(cost: torch.Tensor) -> torch.Tensor:
    """For each sample, the mean cost of the other samples of the batch: a baseline independent of it."""
    if cost.dim() != 1 or len(cost) < 2:
        raise ValueError(f"cost must be a 1-D tensor of at least 2 samples, got shape {tuple(cost.shape)}")
    cost = cost.detach()
    return (cost.sum() - cost) / (len(cost) - 1)


class GateOutput(NamedTuple):
    """A gate's decision per input (0 or 1), its probability of opening, and the decision's log-probability."""

    decision: torch.Tensor
    prob: torch.Tensor
    log_prob: torch.Tensor


class Gate(nn.Module):
    """A hard per-input gate: a linear layer gives a logit, the chosen estimator a 0/1 decision.

    Training mode samples the decision: "straight_through" (Bernoulli, gradient through the
    probability), "gumbel" (hard binary concrete at `temperature`) or "reinforce" (Bernoulli,
    no gradient through the decision; train the logit with `reinforce_surrogate`). Evaluation
    mode is deterministic: open when the probability exceeds 1/2.
    """

    def __init__(
        self, in_features: int, estimator: str = "straight_through", temperature: float = 1.0
    ) -> None:
        super().__init__()
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
        _check_temperature(temperature)
        self.estimator, self.temperature = estimator, temperature
        self.logit = nn.Linear(in_features, 1)
        nn.init.zeros_(self.logit.weight)
        nn.init.constant_(self.logit.bias, 2.0)  # start open (probability 0.88)

    def forward(self, features: torch.Tensor) -> GateOutput:
        """Decide for each row of `features` (batch, in_features)."""
        theta = self.logit(features).squeeze(-1)
        prob = torch.sigmoid(theta)
        if not self.training:
            decision = (prob > 0.5).to(prob.dtype)
        elif self.estimator == "straight_through":
            decision = straight_through_bernoulli(prob)
        elif self.estimator == "gumbel":
            decision = binary_concrete(theta, self.temperature, hard=True)
        else:
            decision = torch.bernoulli(prob.detach())
        hard = decision.detach()
        log_prob = hard * F.logsigmoid(theta) + (1 - hard) * F.logsigmoid(-theta)
        return GateOutput(decision, prob, log_prob)


class GatedResidualCNN(nn.Module):
    """A stem, `n_blocks` residual conv blocks each behind its own `Gate`, and a linear classifier.

    Block l computes x + z_l(x) * g_l(x), the gate z_l reading the block's input averaged over
    positions. `forward` returns a `ModelOutput`: `decisions["gates"]` (batch, n_blocks) of 0/1,
    `extras["probs"]` the gates' opening probabilities and `extras["log_probs"]` the decisions'
    log-probabilities. With `estimator=None` there are no gates, every block runs and `forward`
    returns the logits: the static twin.

    `execution` (a mode, "sparse" or "masked"): in evaluation, "sparse" (the default) computes a
    block only for the inputs whose gate is open, and `executed` is the gates; "masked" computes
    every block for the whole batch and multiplies it by the gate, as training always does (the
    decision's gradient flows through the product), and `executed` is None. The static twin
    ignores it.
    """

    execution = Mode("sparse", "masked")

    def __init__(
        self,
        n_blocks: int = 4,
        width: int = 32,
        *,
        estimator: str | None = "straight_through",
        temperature: float = 1.0,
        n_classes: int = 10,
        length: int = 40,
        kernel_size: int = 5,
        execution: str = "sparse",
    ) -> None:
        super().__init__()
        if isinstance(n_blocks, bool) or not isinstance(n_blocks, int) or n_blocks < 0:
            raise ValueError(f"n_blocks must be a non-negative int, got {n_blocks!r}")
        if estimator is not None and estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be None or one of {ESTIMATORS}, got {estimator!r}")
        self.execution = execution
        self.stem = conv_block(1, width, kernel_size)
        self.blocks = nn.ModuleList(conv_block(width, width, kernel_size) for _ in range(n_blocks))
        self.gates = (
            None
            if estimator is None
            else nn.ModuleList(Gate(width, estimator, temperature) for _ in range(n_blocks))
        )
        self.head = ExitHead(width, length, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor | ModelOutput:
        """Logits and, per block, the gate's decisions, probabilities and log-probabilities (the
        static twin: the logits alone)."""
        x = self.stem(x)
        if self.gates is None:
            for block in self.blocks:
                x = x + block(x)
            return self.head(x)
        sparse = self.execution == "sparse" and not self.training
        decisions, probs, log_probs = [], [], []
        for block, gate in zip(self.blocks, self.gates, strict=True):
            decision, prob, log_prob = gate(x.mean(dim=-1))
            if sparse:
                x = add_residual_on_rows(block, x, decision)
            else:
                x = x + decision.view(-1, 1, 1) * block(x)
            decisions.append(decision)
            probs.append(prob)
            log_probs.append(log_prob)
        gates = _stack(decisions, x)
        return ModelOutput(
            self.head(x),
            decisions={"gates": gates},
            executed=gates if sparse else None,
            extras={"probs": _stack(probs, x), "log_probs": _stack(log_probs, x)},
        )


def _stack(columns: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """One column per block, shape (batch, n_blocks), also when there are no blocks."""
    return torch.stack(columns, dim=1) if columns else like.new_zeros(len(like), 0)


def expected_usage(probs: torch.Tensor) -> torch.Tensor:
    """The expected fraction of gated blocks that run: the mean gate probability (a ponder-like cost)."""
    _check_probs(probs)
    return probs.mean()


def target_rate_loss(rates: torch.Tensor, target: float) -> torch.Tensor:
    """The target-rate loss: the mean over gates of (batch-mean rate of gate l - target)^2.

    `rates` has shape (batch, n_gates), each in [0, 1]. ConvNet-AIG applies it to the hard
    straight-through decisions (a gated model's `decisions["gates"]`); the book applies it to the
    gate probabilities (`extras["probs"]`), a variant whose expectation lacks the decisions'
    variance term sum p(1 - p) (taught in layer_skipping.ipynb).
    """
    _check_target(target)
    _check_probs(rates, "rates")
    if rates.dim() != 2:
        raise ValueError(f"rates must have shape (batch, n_gates), got {tuple(rates.shape)}")
    return ((rates.mean(dim=0) - target) ** 2).mean()


def gated_timing_cases(
    device: torch.device, width: int, static_blocks: tuple[int, ...]
) -> dict[str, TimingCase]:
    """GPU-suite cases of a gated chapter: the 4-block gated CNN of `width` with every gate open and
    every gate shut, and the static CNNs of `static_blocks` blocks."""
    x = torch.randn(256, 1, 40)
    gated_open, gated_shut = (GatedResidualCNN(4, width, estimator="gumbel") for _ in range(2))
    for gate in gated_shut.gates:  # a new gate's weights are 0: its bias alone decides, for every input
        nn.init.constant_(gate.logit.bias, -2.0)
    models = {"gated_all_blocks": gated_open, "gated_no_blocks": gated_shut}
    for blocks in static_blocks:
        models[f"static_{blocks}_blocks"] = GatedResidualCNN(blocks, width, estimator=None)
    return {name: TimingCase(model.to(device).eval(), x) for name, model in models.items()}


@timing_cases("efficiency_losses")
def _timing_cases(device: torch.device) -> dict[str, TimingCase]:
    """The chapter's gated CNN (width 16) and the static CNNs of 0 and 4 blocks."""
    return gated_timing_cases(device, width=16, static_blocks=(0, 4))
