"""Temporal-wise entries of the 1-D board: noisy MNIST-1D read as a time series of 40 steps.

Every recurrent model here reads one sample per step (a (N, 1, 40) sequence is fed as (N, 40, 1)),
has a state of width `HIDDEN` = 48 (the width of the static front's largest CNN) and is trained
with the task's budget (`Task.fit`: 10 epochs of Adam one-cycle, lr 1e-2, batch 128), one training
per seed. The entries, with the notebook each stands for:

- `static_rnn_h16`, `static_rnn_h48` (skip_rnn's static rivals): `temporal.skipping.StaticGRU`
  reading every step, of width 16 and 48.
- `skip_rnn` (notebook skip_rnn): `SkipGRU` trained with the budget weight `SKIP_LAMBDA`; points:
  its skipping execution, and the same weights updated at every step ("full").
- `skim_rnn` (notebook skim_rnn): `SkimGRU` with a small cell of width `SKIM_SMALL` (a quarter of
  the state, as the notebook's 8 of 32), budget weight `SKIM_LAMBDA`; points: skimming, and full.
- `lstm_jump` (notebook lstm_jump): `JumpGRU` with K = `JUMP_MAX` and an entropy bonus of 0.01 as
  the notebook, but R = `JUMP_READ` = 4 samples per read instead of 1 token (a sample of a 1-D
  signal says less than a token); points: the jump budget N at test time, `JUMP_BUDGETS`.
- `early_stopping` (notebook early_stopping): `EarlyStoppingReader` with patch 1 (40 steps; the
  notebook reads 4 samples per step of a longer sequence) trained with `loss_over_steps`; points:
  confidence thresholds and patiences calibrated on validation to mean steps `STOP_BUDGETS`
  (`threshold_for_steps`, `patience_for_steps`), and reading every step.
- `frame_selection` (notebook frame_selection): a "frame" is a window of the sequence: the 40
  samples as `N_WINDOWS` overlapping windows of `WINDOW` samples (stride `STRIDE`), read by
  `FrameExitNet` (coarse-to-fine order, running max of the frames' features, a classifier and a
  gate after each frame, `frame_exit_loss`) whose 2-D frame encoder is replaced by its 1-D
  counterpart (`WindowEncoder`: two convolutions of width 3, each followed by pooling by 2, and a
  linear layer); points: gate thresholds calibrated on validation to mean frames `FRAME_BUDGETS`
  (`gate_threshold_for_frames`), FrameExit's 0.5, and every frame.

Every knob is fixed here, never set per seed. Skip-RNN's budget weight was chosen once among 0.01, 0.03
and 0.1 on seed 0 (none of the board's seeds); R and the windows were set without a search.

Counted FLOPs come from the decisions (updates, full reads, tokens read, steps or frames read),
with the per-part costs measured once by `measure.count_flops`; `board.point` checks them against
the execution that really skips (skipping, skimming, jumping, stepwise), run one input at a time.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from dyn_helpers import measure, train
from dyn_helpers.decisions.confidence import exits_patience
from dyn_helpers.leaderboard.board import Point, Task, entry, point
from dyn_helpers.leaderboard.static import MNIST1D
from dyn_helpers.temporal import jumping, skimming
from dyn_helpers.temporal.frames import FrameExitNet, frame_exit_loss, gate_stops, gate_threshold_for_frames
from dyn_helpers.temporal.skipping import SkipGRU, StaticGRU, skip_rnn_loss
from dyn_helpers.temporal.stopping import (
    EarlyStoppingReader,
    gru_step,
    loss_over_steps,
    patience_for_steps,
    stop_steps,
    threshold_for_steps,
)

HIDDEN = 48
STATIC_HIDDEN = (16, 48)
SKIP_LAMBDA = 0.1  # the notebook studies 0.3; on this board 0.3 learns to skip nearly every step
SKIM_SMALL, SKIM_LAMBDA = 12, 0.3
JUMP_READ, JUMP_MAX, JUMP_ENTROPY = 4, 8, 0.01
JUMP_BUDGETS = (1, 3, 5, 7, 9)  # N: the most jumps at test time; 9 reaches every sample with R = 4
STOP_BUDGETS = (10, 18, 26, 34)  # mean steps read on validation, of 40
N_WINDOWS, WINDOW, STRIDE = 8, 12, 4
FRAME_WIDTHS, FRAME_DIM = (16, 32), HIDDEN
FRAME_BUDGETS = (2, 3, 4, 5, 6)  # mean frames read on validation, of N_WINDOWS
GATE_DEFAULT = 0.5  # FrameExit's gate threshold


class AsSteps(nn.Module):
    """Runs `model` on sequences (N, 1, L) read as L steps of one sample: (N, L, 1)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> object:
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[1] != 1:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must be sequences of shape (N, 1, L), got {got}")
        return self.model(x.transpose(1, 2))


