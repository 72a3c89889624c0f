import pytest
import torch

from dyn_helpers.data import Split
from dyn_helpers.sample_wise.gates import GatedResidualCNN
from dyn_helpers.sample_wise.skipping import (
    StochasticDepthCNN,
    SubsetCNN,
    best_fixed_subset,
    plan_class_dependence,
    usage_by_class,
)


def _backbone(n_blocks: int = 3) -> GatedResidualCNN:
    torch.manual_seed(0)
    return GatedResidualCNN(n_blocks, 8, estimator=None).eval()


def test_stochastic_depth_survival_decays_linearly_to_the_last_block():
    model = StochasticDepthCNN(_backbone(4), last_survival=0.5)
    assert model.survival == pytest.approx([0.875, 0.75, 0.625, 0.5])


def test_stochastic_depth_runs_every_block_in_evaluation_and_shares_the_backbone():
    backbone = _backbone()
    model = StochasticDepthCNN(backbone).eval()
    x = torch.randn(5, 1, 40)
    assert torch.allclose(model(x), backbone(x))
    assert model.backbone is backbone


def test_stochastic_depth_drops_blocks_per_input_in_training():
    torch.manual_seed(0)
    model = StochasticDepthCNN(_backbone(), last_survival=0.01).train()
    model.backbone.eval()  # fixed batch-norm statistics, so only the dropping differs
    x = torch.randn(1, 1, 40).repeat(64, 1, 1)
    out = model.forward(x)
    assert len(torch.unique(out.round(decimals=4), dim=0)) > 1


@pytest.mark.parametrize("bad", [0.0, 1.5, -0.2])
def test_stochastic_depth_rejects_a_survival_outside_0_1(bad):
    with pytest.raises(ValueError, match="last_survival"):
        StochasticDepthCNN(_backbone(), last_survival=bad)


def test_models_need_a_backbone_without_gates():
    for make in (StochasticDepthCNN, lambda b: SubsetCNN(b, [0])):
        with pytest.raises(TypeError, match="backbone"):
            make(GatedResidualCNN(2, 8))
        with pytest.raises(TypeError, match="backbone"):
            make(torch.nn.Linear(2, 2))


def test_subset_with_every_block_equals_the_backbone_and_empty_subset_skips_them_all():
    backbone = _backbone()
    x = torch.randn(4, 1, 40)
    assert torch.allclose(SubsetCNN(backbone, [2, 0, 1])(x), backbone(x))
    no_blocks = GatedResidualCNN(0, 8, estimator=None).eval()
    no_blocks.stem, no_blocks.head = backbone.stem, backbone.head
    assert torch.allclose(SubsetCNN(backbone, [])(x), no_blocks(x))


def test_subset_never_computes_the_blocks_it_leaves_out():
    backbone = _backbone(4)
    ran = []
    for i, block in enumerate(backbone.blocks):
        block.register_forward_hook(lambda *_, i=i: ran.append(i))
    SubsetCNN(backbone, [3, 1])(torch.randn(2, 1, 40))
    assert ran == [1, 3]


@pytest.mark.parametrize("keep", [[3], [0, 0], [-1]])
def test_subset_rejects_bad_block_indices(keep):
    with pytest.raises(ValueError, match="keep"):
        SubsetCNN(_backbone(), keep)


def test_subset_rejects_non_integer_indices():
    with pytest.raises(TypeError, match="keep"):
        SubsetCNN(_backbone(), [0.5])


def test_best_fixed_subset_tries_every_subset_and_returns_the_most_accurate():
    backbone = _backbone(4)
    val = Split(torch.randn(30, 1, 40), torch.randint(0, 10, (30,)))
    choice = best_fixed_subset(backbone, val, 2)
    assert len(choice.tried) == 6
    assert choice.accuracy == max(choice.tried.values()) == choice.tried[choice.keep]
    logits = SubsetCNN(backbone, choice.keep)(val.x)
    assert choice.accuracy == pytest.approx((logits.argmax(1) == val.y).double().mean().item())
    assert not backbone.training


def test_best_fixed_subset_rejects_bad_sizes_and_splits():
    val = Split(torch.randn(4, 1, 40), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="n_keep"):
        best_fixed_subset(_backbone(), val, 4)
    with pytest.raises(TypeError, match="val"):
        best_fixed_subset(_backbone(), (val.x, val.y), 1)


def test_usage_by_class_is_the_per_class_mean_of_the_plans():
    plans = torch.tensor([[1, 0], [1, 1], [0, 0], [0, 1]])
    labels = torch.tensor([0, 0, 2, 2])
    usage = usage_by_class(plans, labels, 3)
    assert usage.tolist() == [[1.0, 0.5], [0.0, 0.0], [0.0, 0.5]]


def test_usage_by_class_rejects_labels_out_of_range():
    with pytest.raises(ValueError, match="labels"):
        usage_by_class(torch.ones(2, 3), torch.tensor([0, 5]), 3)


def test_plans_that_follow_the_class_are_detected_as_dependent():
    labels = torch.arange(200) % 4
    plans = torch.stack([labels % 2, labels // 2], dim=1)  # one plan per class
    test = plan_class_dependence(plans, labels, n_permutations=99)
    assert test.mutual_information == pytest.approx(2.0)
    assert test.max_information == pytest.approx(2.0)
    assert test.p_value == pytest.approx(0.01)


def test_plans_drawn_independently_of_the_class_are_not_rejected():
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (400,), generator=generator)
    plans = torch.randint(0, 2, (400, 2), generator=generator)
    test = plan_class_dependence(plans, labels, n_permutations=99)
    assert test.p_value > 0.05
    assert 0 <= test.mutual_information < 0.05


def test_a_single_plan_carries_no_information():
    test = plan_class_dependence(torch.ones(10, 3), torch.arange(10) % 2, n_permutations=9)
    assert test.mutual_information == 0.0 and test.p_value == 1.0


def test_dependence_test_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="labels"):
        plan_class_dependence(torch.ones(5, 2), torch.zeros(4))
    with pytest.raises(ValueError, match="plans"):
        plan_class_dependence(torch.ones(5), torch.zeros(5))
    with pytest.raises(ValueError, match="n_permutations"):
        plan_class_dependence(torch.ones(5, 2), torch.zeros(5), n_permutations=0)
