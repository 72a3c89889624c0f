"""Early exiting: a multi-exit 1-D CNN, its static twins and the exit rule. Taught in chapter 2.

One block definition serves every model: `MultiExitCNN` puts a classifier (an exit) after each
block, `StaticCNN` is the first `depth` blocks with a single classifier. `MultiExitCNN` returns a
`ModelOutput` (`dyn_helpers.outputs`): every exit's logits in `extras["exit_logits"]`, or, with
its mode `exit_threshold` set, the answer of each input's first confident exit. Its training
losses live in `dyn_helpers.training.exit_objectives`; the batched rules (`exits_at_threshold`,
`early_exit_predictions`, and `dyn_helpers.decisions.confidence`) take the list of every exit's
logits, `output.extras["exit_logits"]`.
"""

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from dyn_helpers.checks import check_unit_interval
from dyn_helpers.data import MNIST1D_CLASSES, MNIST1D_LENGTH
from dyn_helpers.layers import ExitHead, StaticCNN, conv_stack
from dyn_helpers.measure import TimingCase, timing_cases
from dyn_helpers.outputs import ModelOutput

# The architecture the early-exiting chapter and the timing suite use (input: mnist1d).
BOOK_ARCHITECTURE = {
    "widths": (48, 48, 48, 48),
    "n_classes": MNIST1D_CLASSES,
    "length": MNIST1D_LENGTH,
    "kernel_size": 5,
}


class MultiExitCNN(nn.Module):
    """A stack of conv blocks with a classifier (exit) after every block.

    `forward` returns a `ModelOutput` whose logits are the last exit's and whose
    `extras["exit_logits"]` lists every exit's logits, shallowest first: what the exit losses
    train on. Mode `exit_threshold` (default None): set to a confidence in [0, 1], `forward`
    exits early instead. Each input stops at the first exit whose top softmax probability
    reaches it (the last exit always answers) and the logits are that exit's;
    `decisions["exit"]` (N,) holds the exit numbers, from 1, and `executed` (N, depth) is 1 for
    the blocks and exits that ran (row k of the buffer `paths` for an input that left at exit k).
    Each block runs only on the inputs still in the network, so FLOPs counted on a batch are
    those that ran.
    """

    def __init__(
        self,
        widths: Sequence[int] = (48, 48, 48, 48),
        n_classes: int = MNIST1D_CLASSES,
        length: int = MNIST1D_LENGTH,
        kernel_size: int = 5,
        exit_threshold: float | None = None,
    ) -> None:
        super().__init__()
        self.blocks = conv_stack(widths, kernel_size)
        self.exits = nn.ModuleList(ExitHead(int(w), length, n_classes) for w in widths)
        # Row k: 1 for the blocks and exits an input that leaves at exit k runs (row 0 is unused).
        paths = torch.ones(self.depth + 1, self.depth).tril(diagonal=-1)
        self.register_buffer("paths", paths, persistent=False)
        self.exit_threshold = exit_threshold

    @property
    def depth(self) -> int:
        """Number of blocks, which is also the number of exits."""
        return len(self.blocks)

    @property
    def exit_threshold(self) -> float | None:
        """The confidence at which an input leaves (early exiting), or None to run every exit."""
        return self._exit_threshold

    @exit_threshold.setter
    def exit_threshold(self, threshold: float | None) -> None:
        if threshold is not None:
            check_unit_interval(threshold, "threshold")
        self._exit_threshold = threshold

    def forward(self, x: torch.Tensor) -> ModelOutput:
        """Every exit's logits, or, with `exit_threshold` set, early exiting (see the class)."""
        if self.exit_threshold is not None:
            return self._exit_early(x, self.exit_threshold)
        exit_logits = []
        for block, head in zip(self.blocks, self.exits, strict=True):
            x = block(x)
            exit_logits.append(head(x))
        return ModelOutput(exit_logits[-1], extras={"exit_logits": exit_logits})

    def _exit_early(self, x: torch.Tensor, threshold: float) -> ModelOutput:
        """Each input stops at the first exit k with s_k(x) >= threshold, or at the last exit."""
        n, rows = len(x), None  # rows: the inputs still in the network (None: all of them)
        answered = []  # (rows, their logits, k) for each group of inputs that stopped at exit k
        for k, (block, head) in enumerate(zip(self.blocks, self.exits, strict=True), start=1):
            x = block(x)
            logits = head(x)
            if k == self.depth:
                stop = [True] * len(x)
            else:  # s_k(x) as Python floats: compared with the threshold in float64
                stop = [max(p) >= threshold for p in logits.softmax(dim=1).tolist()]
            if all(stop):
                answered.append((rows, logits, k))
                break
            if any(stop):
                rows = torch.arange(n, device=x.device) if rows is None else rows
                stop_t = torch.tensor(stop, device=x.device)
                answered.append((rows[stop_t], logits[stop_t], k))
                rows, x = rows[~stop_t], x[~stop_t]
        if len(answered) == 1:  # every input stopped at exit k
            exits = torch.full((n,), k, device=x.device)
        else:
            order = torch.cat([r for r, _, _ in answered]).argsort()
            logits = torch.cat([lg for _, lg, _ in answered])[order]
            exits = torch.cat([torch.full((len(r),), k, device=x.device) for r, _, k in answered])[order]
        return ModelOutput(logits, decisions={"exit": exits}, executed=self.paths.index_select(0, exits))