def _as(model: nn.Module, **settings) -> nn.Module:
    """A copy of `model` in evaluation mode with `settings` (execution, budget, rule, ...) set."""
    twin = copy.deepcopy(model).eval()
    for name, value in settings.items():
        setattr(twin, name, value)
    return twin


def _steps(model: nn.Module, execution: str, **settings) -> AsSteps:
    return AsSteps(_as(model, execution=execution, **settings)).eval()


class _Memo:
    """One extra of a trained model's output (every step's logits, every frame's gate), computed once per input tensor.

    The operating points of one model differ only in the rule applied to these, so they are computed once.
    """

    def __init__(self, model: nn.Module, key: str) -> None:
        self.model, self.key, self.seen = model, key, {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if id(x) not in self.seen:  # x is kept, so that its id is not reused
            self.seen[id(x)] = (x, _predict(self.model, x).extras[self.key])
        return self.seen[id(x)][1]


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor) -> object:
    return train.predict(model, x)


def _fit(task: Task, model: nn.Module, seed: int, loss_fn=None, desc: str = "") -> None:
    kwargs = {} if loss_fn is None else {"loss_fn": loss_fn}
    task.fit(model, seed, desc=desc, **kwargs)


def _static_rnn(hidden: int) -> None:
    @entry(
        f"static_rnn_h{hidden}",
        label=f"static GRU of width {hidden}, every step",
        family="static",
        board=MNIST1D,
        notebook="skip_rnn",
    )
    def train_static_rnn(task: Task, seed: int) -> list[Point]:
        model = AsSteps(StaticGRU(1, hidden, task.splits.n_classes))
        _fit(task, model, seed, desc=f"static GRU h{hidden}")
        return [point(task, f"width {hidden}, all 40 steps", model.eval())]


for _hidden in STATIC_HIDDEN:
    _static_rnn(_hidden)


@entry(
    "skip_rnn",
    label=f"Skip-RNN, GRU of width {HIDDEN}, budget weight {SKIP_LAMBDA}",
    family="temporal",
    board=MNIST1D,
    notebook="skip_rnn",
)
def train_skip_rnn(task: Task, seed: int) -> list[Point]:
    """Skip-GRU trained masked with `skip_rnn_loss(SKIP_LAMBDA)`; skipping, and the full execution."""
    gru = SkipGRU(1, HIDDEN, task.splits.n_classes)
    _fit(task, AsSteps(gru), seed, skip_rnn_loss(SKIP_LAMBDA), "Skip-GRU")
    one = torch.zeros(1, HIDDEN)
    per_update = measure.count_flops(lambda v: gru.cell(v, one), torch.zeros(1, 1))
    per_update += measure.count_flops(gru.gate, one)
    head = measure.count_flops(gru.head, one)
    masked = _steps(gru, "masked")

    def flops_each(x: torch.Tensor) -> torch.Tensor:
        updates = _predict(masked, x).decisions["updates"]
        return updates.double().sum(1) * per_update + head

    return [
        point(
            task,
            f"skipping, λ = {SKIP_LAMBDA}",
            masked,
            flops_each=flops_each,
            counted=_steps(gru, "skipping"),
        ),
        point(task, "full: every step updated", _steps(gru, "full")),
    ]


