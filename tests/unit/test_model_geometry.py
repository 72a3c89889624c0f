"""Every mnist1d model of the package is built, by default, for the geometry `dyn_helpers.data` defines."""

import pytest
import torch

from dyn_helpers.data import MNIST1D_CLASSES, MNIST1D_SHAPE
from dyn_helpers.decisions.policy import PolicyDrivenCNN, PolicyNetwork
from dyn_helpers.layers import StaticCNN
from dyn_helpers.outputs import ModelOutput
from dyn_helpers.sample_wise.attention import AttentionCNN
from dyn_helpers.sample_wise.channel_gating import ChannelGatedCNN
from dyn_helpers.sample_wise.dynamic_params import CondConvCNN
from dyn_helpers.sample_wise.early_exit import MultiExitCNN
from dyn_helpers.sample_wise.gates import GatedResidualCNN
from dyn_helpers.sample_wise.halting import ACTResidualCNN
from dyn_helpers.sample_wise.moe import DenseClassifier, MoEClassifier

BUILDERS = {
    "StaticCNN": lambda: StaticCNN(2),
    "MultiExitCNN": MultiExitCNN,
    "GatedResidualCNN": GatedResidualCNN,
    "ACTResidualCNN": ACTResidualCNN,
    "AttentionCNN": lambda: AttentionCNN("se"),
    "ChannelGatedCNN": ChannelGatedCNN,
    "CondConvCNN": lambda: CondConvCNN(8),
    "MoEClassifier": lambda: MoEClassifier(2),
    "DenseClassifier": DenseClassifier,
    "PolicyDrivenCNN": lambda: PolicyDrivenCNN(GatedResidualCNN(estimator=None), PolicyNetwork(4)),
}


@pytest.mark.parametrize("build", BUILDERS.values(), ids=BUILDERS.keys())
def test_a_model_with_default_geometry_reads_mnist1d_and_gives_one_logit_per_class(build):
    output = build().eval()(torch.randn(3, *MNIST1D_SHAPE))
    logits = output.logits if isinstance(output, ModelOutput) else output
    assert logits.shape == (3, MNIST1D_CLASSES)
