"""A hard gate and the gated residual CNN that layer skipping and chapter 5 train.

The `Gate` decides per input whether a block runs; `GatedResidualCNN` puts one before each
residual block and, in its "sparse" execution mode, runs each block only on the rows whose gate
opened. Their gradient estimators live in `dyn_helpers.training.estimators`, the penalties on
their usage in `dyn_helpers.training.efficiency`.
"""

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from dyn_helpers.data import MNIST1D_CLASSES, MNIST1D_LENGTH, MNIST1D_SHAPE
from dyn_helpers.layers import ExitHead, add_residual_on_rows, conv_block
from dyn_helpers.measure import TimingCase, timing_cases
from dyn_helpers.outputs import Mode, ModelOutput
from dyn_helpers.training.estimators import binary_concrete, check_temperature, straight_through_bernoulli

ESTIMATORS = ("straight_through", "gumbel", "reinforce")


class GateOutput(NamedTuple):
    """A gate's decision per input (0 or 1), its probability of opening, and the decision's log-probability."""

    decision: torch.Tensor
    prob: torch.Tensor
    log_prob: torch.Tensor


class Gate(nn.Module):
    """A hard per-input gate: a linear layer gives a logit, the chosen estimator a 0/1 decision.

    Training mode samples the decision: "straight_through" (Bernoulli, gradient through the
    probability), "gumbel" (hard binary concrete at `temperature`) or "reinforce" (Bernoulli,
    no gradient through the decision; train the logit with `reinforce_surrogate`). Evaluation
    mode is deterministic: open when the probability exceeds 1/2.
    """

    def __init__(
        self, in_features: int, estimator: str = "straight_through", temperature: float = 1.0
    ) -> None:
        super().__init__()
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
        check_temperature(temperature)
        self.estimator, self.temperature = estimator, temperature
        self.logit = nn.Linear(in_features, 1)
        nn.init.zeros_(self.logit.weight)
        nn.init.constant_(self.logit.bias, 2.0)  # start open (probability 0.88)

    def forward(self, features: torch.Tensor) -> GateOutput:
        """Decide for each row of `features` (batch, in_features)."""
        theta = self.logit(features).squeeze(-1)
        prob = torch.sigmoid(theta)
        if not self.training:
            decision = (prob > 0.5).to(prob.dtype)
        elif self.estimator == "straight_through":
            decision = straight_through_bernoulli(prob)
        elif self.estimator == "gumbel":
            decision = binary_concrete(theta, self.temperature, hard=True)
        else:
            decision = torch.bernoulli(prob.detach())
        hard = decision.detach()
        log_prob = hard * F.logsigmoid(theta) + (1 - hard) * F.logsigmoid(-theta)
        return GateOutput(decision, prob, log_prob)


class GatedResidualCNN(nn.Module):
    """A stem, `n_blocks` residual conv blocks each behind its own `Gate`, and a linear classifier.

    Block l computes x + z_l(x) * g_l(x), the gate z_l reading the block's input averaged over
    positions. `forward` returns a `ModelOutput`: `decisions["gates"]` (batch, n_blocks) of 0/1,
    `extras["probs"]` the gates' opening probabilities and `extras["log_probs"]` the decisions'
    log-probabilities. With `estimator=None` there are no gates, every block runs and `forward`
    returns the logits: the static twin.

    `execution` (a mode, "sparse" or "masked"): in evaluation, "sparse" (the default) computes a
    block only for the inputs whose gate is open, and `executed` is the gates; "masked" computes
    every block for the whole batch and multiplies it by the gate, as training always does (the
    decision's gradient flows through the product), and `executed` is None. The static twin
    ignores it.
    """

    execution = Mode("sparse", "masked")

    def __init__(
        self,
        n_blocks: int = 4,
        width: int = 32,
        *,
        estimator: str | None = "straight_through",
        temperature: float = 1.0,
        n_classes: int = MNIST1D_CLASSES,
        length: int = MNIST1D_LENGTH,
        kernel_size: int = 5,
        execution: str = "sparse",
    ) -> None:
        super().__init__()
        if isinstance(n_blocks, bool) or not isinstance(n_blocks, int) or n_blocks < 0:
            raise ValueError(f"n_blocks must be a non-negative int, got {n_blocks!r}")
        if estimator is not None and estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be None or one of {ESTIMATORS}, got {estimator!r}")
        self.execution = execution
        self.stem = conv_block(1, width, kernel_size)
        self.blocks = nn.ModuleList(conv_block(width, width, kernel_size) for _ in range(n_blocks))
        self.gates = (
            None
            if estimator is None
            else nn.ModuleList(Gate(width, estimator, temperature) for _ in range(n_blocks))
        )
        self.head = ExitHead(width, length, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor | ModelOutput:
        """Logits and, per block, the gate's decisions, probabilities and log-probabilities (the
        static twin: the logits alone)."""
        x = self.stem(x)
        if self.gates is None:
            for block in self.blocks:
                x = x + block(x)
            return self.head(x)
        sparse = self.execution == "sparse" and not self.training
        decisions, probs, log_probs = [], [], []
        for block, gate in zip(self.blocks, self.gates, strict=True):
            decision, prob, log_prob = gate(x.mean(dim=-1))
            if sparse:
                x = add_residual_on_rows(block, x, decision)
            else:
                x = x + decision.view(-1, 1, 1) * block(x)
            decisions.append(decision)
            probs.append(prob)
            log_probs.append(log_prob)
        gates = _stack(decisions, x)
        return ModelOutput(
            self.head(x),
            decisions={"gates": gates},
            executed=gates if sparse else None,
            extras={"probs": _stack(probs, x), "log_probs": _stack(log_probs, x)},
        )


def _stack(columns: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """One column per block, shape (batch, n_blocks), also when there are no blocks."""
    return torch.stack(columns, dim=1) if columns else like.new_zeros(len(like), 0)


def gated_timing_cases(
    device: torch.device, width: int, static_blocks: tuple[int, ...]
) -> dict[str, TimingCase]:
    """GPU-suite cases of a gated chapter: the 4-block gated CNN of `width` with every gate open and
    every gate shut, and the static CNNs of `static_blocks` blocks."""
    x = torch.randn(256, *MNIST1D_SHAPE)
    gated_open, gated_shut = (GatedResidualCNN(4, width, estimator="gumbel") for _ in range(2))
    for gate in gated_shut.gates:  # a new gate's weights are 0: its bias alone decides, for every input
        nn.init.constant_(gate.logit.bias, -2.0)
    models = {"gated_all_blocks": gated_open, "gated_no_blocks": gated_shut}
    for blocks in static_blocks:
        models[f"static_{blocks}_blocks"] = GatedResidualCNN(blocks, width, estimator=None)
    return {
        name: TimingCase(model.to(device).eval(), x, reference="static_4_blocks" if "gated" in name else None)
        for name, model in models.items()
    }


@timing_cases("efficiency_losses")
def _timing_cases(device: torch.device) -> dict[str, TimingCase]:
    """The chapter's gated CNN (width 16) and the static CNNs of 0 and 4 blocks."""
    return gated_timing_cases(device, width=16, static_blocks=(0, 4))
