"""Anytime inference under a deadline: a multi-exit network run block by block. Taught in chapter 6.

`answer_by_deadline` runs a `MultiExitCNN` (`dyn_helpers.sample_wise.early_exit`) on one input,
one step (a block and its exit) at a time, and reads a clock after each step. It answers with the
latest exit that finished by the deadline, or with nothing when not even exit 1 did. Given an
estimate of each step's time, it also refuses to start a step that would not finish in time.

The clock is injected: `WallClock` reads `time.perf_counter`; `SimulatedClock` advances by a fixed
cost per step (FLOPs, or times measured once), so that the same controller gives the same answers
on every machine, and unit tests can script the time. With a simulated clock the answers follow
from every exit's logits at once: `simulated_exits` and `simulated_predictions`, built on
`dyn_helpers.decisions.confidence.anytime_exits`.
"""

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Protocol

import torch

from dyn_helpers.decisions.confidence import anytime_exits, stack_logits
from dyn_helpers.sample_wise.early_exit import MultiExitCNN

NO_ANSWER = -1  # the prediction of an input that had no exit ready by its deadline


class Clock(Protocol):
    """What the controller needs of a clock: the time now, and word of each step it ran."""

    def now(self) -> float: ...

    def ran(self, step: int) -> None: ...


class WallClock:
    """The real clock, `time.perf_counter`, in seconds."""

    def now(self) -> float:
        return time.perf_counter()

    def ran(self, step: int) -> None:
        """The wall clock moves by itself."""


class SimulatedClock:
    """A deterministic clock: running step k moves it by `exit_costs[k-1] - exit_costs[k-2]`.

    `exit_costs` are cumulative, as in `dyn_helpers.decisions.confidence`: reaching exit k costs
    `exit_costs[k-1]` (FLOPs, or seconds measured once).
    """

    def __init__(self, exit_costs: Sequence[float]) -> None:
        self.exit_costs = _check_exit_costs(exit_costs)
        self.time = 0.0

    def now(self) -> float:
        return self.time

    def ran(self, step: int) -> None:
        if isinstance(step, bool) or not isinstance(step, int) or not 1 <= step <= len(self.exit_costs):
            raise ValueError(f"step must be an int in [1, {len(self.exit_costs)}], got {step!r}")
        self.time += self.exit_costs[step - 1] - (self.exit_costs[step - 2] if step > 1 else 0.0)


@dataclass(frozen=True)
class DeadlineAnswer:
    """One input's answer: the exit it came from (0: none), its logits, and when each step finished.

    `finish_times[k-1]` is the time from the start at which step k finished; steps that finished
    after the deadline ran, but their exits came too late to answer.
    """

    exit: int
    logits: torch.Tensor | None
    finish_times: tuple[float, ...]

    @property
    def answered(self) -> bool:
        """Whether an exit was ready by the deadline."""
        return self.exit > 0

    @property
    def blocks_run(self) -> int:
        return len(self.finish_times)


def _check_exit_costs(exit_costs: Sequence[float]) -> list[float]:
    costs = [float(c) for c in exit_costs]
    if not costs or any(not math.isfinite(c) or c <= 0 for c in costs) or costs != sorted(costs):
        raise ValueError(f"exit_costs must be positive, finite and non-decreasing, got {costs}")
    return costs


def _check_deadline(deadline: object) -> float:
    if isinstance(deadline, bool) or not isinstance(deadline, Real):
        raise TypeError(f"deadline must be a real number, got {type(deadline).__name__}")
    if math.isnan(deadline) or deadline <= 0:
        raise ValueError(f"deadline must be positive, got {deadline!r}")
    return float(deadline)


def answer_by_deadline(
    model: MultiExitCNN,
    x: torch.Tensor,
    deadline: float,
    clock: Clock | None = None,
    step_times: Sequence[float] | None = None,
) -> DeadlineAnswer:
    """Run `model` on one input step by step, and answer with the latest exit ready by `deadline`.

    After each step (block k and exit k) the controller reads `clock` (default: `WallClock()`).
    It stops once the deadline has passed, and, given `step_times` (an estimate of each step's
    time), before a step that would end after it. `deadline` is counted from the call, in the
    clock's unit.
    """
    if not isinstance(model, MultiExitCNN):
        raise TypeError(f"model must be a MultiExitCNN, got {type(model).__name__}")
    if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[0] != 1:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be one input of shape (1, channels, length), got {shape}")
    deadline = _check_deadline(deadline)
    if step_times is not None:
        step_times = [float(t) for t in step_times]
        if len(step_times) != model.depth or any(not math.isfinite(t) or t < 0 for t in step_times):
            raise ValueError(
                f"step_times must give one finite, non-negative time per step ({model.depth}), got {step_times}"
            )
    clock = WallClock() if clock is None else clock
    exit_, logits, finish_times = 0, None, []
    with torch.no_grad():
        start = clock.now()
        elapsed = 0.0
        for k, (block, head) in enumerate(zip(model.blocks, model.exits, strict=True), start=1):
            if step_times is not None and elapsed + step_times[k - 1] > deadline:
                break  # this step would end too late: do not start it
            x = block(x)
            step_logits = head(x)
            clock.ran(k)
            elapsed = clock.now() - start
            finish_times.append(elapsed)
            if elapsed > deadline:
                break  # too late: the answer is the exit before
            exit_, logits = k, step_logits
    return DeadlineAnswer(exit_, logits, tuple(finish_times))


def simulated_exits(exit_costs: Sequence[float], deadlines: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """The exit each input answers from under a `SimulatedClock(exit_costs)`: 0 when none fits.

    One deadline per input; the deepest exit whose cost fits it, as `confidence.anytime_exits`.
    """
    costs = _check_exit_costs(exit_costs)
    budgets = torch.as_tensor(deadlines, dtype=torch.float64).flatten()
    if len(budgets) == 0 or budgets.isnan().any() or (budgets <= 0).any():
        raise ValueError(
            f"deadlines must be a non-empty sequence of positive numbers, got {budgets.tolist()}"
        )
    exits = torch.zeros(len(budgets), dtype=torch.long)
    fits = budgets >= costs[0]
    if fits.any():
        exits[fits] = anytime_exits(costs, budgets[fits].tolist())
    return exits


def simulated_predictions(
    exit_logits: Sequence[torch.Tensor] | torch.Tensor, exits: torch.Tensor
) -> torch.Tensor:
    """The class each input answers with from its exit (`NO_ANSWER` where its exit is 0)."""
    stacked = stack_logits(exit_logits)  # (K, N, classes)
    if exits.shape != (stacked.shape[1],) or exits.min() < 0 or exits.max() > len(stacked):
        raise ValueError(
            f"exits must hold one exit in [0, {len(stacked)}] per input ({stacked.shape[1]}), "
            f"got shape {tuple(exits.shape)}"
        )
    chosen = stacked[(exits - 1).clamp(min=0), torch.arange(stacked.shape[1])].argmax(dim=-1)
    return torch.where(exits > 0, chosen, torch.full_like(chosen, NO_ANSWER))
