"""Skipping state updates: Skip-RNN (Campos et al., 2018) on a GRU cell, and its static rivals. Taught in chapter 4.

After each state update the network emits an update probability; between updates that probability
accumulates, and the state is updated at the first step where the accumulated value, rounded, is 1.
Since the state is copied while it is not updated, the accumulated value after an update with
probability `delta` is `min(k * delta, 1)` k steps later, and the number of steps to skip is known
at the update. `SkipGRU` runs one trained model three ways, its `execution` mode:

- "masked": every step is computed and the new state is mixed with the old by the binary update
  gate, as training does (the gate's straight-through gradient flows through the mix);
- "skipping" (evaluation only): each input runs alone, and after every update the loop jumps to
  the next step to update, so the skipped steps are not computed at all;
- "full": the same cell updated at every step, with no gate: the reference.

`StaticGRU` reads a fixed set of steps (a prefix, a uniform subsample, or all of them) with a GRU
of any width: the static models of equal cost.
"""

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dyn_helpers.checks import check_positive_ints
from dyn_helpers.measure import TimingCase, timing_cases
from dyn_helpers.outputs import Mode, ModelOutput


def binarize(u_tilde: torch.Tensor) -> torch.Tensor:
    """Round probabilities to 0 or 1 at 1/2, with the gradient passed straight through (identity)."""
    if not isinstance(u_tilde, torch.Tensor):
        raise TypeError(f"u_tilde must be a tensor, got {type(u_tilde).__name__}")
    return (u_tilde >= 0.5).to(u_tilde.dtype) + (u_tilde - u_tilde.detach())


def steps_to_next_update(delta: float, limit: int) -> int:
    """Steps from an update with probability `delta` to the next update, at most `limit`.

    The smallest k >= 1 with k * delta >= 1/2 computed in float32, as the masked execution does;
    `limit` when there is none up to `limit` (a `delta` of 0 never updates again).
    """
    check_positive_ints(limit=limit)
    if isinstance(delta, bool) or not isinstance(delta, int | float) or not 0.0 <= delta <= 1.0:
        raise ValueError(f"delta must be a probability in [0, 1], got {delta!r}")
    d = np.float32(delta)
    if d <= 0:
        return limit
    k = min(max(1, math.ceil(0.5 / float(d))), limit + 1)
    while k > 1 and np.float32(k - 1) * d >= 0.5:
        k -= 1
    while k <= limit and np.float32(k) * d < 0.5:
        k += 1
    return min(k, limit)


def _check_sequences(x: torch.Tensor, n_symbols: int) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a tensor of shape (N, T, {n_symbols}), got {type(x).__name__}")
    if x.dim() != 3 or x.shape[-1] != n_symbols or x.shape[0] == 0:
        raise ValueError(f"x must have shape (N, T, {n_symbols}) with N >= 1, got {tuple(x.shape)}")
    if x.shape[1] == 0:
        raise ValueError("x holds empty sequences (T = 0): there is no step to read")


