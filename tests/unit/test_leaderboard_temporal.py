"""The temporal-wise entries of the 1-D board: what each one trains and how its points are charged."""

from pathlib import Path

import pytest
import torch

from dyn_helpers.leaderboard import board as lb
from dyn_helpers.leaderboard import temporal
from dyn_helpers.leaderboard.static import MNIST1D
from dyn_helpers.measure import count_flops
from dyn_helpers.temporal.skipping import StaticGRU
from dyn_helpers.temporal.stopping import reader_flops

CHAPTERS = Path(__file__).resolve().parents[2] / "chapters"
STATIC = ("static_rnn_h16", "static_rnn_h48")
DYNAMIC = ("skip_rnn", "skim_rnn", "lstm_jump", "early_stopping", "frame_selection")


@pytest.fixture(scope="module")
def tiny(small_task) -> lb.Task:
    """The board's data cut to a few hundred inputs, with a budget of 1 epoch."""
    return small_task(lb.task(MNIST1D), 256, 96, 64, epochs=1)


@pytest.fixture(scope="module")
def points(tiny: lb.Task) -> dict[str, list[lb.Point]]:
    """Every entry's points on the tiny task (`point` has checked each one's FLOPs with the counter)."""
    entries = lb.entries(MNIST1D)
    torch.manual_seed(0)
    return {name: list(entries[name].train(tiny, 0)) for name in STATIC + DYNAMIC}


def test_entries_are_registered_on_the_1d_board_with_their_families_and_notebooks() -> None:
    entries = lb.entries(MNIST1D)
    for name in STATIC + DYNAMIC:
        e = entries[name]
        assert e.board == MNIST1D and e.module == temporal.__name__
        assert e.family == ("static" if name in STATIC else "temporal")
        assert list(CHAPTERS.glob(f"04_temporal/{e.notebook}.ipynb")), f"{name}: no notebook {e.notebook}"
    assert {entries[name].notebook for name in DYNAMIC} == set(DYNAMIC)


def test_static_rnns_return_one_point_at_the_cost_of_a_gru_over_all_40_steps(points: dict) -> None:
    for name, hidden in zip(STATIC, temporal.STATIC_HIDDEN, strict=True):
        (p,) = points[name]
        assert p.val_flops == p.test_flops == reader_flops(hidden, 40, patch=1, n_classes=10)


def test_every_dynamic_entry_returns_distinct_points_with_accuracies(points: dict) -> None:
    for name in DYNAMIC:
        pts = points[name]
        assert len(pts) >= 2, name
        assert len({p.setting for p in pts}) == len(pts), name
        assert all(0 <= p.test_acc <= 1 and p.test_flops > 0 for p in pts), name
        assert lb.choose(pts) in pts


def test_skip_and_skim_are_charged_no_more_than_every_step_plus_their_decisions(points: dict) -> None:
    for name in ("skip_rnn", "skim_rnn"):
        dynamic, full = points[name]
        assert full.setting.startswith("full")
        assert dynamic.test_flops < 1.1 * full.test_flops, name  # at most a decision per step on top


def test_a_smaller_jump_budget_reads_fewer_samples(points: dict) -> None:
    flops = [p.test_flops for p in points["lstm_jump"]]
    assert [p.setting for p in points["lstm_jump"]] == [f"N = {n} jumps" for n in temporal.JUMP_BUDGETS]
    assert flops == sorted(flops)
    assert flops[-1] <= reader_flops(temporal.HIDDEN, 40, patch=1, n_classes=10) * 1.05


def test_stopping_earlier_is_cheaper_and_reading_everything_costs_most(points: dict) -> None:
    for name in ("early_stopping", "frame_selection"):
        *rules, every = points[name]
        assert every.setting.startswith("none")
        assert all(p.test_flops <= every.test_flops for p in rules), name
    confidence = [p for p in points["early_stopping"] if p.setting.startswith("confidence")]
    assert [p.val_flops for p in confidence] == sorted(p.val_flops for p in confidence)


def test_as_steps_feeds_a_sequence_as_one_sample_per_step() -> None:
    gru = StaticGRU(1, 4, 10).eval()
    x = torch.randn(3, 1, 40)
    assert torch.equal(temporal.AsSteps(gru)(x), gru(x.transpose(1, 2)))
    with pytest.raises(ValueError, match=r"\(N, 1, L\)"):
        temporal.AsSteps(gru)(torch.randn(3, 40))


def test_windows_are_the_frames_of_frame_exit() -> None:
    model = temporal.window_exit_net(10).eval()
    x = torch.randn(2, 1, 40)
    out = model(x)
    assert out.logits.shape == (2, 10) and out.executed.shape == (2, temporal.N_WINDOWS)
    frames = x.unfold(2, temporal.WINDOW, temporal.STRIDE)
    assert frames.shape[2] == temporal.N_WINDOWS  # 8 windows of 12 samples, 4 apart, cover the 40
    every = temporal.AsWindows(temporal._as(model.net, rule="none", execution="stepwise"), 12, 4)
    first = temporal.AsWindows(
        temporal._as(model.net, rule="gate", threshold=0.0, execution="stepwise"), 12, 4
    )
    assert count_flops(first, x[:1]) < count_flops(every, x[:1]) / 4  # stepwise: later windows never encoded
    with pytest.raises(ValueError, match="8 windows"):
        model(torch.randn(2, 1, 36))
    with pytest.raises(ValueError, match="multiple of 4"):
        temporal.WindowEncoder((4, 4), 8, window=10)
