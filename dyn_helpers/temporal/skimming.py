"""Skimming tokens: Skim-RNN (Seo et al., 2018) on GRU cells. Taught in chapter 4.

Two GRU cells share one state of width `hidden`: a big cell that updates all of it, and a small
cell that updates only its first `small` dimensions and copies the rest. Before each token a
linear decision maker reads the token and the previous state, [x_t; h_{t-1}], and chooses between
a *full read* (the big cell) and a *skim* (the small cell). Training samples the choice with the
straight-through Gumbel-softmax (`dyn_helpers.training.estimators.gumbel_softmax`) and adds a
budget loss on the share of full reads. `SkimGRU` runs one trained model three ways, its
`execution` mode:

- "masked": both cells run at every step and their new states are mixed by the one-hot choice,
  as training does;
- "skimming" (evaluation only): each input runs alone, and at every step only the chosen cell runs;
- "full": the big cell at every step, with no decision: the reference.

The static rivals are `dyn_helpers.temporal.skipping.StaticGRU` readers.
"""

import torch
import torch.nn.functional as F
from torch import nn

from dyn_helpers import measure
from dyn_helpers.checks import check_positive_ints
from dyn_helpers.measure import TimingCase, timing_cases
from dyn_helpers.outputs import Mode, ModelOutput
from dyn_helpers.temporal.skipping import StaticGRU, _check_sequences, update_budget_loss
from dyn_helpers.training.estimators import check_temperature, gumbel_softmax

FULL_READ, SKIM = 0, 1  # the two choices, in the order of the decision maker's logits


