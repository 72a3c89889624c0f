"""Adaptive frame selection in video: read frames until sure, FrameExit-style. Taught in chapter 4.

The data (`moving_digit_videos`) are short videos of a digit moving across a small canvas, the
digit clear in a few consecutive frames and hidden in heavy noise in the others; which frames
are informative is known for every video (`VideoSplit.informative`).

`FrameExitNet` reads a video's frames in a fixed coarse-to-fine order (`coarse_to_fine`: the
middle frame, then the quarters, ...; FrameExit, Ghodrati et al. 2021, samples deterministically
from coarse to fine too, starting from the middle, first and last frames), encodes each frame read
with a small CNN, pools the features of the frames read so far (a running maximum), classifies
after every frame and decides after every frame whether to stop, by its `rule`:

- "gate": a small gate on the pooled features, trained to predict whether the current prediction
  is already right (a simple form of FrameExit's exit gates), stops when its probability reaches
  `threshold`;
- "confidence": stops when the top softmax probability reaches `threshold`;
- "none": reads every frame and answers once at the end (the reference).

Its `execution` says how: "parallel" encodes every frame of the batch at once and applies the
rule afterwards (training, sweeping thresholds), "stepwise" runs one video at a time and encodes
a frame only when the rule has not stopped yet: frames after the exit are never encoded. Both
compute the same function. `StaticFrameNet` reads fixed frames of every video (uniform samples, or
all of them with a narrower encoder): the static rivals of equal cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dyn_helpers.checks import check_positive_ints, check_unit_interval
from dyn_helpers.data import DIGITS_CLASSES, Split, Splits, digits
from dyn_helpers.measure import TimingCase, timing_cases
from dyn_helpers.outputs import Mode, ModelOutput
from dyn_helpers.temporal.skipping import uniform_steps
from dyn_helpers.temporal.stopping import answers, loss_over_steps, stop_steps

N_FRAMES = 16  # frames per video
CANVAS = 12  # a frame is CANVAS x CANVAS pixels; the 8 x 8 digit moves inside it
DIGIT = 8
RULES = ("none", "confidence", "gate")


@dataclass(frozen=True)
class VideoSplit(Split):
    """A `Split` of videos (N, T, 1, H, W) with `informative` (N, T): True where the digit is clear."""

    informative: torch.Tensor | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.informative is not None and tuple(self.informative.shape) != tuple(self.x.shape[:2]):
            raise ValueError(
                f"informative must have shape (N, T) = {tuple(self.x.shape[:2])}, "
                f"got {tuple(self.informative.shape)}"
            )


def moving_digit_videos(
    n_frames: int = N_FRAMES,
    canvas: int = CANVAS,
    clear: tuple[int, int] = (2, 3),
    faint: float = 0.0,
    noise: float = 0.5,
    seed: int = 0,
) -> Splits:
    """Videos of scikit-learn digits moving along a straight line over a `canvas` x `canvas` frame.

    Each digit image of `dyn_helpers.data.digits()` becomes one video of `n_frames` frames. The
    digit is clear (contrast 1, noise sd 0.1) in a run of consecutive frames whose length is drawn
    from `clear` (inclusive) and whose start is uniform; in every other frame it has contrast
    `faint` (0: absent) under noise of sd `noise`. Each split's `informative` marks the clear frames.
    Deterministic for `seed`.
    """
    check_positive_ints(n_frames=n_frames, canvas=canvas)
    if canvas < DIGIT:
        raise ValueError(f"canvas must hold the {DIGIT} x {DIGIT} digit, got {canvas}")
    low, high = clear
    if not 1 <= low <= high <= n_frames:
        raise ValueError(f"clear must be (low, high) with 1 <= low <= high <= n_frames, got {clear!r}")
    check_unit_interval(faint, "faint")
    if isinstance(noise, bool) or not isinstance(noise, int | float) or not noise >= 0:
        raise ValueError(f"noise must be a non-negative standard deviation, got {noise!r}")
    rng = np.random.default_rng(seed)
    images = digits()
    span = canvas - DIGIT

    def videos(part: Split) -> VideoSplit:
        n = len(part)
        start, end = rng.integers(0, span + 1, (n, 2)), rng.integers(0, span + 1, (n, 2))
        t = np.linspace(0.0, 1.0, n_frames)[None, :, None]
        where = np.rint(start[:, None] + t * (end - start)[:, None]).astype(int)  # (n, T, 2)
        length = rng.integers(low, high + 1, n)
        first = rng.integers(0, n_frames - length + 1)
        frames = np.arange(n_frames)
        informative = (frames >= first[:, None]) & (frames < (first + length)[:, None])
        sd = np.where(informative, 0.1, noise)[..., None, None, None]
        x = sd * rng.standard_normal((n, n_frames, 1, canvas, canvas))
        contrast = np.where(informative, 1.0, faint)[..., None, None]  # (n, T, 1, 1)
        rows = where[..., 0, None, None] + np.arange(DIGIT)[:, None]  # (n, T, 8, 1)
        cols = where[..., 1, None, None] + np.arange(DIGIT)  # (n, T, 1, 8)
        video, frame = np.arange(n)[:, None, None, None], frames[None, :, None, None]
        x[video, frame, 0, rows, cols] += contrast * part.x.numpy()[:, None, 0]  # paste each digit
        return VideoSplit(
            torch.as_tensor(x, dtype=torch.float32), part.y, informative=torch.as_tensor(informative)
        )

    return replace(
        images,
        name=f"moving digits, {n_frames} frames of {canvas} x {canvas}",
        train=videos(images.train),
        val=videos(images.val),
        test=videos(images.test),
    )


def check_videos(x: object, n_frames: int | None = None, canvas: int | None = None) -> torch.Tensor:
    """`x` if it is a non-empty batch of videos (N, T, 1, H, W) of the given geometry; else a clear error."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a tensor of videos (N, T, 1, H, W), got {type(x).__name__}")
    if x.dim() != 5 or x.shape[2] != 1:
        raise ValueError(f"x must have shape (N, T, 1, H, W) (one channel), got {tuple(x.shape)}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"x must hold at least one video of at least one frame, got {tuple(x.shape)}")
    if n_frames is not None and x.shape[1] != n_frames:
        raise ValueError(f"the videos must have {n_frames} frames, got {x.shape[1]}")
    if canvas is not None and tuple(x.shape[3:]) != (canvas, canvas):
        raise ValueError(f"the frames must be {canvas} x {canvas} pixels, got {tuple(x.shape[3:])}")
    return x


def coarse_to_fine(n_frames: int) -> list[int]:
    """Every frame once, coarse to fine: 1, 2, 4, ... frames spread evenly (`uniform_steps`), new ones first.

    For 16 frames: 8, 4, 12, 2, 6, 10, 14, 1, 3, ..., 15, 0. After reading 2^k frames the reader
    has seen an even spread of the video.
    """
    check_positive_ints(n_frames=n_frames)
    order: list[int] = []
    n = 1
    while len(order) < n_frames:
        order += [f for f in uniform_steps(n_frames, min(n, n_frames)) if f not in order]
        n *= 2
    return order


class FrameEncoder(nn.Sequential):
    """A frame (N, 1, H, W) to a feature vector (N, dim): two 3x3 convolutions, each followed by 2x2
    max pooling, and a linear layer."""

    def __init__(self, widths: tuple[int, int] = (8, 16), dim: int = 32, canvas: int = CANVAS) -> None:
        check_positive_ints(width_1=widths[0], width_2=widths[1], dim=dim, canvas=canvas)
        if canvas % 4:
            raise ValueError(f"canvas must be a multiple of 4 (two 2x2 poolings), got {canvas}")
        super().__init__(
            nn.Conv2d(1, widths[0], 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(widths[0], widths[1], 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(widths[1] * (canvas // 4) ** 2, dim),
            nn.ReLU(),
        )
        self.dim = dim


def running_max(features: torch.Tensor) -> torch.Tensor:
    """The elementwise maximum of the features (N, T, D) of frames 1..t, for every t: shape (N, T, D)."""
    return features.cummax(dim=1).values


def gate_stops(gate_logits: torch.Tensor, threshold: float) -> torch.Tensor:
    """The frame (1-based) at which each video stops: the first whose gate probability reaches `threshold`.

    `gate_logits` (N, T); the last frame always answers.
    """
    if not isinstance(gate_logits, torch.Tensor) or gate_logits.dim() != 2 or 0 in gate_logits.shape:
        got = tuple(gate_logits.shape) if isinstance(gate_logits, torch.Tensor) else type(gate_logits)
        raise ValueError(f"gate_logits must be a non-empty tensor of shape (N, T), got {got}")
    check_unit_interval(threshold, "threshold")
    stop = torch.sigmoid(gate_logits.double()) >= threshold
    stop[:, -1] = True
    return stop.double().argmax(dim=1) + 1


def gate_threshold_for_frames(val_gate_logits: torch.Tensor, budget: float) -> float:
    """The largest gate threshold whose mean number of frames read on validation is at most `budget`.

    The reachable range is [1, T]: stopping after the first frame, or reading every frame.
    """
    n_frames = val_gate_logits.shape[-1] if isinstance(val_gate_logits, torch.Tensor) else 0
    gate_stops(val_gate_logits, 0.0)  # checks the logits
    if isinstance(budget, bool) or not isinstance(budget, int | float) or not 1 <= budget <= n_frames:
        raise ValueError(
            f"budget must lie in the reachable range [1, {n_frames}] of mean frames read, got {budget!r}"
        )
    candidates = torch.cat([torch.sigmoid(val_gate_logits.double()).flatten(), torch.tensor([0.0, 1.0])])
    candidates = candidates.unique()  # sorted; the mean frames read grows with the threshold
    low, high = 0, len(candidates) - 1  # candidates[0] = 0 reads 1 frame, within any budget
    while low < high:
        mid = (low + high + 1) // 2
        if gate_stops(val_gate_logits, float(candidates[mid])).double().mean() <= budget:
            low = mid
        else:
            high = mid - 1
    return float(candidates[low])


class FrameExitNet(nn.Module):
    """Reads a video's frames coarse to fine, classifies after each, and stops by its `rule`.

    Returns a `ModelOutput`: the logits of the frame it stopped at, `decisions["stop"]` (N,) the
    frames read, `executed` (N, T) 1 for the frames encoded (in the video's own frame order), and,
    in parallel execution, `extras["step_logits"]` (N, T, C) and `extras["gate_logits"]` (N, T),
    both in reading order.
    """

    execution = Mode("parallel", "stepwise")
    rule = Mode(*RULES)

    def __init__(
        self,
        widths: tuple[int, int] = (8, 16),
        dim: int = 32,
        n_frames: int = N_FRAMES,
        canvas: int = CANVAS,
        n_classes: int = DIGITS_CLASSES,
        rule: str = "none",
        threshold: float = 1.0,
        execution: str = "parallel",
    ) -> None:
        super().__init__()
        check_positive_ints(n_frames=n_frames, n_classes=n_classes)
        self.encoder = FrameEncoder(widths, dim, canvas)
        self.head = nn.Linear(dim, n_classes)
        self.gate = nn.Linear(dim, 1)  # reads the pooled features, detached: it does not shape them
        self.n_frames, self.canvas, self.order = n_frames, canvas, coarse_to_fine(n_frames)
        self.rule, self.execution = rule, execution
        self.set_threshold(threshold)

    def set_threshold(self, threshold: float) -> None:
        """The threshold of the rule (gate probability or confidence), in [0, 1]."""
        check_unit_interval(threshold, "threshold")
        self.threshold = float(threshold)

    def read_all(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every frame encoded at once: the logits (N, T, C) and gate logits (N, T) after each frame, in reading order."""
        n = len(check_videos(x, self.n_frames, self.canvas))
        frames = x[:, self.order].flatten(0, 1)  # (N * T, 1, H, W) in reading order
        pooled = running_max(self.encoder(frames).view(n, self.n_frames, -1))
        return self.head(pooled), self.gate(pooled.detach()).squeeze(-1)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        if self.execution == "stepwise":
            check_videos(x, self.n_frames, self.canvas)
            outputs = [self._read_one(x[i : i + 1]) for i in range(len(x))]
            return ModelOutput(
                torch.cat([o.logits for o in outputs]),
                {"stop": torch.cat([o.decisions["stop"] for o in outputs])},
                torch.cat([o.executed for o in outputs]),
            )
        step_logits, gate_logits = self.read_all(x)
        stops = self.stops(step_logits, gate_logits)
        read = torch.arange(self.n_frames, device=x.device) < stops[:, None].to(x.device)
        executed = torch.zeros_like(read, dtype=x.dtype)
        executed[:, self.order] = read.to(x.dtype)
        return ModelOutput(
            answers(step_logits, stops),
            {"stop": stops},
            executed,
            {"step_logits": step_logits, "gate_logits": gate_logits},
        )

    def stops(self, step_logits: torch.Tensor, gate_logits: torch.Tensor) -> torch.Tensor:
        """The frame (1-based, in reading order) each video stops at under the model's rule and threshold."""
        if self.rule == "gate":
            return gate_stops(gate_logits, self.threshold)
        return stop_steps(step_logits, self.rule, self.threshold)

    def _read_one(self, video: torch.Tensor) -> ModelOutput:
        """One video (1, T, 1, H, W), frame by frame: no frame is encoded after the rule stops.

        The gate reads the pooled features, so with the gate the classifier runs once, at the exit.
        """
        pooled, executed = None, video.new_zeros(1, self.n_frames)
        for t, frame in enumerate(self.order, start=1):
            feature = self.encoder(video[:, frame])
            pooled = feature if pooled is None else torch.maximum(pooled, feature)
            executed[0, frame] = 1.0
            if t == self.n_frames:
                break
            if self.rule == "gate" and float(torch.sigmoid(self.gate(pooled).double())) >= self.threshold:
                break
            if self.rule == "confidence":
                logits = self.head(pooled)
                if float(logits.softmax(dim=-1).max().double()) >= self.threshold:
                    return ModelOutput(logits, {"stop": torch.tensor([t])}, executed)
        return ModelOutput(self.head(pooled), {"stop": torch.tensor([t])}, executed)


def gate_targets(step_logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """FrameExit-style pseudo-labels for the gates (N, T): 1 where the prediction after that frame is right."""
    return (step_logits.argmax(dim=-1) == y[:, None]).to(step_logits.dtype)


def frame_exit_loss(output: ModelOutput, y: torch.Tensor) -> torch.Tensor:
    """Every frame's cross-entropy (`loss_over_steps`), plus the gates' binary cross-entropy against `gate_targets`."""
    step_logits, gate_logits = output.extras["step_logits"], output.extras["gate_logits"]
    targets = gate_targets(step_logits.detach(), y)
    return loss_over_steps(output, y) + F.binary_cross_entropy_with_logits(gate_logits, targets)


class StaticFrameNet(nn.Module):
    """Encodes the same `frames` of every video (all when None), pools their features, and classifies.

    In training it returns a `ModelOutput` with a classifier after each frame it reads
    (`extras["step_logits"]`), so that it trains with `loss_over_steps` like `FrameExitNet`; in
    evaluation, the logits after its last frame.
    """

    def __init__(
        self,
        frames: Sequence[int] | None = None,
        widths: tuple[int, int] = (8, 16),
        dim: int = 32,
        n_frames: int = N_FRAMES,
        canvas: int = CANVAS,
        n_classes: int = DIGITS_CLASSES,
    ) -> None:
        super().__init__()
        check_positive_ints(n_frames=n_frames, n_classes=n_classes)
        frames = list(range(n_frames)) if frames is None else list(frames)
        if not frames or any(
            isinstance(f, bool) or not isinstance(f, int) or not 0 <= f < n_frames for f in frames
        ):
            raise ValueError(
                f"frames must be a non-empty list of frame indices in [0, {n_frames}), got {frames}"
            )
        self.frames, self.n_frames, self.canvas = frames, n_frames, canvas
        self.encoder = FrameEncoder(widths, dim, canvas)
        self.head = nn.Linear(dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor | ModelOutput:
        n = len(check_videos(x, self.n_frames, self.canvas))
        features = self.encoder(x[:, self.frames].flatten(0, 1)).view(n, len(self.frames), -1)
        if self.training:
            step_logits = self.head(running_max(features))
            return ModelOutput(step_logits[:, -1], extras={"step_logits": step_logits})
        return self.head(features.amax(dim=1))


def frame_flops(widths: tuple[int, int] = (8, 16), dim: int = 32, canvas: int = CANVAS) -> int:
    """FLOPs of `FrameEncoder` on one frame: its two convolutions and its linear layer, as the counter counts."""
    check_positive_ints(width_1=widths[0], width_2=widths[1], dim=dim, canvas=canvas)
    half, quarter = canvas // 2, canvas // 4
    return (
        2 * 9 * (canvas**2 * widths[0] + half**2 * widths[0] * widths[1]) + 2 * widths[1] * quarter**2 * dim
    )


def video_flops(
    frames: int,
    widths: tuple[int, int] = (8, 16),
    dim: int = 32,
    *,
    classifiers: int = 1,
    gates: int = 0,
    canvas: int = CANVAS,
    n_classes: int = DIGITS_CLASSES,
) -> int:
    """FLOPs of reading `frames` frames with `classifiers` classifiers and `gates` gates applied."""
    check_positive_ints(frames=frames, n_classes=n_classes)
    for name, count in (("classifiers", classifiers), ("gates", gates)):
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"{name} must be a non-negative int, got {count!r}")
    return frames * frame_flops(widths, dim, canvas) + classifiers * 2 * dim * n_classes + gates * 2 * dim


def static_frame_readers(
    budget: float, widths: tuple[int, int] = (8, 16), dim: int = 32, n_frames: int = N_FRAMES
) -> dict[str, StaticFrameNet]:
    """Static readers costing at most `budget` FLOPs per video, to choose a twin from (`harness.choose_static`).

    As many frames as the budget pays for, spread evenly (`uniform_steps`), with the encoder of
    `widths`; and every frame with the widest narrower encoder (widths and `dim` scaled alike)
    within the budget.
    """
    check_positive_ints(n_frames=n_frames)
    low, high = video_flops(1, widths, dim), video_flops(n_frames, widths, dim)
    if isinstance(budget, bool) or not isinstance(budget, int | float) or not low <= budget <= high:
        raise ValueError(f"budget must lie in the reachable range [{low:,}, {high:,}] FLOPs, got {budget!r}")
    k = max(k for k in range(1, n_frames + 1) if video_flops(k, widths, dim) <= budget)
    readers = {f"uniform {k} frames": StaticFrameNet(uniform_steps(n_frames, k), widths, dim, n_frames)}
    for w in range(widths[0] - 1, 0, -1):
        narrow = (w, max(1, w * widths[1] // widths[0])), max(1, w * dim // widths[0])
        if video_flops(n_frames, *narrow) <= budget:
            name = f"all {n_frames} frames, widths {narrow[0][0]}-{narrow[0][1]}-{narrow[1]}"
            readers[name] = StaticFrameNet(None, *narrow, n_frames)
            break
    return readers


@timing_cases("frame_selection")
def _timing_cases(device: torch.device) -> dict[str, TimingCase]:
    """FrameExitNet (widths 8-16) run stepwise with a gate that always stops after the first frame and
    reading every frame (batch 1 only), and in parallel; static readers of 4 uniform frames and of all frames."""
    x = torch.randn(256, N_FRAMES, 1, CANVAS, CANVAS)
    first = FrameExitNet(rule="gate", threshold=0.5, execution="stepwise")
    nn.init.zeros_(first.gate.weight)
    nn.init.constant_(first.gate.bias, 5.0)  # the gate always opens: one frame read, the stepwise floor
    every = FrameExitNet(execution="stepwise")
    every.load_state_dict(first.state_dict())
    models = {
        "stepwise_gate_first_frame": (first, (1,), "parallel_every_frame"),
        "stepwise_every_frame": (every, (1,), "parallel_every_frame"),
        "parallel_every_frame": (FrameExitNet(), (1, 256), None),
        "static_uniform_4": (StaticFrameNet(uniform_steps(N_FRAMES, 4)), (1, 256), None),
        "static_all": (StaticFrameNet(), (1, 256), None),
    }
    return {
        name: TimingCase(model.to(device).eval(), x, batch_sizes=sizes, reference=reference)
        for name, (model, sizes, reference) in models.items()
    }
