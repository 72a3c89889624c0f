"""The 1-D board's entries of chapters 6 and 7: guaranteed, dense, transformer and deadline exits."""

from pathlib import Path

import pytest
import torch

from dyn_helpers.applications.deadline import SimulatedClock, answer_by_deadline
from dyn_helpers.leaderboard import board as lb
from dyn_helpers.leaderboard import exits_beyond as eb
from dyn_helpers.leaderboard.static import MNIST1D
from dyn_helpers.measure import count_flops
from dyn_helpers.open_problems.architecture import DenseExitCNN, dense_exit_flops
from dyn_helpers.sample_wise.early_exit import BOOK_ARCHITECTURE, MultiExitCNN, exit_flops

CHAPTERS = Path(__file__).resolve().parents[2] / "chapters"
NAMES = (
    "risk_controlled_exit",
    "dense_exits",
    "exit_transformer_confidence",
    "exit_transformer_patience",
    "anytime_deadline",
)


@pytest.fixture(scope="module")
def tiny(small_task) -> lb.Task:
    """The board's data cut to a few hundred inputs, with a budget of 1 epoch. The validation split
    keeps 300 inputs: Learn-then-Test needs 230 to certify anything at epsilon 0.01, delta 0.1."""
    return small_task(lb.task(MNIST1D), 256, 300, 64, epochs=1)


@pytest.fixture(scope="module")
def points(tiny: lb.Task) -> dict[str, dict[str, lb.Point]]:
    """Every entry's points on the tiny task, by setting (`point` has checked each one's FLOPs)."""
    entries = lb.entries(MNIST1D)
    return {name: {p.setting: p for p in entries[name].train(tiny, 0)} for name in NAMES}


def test_entries_are_registered_on_the_1d_board_under_depth_with_their_notebooks() -> None:
    entries = lb.entries(MNIST1D)
    for name in NAMES:
        e = entries[name]
        assert e.family == "depth" and e.board == MNIST1D and e.module == eb.__name__
        assert list(CHAPTERS.glob(f"*/{e.notebook}.ipynb")), f"{name}: no notebook {e.notebook}"


def test_every_entry_returns_one_point_per_setting_of_its_knob(points: dict) -> None:
    expected = {
        "risk_controlled_exit": [f"ε = {e:g}" for e in eb.EPSILONS],
        "dense_exits": [f"τ = {t:g}" for t in eb.THRESHOLDS],
        "exit_transformer_confidence": [f"τ = {t:g}" for t in eb.THRESHOLDS],
        "exit_transformer_patience": [f"π = {p}" for p in eb.PATIENCES],
        "anytime_deadline": [f"deadline {d:g} blocks" for d in eb.DEADLINES],
    }
    for name, settings in expected.items():
        assert list(points[name]) == settings, name
        assert all(0 <= p.test_acc <= 1 and p.test_flops > 0 for p in points[name].values()), name


def test_a_larger_risk_certifies_a_looser_threshold_and_costs_no_more(points: dict, tiny: lb.Task) -> None:
    flops = [points["risk_controlled_exit"][f"ε = {e:g}"].val_flops for e in eb.EPSILONS]
    assert flops == sorted(flops, reverse=True)
    every_exit = exit_flops(MultiExitCNN(**BOOK_ARCHITECTURE), tiny.splits.test.x[:1])
    assert every_exit[0] <= flops[-1] and flops[0] <= every_exit[-1]


def test_confidence_exits_cost_more_as_the_threshold_rises(points: dict) -> None:
    for name in ("dense_exits", "exit_transformer_confidence"):
        flops = [points[name][f"τ = {t:g}"].val_flops for t in eb.THRESHOLDS]
        assert flops == sorted(flops), name


def test_patience_costs_more_as_it_grows_and_the_longest_runs_every_block(points: dict) -> None:
    flops = [points["exit_transformer_patience"][f"π = {p}"].val_flops for p in eb.PATIENCES]
    assert flops == sorted(flops)
    model = eb.SignalExitTransformer(**eb.TRANSFORMER)
    assert flops[-1] == model.exit_flops(torch.zeros(1, 1, 40))[-1]


