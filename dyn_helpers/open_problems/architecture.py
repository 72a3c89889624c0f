"""Do early exits hurt the last one? Dense connections for a multi-exit chain. Taught in chapter 7.

MSDNet (Huang et al., 2018) found that classifiers attached to the early blocks of a plain chain
can hurt the final classifier: the summed loss pushes the early blocks towards features good for
an early decision, and the later blocks, which read only those features, lose what they needed.
Its remedy is in the architecture: dense connections, through which every block also reads the
input and every earlier block's output, so that later blocks can go around what the early
classifiers shaped. `DenseExitCNN` is the book's multi-exit network with them.

Gradient equilibrium (Li et al., 2019) acts on training instead: `GradientEquilibriumCNN` rescales
the backward pass so that each block receives the mean, not the sum, of the gradients of the
losses of its exit and the later ones (`scale_gradient`). `exit_gradients` measures what each
exit's loss asks of a block's weights.
"""

import math
from collections.abc import Sequence
from numbers import Real

import torch
import torch.nn.functional as F
from torch import nn

from dyn_helpers.data import MNIST1D_CLASSES, MNIST1D_LENGTH
from dyn_helpers.layers import ExitHead, conv_block
from dyn_helpers.measure import TimingCase, count_flops, timing_cases
from dyn_helpers.outputs import ModelOutput
from dyn_helpers.sample_wise.early_exit import BOOK_ARCHITECTURE, MultiExitCNN, every_exit_logits

# The chapter's setting: the book's architecture, three times narrower (16 channels a block), so
# that one backbone has little room to serve every exit at no cost to another.
NARROW_ARCHITECTURE = BOOK_ARCHITECTURE | {"widths": (16, 16, 16, 16)}


class DenseExitCNN(nn.Module):
    """A multi-exit CNN with dense connections: block k reads the input and the outputs of blocks 1
    to k - 1, concatenated along the channels; exit k reads block k's output, as in `MultiExitCNN`.

    `forward(x)` returns a `ModelOutput` like `MultiExitCNN`'s: the last exit's logits, and every
    exit's logits in `extras["exit_logits"]`. `forward(x, upto=k)` runs blocks and exits 1 to k
    only (its logits are exit k's), which is the cost of reaching exit k.
    """

    def __init__(
        self,
        widths: Sequence[int] = (16, 16, 16, 16),
        n_classes: int = MNIST1D_CLASSES,
        length: int = MNIST1D_LENGTH,
        kernel_size: int = 5,
    ) -> None:
        super().__init__()
        if len(widths) < 1 or any(int(w) < 1 for w in widths):
            raise ValueError(f"widths must be a non-empty sequence of positive ints, got {list(widths)}")
        widths = [int(w) for w in widths]
        reads = [1 + sum(widths[:k]) for k in range(len(widths))]  # channels block k + 1 reads
        self.blocks = nn.ModuleList(conv_block(c, w, kernel_size) for c, w in zip(reads, widths, strict=True))
        self.exits = nn.ModuleList(ExitHead(w, length, n_classes) for w in widths)

    @property
    def depth(self) -> int:
        """Number of blocks, which is also the number of exits."""
        return len(self.blocks)

    def forward(self, x: torch.Tensor, upto: int | None = None) -> ModelOutput:
        """Every exit's logits up to exit `upto` (default: the last), shallowest first."""
        if upto is None:
            upto = self.depth
        if isinstance(upto, bool) or not isinstance(upto, int) or not 1 <= upto <= self.depth:
            raise ValueError(f"upto must be an int in [1, {self.depth}], got {upto!r}")
        features, exit_logits = [x], []
        for block, head in zip(self.blocks[:upto], self.exits[:upto], strict=True):
            features.append(block(torch.cat(features, dim=1)))
            exit_logits.append(head(features[-1]))
        return ModelOutput(exit_logits[-1], extras={"exit_logits": exit_logits})


class _ScaleGradient(torch.autograd.Function):
    """The identity forward; the gradient times `scale` backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.scale, None


def scale_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    """`x` unchanged in the forward pass; the gradient flowing back through it is multiplied by `scale`."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a tensor, got {type(x).__name__}")
    if isinstance(scale, bool) or not isinstance(scale, Real) or not 0 <= scale < math.inf:
        raise ValueError(f"scale must be a finite non-negative number, got {scale!r}")
    return _ScaleGradient.apply(x, float(scale))


