"""Specifications of the payoff sweeps: the harness, the data they sweep, and each family's points."""

from dataclasses import replace

import pytest
import torch

from dyn_helpers.leaderboard.board import Point, Task
from dyn_helpers.payoff import depth, spatial, sweeps, temporal
from dyn_helpers.tools import payoff as tool


def _tiny(task: Task, n_train: int = 200, n_eval: int = 60) -> Task:
    """The same task on a few inputs and one epoch: fast enough for a unit test."""
    s = task.splits
    splits = replace(s, train=_head(s.train, n_train), val=_head(s.val, n_eval), test=_head(s.test, n_eval))
    return replace(task, splits=splits, epochs=1)


def _head(split, n):
    return replace(split, x=split.x[:n], y=split.y[:n], difficulty=None, box=None)


def _point(setting: str, acc: float, flops: float) -> Point:
    return Point(setting, acc, acc, flops, flops, run=lambda x: x)


def test_gap_is_accuracy_above_the_convex_hull_of_the_statics():
    statics = [_point("small", 0.5, 100.0), _point("large", 0.7, 300.0)]
    # Halfway between the statics, a random mix of them reaches 60%.
    assert sweeps.gap(_point("dyn", 0.65, 200.0), statics) == pytest.approx(5.0)
    assert sweeps.gap(_point("dyn", 0.55, 200.0), statics) == pytest.approx(-5.0)


def test_gap_below_the_cheapest_static_compares_with_it():
    statics = [_point("small", 0.5, 100.0), _point("large", 0.7, 300.0)]
    assert sweeps.gap(_point("dyn", 0.45, 50.0), statics) == pytest.approx(-5.0)


def test_every_family_registers_sweeps_with_increasing_values():
    for family in sweeps.FAMILIES:
        registered = sweeps.sweeps(family)
        assert registered, family
        for s in registered:
            assert s.family == family and len(s.values) >= 3
            assert list(s.values) == sorted(s.values)


def test_unknown_family_is_refused():
    with pytest.raises(ValueError, match="family"):
        sweeps.sweeps("width")
    with pytest.raises(SystemExit, match="unknown"):
        tool.make_records(["width"])


def test_fingerprint_depends_on_the_family():
    assert len({sweeps.fingerprint(f) for f in sweeps.FAMILIES}) == len(sweeps.FAMILIES)


def test_hard_mix_adds_noise_to_the_stated_share_only():
    task = depth.mix_task(0.4)
    clean = depth.hard_mix(task.splits, 0.0)
    assert (clean.train.difficulty == 0).all()
    share = (task.splits.train.difficulty > 0).float().mean().item()
    assert share == pytest.approx(0.4, abs=0.05)
    with pytest.raises(ValueError, match="share"):
        depth.hard_mix(task.splits, 1.5)


def test_embedded_at_keeps_the_digit_within_its_reach():
    splits = temporal.embedded_at(100, reach=0.25)
    offsets = splits.test.box[:, 1]
    assert offsets.min() >= 0 and offsets.max() <= 15
    with pytest.raises(ValueError, match="multiple"):
        temporal.embedded_at(102)


def _run(s: sweeps.Sweep, value: float) -> dict:
    torch.manual_seed(0)
    return sweeps.run_value(s, _tiny(s.task(value)), seed=3)


def _check_run(run: dict, n_statics: int, strict: bool = True) -> None:
    assert len(run["statics"]) == n_statics
    assert run["chosen"] in [p["setting"] for p in run["dynamic"]]
    assert run["best_gap"] >= run["gap"]
    flops = [p["test_flops"] for p in run["dynamic"]]  # from the cheapest setting to the dearest
    assert flops == sorted(flops), "a stricter setting is never charged fewer FLOPs"
    if strict:
        assert flops[0] < flops[-1], "the cheapest setting is charged fewer FLOPs than the dearest"


def test_depth_sweep_scores_early_exit_against_every_static_depth():
    s = sweeps.sweeps("depth")[0]
    _check_run(_run(s, s.values[-1]), n_statics=depth.DEPTH)


def test_temporal_sweep_scores_the_reader_against_four_static_readers():
    s = sweeps.sweeps("temporal")[0]
    # After one epoch on a few sequences the reader is rarely sure: its settings may all read everything.
    _check_run(_run(s, s.values[0]), n_statics=4, strict=False)


def test_spatial_sweep_scores_glance_and_focus_against_the_static_cnns():
    s = sweeps.sweeps("spatial")[0]
    _check_run(_run(s, s.values[0]), n_statics=len(spatial.STATICS))
