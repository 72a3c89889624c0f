"""A one-shot policy network that plans which residual blocks run, in the style of BlockDrop.

Taught in chapter 5 (sections 5.1.2-5.1.3, policy networks versus gating functions): a light
network reads the input once and gives one keep-probability per block of a
`GatedResidualCNN(estimator=None)` backbone; the whole execution plan is fixed before the first
block runs. The policy is trained with REINFORCE on `blockdrop_reward`.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from dyn_helpers.checks import check_positive_ints
from dyn_helpers.data import MNIST1D_LENGTH, MNIST1D_SHAPE
from dyn_helpers.layers import add_residual_on_rows
from dyn_helpers.measure import TimingCase, timing_cases
from dyn_helpers.outputs import Mode, ModelOutput
from dyn_helpers.sample_wise.gates import GatedResidualCNN
from dyn_helpers.sample_wise.skipping import SubsetCNN


class PolicyNetwork(nn.Module):
    """A light 1-D CNN: one strided convolution, ReLU, and a linear layer to one logit per block.

    It reads the raw input (batch, 1, length) and returns logits (batch, n_blocks). The biases
    start at 2, so every block starts kept with probability 0.88, as a `Gate` starts open.
    """

    def __init__(
        self,
        n_blocks: int,
        length: int = MNIST1D_LENGTH,
        channels: int = 4,
        kernel_size: int = 5,
        stride: int = 4,
    ) -> None:
        super().__init__()
        check_positive_ints(
            n_blocks=n_blocks, length=length, channels=channels, kernel_size=kernel_size, stride=stride
        )
        self.conv = nn.Conv1d(1, channels, kernel_size, stride=stride, padding=kernel_size // 2)
        out_length = (length + 2 * (kernel_size // 2) - kernel_size) // stride + 1
        self.logits = nn.Linear(channels * out_length, n_blocks)
        nn.init.zeros_(self.logits.weight)
        nn.init.constant_(self.logits.bias, 2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One keep-logit per block for each input."""
        return self.logits(F.relu(self.conv(x)).flatten(1))


