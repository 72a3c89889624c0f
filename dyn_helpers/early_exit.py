"""Early exiting: a multi-exit 1-D CNN, its static twins, and the exit rule. Taught in chapter 2.

One block definition serves every model: `MultiExitCNN` puts a classifier (an exit) after each
block, `StaticCNN` is the first `depth` blocks with a single classifier.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dyn_helpers.measure import TimingCase, count_flops, timing_cases

# The architecture the early-exiting chapter and the timing suite use (input: 1 x 40, mnist1d).
BOOK_ARCHITECTURE = {"widths": (48, 48, 48, 48), "n_classes": 10, "length": 40, "kernel_size": 5}


def conv_block(c_in: int, c_out: int, kernel_size: int = 5) -> nn.Sequential:
    """The one block used everywhere: Conv1d (same padding) -> BatchNorm1d -> ReLU."""
    return nn.Sequential(
        nn.Conv1d(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm1d(c_out),
        nn.ReLU(inplace=True),
    )


class ExitHead(nn.Linear):
    """Classifier on a feature map: flatten, then one linear layer."""

    def __init__(self, channels: int, length: int, n_classes: int) -> None:
        super().__init__(channels * length, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map features (batch, channels, length) to logits (batch, n_classes)."""
        return super().forward(x.flatten(1))


def conv_stack(widths: Sequence[int], kernel_size: int = 5) -> nn.ModuleList:
    """`conv_block` layers with the given output widths, each reading the previous one (the input has 1 channel)."""
    if len(widths) < 1 or any(int(w) < 1 for w in widths):
        raise ValueError(f"widths must be a non-empty sequence of positive ints, got {list(widths)}")
    c_in = [1, *(int(w) for w in widths[:-1])]
    return nn.ModuleList(conv_block(c, int(w), kernel_size) for c, w in zip(c_in, widths, strict=True))


class MultiExitCNN(nn.Module):
    """A stack of conv blocks with a classifier (exit) after every block."""

    def __init__(
        self,
        widths: Sequence[int] = (48, 48, 48, 48),
        n_classes: int = 10,
        length: int = 40,
        kernel_size: int = 5,
    ) -> None:
        super().__init__()
        self.blocks = conv_stack(widths, kernel_size)
        self.exits = nn.ModuleList(ExitHead(int(w), length, n_classes) for w in widths)

    @property
    def depth(self) -> int:
        """Number of blocks, which is also the number of exits."""
        return len(self.blocks)

    def forward(self, x: torch.Tensor, n_exits: int | None = None) -> list[torch.Tensor]:
        """The logits of the first `n_exits` exits (all by default), shallowest first."""
        n_exits = self.depth if n_exits is None else n_exits
        if not 1 <= n_exits <= self.depth:
            raise ValueError(f"n_exits must be in [1, {self.depth}], got {n_exits}")
        outs = []
        for block, head in zip(self.blocks[:n_exits], self.exits[:n_exits], strict=True):
            x = block(x)
            outs.append(head(x))
        return outs

    def forward_early_exit(self, x: torch.Tensor, threshold: float) -> tuple[torch.Tensor, int]:
        """Inference for one input: stop at the first exit whose top softmax probability
        reaches `threshold` (the last exit always answers).

        Returns the answering exit's logits and its number k in 1..depth. Call in eval mode.
        """
        check_threshold(threshold)
        if x.shape[0] != 1:
            raise ValueError(f"forward_early_exit needs batch size 1, got {x.shape[0]}")
        for k, (block, head) in enumerate(zip(self.blocks, self.exits, strict=True), start=1):
            x = block(x)
            logits = head(x)
            if k == self.depth or logits.softmax(dim=1).max().item() >= threshold:
                return logits, k
        raise AssertionError("unreachable")


class StaticCNN(nn.Module):
    """The first `depth` blocks of the same stack, with one classifier at the end."""

    def __init__(
        self,
        depth: int,
        widths: Sequence[int] = (48, 48, 48, 48),
        n_classes: int = 10,
        length: int = 40,
        kernel_size: int = 5,
    ) -> None:
        super().__init__()
        ok = isinstance(depth, int) and not isinstance(depth, bool)
        if not ok or not 1 <= depth <= len(widths):
            raise ValueError(f"depth must be an int in [1, {len(widths)}], got {depth!r}")
        self.blocks = conv_stack(list(widths)[:depth], kernel_size)
        self.head = ExitHead(int(widths[depth - 1]), length, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The logits of the single classifier."""
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def check_threshold(threshold: float) -> None:
    """Raise `ValueError` unless `threshold` is a confidence in [0, 1]."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")


