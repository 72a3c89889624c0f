import copy

import pytest
import torch

from dyn_helpers.decisions.policy import (
    PolicyDrivenCNN,
    PolicyNetwork,
    blockdrop_reward,
    distinct_plans,
    threshold_for_usage,
)
from dyn_helpers.measure import count_flops, flops_per_sample
from dyn_helpers.sample_wise.gates import GatedResidualCNN


def _model(n_blocks: int = 3) -> PolicyDrivenCNN:
    torch.manual_seed(0)
    return PolicyDrivenCNN(GatedResidualCNN(n_blocks, 8, estimator=None), PolicyNetwork(n_blocks))


def test_policy_network_gives_one_logit_per_block_and_starts_keeping_every_block():
    policy = PolicyNetwork(5)
    logits = policy(torch.randn(7, 1, 40))
    assert logits.shape == (7, 5)
    assert torch.allclose(torch.sigmoid(logits), torch.full((7, 5), torch.sigmoid(torch.tensor(2.0)).item()))


@pytest.mark.parametrize("name", ["n_blocks", "length", "channels", "kernel_size", "stride"])
def test_policy_network_rejects_non_positive_sizes_naming_the_argument(name):
    with pytest.raises(ValueError, match=name):
        PolicyNetwork(**{"n_blocks": 3, name: 0})


def test_policy_driven_cnn_needs_a_backbone_without_gates():
    with pytest.raises(TypeError, match="backbone"):
        PolicyDrivenCNN(GatedResidualCNN(2, 8), PolicyNetwork(2))
    with pytest.raises(TypeError, match="backbone"):
        PolicyDrivenCNN(torch.nn.Linear(2, 2), PolicyNetwork(2))
    with pytest.raises(TypeError, match="policy"):
        PolicyDrivenCNN(GatedResidualCNN(2, 8, estimator=None), "policy")


def test_a_policy_with_the_wrong_number_of_outputs_is_reported():
    model = PolicyDrivenCNN(GatedResidualCNN(3, 8, estimator=None), PolicyNetwork(2)).eval()
    with pytest.raises(ValueError, match="n_blocks"):
        model(torch.randn(4, 1, 40))


def test_keeping_every_block_gives_the_static_backbone_output():
    model = _model().eval()
    model.threshold_logit = -100.0
    x = torch.randn(6, 1, 40)
    output = model(x)
    assert torch.equal(output.decisions["gates"], torch.ones(6, 3))
    assert torch.allclose(output.logits, model.backbone.eval()(x), atol=1e-6)


def test_evaluation_plan_thresholds_the_logits_and_costs_only_the_kept_blocks():
    model = _model()
    with torch.no_grad():
        model.policy.logits.bias.copy_(torch.tensor([3.0, -3.0, 3.0]))
    model.eval()
    x = torch.randn(4, 1, 40)
    output = model(x)
    assert torch.equal(output.decisions["gates"], torch.tensor([[1.0, 0.0, 1.0]]).expand(4, 3))
    assert torch.equal(output.executed, output.decisions["gates"])
    two_blocks = copy.deepcopy(model)
    two_blocks.threshold_logit = -100.0
    del two_blocks.backbone.blocks[1]
    del two_blocks.policy
    expected = count_flops(model.policy, x[:1]) + count_flops(two_blocks.backbone, x[:1])
    assert flops_per_sample(model, x).tolist() == [expected] * 4


def test_training_plan_is_sampled_with_the_log_probability_of_the_sample():
    model = _model().train()
    output = model(torch.randn(500, 1, 40))
    plan, probs, log_probs = output.decisions["gates"], output.extras["probs"], output.extras["log_probs"]
    assert set(plan.unique().tolist()) <= {0.0, 1.0}
    assert 0.8 < plan.mean().item() < 0.95  # the policy starts keeping blocks with probability 0.88
    expected = torch.where(plan > 0, probs.log(), (1 - probs).log())
    assert torch.allclose(log_probs, expected, atol=1e-5)
    assert output.executed is None  # training computes every block and masks it


def test_masked_execution_gives_the_same_output_but_computes_every_block():
    model = _model()
    with torch.no_grad():
        model.policy.logits.bias.copy_(torch.tensor([3.0, -3.0, 3.0]))
    model.eval()
    x = torch.randn(4, 1, 40)
    sparse = model(x)
    model.execution = "masked"
    masked = model(x)
    assert masked.executed is None and torch.equal(masked.decisions["gates"], sparse.decisions["gates"])
    assert torch.allclose(masked.logits, sparse.logits, atol=1e-6)
    every_block = count_flops(model.policy, x[:1]) + count_flops(model.backbone, x[:1])
    assert count_flops(model, x[:1]) == every_block


def test_modes_are_checked_when_set():
    model = _model()
    with pytest.raises(ValueError, match="execution"):
        model.execution = "dense"
    with pytest.raises(ValueError, match="threshold_logit"):
        model.threshold_logit = float("nan")
    with pytest.raises(ValueError, match="threshold_logit"):
        PolicyDrivenCNN(model.backbone, model.policy, threshold_logit="high")
    model.threshold_logit = 1
    assert model.threshold_logit == 1.0 and model.execution == "sparse"


def test_blockdrop_reward_pays_for_fewer_blocks_when_correct_and_penalises_mistakes():
    reward = blockdrop_reward(torch.tensor([True, True, False]), torch.tensor([0.5, 1.0, 0.25]), penalty=2.0)
    assert torch.allclose(reward, torch.tensor([0.75, 0.0, -2.0]))


def test_blockdrop_reward_checks_its_arguments():
    with pytest.raises(TypeError, match="usage"):
        blockdrop_reward(torch.ones(2), [0.5, 0.5], 1.0)
    with pytest.raises(ValueError, match="same shape"):
        blockdrop_reward(torch.ones(2), torch.ones(3), 1.0)
    with pytest.raises(ValueError, match="usage"):
        blockdrop_reward(torch.ones(2), torch.tensor([0.5, 1.5]), 1.0)
    with pytest.raises(ValueError, match="penalty"):
        blockdrop_reward(torch.ones(2), torch.ones(2), -1.0)


def test_threshold_for_usage_keeps_the_requested_share_of_logits():
    logits = torch.randn(1000, 4)
    for usage in (0.1, 0.5, 0.9):
        kept = (logits > threshold_for_usage(logits, usage)).float().mean().item()
        assert abs(kept - usage) < 0.001


def test_threshold_for_usage_checks_its_arguments():
    with pytest.raises(ValueError, match="usage"):
        threshold_for_usage(torch.randn(10), 1.0)
    with pytest.raises(ValueError, match="logits"):
        threshold_for_usage(torch.empty(0), 0.5)


def test_distinct_plans_counts_different_rows():
    decisions = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert distinct_plans(decisions) == 3
    with pytest.raises(ValueError, match="decisions"):
        distinct_plans(torch.ones(3))
