"""Temporal: when does stopping early in time beat static readers? Stands for chapter 4's early_stopping.

The book's reader (`temporal.stopping.EarlyStoppingReader`, a GRU of width `HIDDEN` reading `PATCH`
samples per step with a classifier after every step, trained with `loss_over_steps`) stops at the
first step whose top softmax probability reaches a threshold; its points are `THRESHOLDS`, run
step by step (execution "stepwise"), all from one trained model. The static family are the
notebook's rivals (`StaticReader`): a prefix of half the steps, half the steps spread evenly, and
every step at width 8 and at width `HIDDEN`. The data are MNIST-1D digits pasted
into Gaussian noise (`embedded_at`, as `temporal.stopping.embedded_mnist1d`); two properties are swept:

- "length": the sequence's length, the digit at an offset uniform over the whole sequence;
- "where": at length `WHERE_LENGTH`, the digit's offset uniform over the first share `reach` of the
  room it can take: the information sits early when `reach` is small.

Departure from the notebook, fixed for every value and seed: `EPOCHS` epochs (not 10), so that the
family's record takes about 5 minutes on one core.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import torch

from dyn_helpers.checks import check_positive_ints
from dyn_helpers.data import MNIST1D_LENGTH, Split, Splits, mnist1d
from dyn_helpers.leaderboard.board import Point, Task, point
from dyn_helpers.payoff.sweeps import sweep
from dyn_helpers.temporal.skipping import prefix_steps, uniform_steps
from dyn_helpers.temporal.stopping import (
    PATCH,
    EarlyStoppingReader,
    StaticReader,
    loss_over_steps,
    reader_flops,
    stop_steps,
)

HIDDEN = 32
EPOCHS = 6
LR = 3e-2  # the notebook's learning rate for every reader
NOISE = 0.5
THRESHOLDS = (0.5, 0.8, 0.9, 0.97, 1.0)
LENGTHS = (48, 100, 160)
WHERE_LENGTH = 100
REACHES = (0.25, 0.5, 1.0)


def embedded_at(length: int, reach: float = 1.0, noise: float = NOISE, seed: int = 0) -> Splits:
    """MNIST-1D digits pasted into Gaussian noise of `length` samples at an offset uniform in
    [0, reach * (length - 40)]; each split's `box` holds (0, offset, 1, 40). Deterministic for `seed`."""
    check_positive_ints(length=length)
    if length < MNIST1D_LENGTH or length % PATCH:
        raise ValueError(f"length must be a multiple of {PATCH} of at least {MNIST1D_LENGTH}, got {length}")
    if isinstance(reach, bool) or not isinstance(reach, int | float) or not 0 <= reach <= 1:
        raise ValueError(f"reach must be a fraction in [0, 1], got {reach!r}")
    generator = torch.Generator().manual_seed(seed)
    room = round(reach * (length - MNIST1D_LENGTH))

    def embedded(part: Split) -> Split:
        n = len(part)
        offsets = torch.randint(0, room + 1, (n,), generator=generator)
        x = noise * torch.randn(n, 1, length, generator=generator)
        x[:, 0].scatter_(1, offsets[:, None] + torch.arange(MNIST1D_LENGTH), part.x[:, 0])
        zeros = torch.zeros_like(offsets)
        box = torch.stack([zeros, offsets, zeros + 1, zeros + MNIST1D_LENGTH], 1)
        return replace(part, x=x, box=box)

    digits = mnist1d()
    parts = {name: embedded(getattr(digits, name)) for name in ("train", "val", "test")}
    return replace(
        digits, name=f"mnist1d in noise, length {length}, offsets in the first {reach:.0%}", **parts
    )


def length_task(length: float) -> Task:
    """Digits in noise of `length` samples, anywhere in the sequence."""
    splits = embedded_at(int(length))
    return Task("temporal-length", f"MNIST-1D in noise, length {int(length)}", splits, epochs=EPOCHS, lr=LR)


def where_task(reach: float) -> Task:
    """Digits in noise of `WHERE_LENGTH` samples, in the first share `reach` of the room."""
    splits = embedded_at(WHERE_LENGTH, reach)
    title = f"MNIST-1D in noise, length {WHERE_LENGTH}, offsets in the first {reach:.0%}"
    return Task("temporal-where", title, splits, epochs=EPOCHS, lr=LR)


def stopping_points(task: Task, seed: int) -> list[Point]:
    """Train one reader and score it, run step by step, at every confidence threshold of `THRESHOLDS`."""
    reader = EarlyStoppingReader(HIDDEN)
    task.fit(reader, seed, loss_fn=loss_over_steps, desc="reader")
    reader.eval()
    # A step and its classifier: the stepwise confidence rule reads every step's logits.
    per_step = reader_flops(HIDDEN, 1, 1)

    @torch.no_grad()
    def steps_read(x: torch.Tensor, threshold: float) -> torch.Tensor:
        return stop_steps(reader.step_logits(x), "confidence", threshold)

    points = []
    for threshold in THRESHOLDS:
        stepwise = copy.deepcopy(reader)
        stepwise.execution, stepwise.rule = "stepwise", "confidence"
        stepwise.set_threshold(threshold)

        def flops_each(x: torch.Tensor, threshold: float = threshold) -> torch.Tensor:
            return steps_read(x, threshold).double() * per_step

        points.append(point(task, f"threshold {threshold:g}", stepwise, flops_each=flops_each))
    return points


def static_points(task: Task, seed: int) -> list[Point]:
    """Train the static readers: half the steps (a prefix, or spread evenly) at width `HIDDEN`, and every step
    at widths 8 and `HIDDEN`."""
    n_steps = task.splits.train.x.shape[-1] // PATCH
    readers = {
        f"prefix of {n_steps // 2} steps": (HIDDEN, prefix_steps(n_steps, n_steps // 2)),
        f"{n_steps // 2} steps spread evenly": (HIDDEN, uniform_steps(n_steps, n_steps // 2)),
        "width 8, every step": (8, prefix_steps(n_steps, n_steps)),
        f"width {HIDDEN}, every step": (HIDDEN, prefix_steps(n_steps, n_steps)),
    }
    points = []
    for name, (hidden, positions) in readers.items():
        model = StaticReader(hidden, positions, n_steps)
        task.fit(model, seed, loss_fn=loss_over_steps, desc=f"static, {name}")
        points.append(point(task, name, model.eval()))
    return points


METHOD = f"early stopping in time, confidence threshold, GRU of width {HIDDEN}"
sweep(
    "temporal",
    "length",
    prop="sequence length (samples; the digit takes 40)",
    values=LENGTHS,
    method=METHOD,
    notebook="early_stopping",
    task=length_task,
    dynamic=stopping_points,
    statics=static_points,
)
sweep(
    "temporal",
    "where",
    prop=f"share of the room the digit's offset is drawn from (length {WHERE_LENGTH})",
    values=REACHES,
    method=METHOD,
    notebook="early_stopping",
    task=where_task,
    dynamic=stopping_points,
    statics=static_points,
)