class GradientEquilibriumCNN(MultiExitCNN):
    """`MultiExitCNN` whose backward pass gives each block the mean of its exits' gradients.

    After block k (of K) the features pass `scale_gradient` twice: by 1 / (K - k + 1) before
    they reach exit k and block k + 1, and by K - k on the way to block k + 1 only. Backward,
    block k's output then receives (g_k + (K - k) * mean of g_(k+1), ..., g_K) / (K - k + 1):
    the mean of the gradients of the losses of exits k, ..., K, where the summed loss of a plain
    chain gives their sum. Each exit's classifier still receives its own loss's full gradient.
    The forward pass is `MultiExitCNN`'s, early exiting included.
    """

    def forward(self, x: torch.Tensor) -> ModelOutput:
        """Every exit's logits (as `MultiExitCNN`), with the gradients rescaled; or early exiting."""
        if self.exit_threshold is not None:
            return super().forward(x)
        exit_logits = []
        for k, (block, head) in enumerate(zip(self.blocks, self.exits, strict=True), start=1):
            x = scale_gradient(block(x), 1.0 / (self.depth - k + 1))
            exit_logits.append(head(x))
            if k < self.depth:
                x = scale_gradient(x, self.depth - k)
        return ModelOutput(exit_logits[-1], extras={"exit_logits": exit_logits})


def exit_gradients(
    model: MultiExitCNN | DenseExitCNN, x: torch.Tensor, y: torch.Tensor, block: int
) -> torch.Tensor:
    """Each exit's cross-entropy gradient on the weights of `block` (1-based), as the model's backward
    pass computes it: a (K, P) tensor, row j for exit j + 1 (zeros for exits before the block).

    The model runs in eval mode (BatchNorm with its running statistics), then goes back to its
    mode; its weights, statistics and `.grad` fields are left as they were.
    """
    if not isinstance(model, MultiExitCNN | DenseExitCNN):
        raise TypeError(f"model must be a MultiExitCNN or a DenseExitCNN, got {type(model).__name__}")
    if isinstance(block, bool) or not isinstance(block, int) or not 1 <= block <= model.depth:
        raise ValueError(f"block must be an int in [1, {model.depth}], got {block!r}")
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"x and y must hold the same non-zero number of inputs, got {len(x)} and {len(y)}")
    if getattr(model, "exit_threshold", None) is not None:
        raise ValueError("model must run every exit (exit_threshold None)")
    weights = list(model.blocks[block - 1].parameters())
    training = model.training
    try:
        exit_logits = every_exit_logits(model.eval()(x))
    finally:
        model.train(training)
    rows = []
    for j, logits in enumerate(exit_logits, start=1):
        if j < block:
            rows.append(torch.zeros(sum(w.numel() for w in weights)))
            continue
        grads = torch.autograd.grad(F.cross_entropy(logits, y), weights, retain_graph=j < len(exit_logits))
        rows.append(torch.cat([g.flatten() for g in grads]))
    return torch.stack(rows)


def dense_exit_flops(model: DenseExitCNN, x: torch.Tensor) -> list[int]:
    """FLOPs spent on input `x` (batch size 1) to reach each exit of a `DenseExitCNN`."""
    if not isinstance(model, DenseExitCNN):
        raise TypeError(f"model must be a DenseExitCNN, got {type(model).__name__}")
    if x.shape[0] != 1:
        raise ValueError(f"x must be one input (batch size 1), got batch size {x.shape[0]}")
    with torch.no_grad():
        return [count_flops(lambda z, k=k: model(z, upto=k), x) for k in range(1, model.depth + 1)]


@timing_cases("exit_interference")
def _timing_cases(device: torch.device) -> dict[str, TimingCase]:
    """The chapter's narrow multi-exit network, plain and with dense connections, every exit run:
    the dense connections' cost on the clock."""
    x = torch.randn(256, 1, NARROW_ARCHITECTURE["length"])
    return {
        "plain_all_exits": TimingCase(MultiExitCNN(**NARROW_ARCHITECTURE).to(device).eval(), x),
        "dense_all_exits": TimingCase(DenseExitCNN(**NARROW_ARCHITECTURE).to(device).eval(), x),
    }