@entry(
    "skim_rnn",
    label=f"Skim-RNN, GRU of width {HIDDEN} or {SKIM_SMALL}, budget weight {SKIM_LAMBDA}",
    family="temporal",
    board=MNIST1D,
    notebook="skim_rnn",
)
def train_skim_rnn(task: Task, seed: int) -> list[Point]:
    """Skim-GRU trained masked with `skim_rnn_loss(SKIM_LAMBDA)`; skimming, and the full execution."""
    gru = skimming.SkimGRU(1, HIDDEN, SKIM_SMALL, task.splits.n_classes)
    _fit(task, AsSteps(gru), seed, skimming.skim_rnn_loss(SKIM_LAMBDA), "Skim-GRU")
    masked = _steps(gru, "masked")

    def flops_each(x: torch.Tensor) -> torch.Tensor:
        return skimming.counted_flops(gru, _predict(masked, x).decisions["reads"])

    return [
        point(
            task,
            f"skimming, λ = {SKIM_LAMBDA}",
            masked,
            flops_each=flops_each,
            counted=_steps(gru, "skimming"),
        ),
        point(task, "full: every step read fully", _steps(gru, "full")),
    ]


@entry(
    "lstm_jump",
    label=f"LSTM-Jump on a GRU of width {HIDDEN}, R = {JUMP_READ}, K = {JUMP_MAX}, jump budget N",
    family="temporal",
    board=MNIST1D,
    notebook="lstm_jump",
)
def train_lstm_jump(task: Task, seed: int) -> list[Point]:
    """Jump GRU trained with `lstm_jump_loss` at the largest budget; one point per test-time budget N."""
    reader = jumping.JumpGRU(
        1, HIDDEN, task.splits.n_classes, read=JUMP_READ, max_jump=JUMP_MAX, budget=max(JUMP_BUDGETS)
    )
    _fit(task, AsSteps(reader), seed, jumping.lstm_jump_loss(JUMP_ENTROPY), "jump GRU")
    points = []
    for budget in JUMP_BUDGETS:
        batched = _steps(reader, "batched", budget=budget)

        def flops_each(x: torch.Tensor, batched: nn.Module = batched) -> torch.Tensor:
            return jumping.counted_flops(batched.model, _predict(batched, x))

        counted = _steps(reader, "jumping", budget=budget)
        points.append(point(task, f"N = {budget} jumps", batched, flops_each=flops_each, counted=counted))
    return points


@entry(
    "early_stopping",
    label=f"early stopping in time, GRU of width {HIDDEN}, confidence or patience",
    family="temporal",
    board=MNIST1D,
    notebook="early_stopping",
)
def train_early_stopping(task: Task, seed: int) -> list[Point]:
    """One reader trained with `loss_over_steps`; rules calibrated on validation to `STOP_BUDGETS` steps."""
    reader = EarlyStoppingReader(HIDDEN, patch=1, n_classes=task.splits.n_classes)
    _fit(task, reader, seed, loss_over_steps, "early-stopping reader")
    x_t, h = torch.zeros(1, 1), torch.zeros(1, HIDDEN)
    per_step = measure.count_flops(lambda v: gru_step(reader.gru, v, h), x_t)
    head = measure.count_flops(reader.head, h)
    every_step = _Memo(_as(reader, rule="none"), "step_logits")
    val_logits = every_step(task.splits.val.x)
    n_steps = val_logits.shape[1]
    patience_floor = exits_patience(val_logits.transpose(0, 1), 1).double().mean().item()
    settings = {}
    for budget in STOP_BUDGETS:
        threshold = threshold_for_steps(val_logits, budget)
        settings[f"confidence ≥ {threshold:.4f}"] = ("confidence", threshold)
        if budget >= patience_floor:
            patience = patience_for_steps(val_logits, budget)
            settings[f"patience {patience}"] = ("patience", patience)
    points = []
    for name, (rule, value) in settings.items():
        knob = {"threshold": value} if rule == "confidence" else {"patience": value}
        parallel = _as(reader, execution="parallel", rule=rule, **knob)

        def flops_each(x: torch.Tensor, rule: str = rule, value: float = value) -> torch.Tensor:
            return stop_steps(every_step(x), rule, value).double() * (per_step + head)

        counted = _as(reader, execution="stepwise", rule=rule, **knob)
        points.append(point(task, name, parallel, flops_each=flops_each, counted=counted))
    full = _as(reader, execution="parallel", rule="none")
    points.append(point(task, f"none: all {n_steps} steps", full, counted=_as(full, execution="stepwise")))
    return points


