"""Specifications of the leaderboard entries for dynamic width, routing and dynamic parameters."""

import dataclasses

import pytest
import torch

from dyn_helpers.leaderboard import board as lb
from dyn_helpers.leaderboard import width_and_parameters as wp
from dyn_helpers.leaderboard.static import MNIST1D

NAMES = (
    "channel_gating",
    "mixture_of_experts",
    "routing_tree",
    "dynamic_convolution",
    "weight_prediction",
    "feature_attention",
)


@pytest.fixture(scope="module")
def tiny() -> lb.Task:
    """The 1-D board cut to 256 training and 64 validation and test inputs, one epoch."""
    splits = lb.task(MNIST1D).splits

    def head(split, n):
        return dataclasses.replace(split, x=split.x[:n], y=split.y[:n], difficulty=split.difficulty[:n])

    cut = dataclasses.replace(
        splits, train=head(splits.train, 256), val=head(splits.val, 64), test=head(splits.test, 64)
    )
    return lb.Task("tiny", "tiny", cut, epochs=1)


@pytest.fixture(scope="module")
def points(tiny) -> dict[str, list[lb.Point]]:
    """Each entry's points on the tiny task (`point` has already checked their FLOPs against the counter)."""
    entries = lb.entries(MNIST1D)
    out = {}
    for name in NAMES:
        torch.manual_seed(0)
        out[name] = list(entries[name].train(tiny, 0))
    return out


def test_entries_are_registered_on_the_1d_board_with_their_family_and_notebook():
    entries = lb.entries(MNIST1D)
    expected = {
        "channel_gating": ("width", "channel_gating"),
        "mixture_of_experts": ("routing", "mixture_of_experts"),
        "routing_tree": ("routing", "routing_trees"),
        "dynamic_convolution": ("parameters", "dynamic_convolution"),
        "weight_prediction": ("parameters", "weight_prediction"),
        "feature_attention": ("parameters", "feature_attention"),
    }
    for name, (family, notebook) in expected.items():
        assert (entries[name].family, entries[name].notebook) == (family, notebook)
        assert entries[name].module == wp.__name__


def test_every_entry_returns_distinct_scored_points(points):
    for name, pts in points.items():
        assert pts and all(isinstance(p, lb.Point) for p in pts), name
        assert len({p.setting for p in pts}) == len(pts), name
        for p in pts:
            assert 0 <= p.val_acc <= 1 and 0 <= p.test_acc <= 1
            assert p.val_flops > 0 and p.test_flops > 0
        lb.choose(pts)  # the board's rule accepts them


def test_methods_with_a_knob_return_one_point_per_setting_and_the_others_one(points):
    assert len(points["channel_gating"]) == len(wp.TEST_KEEPS)
    assert len(points["mixture_of_experts"]) == len(wp.TEST_KS)
    assert len(points["routing_tree"]) == 2
    for name in ("dynamic_convolution", "weight_prediction", "feature_attention"):
        assert len(points[name]) == 1


def test_keeping_fewer_channels_is_charged_fewer_flops(points):
    flops = [p.test_flops for p in points["channel_gating"]]  # in the order of TEST_KEEPS, increasing
    assert flops == sorted(flops) and flops[0] < flops[-1]


def test_routing_to_fewer_experts_is_charged_fewer_flops(points):
    flops = [p.test_flops for p in points["mixture_of_experts"]]  # in the order of TEST_KS, increasing
    assert all(a < b for a, b in zip(flops, flops[1:], strict=False))


def test_hard_routing_is_cheaper_than_the_soft_tree(points):
    hard, soft = points["routing_tree"]
    assert hard.setting.startswith("hard") and hard.test_flops < soft.test_flops


def test_gated_run_computes_the_logits_of_the_sparse_execution(tiny):
    torch.manual_seed(0)
    model = wp.ChannelGatedCNN((8,) * 4, 0.5).eval()
    x = tiny.splits.test.x[:4]
    with torch.no_grad():
        dense = wp._gated_at(model, 0.25, "dense")(x).logits
        sparse = wp._gated_at(model, 0.25, "sparse")(x).logits
    torch.testing.assert_close(dense, sparse, atol=1e-4, rtol=1e-4)


def test_dynamic_filter_layer_starts_as_its_base_convolution():
    torch.manual_seed(0)
    layer = wp.DynamicFilterConv1d(3, 4)
    x = torch.randn(2, 3, 10)
    expected = torch.nn.functional.conv1d(x, layer.base, padding=2)
    torch.testing.assert_close(layer(x), expected)


def test_dynamic_filter_layer_predicts_one_filter_bank_per_input():
    torch.manual_seed(0)
    layer = wp.DynamicFilterConv1d(3, 4)
    torch.nn.init.normal_(layer.generator[-1].weight)
    x = torch.randn(2, 3, 10)
    w = layer.filters(x)
    assert w.shape == (2, 4, 3, 5) and not torch.allclose(w[0], w[1])
    each = torch.cat([torch.nn.functional.conv1d(x[i : i + 1], w[i], padding=2) for i in range(2)])
    torch.testing.assert_close(layer(x), each)


def test_dynamic_filter_cnn_reports_each_dynamic_layer_s_filters():
    out = wp.DynamicFilterCNN(4, depth=3)(torch.randn(5, 1, 40))
    assert out.logits.shape == (5, 10) and out.decisions["filters"].shape == (5, 2, 4, 4, 5)


def test_dynamic_filter_arguments_are_checked():
    with pytest.raises(ValueError, match="depth"):
        wp.DynamicFilterCNN(4, depth=1)
    with pytest.raises(ValueError, match="x must have shape"):
        wp.DynamicFilterConv1d(3, 4).filters(torch.randn(2, 5, 10))
    layer = wp.DynamicFilterConv1d(3, 4)
    with pytest.raises(ValueError, match="filters must have shape"):
        layer(torch.randn(2, 3, 10), torch.randn(1, 4, 3, 5))
