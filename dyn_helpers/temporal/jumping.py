"""Jumping over tokens: LSTM-Jump (Yu, Lee and Le, 2017) on a GRU cell. Taught in chapter 4.

The reader reads `read` tokens (R), then a policy reads its state and draws a jump size kappa in
{0, 1, ..., `max_jump`} (K): 0 stops reading, kappa >= 1 moves the next read to kappa tokens after
the last token read, so that kappa - 1 tokens are jumped over and never read. It stops when the
policy says 0, when the sequence ends, or after `budget` jumps (N), so it reads at most
R (N + 1) tokens; the head answers from the last state. In training the jump is sampled and the
policy is trained with REINFORCE (`lstm_jump_loss`), the reader and head with cross-entropy; in
evaluation the likeliest jump is taken. `JumpGRU` runs one trained model three ways, its
`execution` mode:

- "batched": the whole batch steps together; a finished sequence's state is kept with
  `torch.where`, but the cell still runs on it (training, and evaluation in bulk);
- "jumping" (evaluation only): each input runs alone and the cell runs only on the tokens read;
- "full": the same cell on every token, with no policy: the reference.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from dyn_helpers import measure
from dyn_helpers.checks import check_positive_ints
from dyn_helpers.measure import TimingCase, timing_cases
from dyn_helpers.outputs import Mode, ModelOutput
from dyn_helpers.temporal.skipping import StaticGRU, _check_sequences, uniform_steps
from dyn_helpers.training.estimators import leave_one_out_baseline, reinforce_surrogate

STOP = 0  # the jump size that stops reading


def max_budget(length: int, read: int) -> int:
    """The most jumps a reader of `read` tokens per jump can take in `length` tokens: ceil(length / read) - 1."""
    check_positive_ints(length=length, read=read)
    if read > length:
        raise ValueError(f"read must be at most the length {length}, got {read}")
    return math.ceil(length / read) - 1


def next_start(last_read: int, jump: int) -> int:
    """The first token of the next read after a jump of `jump` >= 1 from the token `last_read`."""
    if isinstance(last_read, bool) or not isinstance(last_read, int) or last_read < 0:
        raise ValueError(f"last_read must be a non-negative token index, got {last_read!r}")
    check_positive_ints(jump=jump)
    return last_read + jump


class JumpGRU(nn.Module):
    """A GRU reader that reads `read` tokens, then jumps by a size its policy draws, and a linear head.

    The policy is a linear map from the state to `max_jump` + 1 logits (stop, jump 1 .. K); its
    stop logit starts at `stop_bias`. The output's `decisions["reads"]` (N, T) is 1 where a token
    was read; `decisions["jumps"]` (N, budget) holds each jump taken (0: stop), -1 where no
    decision was made; `extras["log_prob"]` (N,) the summed log-probability of the jumps taken.
    """

    execution = Mode("batched", "jumping", "full")

    def __init__(
        self,
        n_symbols: int,
        hidden: int,
        n_classes: int,
        *,
        read: int,
        max_jump: int,
        budget: int,
        stop_bias: float = 0.0,
        execution: str = "batched",
    ) -> None:
        super().__init__()
        check_positive_ints(n_symbols=n_symbols, hidden=hidden, n_classes=n_classes)
        if isinstance(read, bool) or not isinstance(read, int) or read < 1:
            raise ValueError(f"read (R, tokens read before each jump) must be an int >= 1, got {read!r}")
        if isinstance(max_jump, bool) or not isinstance(max_jump, int) or max_jump < 1:
            raise ValueError(f"max_jump (K, the longest jump) must be an int >= 1, got {max_jump!r}")
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise ValueError(f"budget (N, the most jumps) must be an int >= 1, got {budget!r}")
        self.cell = nn.GRUCell(n_symbols, hidden)
        self.policy = nn.Linear(hidden, max_jump + 1)  # logits of stop, jump 1, ..., jump K
        self.head = nn.Linear(hidden, n_classes)
        with torch.no_grad():
            self.policy.bias[STOP] = stop_bias
        self.n_symbols, self.hidden = n_symbols, hidden
        self.read, self.max_jump, self.budget = read, max_jump, budget
        self.execution = execution

    def _check(self, x: torch.Tensor) -> None:
        _check_sequences(x, self.n_symbols)
        length = x.shape[1]
        if self.read > length:
            raise ValueError(f"the reader reads {self.read} tokens at a time, but x has {length} steps")
        if self.budget > max_budget(length, self.read):
            raise ValueError(
                f"budget = {self.budget} jumps cannot be reached in {length} steps read {self.read} at a "
                f"time: at most {max_budget(length, self.read)}"
            )

    def forward(self, x: torch.Tensor) -> ModelOutput:
        self._check(x)
        if self.execution == "jumping":
            if self.training:
                raise ValueError("the jumping execution runs in evaluation only: call model.eval()")
            return self._jumping(x)
        if self.execution == "full":
            h = x.new_zeros(len(x), self.hidden)
            for t in range(x.shape[1]):
                h = self.cell(x[:, t], h)
            ones = x.new_ones(x.shape[:2])
            no_jumps = torch.full((len(x), self.budget), -1, dtype=torch.int64)
            return ModelOutput(self.head(h), {"reads": ones, "jumps": no_jumps}, ones)
        return self._batched(x)

    def _batched(self, x: torch.Tensor) -> ModelOutput:
        n, length = x.shape[:2]
        rows = torch.arange(n, device=x.device)
        h = x.new_zeros(n, self.hidden)
        start = torch.zeros_like(rows)  # the first token of the current read
        active = torch.ones_like(rows, dtype=torch.bool)
        reads = x.new_zeros(n, length)
        jumps = torch.full_like(reads[:, : self.budget], -1, dtype=torch.int64)
        log_prob, entropy = x.new_zeros(n), x.new_zeros(n)
        for j in range(self.budget + 1):
            for r in range(self.read):
                t = start + r
                live = active & (t < length)
                h = torch.where(live[:, None], self.cell(x[rows, t.clamp(max=length - 1)], h), h)
                reads[rows[live], t[live]] = 1.0
            last = start + self.read - 1
            active = active & (last < length - 1)  # a read that reached the end stops
            if j == self.budget or not active.any():
                break
            logits = self.policy(h)
            if self.training:
                jump = torch.distributions.Categorical(logits=logits).sample()
            else:
                jump = logits.argmax(1)
            log_p = F.log_softmax(logits, 1)
            taken = log_p.gather(1, jump[:, None])[:, 0]
            log_prob = log_prob + torch.where(active, taken, torch.zeros_like(taken))
            spread = -(log_p.exp() * log_p).sum(1)
            entropy = entropy + torch.where(active, spread, torch.zeros_like(spread))
            jumps[active, j] = jump[active]
            start = torch.where(active, last + jump, start)
            active = active & (jump != STOP) & (start < length)
        return ModelOutput(
            self.head(h), {"reads": reads, "jumps": jumps}, None, {"log_prob": log_prob, "entropy": entropy}
        )

    @torch.no_grad()
    def _jumping(self, x: torch.Tensor) -> ModelOutput:
        logits, reads, jumps = zip(*(self._jump_one(x[i : i + 1]) for i in range(len(x))), strict=True)
        read_mask = x.new_zeros(x.shape[:2])
        jump_table = torch.full((len(x), self.budget), -1, dtype=torch.int64)
        for i, (steps, taken) in enumerate(zip(reads, jumps, strict=True)):
            read_mask[i, steps] = 1.0
            jump_table[i, : len(taken)] = torch.tensor(taken, dtype=torch.int64)
        not_computed = torch.full((len(x),), math.nan)
        extras = {"log_prob": not_computed, "entropy": not_computed}
        return ModelOutput(torch.cat(logits), {"reads": read_mask, "jumps": jump_table}, read_mask, extras)

    def _jump_one(self, x: torch.Tensor) -> tuple[torch.Tensor, list[int], list[int]]:
        """One input (1, T, V): read R tokens, ask the policy for a jump, move, until it stops."""
        length, h, start, read, jumps = x.shape[1], x.new_zeros(1, self.hidden), 0, [], []
        while True:
            for t in range(start, min(start + self.read, length)):
                h = self.cell(x[:, t], h)
                read.append(t)
            last = start + self.read - 1
            if last >= length - 1 or len(jumps) == self.budget:
                break
            jump = int(self.policy(h).argmax(1).item())
            jumps.append(jump)
            if jump == STOP:
                break
            start = next_start(last, jump)
            if start >= length:
                break
        return self.head(h), read, jumps


def jump_reward(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """LSTM-Jump's reward per input: +1 if the prediction is correct, -1 if not."""
    if not isinstance(logits, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError("logits and y must be tensors")
    if logits.dim() != 2 or y.shape != logits.shape[:1]:
        raise ValueError(f"logits must be (N, M) and y (N,), got {tuple(logits.shape)} and {tuple(y.shape)}")
    correct = logits.argmax(1) == y
    return correct.to(logits.dtype) * 2 - 1


def lstm_jump_loss(entropy: float = 0.0):
    """The loss `(output, y) -> CE + REINFORCE surrogate of the jumps - entropy * the policy's entropy`.

    The surrogate is (baseline - reward) * log p(jumps), with reward `jump_reward` and, as the
    baseline, each input's leave-one-out mean reward of the batch. `entropy` >= 0 weights a bonus
    on the policy's entropy summed over its decisions, which keeps it exploring.
    """
    if isinstance(entropy, bool) or not isinstance(entropy, int | float) or not entropy >= 0:
        raise ValueError(f"entropy must be a non-negative number, got {entropy!r}")

    def loss(output: ModelOutput, y: torch.Tensor) -> torch.Tensor:
        reward = jump_reward(output.logits.detach(), y)
        cost = -reward
        log_prob = output.extras["log_prob"]
        policy = reinforce_surrogate(log_prob, cost, leave_one_out_baseline(cost)).mean()
        return F.cross_entropy(output.logits, y) + policy - entropy * output.extras["entropy"].mean()

    return loss


def part_flops(model: JumpGRU) -> dict[str, int]:
    """FLOPs at batch size 1 of one token read ("cell"), one jump decision ("policy") and the "head"."""
    if not isinstance(model, JumpGRU):
        raise TypeError(f"model must be a JumpGRU, got {type(model).__name__}")
    x, h = torch.zeros(1, model.n_symbols), torch.zeros(1, model.hidden)
    return {
        "cell": measure.count_flops(lambda v: model.cell(v, h), x),
        "policy": measure.count_flops(model.policy, h),
        "head": measure.count_flops(model.head, h),
    }


def counted_flops(model: JumpGRU, output: ModelOutput) -> torch.Tensor:
    """FLOPs per sequence that the decisions of `output` allow, as float64 (N,).

    Each token read pays the cell, each jump decision the policy; the head runs once.
    """
    if not isinstance(output, ModelOutput) or not {"reads", "jumps"} <= output.decisions.keys():
        raise ValueError("output must be a ModelOutput of a JumpGRU, with decisions 'reads' and 'jumps'")
    part = part_flops(model)
    n_reads = output.decisions["reads"].double().sum(1)
    n_decisions = (output.decisions["jumps"] >= 0).double().sum(1)
    return n_reads * part["cell"] + n_decisions * part["policy"] + part["head"]


@timing_cases("lstm_jump")
def _timing_cases(device: torch.device) -> dict[str, TimingCase]:
    """A JumpGRU of width 32 on 40 steps of 8 symbols (R = 1, K = 8, N = 9), its policy set to always
    jump 5 (8 tokens read): jumping (batch 1 only), batched and full; the static GRUs of width 32 on 8
    uniformly spread steps and of width 12 on every step."""
    x = F.one_hot(torch.randint(8, (256, 40)), 8).float()
    jumping = JumpGRU(8, 32, 4, read=1, max_jump=8, budget=9, execution="jumping")
    with torch.no_grad():
        jumping.policy.weight.zero_()
        jumping.policy.bias.zero_()
        jumping.policy.bias[5] = 1.0
    batched = JumpGRU(8, 32, 4, read=1, max_jump=8, budget=9)
    full = JumpGRU(8, 32, 4, read=1, max_jump=8, budget=9, execution="full")
    batched.load_state_dict(jumping.state_dict())
    full.load_state_dict(jumping.state_dict())
    return {
        "jumping": TimingCase(jumping.to(device).eval(), x, batch_sizes=(1,), reference="full"),
        "batched": TimingCase(batched.to(device).eval(), x, reference="full", counted_by="jumping"),
        "full": TimingCase(full.to(device).eval(), x),
        "static_uniform_8_width_32": TimingCase(
            StaticGRU(8, 32, 4, uniform_steps(40, 8)).to(device).eval(), x
        ),
        "static_all_width_12": TimingCase(StaticGRU(8, 12, 4).to(device).eval(), x),
    }
