import pytest
import torch
import torch.nn.functional as F

from dyn_helpers.measure import count_flops
from dyn_helpers.outputs import ModelOutput
from dyn_helpers.sample_wise.dynamic_params import (
    FLOPS_PER_SAMPLED_VALUE,
    FLOPS_PER_SAMPLING_POINT,
    CondConv1d,
    CondConvCNN,
    DeformableConv2d,
    DigitCNN,
    DynamicFilterConv2d,
    flops_with_sampling,
)


def test_mixing_kernels_then_convolving_equals_convolving_then_mixing_outputs():
    torch.manual_seed(0)
    layer = CondConv1d(6, 5, kernel_size=5, n_kernels=3)
    x = torch.randn(4, 6, 20)
    assert layer.mixing == "kernels"
    kernels_mixed = layer(x)
    layer.mixing = "outputs"
    assert torch.allclose(kernels_mixed, layer(x), atol=1e-5)


def test_mixing_mode_is_checked_when_set():
    with pytest.raises(ValueError, match="mixing"):
        CondConv1d(2, 2, mixing="weights")
    layer = CondConv1d(2, 2)
    with pytest.raises(ValueError, match="mixing"):
        layer.mixing = "weights"
    assert layer.mixing == "kernels"


def test_condconv_uses_the_mixing_weights_it_is_given():
    torch.manual_seed(0)
    layer = CondConv1d(3, 4, kernel_size=3, n_kernels=2)
    x = torch.randn(5, 3, 12)
    assert torch.equal(layer(x), layer(x, layer.routing(x)))
    first_kernel = torch.tensor([[1.0, 0.0]]).expand(5, 2)
    assert torch.allclose(layer(x, first_kernel), F.conv1d(x, layer.weight[0], padding=1), atol=1e-6)
    with pytest.raises(ValueError, match="alpha"):
        layer(x, torch.ones(5, 3) / 3)


def test_routing_weights_are_a_distribution_per_input():
    layer = CondConv1d(6, 5, n_kernels=3)
    r = layer.routing(torch.randn(7, 6, 20))
    assert r.shape == (7, 3)
    assert torch.allclose(r.sum(dim=1), torch.ones(7))
    assert (r >= 0).all()


def test_condconv_costs_one_convolution_plus_routing_and_mixing():
    layer = CondConv1d(8, 8, kernel_size=5, n_kernels=4)
    x = torch.randn(1, 8, 40)
    one_conv = 2 * 8 * 8 * 5 * 40
    routing, mixing = 2 * 8 * 4, 2 * 4 * 8 * 8 * 5
    assert count_flops(layer, x) == one_conv + routing + mixing
    layer.mixing = "outputs"
    assert count_flops(layer, x) >= 4 * one_conv


def test_with_equal_kernels_condconv_is_a_plain_convolution():
    layer = CondConv1d(3, 4, kernel_size=3, n_kernels=2)
    with torch.no_grad():
        layer.weight[1].copy_(layer.weight[0])
    x = torch.randn(5, 3, 12)
    assert torch.allclose(layer(x), F.conv1d(x, layer.weight[0], padding=1), atol=1e-6)


@pytest.mark.parametrize("name", ["c_in", "c_out", "kernel_size", "n_kernels"])
def test_condconv_rejects_non_positive_sizes_naming_the_argument(name):
    kwargs = {"c_in": 2, "c_out": 2, "kernel_size": 3, "n_kernels": 2, name: 0}
    with pytest.raises(ValueError, match=name):
        CondConv1d(**kwargs)


def test_condconv_rejects_a_non_positive_temperature_and_inputs_of_the_wrong_width():
    with pytest.raises(ValueError, match="temperature"):
        CondConv1d(2, 2, temperature=0.0)
    with pytest.raises(ValueError, match="shape"):
        CondConv1d(2, 2)(torch.randn(3, 5, 10))


def test_condconv_cnn_returns_logits_and_the_mixing_weights_of_each_dynamic_block():
    model = CondConvCNN(8, depth=3).eval()
    x = torch.randn(2, 1, 40)
    output = model(x)
    assert isinstance(output, ModelOutput) and output.executed is None
    assert output.logits.shape == (2, 10)
    assert output.decisions["alpha"].shape == (2, 2, 4)
    with torch.no_grad():
        h = model.blocks[0](x)
        assert torch.equal(output.decisions["alpha"][:, 0], model.blocks[1][0].routing(h))


def test_condconv_cnn_mixing_mode_sets_every_layer_and_keeps_the_logits():
    torch.manual_seed(0)
    model = CondConvCNN(8, depth=3).eval()
    x = torch.randn(2, 1, 40)
    with torch.no_grad():
        kernels_mixed = model(x).logits
        model.mixing = "outputs"
        assert [b[0].mixing for b in model.blocks[1:]] == ["outputs", "outputs"]
        assert torch.allclose(model(x).logits, kernels_mixed, atol=1e-5)
    with pytest.raises(ValueError, match="mixing"):
        model.mixing = "weights"


def test_condconv_cnn_needs_a_dynamic_block():
    with pytest.raises(ValueError, match="depth"):
        CondConvCNN(8, depth=1)


