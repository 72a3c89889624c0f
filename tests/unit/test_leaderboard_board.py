"""The leaderboard's harness: one rule for the operating point, the static front as a convex hull,
FLOPs that are counted and checked, and a budget no entry may exceed."""

from dataclasses import replace

import pytest
import torch
from torch import nn

from dyn_helpers import data
from dyn_helpers.layers import StaticCNN
from dyn_helpers.leaderboard import board as lb


def _p(setting, val_acc, val_flops, test_acc=0.5, test_flops=None):
    return lb.Point(
        setting, val_acc, test_acc, val_flops, val_flops if test_flops is None else test_flops, run=None
    )


def test_the_rule_takes_the_cheapest_point_within_one_point_of_the_best_validation_accuracy():
    points = [_p("cheap", 0.60, 1.0), _p("middle", 0.695, 2.0), _p("full", 0.70, 3.0)]
    assert lb.choose(points).setting == "middle"
    assert lb.choose([_p("cheap", 0.60, 1.0), _p("full", 0.70, 3.0)]).setting == "full"


def test_the_rule_refuses_no_points_and_repeated_settings():
    with pytest.raises(ValueError, match="non-empty"):
        lb.choose([])
    with pytest.raises(ValueError, match="distinct"):
        lb.choose([_p("a", 0.5, 1.0), _p("a", 0.6, 2.0)])


def test_the_front_is_the_upper_convex_hull_a_mix_of_two_static_networks_reaches():
    statics = [(1.0, 50.0), (2.0, 70.0), (3.0, 72.0), (4.0, 90.0)]
    # (3, 72) lies under the segment from (2, 70) to (4, 90): a 50/50 mix of those reaches 80.
    assert lb.front_at(statics, 3.0) == pytest.approx(80.0)
    assert lb.front_at(statics, 1.5) == pytest.approx(60.0)
    assert lb.front_at(statics, 10.0) == pytest.approx(90.0)
    assert lb.front_at(statics, 0.5) is None


def test_the_front_never_falls_when_a_dearer_static_network_is_worse():
    statics = [(1.0, 50.0), (2.0, 80.0), (4.0, 60.0)]
    assert lb.front_at(statics, 3.0) == pytest.approx(80.0)
    assert lb.front_at(statics, 4.0) == pytest.approx(80.0)


@pytest.fixture(scope="module")
def tiny():
    splits = data.mnist1d()
    small = replace(
        splits,
        train=replace(splits.train, x=splits.train.x[:256], y=splits.train.y[:256]),
        val=replace(splits.val, x=splits.val.x[:64], y=splits.val.y[:64]),
        test=replace(splits.test, x=splits.test.x[:64], y=splits.test.y[:64]),
    )
    return lb.Task("tiny", "a few MNIST-1D sequences", small, epochs=1)


def test_a_static_point_is_counted_once_and_checked_input_by_input(tiny):
    model = StaticCNN(1, widths=(8,))
    p = lb.point(tiny, "depth 1", model)
    assert p.val_flops == p.test_flops > 0
    assert 0 <= p.test_acc <= 1


def test_flops_charged_that_the_counter_does_not_measure_are_an_error(tiny):
    model = StaticCNN(1, widths=(8,))
    with pytest.raises(ValueError, match="the counter measures"):
        lb.point(tiny, "wrong", model, flops_each=lambda x: torch.full((len(x),), 1.0))


def test_a_task_trains_within_its_budget_and_no_further(tiny):
    model = nn.Sequential(nn.Flatten(), nn.Linear(40, 10))
    assert len(tiny.fit(model, seed=0)) == 1
    with pytest.raises(ValueError, match="budget"):
        tiny.fit(model, seed=0, epochs=2)


def test_entries_name_a_known_family():
    with pytest.raises(ValueError, match="family"):
        lb.entry("x", label="x", family="magic", board="mnist1d", notebook="early_exiting")


def test_every_entry_names_a_registered_board_and_static_entries_exist_for_it():
    entries = lb.entries()
    for name in lb.boards():
        assert any(e.is_static for e in entries.values() if e.board == name), name
    assert all(e.board in lb.boards() for e in entries.values())