def every_exit_logits(output: ModelOutput) -> list[torch.Tensor]:
    """Every exit's logits, shallowest first, from a `MultiExitCNN` output."""
    if not isinstance(output, ModelOutput):
        raise TypeError(f"output must be a MultiExitCNN's ModelOutput, got {type(output).__name__}")
    if not output.extras.get("exit_logits"):
        raise ValueError(
            "output must hold every exit's logits in extras['exit_logits'] "
            "(a MultiExitCNN with exit_threshold None)"
        )
    return list(output.extras["exit_logits"])


def _stack_exits(logits: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    if isinstance(logits, ModelOutput):
        raise TypeError("pass the list of every exit's logits, output.extras['exit_logits'], not the output")
    return torch.stack(list(logits))


def exit_flops(model: MultiExitCNN, x: torch.Tensor) -> list[int]:
    """FLOPs spent on input `x` (batch size 1) to reach each exit: blocks and heads up to exit k."""
    if x.shape[0] != 1:
        raise ValueError(f"x must be one input (batch size 1), got batch size {x.shape[0]}")
    counter, costs = FlopCounterMode(display=False), []
    with torch.no_grad(), counter:
        for block, head in zip(model.blocks, model.exits, strict=True):
            x = block(x)
            head(x)
            costs.append(int(counter.get_total_flops()))
    return costs


def exits_at_threshold(logits: Sequence[torch.Tensor] | torch.Tensor, threshold: float) -> torch.Tensor:
    """The exit number (1-based) at which each sample stops, from every exit's logits.

    The rule of `MultiExitCNN` in its `exit_threshold` mode, computed from logits already at
    hand (a list of (N, classes) tensors, or a tensor (n_exits, N, classes)), so that
    thresholds can be swept cheaply.
    """
    check_unit_interval(threshold, "threshold")
    confidence = _stack_exits(logits).softmax(dim=-1).amax(dim=-1)  # (n_exits, N)
    stop = confidence.double() >= threshold  # in float64, as the model compares
    stop[-1] = True
    return stop.float().argmax(dim=0) + 1


def early_exit_predictions(
    logits: Sequence[torch.Tensor] | torch.Tensor, exits: torch.Tensor
) -> torch.Tensor:
    """The class each sample gets from the exit it stopped at (`exits` is 1-based)."""
    stacked = _stack_exits(logits)  # (n_exits, N, classes)
    return stacked[exits - 1, torch.arange(stacked.shape[1])].argmax(dim=-1)


@timing_cases("early_exiting")
def _timing_cases(device: torch.device) -> dict[str, TimingCase]:
    """Static CNNs of every depth, and the early-exit CNN at its cheapest and dearest path.

    Threshold 0 answers at the first exit, threshold 1 runs every block and every exit; a
    trained model's average latency lies between, weighted by its exit distribution.
    """
    x = torch.randn(256, 1, BOOK_ARCHITECTURE["length"])
    depth = len(BOOK_ARCHITECTURE["widths"])
    cases = {
        f"static_depth_{d}": TimingCase(StaticCNN(d, **BOOK_ARCHITECTURE).to(device).eval(), x)
        for d in range(1, depth + 1)
    }
    for threshold, name in ((0.0, "first_exit"), (1.0, "all_exits")):
        model = MultiExitCNN(**BOOK_ARCHITECTURE, exit_threshold=threshold).to(device).eval()
        cases[f"early_exit_{name}"] = TimingCase(
            model, x[:64], batch_sizes=(1,), reference=f"static_depth_{depth}"
        )
    return cases
