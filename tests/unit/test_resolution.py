"""Specification of `dyn_helpers.spatial.resolution`: low resolution first, full resolution when unsure."""

import pytest
import torch

from dyn_helpers.data import Split
from dyn_helpers.measure import count_flops, flops_per_sample
from dyn_helpers.outputs import ModelOutput
from dyn_helpers.spatial.resolution import (
    FULL,
    LOW,
    ResolutionAdaptiveNet,
    ResolutionCNN,
    check_images,
    choose_threshold,
    digit_scale,
    exit_costs,
    exits_at,
    static_family,
    two_scale_digits,
)
from dyn_helpers.training.exit_objectives import summed_exit_loss


def canvases(n: int = 6, size: int = 16) -> torch.Tensor:
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(1))


def model(threshold: float | None = None, downsample: int = 2) -> ResolutionAdaptiveNet:
    """A small two-resolution network in evaluation mode whose low exit is sure on some inputs only."""
    torch.manual_seed(0)
    net = ResolutionAdaptiveNet((4, 4), downsample, exit_threshold=threshold).eval()
    with torch.no_grad():
        net.low.head.weight.mul_(40)
    return net


def threshold_between(net: ResolutionAdaptiveNet, x: torch.Tensor) -> float:
    """A threshold that sends some canvases of `x` on and lets the others answer at low resolution."""
    with torch.no_grad():
        confidence = net.first(x)[0].softmax(1).amax(1).sort().values
    assert confidence[0] < confidence[-1], "the test network needs inputs of different confidence"
    return ((confidence[len(x) // 2 - 1] + confidence[len(x) // 2]) / 2).item()


@pytest.fixture(scope="module")
def data():
    return two_scale_digits(16, n_clutter=1, seed=3)


def test_two_scale_digits_mixes_small_and_large_digits_of_the_same_labels(data):
    for split in (data.train, data.val, data.test):
        scale = digit_scale(split)
        assert set(scale.tolist()) == {1, 2}
        assert torch.equal(split.difficulty, (scale == 1).float())
        assert torch.equal(split.box[:, 2], 8 * scale) and torch.equal(split.box[:, 3], 8 * scale)
        assert split.x.shape[1:] == (1, 16, 16)
    assert 0.35 < (digit_scale(data.train) == 2).float().mean() < 0.65


def test_two_scale_digits_is_deterministic_for_its_seed_and_follows_large_share(data):
    again = two_scale_digits(16, n_clutter=1, seed=3)
    assert torch.equal(again.test.x, data.test.x) and torch.equal(again.test.box, data.test.box)
    assert (digit_scale(two_scale_digits(16, seed=3, large_share=0.0).train) == 1).all()
    assert (digit_scale(two_scale_digits(16, seed=3, large_share=1.0).train) == 2).all()


@pytest.mark.parametrize("share", [-0.1, 1.5, True, "half"])
def test_two_scale_digits_rejects_a_share_outside_the_unit_interval(share):
    with pytest.raises(ValueError, match="large_share"):
        two_scale_digits(16, large_share=share)


def test_two_scale_digits_rejects_a_canvas_too_small_for_the_large_digit():
    with pytest.raises(ValueError, match="canvas_size"):
        two_scale_digits(12)


def test_digit_scale_needs_a_split_with_boxes():
    with pytest.raises(ValueError, match="boxes"):
        digit_scale(Split(torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.long)))


@pytest.mark.parametrize("downsample", [3, 5])
def test_a_downsampling_that_does_not_divide_the_canvas_is_refused(downsample):
    with pytest.raises(ValueError, match="must divide"):
        ResolutionCNN(4, downsample)(canvases(2, 16))
    with pytest.raises(ValueError, match="must divide"):
        ResolutionAdaptiveNet((4, 4), downsample)(canvases(2, 16))


def test_a_canvas_too_small_for_its_resolution_is_refused():
    with pytest.raises(ValueError, match="under 4 pixels"):
        check_images(canvases(1, 8), 4)


@pytest.mark.parametrize("shape", [(2, 16, 16), (2, 3, 16, 16), (0, 1, 16, 16)])
def test_inputs_of_the_wrong_shape_are_refused(shape):
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        model()(torch.zeros(shape))


def test_an_input_that_is_not_a_tensor_is_refused():
    with pytest.raises(TypeError, match="tensor"):
        check_images([[0.0]])


@pytest.mark.parametrize("threshold", [-0.01, 1.01, True, "0.5"])
def test_thresholds_outside_the_unit_interval_are_refused(threshold):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ResolutionAdaptiveNet((4, 4), exit_threshold=threshold)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        exits_at(torch.zeros(2, 10), threshold)


@pytest.mark.parametrize(
    ("widths", "downsample"), [((4,), 2), ((4, 4, 4), 2), ((0, 4), 2), ((4, 4), 1), ("ab", 2)]
)
def test_bad_widths_or_a_downsampling_below_two_are_refused(widths, downsample):
    with pytest.raises(ValueError):
        ResolutionAdaptiveNet(widths, downsample)


def test_without_a_threshold_every_input_runs_both_sub_networks_and_the_summed_loss_trains_both():
    net = model().train()
    x, y = canvases(), torch.arange(6)
    output = net(x)
    low, full = output.extras["exit_logits"]
    assert torch.equal(output.logits, full) and low.shape == full.shape == (6, 10)
    summed_exit_loss(output, y).backward()
    assert net.low.layers[0][0].weight.grad.abs().sum() > 0
    assert net.layers[0][0].weight.grad.abs().sum() > 0


def test_early_exit_answers_with_the_low_logits_when_sure_and_the_full_ones_otherwise():
    net, x = model(), canvases()
    with torch.no_grad():
        low, full = net(x).extras["exit_logits"]
        net.exit_threshold = threshold_between(net, x)
        output = net(x)
    exits = output.decisions["exit"]
    assert isinstance(output, ModelOutput) and set(exits.tolist()) == {LOW, FULL}
    assert torch.equal(exits, exits_at(low, net.exit_threshold))
    assert torch.allclose(output.logits[exits == LOW], low[exits == LOW])
    assert torch.allclose(output.logits[exits == FULL], full[exits == FULL], atol=1e-5)
    assert torch.equal(output.executed, torch.stack([torch.ones(6), (exits == FULL).float()], 1))


@pytest.mark.parametrize("downsample", [2, 4])
def test_the_full_resolution_answer_is_the_same_alone_or_in_a_batch(downsample):
    torch.manual_seed(0)
    net, x = ResolutionAdaptiveNet((4, 4), downsample).eval(), canvases(size=32)
    with torch.no_grad():
        batched = net(x).logits
        net.exit_threshold = 1.0
        one_by_one = torch.cat([net(x[i : i + 1]).logits for i in range(len(x))])
    assert torch.allclose(batched, one_by_one, atol=1e-5)


def test_flops_counted_are_the_low_cost_for_sure_inputs_and_the_full_cost_for_the_others():
    net, x = model(), canvases()
    low_cost, full_cost = exit_costs(net, x[:1])
    assert 0 < low_cost < full_cost
    net.exit_threshold = threshold_between(net, x)
    with torch.no_grad():
        exits = net(x).decisions["exit"]
    expected = torch.where(exits == LOW, low_cost, full_cost)
    assert torch.equal(flops_per_sample(net, x), expected)
    assert count_flops(net, x) == int(expected.sum())  # a batch runs the second part on the unsure rows only


def test_the_low_exit_costs_what_the_static_network_of_its_width_and_resolution_costs():
    net, x = model(), canvases(1)
    assert exit_costs(net, x)[0] == count_flops(ResolutionCNN(4, 2).eval(), x)
    assert net.exit_threshold is None, "exit_costs restores the mode"


def test_exit_costs_needs_one_canvas_and_the_model():
    with pytest.raises(ValueError, match="batch size 1"):
        exit_costs(model(), canvases(2))
    with pytest.raises(TypeError, match="ResolutionAdaptiveNet"):
        exit_costs(ResolutionCNN(4), canvases(1))


def test_choose_threshold_takes_the_lowest_threshold_within_the_tolerance_of_full_resolution():
    y = torch.tensor([0, 1, 2, 3])
    full = torch.nn.functional.one_hot(y, 4).float() * 10  # right on every input
    low = full.clone()
    low[2:] = torch.tensor([0.0, 0.0, 0.0, 1.0]) * 1.0  # wrong and unsure on the last two
    low[3] = torch.tensor([5.0, 0.0, 0.0, 0.0])  # wrong but fairly sure on the last
    sure_wrong = low[3].softmax(0).max().item()
    thresholds = [0.3, 0.9, 0.999]
    assert choose_threshold([low, full], y, thresholds, tolerance=0) == 0.999 > sure_wrong
    assert choose_threshold([low, full], y, thresholds, tolerance=25) == 0.9  # 75%: the sure wrong one exits
    assert choose_threshold([low, full], y, thresholds, tolerance=50) == 0.3  # 50%: every input exits


def test_choose_threshold_refuses_bad_arguments():
    logits = [torch.zeros(3, 4), torch.zeros(3, 4)]
    with pytest.raises(ValueError, match="two exits"):
        choose_threshold(logits[:1], torch.zeros(3), [0.5], 1)
    with pytest.raises(ValueError, match="at least one"):
        choose_threshold(logits, torch.zeros(3), [], 1)
    with pytest.raises(ValueError, match="tolerance"):
        choose_threshold(logits, torch.zeros(3), [0.5], -1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        choose_threshold(logits, torch.zeros(3), [1.5], 1)
    with pytest.raises(ValueError, match="shape"):
        choose_threshold([torch.zeros(3, 4), torch.zeros(2, 4)], torch.zeros(3), [0.5], 1)


def test_static_family_names_each_width_and_resolution():
    family = static_family([4, 6], (1, 2))
    assert list(family) == ["width 4", "width 6", "width 4, 1/2 resolution", "width 6, 1/2 resolution"]
    assert family["width 6, 1/2 resolution"].downsample == 2
    with pytest.raises(ValueError, match="non-empty"):
        static_family([], (1,))


def test_a_static_network_at_half_resolution_costs_a_quarter_of_its_convolutions():
    x, head = canvases(1, 16), 2 * 16 * 10  # the classifier reads 4 x width = 16 means for 10 classes
    full, half = (count_flops(ResolutionCNN(4, d).eval(), x) for d in (1, 2))
    assert full - head == 4 * (half - head)
