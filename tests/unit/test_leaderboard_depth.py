"""The dynamic-depth entries of the 1-D board: what each one trains and how its points are charged."""

import dataclasses
from pathlib import Path

import pytest
import torch

from dyn_helpers.layers import StaticCNN
from dyn_helpers.leaderboard import board as lb
from dyn_helpers.leaderboard import depth
from dyn_helpers.leaderboard.static import MNIST1D
from dyn_helpers.measure import count_flops
from dyn_helpers.sample_wise.early_exit import BOOK_ARCHITECTURE, MultiExitCNN, exit_flops
from dyn_helpers.sample_wise.gates import GatedResidualCNN

CHAPTERS = Path(__file__).resolve().parents[2] / "chapters"
NAMES = ("early_exit", "layer_skipping", "blockdrop", "halting")


@pytest.fixture(scope="module")
def tiny(small_task) -> lb.Task:
    """The board's data cut to a few hundred inputs, with a budget of 2 epochs."""
    return small_task(lb.task(MNIST1D), 256, 96, 64, epochs=2)


@pytest.fixture(scope="module")
def points(tiny: lb.Task) -> dict[str, list[lb.Point]]:
    """Every entry's points on the tiny task (`point` has checked each one's FLOPs with the counter)."""
    entries = lb.entries(MNIST1D)
    return {name: list(entries[name].train(tiny, 0)) for name in NAMES}


def test_entries_are_registered_on_the_1d_board_under_depth_with_their_notebooks() -> None:
    entries = lb.entries(MNIST1D)
    for name in NAMES:
        e = entries[name]
        assert e.family == "depth" and e.board == MNIST1D and e.module == depth.__name__
        assert list(CHAPTERS.glob(f"*/{e.notebook}.ipynb")), f"{name}: no notebook {e.notebook}"


def test_stages_split_the_whole_budget_and_need_two_epochs(tiny: lb.Task) -> None:
    assert depth.stages(tiny) == (1, 1)
    assert sum(depth.stages(lb.task(MNIST1D))) == lb.task(MNIST1D).epochs
    with pytest.raises(ValueError, match="at least 2 epochs"):
        depth.stages(dataclasses.replace(tiny, epochs=1))


def test_every_entry_returns_several_distinct_points_from_one_training(points: dict) -> None:
    for name, pts in points.items():
        assert len(pts) >= 5, name
        assert len({p.setting for p in pts}) == len(pts), name
        assert all(0 <= p.test_acc <= 1 and p.test_flops > 0 for p in pts), name
        assert lb.choose(pts) in pts


def test_early_exit_costs_more_as_the_threshold_rises_between_its_first_and_last_exit(
    points: dict, tiny: lb.Task
) -> None:
    pts = {p.setting: p for p in points["early_exit"]}
    swept = [pts[f"threshold {t:g}"].val_flops for t in depth.EXIT_THRESHOLDS]
    assert swept == sorted(swept)
    static = count_flops(StaticCNN(4, **BOOK_ARCHITECTURE).eval(), tiny.splits.test.x[:1])
    assert pts["last exit only"].val_flops == static
    every_exit = exit_flops(MultiExitCNN(**BOOK_ARCHITECTURE), tiny.splits.test.x[:1])
    assert every_exit[0] <= swept[0] and swept[-1] <= every_exit[-1]


def test_a_gate_opens_exactly_when_its_probability_exceeds_the_threshold() -> None:
    for p, opens in ((0.69, False), (0.71, True)):
        model = GatedResidualCNN(1, 4).eval()
        torch.nn.init.constant_(model.gates[0].logit.bias, torch.logit(torch.tensor(p)).item())
        depth._open_above(0.7)(model)
        assert bool(model.gates[0](torch.zeros(1, 4)).decision) is opens


def test_layer_skipping_charges_the_dearest_threshold_no_less_than_the_cheapest(points: dict) -> None:
    pts = points["layer_skipping"]
    assert [p.setting for p in pts] == [f"gate opens above {t:g}" for t in depth.GATE_THRESHOLDS]
    assert pts[-1].val_flops <= pts[0].val_flops


def test_blockdrop_keeps_the_greedy_plan_and_spends_more_as_it_keeps_more_on_validation(points: dict) -> None:
    pts = points["blockdrop"]
    assert pts[0].setting == "keep above 1/2"
    swept = [p.val_flops for p in pts[1:]]
    assert swept == sorted(swept) and swept[0] < swept[-1]


def test_halting_runs_fewer_blocks_as_the_slack_grows(points: dict) -> None:
    pts = points["halting"]
    assert [p.setting for p in pts] == [f"epsilon {e:g}" for e in depth.EPSILONS]
    swept = [p.val_flops for p in pts]
    assert swept == sorted(swept, reverse=True)
