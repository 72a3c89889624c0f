"""Stopping early in time: read a sequence left to right and answer once sure. Taught in chapter 4.

`EarlyStoppingReader` is a GRU that reads a sequence one patch of `patch` samples per step, with a
classifier after every step. Its `rule` decides when it stops
reading, from the logits it has produced so far:

- "confidence": stop at the first step whose top softmax probability reaches `threshold`;
- "patience": stop once the predicted class has stayed the same for `patience` consecutive steps
  (PABEE's rule, Zhou et al. 2020, applied over time steps instead of layers);
- "none": read the whole sequence and answer at its end (the reference).

Its `execution` mode says how: "parallel" runs the GRU over the whole sequence at once and applies
the rule afterwards (training, and sweeping rules cheaply), "stepwise" runs one step at a time and
really ends the loop once every input of the batch has stopped. Both compute the same function;
only stepwise execution saves work. The stopping rules themselves are those of early exiting
(`dyn_helpers.decisions.confidence`), with the steps as exits.

The data (`embedded_mnist1d`) are MNIST-1D digits pasted at a random, known offset into a longer
sequence of noise, so that where the informative part lies is known for every sequence. The
static readers of equal cost (`static_readers`) read a prefix, a uniform subsample, or every step
with a narrower GRU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from dyn_helpers.checks import check_positive_ints, check_unit_interval
from dyn_helpers.data import MNIST1D_CLASSES, MNIST1D_LENGTH, Split, Splits, mnist1d
from dyn_helpers.decisions.confidence import (
    exits_max_probability,
    exits_patience,
    threshold_for_budget,
)
from dyn_helpers.measure import TimingCase, timing_cases
from dyn_helpers.outputs import Mode, ModelOutput
from dyn_helpers.temporal.skipping import prefix_steps, uniform_steps

SEQ_LENGTH = 100  # samples of an embedded sequence: a digit of MNIST1D_LENGTH samples in noise
PATCH = 4  # samples read per step: a sequence of SEQ_LENGTH samples is read in SEQ_LENGTH / PATCH steps
RULES = ("none", "confidence", "patience")


def embedded_mnist1d(length: int = SEQ_LENGTH, noise: float = 0.5, seed: int = 0) -> Splits:
    """MNIST-1D digits, each pasted at a random offset into Gaussian noise of `length` samples.

    The noise has standard deviation `noise` (the digits are standardised to 1). Each split's
    `box` holds (0, offset, 1, 40): the digit occupies samples offset, ..., offset + 39 of its
    1 x `length` canvas, offsets uniform in [0, length - 40]. Deterministic for `seed`.
    """
    check_positive_ints(length=length)
    if length < MNIST1D_LENGTH:
        raise ValueError(f"length must be at least the digit's {MNIST1D_LENGTH} steps, got {length}")
    if isinstance(noise, bool) or not isinstance(noise, int | float) or not noise >= 0:
        raise ValueError(f"noise must be a non-negative standard deviation, got {noise!r}")
    generator = torch.Generator().manual_seed(seed)
    digits = mnist1d()

    def embedded(part: Split) -> Split:
        n = len(part)
        offsets = torch.randint(0, length - MNIST1D_LENGTH + 1, (n,), generator=generator)
        x = noise * torch.randn(n, 1, length, generator=generator)
        steps = offsets[:, None] + torch.arange(MNIST1D_LENGTH)  # (n, 40): where each digit goes
        x[:, 0].scatter_(1, steps, part.x[:, 0])
        box = torch.stack(
            [torch.zeros_like(offsets), offsets, torch.ones_like(offsets), torch.full_like(offsets, 40)], 1
        )
        return replace(part, x=x, box=box)

    return replace(
        digits,
        name=f"mnist1d in noise, length {length}",
        train=embedded(digits.train),
        val=embedded(digits.val),
        test=embedded(digits.test),
    )


def check_sequences(x: object, patch: int = 1) -> torch.Tensor:
    """`x` if it is a non-empty batch of sequences of shape (N, 1, L), L a multiple of `patch`; else a clear error."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a tensor of shape (N, 1, L), got {type(x).__name__}")
    if x.dim() != 3 or x.shape[1] != 1:
        raise ValueError(f"x must have shape (N, 1, L) (one channel), got {tuple(x.shape)}")
    if x.shape[0] == 0 or x.shape[2] == 0:
        raise ValueError(f"x must hold at least one sequence of at least one sample, got {tuple(x.shape)}")
    if x.shape[2] % patch:
        raise ValueError(f"the length of x must be a multiple of the patch {patch}, got {x.shape[2]}")
    return x


