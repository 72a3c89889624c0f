"""Specifications of the canvas board and chapter 3's spatial entries on it."""

import pytest
import torch

from dyn_helpers.leaderboard import board as lb
from dyn_helpers.leaderboard import spatial as sp

DYNAMIC = {
    "sparse_convolution": "sparse_convolution",
    "glance_and_focus": "glance_and_focus",
    "resolution_adaptive": "resolution_adaptive",
    "token_keeping": "token_reduction",
    "token_merging": "token_reduction",
}
# two settings of each entry, the first cheaper by construction
EXTREMES = {
    "sparse_convolution": ("top 5% of positions", "top 50% of positions"),
    "glance_and_focus": ("glance only", "two glimpses for every canvas"),
    "resolution_adaptive": ("low resolution only", "both resolutions for every canvas"),
    "token_keeping": ("r = 20 tokens per block", "r = 0 tokens per block"),
    "token_merging": ("r = 20 tokens per block", "r = 0 tokens per block"),
}


@pytest.fixture(scope="module")
def tiny(small_task) -> lb.Task:
    """The canvas board cut to 192 training and 48 validation and test canvases, one epoch."""
    return small_task(lb.task(sp.CANVAS), 192, 48, 48, epochs=1)


@pytest.fixture(scope="module")
def points(tiny) -> dict[str, list[lb.Point]]:
    """Each dynamic entry's points on the tiny task (`point` has already checked their FLOPs against the counter)."""
    entries = lb.entries(sp.CANVAS)
    out = {}
    for name in DYNAMIC:
        torch.manual_seed(0)
        out[name] = list(entries[name].train(tiny, 0))
    return out


def test_the_canvas_board_holds_digits_that_cover_at_most_a_quarter_of_the_canvas():
    task = lb.task(sp.CANVAS)
    assert task.splits.input_shape == (1, sp.CANVAS_SIZE, sp.CANVAS_SIZE)
    box = task.splits.test.box
    share = (box[:, 2] * box[:, 3]).float() / sp.CANVAS_SIZE**2
    assert share.max() <= 0.25
    assert set((box[:, 2] // 8).tolist()) == {1, 2}  # both scales, for resolution-adaptive inference
    assert (task.epochs, task.lr, task.batch_size) == (sp.EPOCHS, sp.LR, sp.BATCH)


def test_spatial_entries_are_registered_on_the_canvas_board_with_their_notebook():
    entries = lb.entries(sp.CANVAS)
    for name, notebook in DYNAMIC.items():
        assert (entries[name].family, entries[name].notebook) == ("spatial", notebook)
        assert entries[name].module == sp.__name__


def test_the_static_front_holds_a_twin_from_every_notebook():
    statics = [e for e in lb.entries(sp.CANVAS).values() if e.is_static]
    assert {e.name for e in statics} == {f"canvas_static_{n}" for n in sp.STATICS}
    assert {e.notebook for e in statics} == set(DYNAMIC.values())


def test_a_static_entry_returns_one_point_of_fixed_cost(tiny):
    torch.manual_seed(0)
    (p,) = lb.entries(sp.CANVAS)["canvas_static_glimpse_w16_half"].train(tiny, 0)
    assert p.val_flops == p.test_flops > 0


def test_each_entry_returns_several_distinct_settings(points):
    for name, pts in points.items():
        assert len(pts) >= 5, name
        assert len({p.setting for p in pts}) == len(pts), name
        assert all(0.0 <= p.test_acc <= 1.0 for p in pts), name


def test_a_cheaper_setting_is_charged_fewer_flops(points):
    for name, (cheap, dear) in EXTREMES.items():
        by_setting = {p.setting: p for p in points[name]}
        assert by_setting[cheap].test_flops < by_setting[dear].test_flops, name


def test_sparse_convolution_charges_each_canvas_for_the_positions_its_mask_runs(points):
    by_setting = {p.setting: p for p in points["sparse_convolution"]}
    densities = [f"top {d:.0%} of positions" for d in sp.DENSITIES]
    flops = [by_setting[s].test_flops for s in densities]
    assert flops == sorted(flops) and len(set(flops)) == len(flops)


def test_the_chosen_point_runs_batched_with_the_accuracy_it_was_scored_with(points, tiny):
    chosen = lb.choose(points["glance_and_focus"])
    with torch.no_grad():
        logits = chosen.run(tiny.splits.test.x)
    accuracy = (logits.logits.argmax(1) == tiny.splits.test.y).float().mean().item()
    assert accuracy == pytest.approx(chosen.test_acc)
