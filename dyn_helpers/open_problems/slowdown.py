"""Slowdown attacks on dynamic networks, and the share of the saving they take away. Taught in chapter 7.

An input-adaptive network saves computation on the inputs it finds easy. An attacker who can
change the input a little can make every input look hard: DeepSloth (Hong et al., 2021) pushes
every early exit of a multi-exit network towards the uniform distribution, so that no exit is
confident and every input runs to the end; ILFO (Haque et al., 2020) opens the gates of a gated
network. Both are projected gradient descent under an L-infinity budget `eps`, with an objective
that measures confidence or closed gates instead of the loss of the true class.

The objectives here are scalars to minimise; `pgd` and `universal_perturbation` minimise them.
`efficacy_lost` is the share of the saving the attack takes away: 0 when the attacked inputs cost
what the clean ones do, 1 when they cost as much as the network without its decisions.
"""

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from dyn_helpers.checks import check_positive_ints
from dyn_helpers.measure import TimingCase, timing_cases
from dyn_helpers.sample_wise.early_exit import BOOK_ARCHITECTURE, MultiExitCNN

Objective = Callable[[torch.Tensor], torch.Tensor]


def check_budget(eps: float) -> None:
    """Raise `ValueError` unless the attack budget `eps` is a positive finite number."""
    if isinstance(eps, bool) or not isinstance(eps, int | float) or not 0.0 < eps < float("inf"):
        raise ValueError(f"eps, the attack budget, must be a positive number, got {eps!r}")


def _check_inputs(x: object) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor of inputs, got {type(x).__name__}")
    if x.dim() < 2 or len(x) == 0:
        raise ValueError(f"x must be a non-empty batch of inputs, got shape {tuple(x.shape)}")
    return x


def uniform_exit_loss(exit_logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """DeepSloth's objective: the mean cross-entropy of every exit but the last to the uniform distribution.

    It is smallest when each of those exits gives every class the same probability, so that no
    threshold on confidence is reached before the last exit, which answers anyway.
    """
    exits = list(exit_logits)
    if len(exits) < 2:
        raise ValueError(f"exit_logits must hold at least two exits' logits, got {len(exits)}")
    early = torch.stack(exits[:-1])  # (K - 1, N, classes)
    return -F.log_softmax(early, dim=-1).mean()


def gate_opening_loss(gate_probs: torch.Tensor) -> torch.Tensor:
    """ILFO's aim for a gated network: the mean of -log p over every gate's opening probability p.

    It is smallest when every gate is sure to open, so every block runs.
    """
    if not isinstance(gate_probs, torch.Tensor) or gate_probs.dim() != 2 or 0 in gate_probs.shape:
        got = tuple(gate_probs.shape) if isinstance(gate_probs, torch.Tensor) else type(gate_probs).__name__
        raise ValueError(f"gate_probs must have shape (inputs, gates) with both at least 1, got {got}")
    return -gate_probs.clamp_min(1e-12).log().mean()


def pgd(objective: Objective, x: torch.Tensor, eps: float, steps: int = 10) -> torch.Tensor:
    """Inputs within `eps` of `x` in every coordinate that lower `objective`, by signed gradient steps.

    Projected gradient descent from `x`: `steps` steps of size 2.5 `eps` / `steps` against the sign
    of the gradient, each followed by clipping the change to [-eps, eps] (Madry et al., 2018).
    `objective` maps a batch to a scalar; the model's parameters are not changed.
    """
    check_budget(eps)
    check_positive_ints(steps=steps)
    x = _check_inputs(x).detach()
    delta = torch.zeros_like(x, requires_grad=True)
    step = 2.5 * eps / steps
    for _ in range(steps):
        (grad,) = torch.autograd.grad(objective(x + delta), delta)
        with torch.no_grad():
            delta -= step * grad.sign()
            delta.clamp_(-eps, eps)
    return (x + delta).detach()


def universal_perturbation(
    objective: Objective, x: torch.Tensor, eps: float, epochs: int = 3, batch_size: int = 250
) -> torch.Tensor:
    """One change of the shape of one input, within `eps`, that lowers `objective` on every batch of `x`.

    A universal perturbation is made once, on inputs the attacker holds, and added to any input
    later: signed gradient steps of 0.25 `eps` on each batch in turn, clipped to [-eps, eps].
    """
    check_budget(eps)
    check_positive_ints(epochs=epochs, batch_size=batch_size)
    x = _check_inputs(x).detach()
    delta = torch.zeros_like(x[:1], requires_grad=True)
    for _ in range(epochs):
        for batch in torch.split(x, batch_size):
            (grad,) = torch.autograd.grad(objective(batch + delta), delta)
            with torch.no_grad():
                delta -= 0.25 * eps * grad.sign()
                delta.clamp_(-eps, eps)
    return delta.detach()


def random_sign_noise(x: torch.Tensor, eps: float, seed: int = 0) -> torch.Tensor:
    """`x` plus `eps` times a random sign in every coordinate: noise of an attack's size, aimed at nothing."""
    check_budget(eps)
    x = _check_inputs(x)
    generator = torch.Generator().manual_seed(seed)
    signs = torch.randint(0, 2, x.shape, generator=generator).to(x.dtype) * 2 - 1
    return x + eps * signs


def efficacy_lost(clean_cost: float, attacked_cost: float, full_cost: float) -> float:
    """The share of the saving an attack takes away: (attacked - clean) / (full - clean).

    Costs are averages per input in any one unit (FLOPs, share of the network); `full_cost` is the
    network run without its decisions. 0: the attack costs nothing extra; 1: the whole saving is
    gone. The clean inputs must cost less than the full network, or there is no saving to lose.
    """
    costs = {"clean_cost": clean_cost, "attacked_cost": attacked_cost, "full_cost": full_cost}
    for name, value in costs.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
            raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    if not clean_cost < full_cost:
        raise ValueError(
            f"clean_cost must be below full_cost, or there is no saving to lose: got {clean_cost:g} >= {full_cost:g}"
        )
    return (attacked_cost - clean_cost) / (full_cost - clean_cost)


@timing_cases("slowdown_attacks")
def _timing_cases(device: torch.device) -> dict[str, TimingCase]:
    """The early-exit CNN when every input leaves at the first exit and when every input runs to the end.

    A slowdown attack moves inputs from the first towards the second: the two bound the time it can
    add. Threshold 0 exits every input at once; threshold 1 exits none before the last.
    """
    x = torch.randn(64, 1, BOOK_ARCHITECTURE["length"])
    cases = {}
    for name, threshold in (("every_input_leaves_first", 0.0), ("every_input_runs_to_the_end", 1.0)):
        model = MultiExitCNN(**BOOK_ARCHITECTURE, exit_threshold=threshold).to(device).eval()
        cases[f"early_exit_{name}"] = TimingCase(model, x, batch_sizes=(1,))
    return cases