def summed_exit_loss(outputs: Sequence[torch.Tensor], y: torch.Tensor) -> torch.Tensor:
    """The multi-exit training loss: the sum over exits of each exit's cross-entropy."""
    if len(outputs) == 0:
        raise ValueError("outputs must hold the logits of at least one exit")
    return sum(F.cross_entropy(logits, y) for logits in outputs)


def weighted_exit_loss(
    outputs: Sequence[torch.Tensor], y: torch.Tensor, weights: Sequence[float]
) -> torch.Tensor:
    """The sum over exits of each exit's cross-entropy times its weight. Taught in chapter 5."""
    if len(outputs) == 0 or len(weights) != len(outputs):
        raise ValueError(f"weights must give one weight per exit ({len(outputs)}), got {len(weights)}")
    if any(w < 0 for w in weights):
        raise ValueError(f"weights must be non-negative, got {list(weights)}")
    return sum(w * F.cross_entropy(logits, y) for w, logits in zip(weights, outputs, strict=True))


def distilled_exit_loss(
    outputs: Sequence[torch.Tensor], y: torch.Tensor, temperature: float = 1.0, alpha: float = 0.5
) -> torch.Tensor:
    """Self-distillation: the last exit learns from the labels; every earlier exit learns from
    the labels (weight 1 - alpha) and from the last exit's softened prediction (weight alpha).

    The distillation term is T^2 KL(softmax(z_K / T) || softmax(z_k / T)) with the last
    exit's logits z_K detached, so the teacher is not pulled towards its students.
    """
    if len(outputs) == 0:
        raise ValueError("outputs must hold the logits of at least one exit")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    teacher = F.softmax(outputs[-1].detach() / temperature, dim=1)
    loss = F.cross_entropy(outputs[-1], y)
    for logits in outputs[:-1]:
        student = F.log_softmax(logits / temperature, dim=1)
        distill = F.kl_div(student, teacher, reduction="batchmean") * temperature**2
        loss = loss + (1 - alpha) * F.cross_entropy(logits, y) + alpha * distill
    return loss


def exit_flops(model: MultiExitCNN, x: torch.Tensor) -> list[int]:
    """FLOPs spent on input `x` (batch size 1) to reach each exit: blocks and heads up to exit k."""
    if x.shape[0] != 1:
        raise ValueError(f"x must be one input (batch size 1), got batch size {x.shape[0]}")
    return [count_flops(lambda inp, k=k: model(inp, n_exits=k), x) for k in range(1, model.depth + 1)]


def exits_at_threshold(logits: Sequence[torch.Tensor], threshold: float) -> torch.Tensor:
    """The exit number (1-based) at which each sample stops, from every exit's logits.

    The same rule as `MultiExitCNN.forward_early_exit`, computed for a whole batch at once
    from logits of shape (n_exits, N, classes), so that thresholds can be swept cheaply.
    """
    check_threshold(threshold)
    confidence = torch.stack(list(logits)).softmax(dim=-1).amax(dim=-1)  # (n_exits, N)
    stop = confidence >= threshold
    stop[-1] = True
    return stop.float().argmax(dim=0) + 1


def early_exit_predictions(logits: Sequence[torch.Tensor], exits: torch.Tensor) -> torch.Tensor:
    """The class each sample gets from the exit it stopped at (`exits` is 1-based)."""
    stacked = torch.stack(list(logits))  # (n_exits, N, classes)
    return stacked[exits - 1, torch.arange(stacked.shape[1])].argmax(dim=-1)


@timing_cases("early_exiting")
def _timing_cases(device: torch.device) -> dict[str, TimingCase]:
    """Static CNNs of every depth, and the early-exit CNN at its cheapest and dearest path.

    Threshold 0 answers at the first exit, threshold 1 runs every block and every exit; a
    trained model's average latency lies between, weighted by its exit distribution.
    """
    x = torch.randn(256, 1, BOOK_ARCHITECTURE["length"])
    multi = MultiExitCNN(**BOOK_ARCHITECTURE).to(device).eval()
    cases = {
        f"static_depth_{depth}": TimingCase(StaticCNN(depth, **BOOK_ARCHITECTURE).to(device).eval(), x)
        for depth in range(1, multi.depth + 1)
    }
    for threshold, name in ((0.0, "first_exit"), (1.0, "all_exits")):
        cases[f"early_exit_{name}"] = TimingCase(
            lambda xb, t=threshold: multi.forward_early_exit(xb, t)[0], x[:64], batch_sizes=(1,)
        )
    return cases