def as_steps(x: torch.Tensor, patch: int) -> torch.Tensor:
    """Sequences (N, 1, L) as the patches read at each step: shape (N, L / patch, patch)."""
    check_positive_ints(patch=patch)
    return check_sequences(x, patch).reshape(x.shape[0], -1, patch)


def _check_step_logits(step_logits: object) -> torch.Tensor:
    if not isinstance(step_logits, torch.Tensor) or step_logits.dim() != 3:
        shape = tuple(step_logits.shape) if isinstance(step_logits, torch.Tensor) else type(step_logits)
        raise ValueError(f"step_logits must have shape (N, T, classes), got {shape}")
    if 0 in step_logits.shape:
        raise ValueError(f"step_logits must be non-empty, got shape {tuple(step_logits.shape)}")
    return step_logits.transpose(0, 1)  # (T, N, classes): the steps as exits


def stop_steps(step_logits: torch.Tensor, rule: str, value: float | None = None) -> torch.Tensor:
    """The step (1-based) at which each sequence stops under `rule`, from every step's logits (N, T, C).

    `value` is the threshold of "confidence" (in [0, 1]) or the patience of "patience" (at least 1);
    "none" reads to the last step. The last step always answers.
    """
    stacked = _check_step_logits(step_logits)
    if rule == "confidence":
        return exits_max_probability(stacked, value)
    if rule == "patience":
        return exits_patience(stacked, value)
    if rule == "none":
        return torch.full((stacked.shape[1],), stacked.shape[0], dtype=torch.long)
    raise ValueError(f"rule must be one of {RULES}, got {rule!r}")