class WindowEncoder(nn.Module):
    """A window (M, 1, 1, w) to a feature vector (M, dim): `frames.FrameEncoder` in one dimension.

    Two convolutions of width 3, each followed by ReLU and max pooling by 2, then a linear layer and ReLU.
    """

    def __init__(self, widths: tuple[int, int], dim: int, window: int) -> None:
        super().__init__()
        if window % 4:
            raise ValueError(f"window must be a multiple of 4 (two poolings by 2), got {window}")
        self.layers = nn.Sequential(
            nn.Conv1d(1, widths[0], 3, padding=1),
            nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Conv1d(widths[0], widths[1], 3, padding=1),
            nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Flatten(),
            nn.Linear(widths[1] * (window // 4), dim),
            nn.ReLU(),
        )
        self.dim = dim

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.layers(frames.flatten(1, 2))


class AsWindows(nn.Module):
    """Runs a `FrameExitNet` on sequences (N, 1, L) cut into overlapping windows, its frames: (N, T, 1, 1, w)."""

    def __init__(self, net: FrameExitNet, window: int, stride: int) -> None:
        super().__init__()
        self.net, self.window, self.stride = net, window, stride

    def forward(self, x: torch.Tensor) -> object:
        frames = x.unfold(2, self.window, self.stride)  # (N, 1, T, w)
        if frames.shape[2] != self.net.n_frames:
            raise ValueError(
                f"x must have {self.net.n_frames} windows of {self.window}, got {frames.shape[2]}"
            )
        return self.net(frames.transpose(1, 2).unsqueeze(3))


def window_exit_net(n_classes: int) -> AsWindows:
    """`FrameExitNet` of `N_WINDOWS` frames with the 1-D `WindowEncoder`, reading windows of a sequence."""
    net = FrameExitNet(dim=FRAME_DIM, n_frames=N_WINDOWS, n_classes=n_classes)
    net.encoder = WindowEncoder(FRAME_WIDTHS, FRAME_DIM, WINDOW)
    net.canvas = None  # frames are 1 x WINDOW windows, not square images
    return AsWindows(net, WINDOW, STRIDE)


@entry(
    "frame_selection",
    label=f"FrameExit over {N_WINDOWS} windows of {WINDOW} samples (the frames), gate threshold",
    family="temporal",
    board=MNIST1D,
    notebook="frame_selection",
)
def train_frame_selection(task: Task, seed: int) -> list[Point]:
    """Windows read coarse to fine, trained with `frame_exit_loss`; gate thresholds, and every frame."""
    model = window_exit_net(task.splits.n_classes)
    _fit(task, model, seed, frame_exit_loss, "FrameExit on windows")
    net = model.net
    frame = measure.count_flops(net.encoder, torch.zeros(1, 1, 1, WINDOW))
    feature = torch.zeros(1, FRAME_DIM)
    gate, head = measure.count_flops(net.gate, feature), measure.count_flops(net.head, feature)
    gates = _Memo(_as(model), "gate_logits")
    thresholds = {GATE_DEFAULT} | {
        gate_threshold_for_frames(gates(task.splits.val.x), b) for b in FRAME_BUDGETS
    }
    points = []
    for threshold in sorted(thresholds):
        parallel = AsWindows(_as(net, rule="gate", threshold=threshold, execution="parallel"), WINDOW, STRIDE)

        def flops_each(x: torch.Tensor, threshold: float = threshold) -> torch.Tensor:
            read = gate_stops(gates(x), threshold).double()
            return read * frame + read.clamp(max=N_WINDOWS - 1) * gate + head

        counted = AsWindows(_as(net, rule="gate", threshold=threshold, execution="stepwise"), WINDOW, STRIDE)
        points.append(
            point(task, f"gate ≥ {threshold:.4f}", parallel, flops_each=flops_each, counted=counted)
        )
    every = AsWindows(_as(net, rule="none", execution="parallel"), WINDOW, STRIDE)
    counted = AsWindows(_as(net, rule="none", execution="stepwise"), WINDOW, STRIDE)
    points.append(point(task, f"none: all {N_WINDOWS} frames", every, counted=counted))
    return points
