"""Gradients through discrete decisions: straight-through, Gumbel-softmax (concrete) and REINFORCE.

Taught in chapter 5 (section 5.2, training dynamic networks; gradient_estimators.ipynb). The
gates of `dyn_helpers.sample_wise.gates` and the policy of `dyn_helpers.decisions.policy` train
their discrete decisions with these estimators.
"""

import torch
import torch.nn.functional as F


def check_temperature(temperature: float) -> None:
    """Raise `ValueError` unless `temperature` is positive."""
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")


def check_probs(probs: torch.Tensor, name: str = "probs") -> None:
    """Raise unless `probs` is a tensor of probabilities in [0, 1]."""
    if not isinstance(probs, torch.Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(probs).__name__}")
    if probs.numel() and not bool(((probs >= 0) & (probs <= 1)).all()):
        raise ValueError(
            f"{name} must lie in [0, 1], got values in [{probs.min().item():.4g}, {probs.max().item():.4g}]"
        )


def straight_through_bernoulli(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A hard sample z ~ Bernoulli(probs) whose gradient is passed straight through to `probs`.

    Forward: exactly 0 or 1. Backward: dz/dprobs = 1, so with probs = sigmoid(theta) the
    gradient with respect to theta is sigmoid'(theta) (Bengio et al., 2013).
    """
    check_probs(probs)
    hard = torch.bernoulli(probs.detach(), generator=generator)
    return hard + (probs - probs.detach())


def straight_through_categorical(
    probs: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A one-hot sample from Categorical(probs) (last dimension) with a straight-through gradient."""
    check_probs(probs)
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
    check_temperature(temperature)
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
    check_temperature(temperature)
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