def test_a_longer_deadline_reaches_a_deeper_exit_and_the_full_deadline_the_last(
    points: dict, tiny: lb.Task
) -> None:
    flops = [points["anytime_deadline"][f"deadline {d:g} blocks"].test_flops for d in eb.DEADLINES]
    assert flops == sorted(flops)
    every_exit = exit_flops(MultiExitCNN(**BOOK_ARCHITECTURE), tiny.splits.test.x[:1])
    assert flops[0] == every_exit[0] and flops[-1] == every_exit[-1]
    assert set(flops) <= set(every_exit)


def test_dense_early_exit_answers_from_the_exit_each_input_took() -> None:
    torch.manual_seed(0)
    model = DenseExitCNN((8, 8, 8), length=12).eval()
    with torch.no_grad():
        for head in model.exits:
            head.weight.mul_(10)  # sure enough for inputs to leave at each exit
        x = torch.randn(64, 1, 12)
        every = torch.stack(model(x).extras["exit_logits"])
        out = eb.dense_exit_early(model, x, 0.9)
    exits = out.decisions["exit"]
    assert len(exits.unique()) > 1
    torch.testing.assert_close(out.logits, every[exits - 1, torch.arange(len(x))])
    assert torch.equal(exits, eb._confidence_rule(0.9)(every))
    costs = dense_exit_flops(model, x[:1])
    for i in range(4):  # at batch size 1 only the blocks up to its exit run
        assert count_flops(lambda z: eb.dense_exit_early(model, z, 0.9), x[i : i + 1]) == costs[exits[i] - 1]


def test_dense_early_exit_rejects_other_models_and_thresholds_outside_the_unit_interval() -> None:
    with pytest.raises(TypeError, match="DenseExitCNN"):
        eb.dense_exit_early(MultiExitCNN((8,), length=12), torch.randn(2, 1, 12), 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        eb.dense_exit_early(DenseExitCNN((8,), length=12), torch.randn(2, 1, 12), 1.5)


def test_the_signal_transformer_reads_patches_of_a_signal_and_exits_like_the_kit() -> None:
    torch.manual_seed(0)
    model = eb.SignalExitTransformer(patch=4, depth=3, width=8, heads=2).eval()
    assert model.length == 10
    x = torch.randn(5, 1, 40)
    with torch.no_grad():
        every = model(x).extras["exit_logits"]
        model.rule = "confidence"
        model.set_threshold(0.0)
        first = model(x)
    assert len(every) == 3 and every[0].shape == (5, 10)
    assert (first.decisions["exit"] == 1).all()
    torch.testing.assert_close(first.logits, every[0])
    with pytest.raises(TypeError, match="float"):
        model(torch.zeros(5, 40, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(N, 1, 40\)"):
        model(torch.randn(5, 40))
    with pytest.raises(ValueError, match="patch"):
        eb.SignalExitTransformer(patch=3)


def test_the_batched_deadline_answers_as_the_kit_controller_does_one_input_at_a_time() -> None:
    torch.manual_seed(0)
    model = MultiExitCNN((8, 8, 8), length=12).eval()
    x = torch.randn(6, 1, 12)
    costs = exit_flops(model, x[:1])
    steps = [costs[0], costs[1] - costs[0], costs[2] - costs[1]]
    for deadline in (costs[0], (costs[1] + costs[2]) / 2, costs[2]):
        with torch.no_grad():
            batch = eb.answer_batch_by_deadline(model, x, deadline, costs)
        for i in range(len(x)):
            one = answer_by_deadline(model, x[i : i + 1], deadline, SimulatedClock(costs), step_times=steps)
            assert one.exit == batch.decisions["exit"][i]
            torch.testing.assert_close(one.logits[0], batch.logits[i])
    with pytest.raises(ValueError, match="first exit"):
        eb.answer_batch_by_deadline(model, x, costs[0] / 2, costs)