class PolicyDrivenCNN(nn.Module):
    """A `GatedResidualCNN(estimator=None)` backbone whose blocks follow a plan drawn up front.

    The policy gives keep-probabilities s = sigmoid(logits); training samples the plan
    z ~ Bernoulli(s), evaluation keeps block l when its logit exceeds `threshold_logit` (a mode;
    0 means probability 1/2). Block l then computes x + z_l * block_l(x). `forward` returns a
    `ModelOutput`: the plan as `decisions["gates"]` (batch, n_blocks), the keep-probabilities
    `extras["probs"]` and the plan's log-probabilities `extras["log_probs"]`.

    `execution` (a mode, "sparse" or "masked"): in evaluation, "sparse" (the default) computes a
    block only for the inputs whose plan keeps it, and `executed` is the plan; "masked" computes
    every block for the whole batch and multiplies it by the plan, as training always does, and
    `executed` is None.
    """

    execution = Mode("sparse", "masked")

    def __init__(
        self,
        backbone: GatedResidualCNN,
        policy: nn.Module,
        threshold_logit: float = 0.0,
        *,
        execution: str = "sparse",
    ) -> None:
        super().__init__()
        if not isinstance(backbone, GatedResidualCNN) or backbone.gates is not None:
            raise TypeError(
                f"backbone must be a GatedResidualCNN built with estimator=None, got {type(backbone).__name__}"
                + ("" if not isinstance(backbone, GatedResidualCNN) else " with gates")
            )
        if not isinstance(policy, nn.Module):
            raise TypeError(f"policy must be an nn.Module, got {type(policy).__name__}")
        self.backbone, self.policy = backbone, policy
        self.threshold_logit = threshold_logit
        self.execution = execution

    @property
    def threshold_logit(self) -> float:
        """The logit above which evaluation keeps a block."""
        return self._threshold_logit

    @threshold_logit.setter
    def threshold_logit(self, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise ValueError(f"threshold_logit must be a number, got {value!r}")
        self._threshold_logit = float(value)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        """Logits, the plan for each input, its keep-probabilities and log-probabilities."""
        theta = self.policy(x)
        if theta.shape != (len(x), len(self.backbone.blocks)):
            raise ValueError(
                f"policy must return (batch, n_blocks) = {(len(x), len(self.backbone.blocks))}, "
                f"got {tuple(theta.shape)}"
            )
        probs = torch.sigmoid(theta)
        if self.training:
            z = torch.bernoulli(probs.detach())
        else:
            z = (theta > self.threshold_logit).to(theta.dtype)
        log_probs = z * F.logsigmoid(theta) + (1 - z) * F.logsigmoid(-theta)
        sparse = self.execution == "sparse" and not self.training
        h = self.backbone.stem(x)
        for i, block in enumerate(self.backbone.blocks):
            if sparse:
                h = add_residual_on_rows(block, h, z[:, i])
            else:
                h = h + z[:, i].view(-1, 1, 1) * block(h)
        return ModelOutput(
            self.backbone.head(h),
            decisions={"gates": z},
            executed=z if sparse else None,
            extras={"probs": probs, "log_probs": log_probs},
        )


def blockdrop_reward(correct: torch.Tensor, usage: torch.Tensor, penalty: float) -> torch.Tensor:
    """BlockDrop's reward per input: 1 - usage^2 when the prediction is correct, -penalty when not.

    `usage` is the fraction of blocks the plan kept, in [0, 1]; a larger `penalty` makes
    mistakes dearer than blocks, so the policy keeps more of them.
    """
    if not isinstance(correct, torch.Tensor) or not isinstance(usage, torch.Tensor):
        raise TypeError("correct and usage must be tensors")
    if correct.shape != usage.shape:
        raise ValueError(
            f"correct and usage must have the same shape, got {tuple(correct.shape)} and {tuple(usage.shape)}"
        )
    if usage.numel() and not bool(((usage >= 0) & (usage <= 1)).all()):
        raise ValueError("usage must lie in [0, 1]")
    if not penalty >= 0:
        raise ValueError(f"penalty must be non-negative, got {penalty}")
    correct = correct.to(usage.dtype)
    return correct * (1 - usage**2) - (1 - correct) * penalty


def threshold_for_usage(logits: torch.Tensor, usage: float) -> float:
    """The logit threshold at which a one-shot plan keeps a fraction `usage` of all (input, block) pairs.

    Because the whole plan is read from the policy's logits before any block runs, its cost is a
    quantile of those logits: choose it on a validation split to match another model's cost.
    """
    if not isinstance(logits, torch.Tensor) or logits.numel() == 0:
        raise ValueError("logits must be a non-empty tensor")
    if not 0.0 < usage < 1.0:
        raise ValueError(f"usage must be in (0, 1), got {usage}")
    return torch.quantile(logits.detach().flatten().double(), 1.0 - usage).item()


def distinct_plans(decisions: torch.Tensor) -> int:
    """How many different execution plans (rows of 0/1 decisions, one column per block) occur."""
    if not isinstance(decisions, torch.Tensor) or decisions.dim() != 2:
        raise ValueError("decisions must be a 2-D tensor (inputs, blocks)")
    return len(torch.unique(decisions.round().to(torch.int64), dim=0))


@timing_cases("blockdrop")
def _blockdrop_timing_cases(device: torch.device) -> dict[str, TimingCase]:
    """The policy-driven CNN keeping every block and none, and the backbone's first 3 and all 4 blocks."""
    x = torch.randn(256, *MNIST1D_SHAPE)
    backbone = GatedResidualCNN(4, 16, estimator=None)
    models = {  # a new policy gives every block the logit 2, whatever the input
        "policy_all_blocks": PolicyDrivenCNN(backbone, PolicyNetwork(4)),
        "policy_no_blocks": PolicyDrivenCNN(backbone, PolicyNetwork(4), threshold_logit=3.0),
        "static_3_blocks": SubsetCNN(backbone, range(3)),
        "static_4_blocks": SubsetCNN(backbone, range(4)),
    }
    reference = {"policy_all_blocks": "static_4_blocks", "policy_no_blocks": "static_4_blocks"}
    return {
        name: TimingCase(model.to(device).eval(), x, reference=reference.get(name))
        for name, model in models.items()
    }


@timing_cases("policy_vs_gates")
def _policy_vs_gates_timing_cases(device: torch.device) -> dict[str, TimingCase]:
    """The policy network and the four gates alone, as the notebook times them, and the static backbone."""
    # per input: the raw sequence, then the pooled features a gate reads
    rows = torch.randn(256, MNIST1D_LENGTH + 16)
    policy = PolicyNetwork(4).to(device).eval()
    gates = GatedResidualCNN(4, 16, estimator="gumbel").gates.to(device).eval()
    return {
        "policy_network": TimingCase(lambda row: policy(row[:, None, :MNIST1D_LENGTH]), rows),
        "four_gates": TimingCase(
            lambda row: torch.stack([gate(row[:, MNIST1D_LENGTH:]).prob for gate in gates]), rows
        ),
        "static_4_blocks": TimingCase(
            GatedResidualCNN(4, 16, estimator=None).to(device).eval(), torch.randn(256, *MNIST1D_SHAPE)
        ),
    }