def answers(step_logits: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """The logits each sequence answers with: those of the step it stopped at (`steps`, 1-based)."""
    stacked = _check_step_logits(step_logits)
    if steps.shape != (stacked.shape[1],) or steps.min() < 1 or steps.max() > stacked.shape[0]:
        raise ValueError(f"steps must hold one step in [1, {stacked.shape[0]}] per sequence")
    return stacked[steps - 1, torch.arange(stacked.shape[1])]


def _check_budget(budget: float, low: float, high: float, what: str) -> None:
    if isinstance(budget, bool) or not isinstance(budget, int | float) or not low <= budget <= high:
        raise ValueError(
            f"budget must lie in the reachable range [{low:g}, {high:g}] of mean steps read ({what}), "
            f"got {budget!r}"
        )


def threshold_for_steps(val_step_logits: torch.Tensor, budget: float) -> float:
    """The largest confidence threshold whose mean number of steps read on validation is at most `budget`.

    The reachable range is [1, T]: stopping after the first step, or reading everything.
    """
    stacked = _check_step_logits(val_step_logits)
    n_steps = stacked.shape[0]
    _check_budget(budget, 1, n_steps, "first step to last")
    return threshold_for_budget(stacked, list(range(1, n_steps + 1)), budget)


def patience_for_steps(val_step_logits: torch.Tensor, budget: float) -> int:
    """The largest patience whose mean number of steps read on validation is at most `budget`.

    The mean grows with the patience; the reachable range runs from the mean at patience 1 (at
    least 2 steps) to T, which a patience of T - 1 always reaches.
    """
    stacked = _check_step_logits(val_step_logits)
    n_steps = stacked.shape[0]
    if n_steps < 2:
        raise ValueError("patience needs at least 2 steps to compare, got 1")
    means = [exits_patience(stacked, p).double().mean().item() for p in range(1, n_steps)]
    _check_budget(budget, means[0], n_steps, "patience 1 to reading everything")
    return max(p for p, m in enumerate(means, start=1) if m <= budget)


def gru_step(gru: nn.GRU, x_t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """One step of the single-layer `gru`, with its own weights: the update `nn.GRU` makes at each step.

    `x_t` (N, inputs), `h` (N, hidden). `torch.gru_cell` computes r = sigmoid(W_ir x + W_hr h),
    z = sigmoid(W_iz x + W_hz h), n = tanh(W_in x + r * (W_hn h)) (biases left out here) and
    returns (1 - z) * n + z * h in one call; the counter sees its two matrix products.
    """
    return torch.gru_cell(x_t, h, gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_ih_l0, gru.bias_hh_l0)


class EarlyStoppingReader(nn.Module):
    """A GRU reading a sequence `patch` samples per step, with a classifier after every step, that stops when sure.

    Returns a `ModelOutput`: the logits of the step it stopped at, `decisions["stop"]` (N,) the
    steps read, `executed` (N, T) 1 for the steps read, and, in parallel execution,
    `extras["step_logits"]` (N, T, C), every step's logits.
    """

    execution = Mode("parallel", "stepwise")
    rule = Mode(*RULES)

    def __init__(
        self,
        hidden: int = 32,
        patch: int = PATCH,
        n_classes: int = MNIST1D_CLASSES,
        rule: str = "none",
        threshold: float = 1.0,
        patience: int = 1,
        execution: str = "parallel",
    ) -> None:
        super().__init__()
        check_positive_ints(hidden=hidden, patch=patch, n_classes=n_classes)
        self.patch = patch
        self.gru = nn.GRU(patch, hidden, batch_first=True)
        self.head = nn.Linear(hidden, n_classes)
        self.rule, self.execution = rule, execution
        self.set_threshold(threshold)
        self.set_patience(patience)

    def set_threshold(self, threshold: float) -> None:
        """The confidence threshold, in [0, 1]."""
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            raise TypeError(f"threshold must be a number in [0, 1], got {type(threshold).__name__}")
        check_unit_interval(threshold, "threshold")
        self.threshold = float(threshold)

    def set_patience(self, patience: int) -> None:
        """The patience: how many consecutive steps the prediction must stay the same, at least 1."""
        check_positive_ints(patience=patience)
        self.patience = patience

    def step_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Every step's logits (N, T, C): the GRU over the whole sequence, the classifier after each step."""
        states, _ = self.gru(as_steps(x, self.patch))  # (N, T, hidden)
        return self.head(states)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        if self.execution == "stepwise":
            return self._stepwise(as_steps(x, self.patch))
        step_logits = self.step_logits(x)
        value = self.threshold if self.rule == "confidence" else self.patience
        stops = stop_steps(step_logits, self.rule, value).to(x.device)
        executed = (torch.arange(step_logits.shape[1], device=x.device) < stops[:, None]).float()
        return ModelOutput(
            answers(step_logits, stops), {"stop": stops}, executed, {"step_logits": step_logits}
        )

    def _stops_now(
        self, logits: torch.Tensor, previous: torch.Tensor | None, streak: torch.Tensor
    ) -> torch.Tensor:
        """Whether each sequence stops at this step, by the rule, as `stop_steps` decides offline."""
        if self.rule == "confidence":
            return logits.softmax(dim=-1).amax(dim=-1).double() >= self.threshold
        if self.rule == "none":
            return torch.zeros_like(streak, dtype=torch.bool)
        if previous is not None:
            same = logits.argmax(dim=-1) == previous
            streak.copy_(torch.where(same, streak + 1, torch.zeros_like(streak)))
        return streak >= self.patience

    def _read_one(self, steps: torch.Tensor) -> ModelOutput:
        """One sequence (1, T, patch), one step at a time: the loop ends at the step the rule stops at."""
        h = steps.new_zeros(1, self.gru.hidden_size)
        n_steps, previous, streak, stop = steps.shape[1], -1, 0, False
        for t, x_t in enumerate(steps.unbind(1), start=1):
            h = gru_step(self.gru, x_t, h)
            if self.rule == "none" and t < n_steps:
                continue  # the reference reads on without a decision
            logits = self.head(h)
            if self.rule == "confidence":
                stop = float(logits.softmax(dim=-1).max()) >= self.threshold
            elif self.rule == "patience":
                predicted = int(logits.argmax())
                streak, previous = (streak + 1 if predicted == previous else 0), predicted
                stop = streak >= self.patience
            if stop:
                break
        executed = (torch.arange(n_steps, device=steps.device) < t).float()[None]
        return ModelOutput(logits, {"stop": torch.tensor([t], device=steps.device)}, executed)

    def _stepwise(self, steps: torch.Tensor) -> ModelOutput:
        """One step at a time; the loop ends once every sequence of the batch has stopped."""
        if len(steps) == 1:
            return self._read_one(steps)
        n, n_steps = steps.shape[0], steps.shape[1]
        h = steps.new_zeros(n, self.gru.hidden_size)
        stops = torch.full((n,), n_steps, dtype=torch.long, device=steps.device)
        answer = steps.new_zeros(n, self.head.out_features)
        done = torch.zeros(n, dtype=torch.bool, device=steps.device)
        streak, previous = torch.zeros(n, dtype=torch.long, device=steps.device), None
        for t in range(n_steps):
            h = gru_step(self.gru, steps[:, t], h)
            if self.rule == "none" and t < n_steps - 1:
                continue  # the reference reads on without a decision
            logits = self.head(h)
            stopping = ~done & (self._stops_now(logits, previous, streak) | (t == n_steps - 1))
            answer[stopping], stops[stopping] = logits[stopping], t + 1
            done |= stopping
            if bool(done.all()):
                break
            previous = logits.argmax(dim=-1)
        executed = (torch.arange(n_steps, device=steps.device) < stops[:, None]).float()
        return ModelOutput(answer, {"stop": stops}, executed)


def loss_over_steps(output: ModelOutput, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of every step's classifier, step t weighted by t / (1 + 2 + ... + T).

    Later steps have read more and weigh more; every step learns to answer with what it has read.
    """
    step_logits = output.extras["step_logits"]  # (N, T, C)
    n, n_steps, n_classes = step_logits.shape
    per_step = F.cross_entropy(
        step_logits.reshape(-1, n_classes), y.repeat_interleave(n_steps), reduction="none"
    ).view(n, n_steps)
    weights = torch.arange(1, n_steps + 1, dtype=per_step.dtype, device=per_step.device)
    return (per_step.mean(dim=0) * weights).sum() / weights.sum()


class StaticReader(nn.Module):
    """A GRU that reads fixed steps (`positions`) of every sequence, in order, and answers after the last.

    Its cost is the same for every input. Like `EarlyStoppingReader` it has a classifier after
    every step it reads, so that it trains with the same loss (`loss_over_steps`); it answers
    with the last one, and returns a `ModelOutput` with `extras["step_logits"]`.
    """

    def __init__(
        self,
        hidden: int,
        positions: Sequence[int],
        n_steps: int,
        patch: int = PATCH,
        n_classes: int = MNIST1D_CLASSES,
    ) -> None:
        super().__init__()
        check_positive_ints(hidden=hidden, n_steps=n_steps, patch=patch, n_classes=n_classes)
        positions = tuple(positions)
        if (
            not positions
            or any(not 0 <= p < n_steps for p in positions)
            or list(positions) != sorted(set(positions))
        ):
            raise ValueError(f"positions must be increasing steps in [0, {n_steps}), got {positions}")
        self.n_steps, self.patch = n_steps, patch
        self.register_buffer("positions", torch.tensor(positions), persistent=False)
        self.gru = nn.GRU(patch, hidden, batch_first=True)
        self.head = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        steps = as_steps(x, self.patch)
        if steps.shape[1] != self.n_steps:
            raise ValueError(
                f"x must have {self.n_steps} steps of {self.patch} samples, got {steps.shape[1]}"
            )
        states, _ = self.gru(steps[:, self.positions])
        if self.training:
            step_logits = self.head(states)
            return ModelOutput(step_logits[:, -1], extras={"step_logits": step_logits})
        return ModelOutput(self.head(states[:, -1]))


def reader_flops(
    hidden: int, steps: int, classifiers: int = 1, patch: int = PATCH, n_classes: int = MNIST1D_CLASSES
) -> int:
    """FLOPs of a GRU of width `hidden` over `steps` steps of `patch` inputs, plus `classifiers` heads.

    A step costs 2 * 3 * hidden * (patch + hidden) (the input and state products), a head
    2 * hidden * classes; this is what `measure.count_flops` counts.
    """
    check_positive_ints(hidden=hidden, steps=steps, patch=patch, n_classes=n_classes)
    if isinstance(classifiers, bool) or not isinstance(classifiers, int) or classifiers < 0:
        raise ValueError(f"classifiers must be a non-negative int, got {classifiers!r}")
    return steps * 6 * hidden * (patch + hidden) + classifiers * 2 * hidden * n_classes


def static_readers(
    budget: float, n_steps: int, hidden: int = 32, patch: int = PATCH
) -> dict[str, StaticReader]:
    """Static readers costing at most `budget` FLOPs, to choose a twin from (`harness.choose_static`).

    A prefix of as many steps as the budget pays for and as many steps spread uniformly over the
    sequence, both with a GRU of width `hidden`; and the widest GRU that reads every step.
    """
    check_positive_ints(hidden=hidden, n_steps=n_steps, patch=patch)
    low, high = reader_flops(1, n_steps, patch=patch), reader_flops(hidden, n_steps, patch=patch)
    if isinstance(budget, bool) or not isinstance(budget, int | float) or not low <= budget <= high:
        raise ValueError(f"budget must lie in the reachable range [{low:,}, {high:,}] FLOPs, got {budget!r}")
    step, head = reader_flops(hidden, 1, 0, patch), 2 * hidden * MNIST1D_CLASSES
    n = max(1, min(math.floor((budget - head) / step), n_steps))
    width = max(w for w in range(1, hidden + 1) if reader_flops(w, n_steps, patch=patch) <= budget)
    every = prefix_steps(n_steps, n_steps)
    return {
        f"prefix of {n} steps": StaticReader(hidden, prefix_steps(n_steps, n), n_steps, patch),
        f"{n} steps spread evenly": StaticReader(hidden, uniform_steps(n_steps, n), n_steps, patch),
        f"width {width}, every step": StaticReader(width, every, n_steps, patch),
    }


@timing_cases("early_stopping")
def _timing_cases(device: torch.device) -> dict[str, TimingCase]:
    """The reader of width 32 run stepwise (stopping by confidence, by patience, and reading every
    step) and in parallel (every step at once), and a static reader of a 15-step prefix."""
    x = torch.randn(256, 1, SEQ_LENGTH)
    n_steps = SEQ_LENGTH // PATCH
    models = {
        "stepwise_confidence_09": EarlyStoppingReader(rule="confidence", threshold=0.9, execution="stepwise"),
        "stepwise_patience_5": EarlyStoppingReader(rule="patience", patience=5, execution="stepwise"),
        "stepwise_every_step": EarlyStoppingReader(execution="stepwise"),
        "parallel_every_step": EarlyStoppingReader(),
        "static_prefix_15": StaticReader(32, prefix_steps(n_steps, 15), n_steps),
    }
    stopping = ("stepwise_confidence_09", "stepwise_patience_5")
    return {
        name: TimingCase(
            model.to(device).eval(), x, reference="parallel_every_step" if name in stopping else None
        )
        for name, model in models.items()
    }