def test_dynamic_filters_start_as_the_static_base_and_then_depend_on_the_input():
    torch.manual_seed(0)
    layer = DynamicFilterConv2d(3, 4, kernel_size=3)
    x = torch.randn(2, 3, 6, 6)
    assert torch.allclose(layer(x), F.conv2d(x, layer.base, padding=1), atol=1e-5)
    torch.nn.init.normal_(layer.generator[-1].weight)
    w = layer.filters(x)
    assert w.shape == (2, 4, 3, 3, 3)
    assert not torch.allclose(w[0], w[1])
    expected = torch.cat([F.conv2d(x[i : i + 1], w[i], padding=1) for i in range(2)])
    assert torch.allclose(layer(x), expected, atol=1e-5)
    assert torch.equal(layer(x, w), layer(x))
    with pytest.raises(ValueError, match="filters"):
        layer(x, w[:1])


def test_deformable_conv_with_zero_offsets_is_a_plain_convolution():
    torch.manual_seed(0)
    layer = DeformableConv2d(3, 4, kernel_size=3)
    x = torch.randn(2, 3, 7, 6)
    assert torch.allclose(layer(x), F.conv2d(x, layer.weight.view(4, 3, 3, 3), padding=1), atol=1e-5)


def test_deformable_conv_with_a_whole_pixel_offset_reads_the_shifted_input():
    layer = DeformableConv2d(2, 3, kernel_size=3)
    with torch.no_grad():
        layer.offset_conv.bias[1::2] = 1.0  # every tap reads one column to the right
    x = torch.randn(1, 2, 5, 6)
    shifted = F.pad(x, (0, 1))[..., 1:]
    expected = F.conv2d(shifted, layer.weight.view(3, 2, 3, 3), padding=1)
    assert torch.allclose(layer(x)[..., 1:], expected[..., 1:], atol=1e-5)


def test_deformable_conv_uses_the_offsets_it_is_given():
    torch.manual_seed(0)
    layer = DeformableConv2d(2, 3, kernel_size=3)
    x = torch.randn(1, 2, 5, 6)
    offsets = layer.offsets(x)
    assert offsets.shape == (1, 18, 5, 6)
    offsets[:, 1::2] = 1.0  # every tap reads one column to the right
    expected = F.conv2d(F.pad(x, (0, 1))[..., 1:], layer.weight.view(3, 2, 3, 3), padding=1)
    assert torch.allclose(layer(x, offsets)[..., 1:], expected[..., 1:], atol=1e-5)


def test_sampling_points_are_the_kernel_taps_around_each_pixel_at_zero_offset():
    layer = DeformableConv2d(1, 1, kernel_size=3)
    points = layer.sampling_points(layer.offsets(torch.randn(1, 1, 4, 4)))
    assert points.shape == (1, 9, 4, 4, 2)
    assert points[0, 0, 2, 2].tolist() == [1.0, 1.0]
    assert points[0, 8, 2, 2].tolist() == [3.0, 3.0]


def test_flops_with_sampling_adds_the_grid_sample_work_the_counter_misses():
    layer = DeformableConv2d(4, 5, kernel_size=3)
    x = torch.randn(1, 4, 6, 6)
    points = 9 * 6 * 6
    sampling = points * (FLOPS_PER_SAMPLING_POINT + FLOPS_PER_SAMPLED_VALUE * 4)
    assert layer.sampling_flops(x) == sampling
    assert flops_with_sampling(layer, x) == count_flops(layer, x) + sampling
    plain = torch.nn.Conv2d(4, 5, 3, padding=1)
    assert flops_with_sampling(plain, x) == count_flops(plain, x)


def test_deformable_conv_rejects_bad_sizes_and_mismatched_inputs():
    with pytest.raises(ValueError, match="kernel_size"):
        DeformableConv2d(2, 2, kernel_size=0)
    with pytest.raises(ValueError, match="shape"):
        DeformableConv2d(2, 2)(torch.randn(1, 3, 5, 5))


def test_the_plain_digit_cnn_is_static_and_returns_logits():
    output = DigitCNN(4).eval()(torch.randn(3, 1, 16, 16))
    assert isinstance(output, torch.Tensor) and output.shape == (3, 10)


@pytest.mark.parametrize(
    ("middle", "name", "shape"),
    [("deformable", "offsets", (3, 18, 8, 8)), ("dynamic filter", "filters", (3, 4, 4, 3, 3))],
)
def test_a_dynamic_digit_cnn_returns_what_its_middle_layer_predicted(middle, name, shape):
    model = DigitCNN(4, middle).eval()
    x = torch.randn(3, 1, 16, 16)
    output = model(x)
    assert isinstance(output, ModelOutput) and output.executed is None
    assert output.logits.shape == (3, 10)
    assert list(output.decisions) == [name] and output.decisions[name].shape == shape
    with torch.no_grad():
        h = model.features[:4](x)
        predicted = model.middle.offsets(h) if name == "offsets" else model.middle.filters(h)
    assert torch.equal(output.decisions[name], predicted)


def test_digit_cnn_rejects_an_unknown_middle_layer_and_a_bad_size():
    with pytest.raises(ValueError, match="middle"):
        DigitCNN(4, "dilated")
    with pytest.raises(ValueError, match="size"):
        DigitCNN(4, size=10)
