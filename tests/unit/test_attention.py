import pytest
import torch
import torch.nn.functional as F

from dyn_helpers.layers import StaticCNN
from dyn_helpers.measure import count_flops
from dyn_helpers.outputs import ModelOutput
from dyn_helpers.sample_wise.attention import (
    AttentionCNN,
    SpatialAttention,
    SqueezeExcitation,
    rescaled_weight,
)


def test_rescaling_the_output_channels_equals_convolving_with_rescaled_filters():
    torch.manual_seed(0)
    x, weight, scale = torch.randn(3, 4, 20), torch.randn(6, 4, 5), torch.rand(3, 6)
    per_input = rescaled_weight(weight, scale)
    assert per_input.shape == (3, 6, 4, 5)
    features_scaled = F.conv1d(x, weight, padding=2) * scale[:, :, None]
    weights_scaled = torch.cat([F.conv1d(x[n : n + 1], per_input[n], padding=2) for n in range(3)])
    assert torch.allclose(features_scaled, weights_scaled, atol=1e-5)


def test_rescaled_weight_checks_shapes():
    with pytest.raises(ValueError, match="Conv1d weight"):
        rescaled_weight(torch.randn(6, 4), torch.rand(1, 6))
    with pytest.raises(ValueError, match="scale"):
        rescaled_weight(torch.randn(6, 4, 5), torch.rand(1, 5))


def test_squeeze_excitation_scales_each_channel_by_a_weight_in_0_1():
    se = SqueezeExcitation(8, reduction=4)
    x = torch.randn(5, 8, 20)
    weights = se.weights(x)
    assert weights.shape == (5, 8) and bool(((weights > 0) & (weights < 1)).all())
    assert torch.allclose(se(x), x * weights[:, :, None])
    assert torch.equal(se(x, torch.ones(5, 8)), x)
    with pytest.raises(ValueError, match="weights"):
        se(x, torch.ones(5, 20))


def test_spatial_attention_scales_each_position_by_a_weight_in_0_1():
    attend = SpatialAttention(kernel_size=7)
    x = torch.randn(5, 8, 20)
    weights = attend.weights(x)
    assert weights.shape == (5, 20) and bool(((weights > 0) & (weights < 1)).all())
    assert torch.allclose(attend(x), x * weights[:, None, :])
    assert torch.equal(attend(x, torch.ones(5, 20)), x)
    with pytest.raises(ValueError, match="weights"):
        attend(x, torch.ones(5, 8))


def test_attention_adds_only_the_flops_of_its_small_layers():
    x = torch.randn(1, 1, 40)
    static = count_flops(StaticCNN(2, widths=(8, 8)), x)
    se = count_flops(AttentionCNN("se", (8, 8), reduction=4), x)
    spatial = count_flops(AttentionCNN("spatial", (8, 8)), x)
    assert se == static + 2 * (2 * 8 * 2 + 2 * 2 * 8)  # two linears per block, 8 -> 2 -> 8
    assert spatial == static + 2 * (2 * 2 * 7 * 40)  # one 2 -> 1 conv of kernel 7 per block


def test_attention_cnn_returns_logits_and_each_blocks_attention_weights():
    x = torch.randn(4, 1, 40)
    output = AttentionCNN("se", (8, 6)).eval()(x)
    assert isinstance(output, ModelOutput) and output.executed is None
    assert output.logits.shape == (4, 10)
    assert {k: v.shape for k, v in output.decisions.items()} == {"attention_1": (4, 8), "attention_2": (4, 6)}
    output = AttentionCNN("spatial", (8, 6)).eval()(x)
    assert {k: v.shape for k, v in output.decisions.items()} == {
        "attention_1": (4, 40),
        "attention_2": (4, 40),
    }


def test_the_decisions_are_the_weights_each_attention_module_applied():
    model = AttentionCNN("se", (8, 6)).eval()
    x = torch.randn(4, 1, 40)
    with torch.no_grad():
        output = model(x)
        h = model.blocks[0](x)
        assert torch.equal(output.decisions["attention_1"], model.attention[0].weights(h))
        h = model.blocks[1](model.attention[0](h))
        assert torch.equal(output.decisions["attention_2"], model.attention[1].weights(h))


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="attention"):
        AttentionCNN("cbam")
    with pytest.raises(ValueError, match="widths"):
        AttentionCNN("se", ())
    with pytest.raises(ValueError, match="reduction"):
        SqueezeExcitation(4, reduction=8)
    with pytest.raises(ValueError, match="kernel_size"):
        SpatialAttention(kernel_size=4)