class SkipGRU(nn.Module):
    """A GRU whose state updates are gated by Skip-RNN's binary update gate, and a linear head.

    `gate_bias` starts the update probability at sigmoid(gate_bias) (Campos et al. start at 1:
    every step updated). The output's `decisions["updates"]` (N, T) is 1 where the state was
    updated; `extras["updates"]` is the same with its straight-through gradient, for the budget loss,
    and `extras["u_tilde"]` the accumulated update probability at each step (masked execution).
    """

    execution = Mode("masked", "skipping", "full")

    def __init__(
        self,
        n_symbols: int,
        hidden: int,
        n_classes: int,
        *,
        gate_bias: float = 1.0,
        execution: str = "masked",
    ) -> None:
        super().__init__()
        check_positive_ints(n_symbols=n_symbols, hidden=hidden, n_classes=n_classes)
        self.cell = nn.GRUCell(n_symbols, hidden)
        self.gate = nn.Linear(hidden, 1)  # the update probability from the new state
        self.head = nn.Linear(hidden, n_classes)
        nn.init.constant_(self.gate.bias, gate_bias)
        self.n_symbols, self.hidden = n_symbols, hidden
        self.execution = execution

    def forward(self, x: torch.Tensor) -> ModelOutput:
        _check_sequences(x, self.n_symbols)
        if self.execution == "skipping":
            if self.training:
                raise ValueError("the skipping execution runs in evaluation only: call model.eval()")
            return self._skipping(x)
        n, length, _ = x.shape
        h = x.new_zeros(n, self.hidden)
        delta, since = x.new_ones(n, 1), x.new_ones(n, 1)  # the first step is always updated
        updates, accumulated = [], []
        for t in range(length):
            if self.execution == "full":
                h = self.cell(x[:, t], h)
                continue
            u_tilde = torch.clamp(since * delta, max=1.0)  # (N, 1): the accumulated probability
            u = binarize(u_tilde)  # update at step t?
            h = u * self.cell(x[:, t], h) + (1 - u) * h
            delta = u * torch.sigmoid(self.gate(h)) + (1 - u) * delta
            since = (1 - u) * since + 1  # steps since the last update, at step t + 1
            updates.append(u)
            accumulated.append(u_tilde.detach())
        if self.execution == "full":
            ones = x.new_ones(n, length)
            return ModelOutput(self.head(h), {"updates": ones}, ones, {"updates": ones, "u_tilde": ones})
        u = torch.cat(updates, 1)
        hard = u.detach().round()
        return ModelOutput(
            self.head(h), {"updates": hard}, hard, {"updates": u, "u_tilde": torch.cat(accumulated, 1)}
        )

    @torch.no_grad()
    def _skipping(self, x: torch.Tensor) -> ModelOutput:
        logits, read = zip(*(self._skip_one(x[i : i + 1]) for i in range(len(x))), strict=True)
        updates = x.new_zeros(x.shape[:2])
        for i, steps in enumerate(read):
            updates[i, steps] = 1.0
        extras = {"updates": updates, "u_tilde": torch.full_like(updates, math.nan)}  # not computed
        return ModelOutput(torch.cat(logits), {"updates": updates}, updates, extras)

    def _skip_one(self, x: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
        """One input (1, T, V): update, read the update probability, jump to the next update."""
        length, h, t, read = x.shape[1], x.new_zeros(1, self.hidden), 0, []
        while t < length:
            h = self.cell(x[:, t], h)
            read.append(t)
            t += steps_to_next_update(torch.sigmoid(self.gate(h)).item(), length - t)
        return self.head(h), read


def update_budget_loss(updates: torch.Tensor, weight: float) -> torch.Tensor:
    """Skip-RNN's budget loss: `weight` times the share of steps updated, averaged over the batch.

    `updates` (N, T) holds the binary update gates with their straight-through gradient.
    """
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight >= 0:
        raise ValueError(f"weight must be a non-negative number, got {weight!r}")
    if not isinstance(updates, torch.Tensor) or updates.dim() != 2 or updates.numel() == 0:
        got = tuple(updates.shape) if isinstance(updates, torch.Tensor) else type(updates).__name__
        raise ValueError(f"updates must be a non-empty tensor of shape (N, T), got {got}")
    return weight * updates.mean()


def skip_rnn_loss(weight: float):
    """The loss `(output, y) -> cross-entropy + update_budget_loss(output.extras['updates'], weight)`."""
    update_budget_loss(torch.ones(1, 1), weight)  # checks the weight now

    def loss(output: ModelOutput, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output.logits, y) + update_budget_loss(output.extras["updates"], weight)

    return loss


def prefix_steps(length: int, n_steps: int) -> list[int]:
    """The first `n_steps` of `length` steps."""
    _check_steps(length, n_steps)
    return list(range(n_steps))


def uniform_steps(length: int, n_steps: int) -> list[int]:
    """`n_steps` steps spread evenly over `length`, each in the middle of its share of the sequence."""
    _check_steps(length, n_steps)
    return [(2 * i + 1) * length // (2 * n_steps) for i in range(n_steps)]


def _check_steps(length: int, n_steps: int) -> None:
    check_positive_ints(length=length)
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or not 1 <= n_steps <= length:
        raise ValueError(f"n_steps must be an int in 1 .. length = {length}, got {n_steps!r}")


class StaticGRU(nn.Module):
    """A GRU of width `hidden` that reads the same `steps` of every sequence (all when None), and a head."""

    def __init__(
        self, n_symbols: int, hidden: int, n_classes: int, steps: Sequence[int] | None = None
    ) -> None:
        super().__init__()
        check_positive_ints(n_symbols=n_symbols, hidden=hidden, n_classes=n_classes)
        if steps is not None:
            steps = list(steps)
            if not steps or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in steps):
                raise ValueError(f"steps must be a non-empty list of step indices, got {steps!r}")
        self.steps, self.n_symbols = steps, n_symbols
        self.rnn = nn.GRU(n_symbols, hidden, batch_first=True)
        self.head = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_sequences(x, self.n_symbols)
        if self.steps is not None:
            if max(self.steps) >= x.shape[1]:
                raise ValueError(f"the model reads step {max(self.steps)}, but x has {x.shape[1]} steps")
            x = x[:, self.steps]
        _, h = self.rnn(x)
        return self.head(h[0])


def static_family(
    n_symbols: int,
    n_classes: int,
    length: int,
    *,
    hidden: int,
    n_steps: Sequence[int],
    widths: Sequence[int],
) -> dict[str, StaticGRU]:
    """The static rivals: for each of `n_steps`, a GRU of width `hidden` reading a prefix of that many
    steps and one reading that many steps spread uniformly; for each of `widths`, a GRU reading every step."""
    family: dict[str, StaticGRU] = {}
    for k in n_steps:
        family[f"prefix {k}, width {hidden}"] = StaticGRU(
            n_symbols, hidden, n_classes, prefix_steps(length, k)
        )
        family[f"uniform {k}, width {hidden}"] = StaticGRU(
            n_symbols, hidden, n_classes, uniform_steps(length, k)
        )
    for w in widths:
        family[f"all {length}, width {w}"] = StaticGRU(n_symbols, w, n_classes)
    return family


@timing_cases("skip_rnn")
def _timing_cases(device: torch.device) -> dict[str, TimingCase]:
    """A Skip-GRU of width 48 on 48 steps of 8 symbols, its gate set to update every 3rd step: skipping
    (batch 1 only), masked and full; the static GRUs of width 16 on all steps and of width 48 on 16."""
    x = F.one_hot(torch.randint(8, (256, 48)), 8).float()
    skipping = SkipGRU(8, 48, 4, execution="skipping")
    nn.init.zeros_(skipping.gate.weight)
    nn.init.constant_(skipping.gate.bias, math.log(0.2 / 0.8))  # delta = 0.2: every 3rd step
    masked, full = SkipGRU(8, 48, 4), SkipGRU(8, 48, 4, execution="full")
    masked.load_state_dict(skipping.state_dict())
    full.load_state_dict(skipping.state_dict())
    cases = {
        "skipping": TimingCase(skipping.to(device).eval(), x, batch_sizes=(1,), reference="full"),
        "masked": TimingCase(masked.to(device).eval(), x, reference="full", counted_by="skipping"),
        "full": TimingCase(full.to(device).eval(), x),
        "static_all_width_16": TimingCase(StaticGRU(8, 16, 4).to(device).eval(), x),
        "static_uniform_16_width_48": TimingCase(
            StaticGRU(8, 48, 4, uniform_steps(48, 16)).to(device).eval(), x
        ),
    }
    return cases