class SkimGRU(nn.Module):
    """A big and a small GRU cell on one state, a decision maker choosing between them, and a head.

    The output's `decisions["reads"]` (N, T) is 1 where the token was fully read (big cell) and 0
    where it was skimmed (small cell); `extras["reads"]` is the same with its straight-through
    gradient, for the budget loss, and `extras["read_probs"]` the decision maker's probability of
    a full read (masked execution). In training the choice is a hard Gumbel-softmax sample at
    `temperature`; in evaluation it is the likelier choice (a tie reads fully).
    """

    execution = Mode("masked", "skimming", "full")

    def __init__(
        self,
        n_symbols: int,
        hidden: int,
        small: int,
        n_classes: int,
        *,
        temperature: float = 1.0,
        execution: str = "masked",
    ) -> None:
        super().__init__()
        check_positive_ints(n_symbols=n_symbols, hidden=hidden, small=small, n_classes=n_classes)
        if small >= hidden:
            raise ValueError(
                f"small must be below hidden = {hidden}: the small cell updates part of the state, got {small}"
            )
        check_temperature(temperature)
        self.big = nn.GRUCell(n_symbols, hidden)
        self.small = nn.GRUCell(n_symbols, small)  # updates h[:, :small]; h[:, small:] is copied
        self.decide = nn.Linear(n_symbols + hidden, 2)  # logits of (full read, skim) from [x_t; h_{t-1}]
        self.head = nn.Linear(hidden, n_classes)
        self.n_symbols, self.hidden, self.n_small = n_symbols, hidden, small
        self.temperature, self.execution = temperature, execution

    def skim(self, x_t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """The small cell's update of the first `small` dimensions, the rest of `h` copied."""
        return torch.cat([self.small(x_t, h[:, : self.n_small]), h[:, self.n_small :]], 1)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        _check_sequences(x, self.n_symbols)
        if self.execution == "skimming":
            if self.training:
                raise ValueError("the skimming execution runs in evaluation only: call model.eval()")
            return self._skimming(x)
        n, length, _ = x.shape
        h = x.new_zeros(n, self.hidden)
        if self.execution == "full":
            for t in range(length):
                h = self.big(x[:, t], h)
            ones = x.new_ones(n, length)
            return ModelOutput(self.head(h), {"reads": ones}, ones, {"reads": ones, "read_probs": ones})
        reads, probs = [], []
        for t in range(length):
            logits = self.decide(torch.cat([x[:, t], h], 1))
            if self.training:
                choice = gumbel_softmax(logits, self.temperature, hard=True)
            else:
                choice = F.one_hot(logits.argmax(1), 2).to(x.dtype)
            full, skim = choice[:, FULL_READ : FULL_READ + 1], choice[:, SKIM : SKIM + 1]
            h = full * self.big(x[:, t], h) + skim * self.skim(x[:, t], h)
            reads.append(full)
            probs.append(torch.softmax(logits, 1)[:, FULL_READ : FULL_READ + 1].detach())
        r = torch.cat(reads, 1)
        hard = r.detach().round()
        return ModelOutput(
            self.head(h), {"reads": hard}, hard, {"reads": r, "read_probs": torch.cat(probs, 1)}
        )

    @torch.no_grad()
    def _skimming(self, x: torch.Tensor) -> ModelOutput:
        logits, reads = zip(*(self._skim_one(x[i : i + 1]) for i in range(len(x))), strict=True)
        r = torch.cat(reads)
        extras = {"reads": r, "read_probs": torch.full_like(r, torch.nan)}  # not computed
        return ModelOutput(torch.cat(logits), {"reads": r}, r, extras)

    def _skim_one(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One input (1, T, V): at each step decide, then run the chosen cell alone."""
        h, reads = x.new_zeros(1, self.hidden), x.new_zeros(1, x.shape[1])
        for t in range(x.shape[1]):
            logits = self.decide(torch.cat([x[:, t], h], 1))[0]
            if logits[FULL_READ] >= logits[SKIM]:  # the likelier choice; a tie reads fully, as argmax
                h = self.big(x[:, t], h)
                reads[0, t] = 1.0
            else:
                h = self.skim(x[:, t], h)
        return self.head(h), reads


def skim_rnn_loss(weight: float):
    """The loss `(output, y) -> cross-entropy + weight * share of tokens fully read`.

    The budget term is `dyn_helpers.temporal.skipping.update_budget_loss` applied to the full
    reads (`output.extras['reads']`, with their straight-through gradient).
    """
    update_budget_loss(torch.ones(1, 1), weight)  # checks the weight now

    def loss(output: ModelOutput, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output.logits, y) + update_budget_loss(output.extras["reads"], weight)

    return loss


def part_flops(model: SkimGRU) -> dict[str, int]:
    """FLOPs of one step of each part of `model` at batch size 1: "big", "small", "decide", "head"."""
    if not isinstance(model, SkimGRU):
        raise TypeError(f"model must be a SkimGRU, got {type(model).__name__}")
    x, h = torch.zeros(1, model.n_symbols), torch.zeros(1, model.hidden)
    return {
        "big": measure.count_flops(lambda v: model.big(v, h), x),
        "small": measure.count_flops(lambda v: model.small(v, h[:, : model.n_small]), x),
        "decide": measure.count_flops(model.decide, torch.cat([x, h], 1)),
        "head": measure.count_flops(model.head, h),
    }


def counted_flops(model: SkimGRU, reads: torch.Tensor) -> torch.Tensor:
    """FLOPs per sequence that the decisions `reads` (N, T; 1 = full read) allow, as float64 (N,).

    Each step pays the decision maker and the chosen cell; the head runs once.
    """
    if not isinstance(reads, torch.Tensor) or reads.dim() != 2 or reads.numel() == 0:
        got = tuple(reads.shape) if isinstance(reads, torch.Tensor) else type(reads).__name__
        raise ValueError(f"reads must be a non-empty tensor of shape (N, T), got {got}")
    if not bool(((reads == 0) | (reads == 1)).all()):
        raise ValueError("reads must hold only 0 (skim) and 1 (full read)")
    part = part_flops(model)
    n_full = reads.double().sum(1)
    n_skim = reads.shape[1] - n_full
    return n_full * part["big"] + n_skim * part["small"] + reads.shape[1] * part["decide"] + part["head"]


def width_for_flops(n_symbols: int, n_classes: int, length: int, budget: float) -> int:
    """The widest `StaticGRU` reading all `length` steps whose FLOPs per sequence are at most `budget`."""
    check_positive_ints(n_symbols=n_symbols, n_classes=n_classes, length=length)
    if isinstance(budget, bool) or not isinstance(budget, int | float) or not budget > 0:
        raise ValueError(f"budget must be a positive number of FLOPs, got {budget!r}")
    x = torch.zeros(1, length, n_symbols)

    def cost(width: int) -> int:
        return measure.count_flops(StaticGRU(n_symbols, width, n_classes).eval(), x)

    if cost(1) > budget:
        raise ValueError(f"even a GRU of width 1 costs {cost(1):,} FLOPs, above the budget of {budget:,.0f}")
    width = 1
    while cost(width + 1) <= budget:
        width += 1
    return width


@timing_cases("skim_rnn")
def _timing_cases(device: torch.device) -> dict[str, TimingCase]:
    """A Skim-GRU of width 32 (small cell 8) on 48 steps of 8 symbols, set to read fully the class
    symbols 0-3 (about half the tokens) and skim the rest: skimming (batch 1 only), masked and full;
    the static GRUs of width 8 and 16 on every step."""
    x = F.one_hot(torch.randint(8, (256, 48)), 8).float()
    skimming = SkimGRU(8, 32, 8, 4, execution="skimming")
    with torch.no_grad():
        skimming.decide.weight.zero_()
        skimming.decide.bias.zero_()
        skimming.decide.weight[SKIM, 4:8] = 1.0  # a filler symbol is skimmed
    masked, full = SkimGRU(8, 32, 8, 4), SkimGRU(8, 32, 8, 4, execution="full")
    masked.load_state_dict(skimming.state_dict())
    full.load_state_dict(skimming.state_dict())
    return {
        "skimming": TimingCase(skimming.to(device).eval(), x, batch_sizes=(1,), reference="full"),
        "masked": TimingCase(masked.to(device).eval(), x, reference="full", counted_by="skimming"),
        "full": TimingCase(full.to(device).eval(), x),
        "static_all_width_8": TimingCase(StaticGRU(8, 8, 4).to(device).eval(), x),
        "static_all_width_16": TimingCase(StaticGRU(8, 16, 4).to(device).eval(), x),
    }
