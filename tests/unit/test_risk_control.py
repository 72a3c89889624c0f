import math

import pytest
import torch
from scipy.stats import binom

from dyn_helpers.measure import registered_timing_cases
from dyn_helpers.open_problems.risk_control import (
    ThresholdSweep,
    binomial_p_value,
    breach_allowance,
    calibration_draws,
    guaranteed_threshold,
    hoeffding_p_value,
    noisy_mnist1d,
    smallest_calibration_size,
    split_trials,
    sweep_thresholds,
    tuned_threshold,
)
from dyn_helpers.sample_wise.early_exit import early_exit_predictions, exits_at_threshold

GRID = [1.0, 0.9, 0.7, 0.5, 0.0]


def _logits(n: int = 400, seed: int = 0) -> torch.Tensor:
    """Three exits' logits (3, n, 4): later exits sharper, so confidence grows with depth."""
    generator = torch.Generator().manual_seed(seed)
    base = torch.randn(n, 4, generator=generator)
    return torch.stack([base * s + torch.randn(n, 4, generator=generator) for s in (1.0, 2.0, 4.0)])


def _sweep(losses: list[list[float]], exits: list[list[int]] | None = None) -> ThresholdSweep:
    """A sweep with given per-threshold losses (T, N), thresholds from strict to loose."""
    loss = torch.tensor(losses, dtype=torch.float64)
    grid = torch.linspace(1.0, 0.0, len(loss), dtype=torch.float64)
    exit_table = torch.tensor(exits) if exits else torch.full(loss.shape, 2)
    return ThresholdSweep(grid, exit_table, loss, "disagreement", n_exits=3)


def test_the_sweep_gives_each_inputs_exit_and_loss_at_each_threshold():
    logits, labels = _logits(), torch.randint(0, 4, (400,), generator=torch.Generator().manual_seed(1))
    sweep = sweep_thresholds(logits, labels, GRID, "disagreement")
    harm = sweep_thresholds(logits, labels, GRID, "harm")
    final = logits[-1].argmax(-1)
    for i, t in enumerate(GRID):
        exits = exits_at_threshold(logits, t)
        answers = early_exit_predictions(logits, exits)
        assert torch.equal(sweep.exits[i], exits)
        assert torch.equal(sweep.losses[i].bool(), answers != final)
        assert torch.equal(harm.losses[i].bool(), (final == labels) & (answers != labels))
    assert sweep.losses[0].sum() < sweep.losses[-1].sum()  # looser thresholds disagree more often


def test_the_accuracy_lost_against_the_last_exit_is_at_most_the_harm():
    logits, labels = _logits(), torch.randint(0, 4, (400,), generator=torch.Generator().manual_seed(1))
    harm = sweep_thresholds(logits, labels, GRID, "harm")
    disagreement = sweep_thresholds(logits, labels, GRID, "disagreement")
    final_acc = (logits[-1].argmax(-1) == labels).double().mean()
    for i, t in enumerate(GRID):
        acc = (early_exit_predictions(logits, exits_at_threshold(logits, t)) == labels).double().mean()
        assert final_acc - acc <= harm.losses[i].mean() + 1e-12
        assert harm.losses[i].mean() <= disagreement.losses[i].mean()


def test_the_binomial_p_value_is_the_binomial_tail_and_hoeffdings_is_larger():
    risk = torch.tensor([0.0, 0.01, 0.02, 0.05, 0.2])
    p = binomial_p_value(risk, 200, 0.05)
    expected = [binom.cdf(round(r * 200), 200, 0.05) for r in risk.tolist()]
    assert torch.allclose(p, torch.tensor(expected, dtype=torch.float64))
    hoeffding = hoeffding_p_value(risk, 200, 0.05)
    assert (hoeffding >= p).all() and hoeffding[-2:].tolist() == [1.0, 1.0]
    assert math.isclose(hoeffding[0].item(), math.exp(-2 * 200 * 0.05**2))


def test_the_smallest_calibration_size_is_where_a_loss_free_set_first_certifies():
    for bound, p_value in (("binomial", binomial_p_value), ("hoeffding", hoeffding_p_value)):
        n = smallest_calibration_size(0.05, 0.1, bound)
        assert p_value(torch.zeros(1), n, 0.05).item() <= 0.1 < p_value(torch.zeros(1), n - 1, 0.05).item()
    assert smallest_calibration_size(0.01, 0.1, "hoeffding") > 20 * smallest_calibration_size(0.01, 0.1)


def test_fixed_sequence_testing_stops_at_the_first_threshold_it_cannot_certify():
    # 300 inputs; thresholds from strict to loose; the third is risky, the fourth safe again.
    risk_rows = [0.0, 0.01, 0.2, 0.0, 0.3]
    losses = [[1.0] * round(r * 300) + [0.0] * (300 - round(r * 300)) for r in risk_rows]
    sweep = _sweep(losses)
    assert guaranteed_threshold(sweep, 0.05, 0.1) == sweep.thresholds[1].item()
    assert tuned_threshold(sweep, 0.05) == sweep.thresholds[3].item()  # it jumps over the risky one
    assert guaranteed_threshold(_sweep([[1.0] * 300] + losses), 0.05, 0.1) is None  # full network


def test_the_guaranteed_threshold_is_never_looser_than_the_tuned_one():
    logits = _logits(600)
    sweep = sweep_thresholds(logits, None, [1 - i / 50 for i in range(51)])
    for epsilon in (0.02, 0.05, 0.1, 0.2):
        guaranteed, tuned = guaranteed_threshold(sweep, epsilon, 0.1), tuned_threshold(sweep, epsilon)
        assert guaranteed is None or (tuned is not None and guaranteed >= tuned)


def test_split_trials_choose_what_the_rules_choose_on_each_calibration_set():
    logits = _logits(300)
    sweep = sweep_thresholds(logits, None, [1 - i / 20 for i in range(21)])
    counts = calibration_draws(300, 150, 3, resample=False, seed=4)
    trials = split_trials(sweep, 150, 3, 0.1, 0.2, seed=4)
    for s in range(3):
        cal, test = counts[s].bool(), ~counts[s].bool()
        assert cal.sum() == 150
        for rule, threshold in (
            ("guaranteed", guaranteed_threshold(sweep, 0.1, 0.2, rows=cal.nonzero()[:, 0])),
            ("tuned", tuned_threshold(sweep, 0.1, rows=cal.nonzero()[:, 0])),
        ):
            exits = torch.full((300,), 3) if threshold is None else exits_at_threshold(logits, threshold)
            final = logits[-1].argmax(-1)
            loss = (early_exit_predictions(logits, exits) != final).double()
            assert math.isclose(getattr(trials, f"{rule}_risk")[s].item(), loss[test].mean().item())
            assert math.isclose(getattr(trials, f"{rule}_cost")[s].item(), exits[test].double().mean().item())


def test_resampled_draws_have_replacement_and_measure_on_the_whole_pool():
    counts = calibration_draws(50, 40, 200, resample=True, seed=0)
    assert (counts.sum(1) == 40).all() and counts.max() > 1
    sweep = _sweep([[0.0] * 25 + [1.0] * 25], exits=[[1] * 50])
    trials = split_trials(sweep, 40, 10, 0.9, 0.5, resample=True)
    assert torch.all((trials.tuned_risk == 0.5) & (trials.tuned_cost == 1.0))
    assert trials.full_cost == 3.0  # the last of the sweep's three exits, though no input reached it


def test_the_guarantee_holds_over_many_calibration_sets():
    logits = _logits(2000, seed=3)
    sweep = sweep_thresholds(logits, None, [1 - i / 40 for i in range(41)])
    trials = split_trials(sweep, 400, 400, 0.05, 0.1, resample=True)
    assert trials.breach_rate("guaranteed") <= breach_allowance(400, 0.1)
    assert trials.breach_rate("tuned") > trials.breach_rate("guaranteed")
    assert (trials.guaranteed_cost >= trials.tuned_cost).all()


def test_the_breach_allowance_is_a_binomial_upper_quantile():
    allowance = breach_allowance(500, 0.1, level=1e-3)
    assert 0.1 < allowance < 0.16
    assert binom.sf(allowance * 500, 500, 0.1) <= 1e-3


def test_noisy_mnist1d_adds_noise_of_the_given_share_of_the_sd():
    clean, noisy = noisy_mnist1d(0.0), noisy_mnist1d(0.5, seed=2)
    residual = noisy.test.x - clean.test.x
    assert torch.equal(clean.test.y, noisy.test.y) and "noise 0.5" in noisy.name
    assert abs(residual.std().item() / clean.train.x.std().item() - 0.5) < 0.02
    assert torch.equal(noisy_mnist1d(0.5, seed=2).val.x, noisy.val.x)


@pytest.mark.parametrize("bad", [0, 1, -0.1, 1.5, True, "0.1"])
def test_epsilon_and_delta_must_lie_strictly_between_0_and_1(bad):
    sweep = _sweep([[0.0] * 300])
    with pytest.raises(ValueError, match="epsilon must be a number in the open interval"):
        guaranteed_threshold(sweep, bad, 0.1)
    with pytest.raises(ValueError, match="delta must be a number in the open interval"):
        guaranteed_threshold(sweep, 0.1, bad)
    with pytest.raises(ValueError, match="epsilon"):
        tuned_threshold(sweep, bad)


def test_a_calibration_set_too_small_for_the_bound_names_the_smallest_size():
    sweep = _sweep([[0.0] * 20])
    needed = smallest_calibration_size(0.05, 0.1)
    with pytest.raises(ValueError, match=f"fewer than {needed}"):
        guaranteed_threshold(sweep, 0.05, 0.1)
    with pytest.raises(ValueError, match=f"fewer than {smallest_calibration_size(0.05, 0.1, 'hoeffding')}"):
        split_trials(_sweep([[0.0] * 2000]), 300, 5, 0.05, 0.1, bound="hoeffding")


def test_bad_logits_labels_and_options_are_refused():
    logits = _logits(10)
    with pytest.raises(ValueError, match="shape"):
        sweep_thresholds(torch.zeros(3, 0, 4), None, GRID)
    with pytest.raises(ValueError, match="labels must have shape"):
        sweep_thresholds(logits, torch.zeros(9, dtype=torch.long), GRID)
    with pytest.raises(ValueError, match="needs the labels"):
        sweep_thresholds(logits, None, GRID, "harm")
    with pytest.raises(ValueError, match="decrease strictly"):
        sweep_thresholds(logits, None, [0.5, 0.9])
    with pytest.raises(ValueError, match="loss must be one of"):
        sweep_thresholds(logits, None, GRID, "accuracy")
    with pytest.raises(ValueError, match="bound must be one of"):
        smallest_calibration_size(0.1, 0.1, "chernoff")
    with pytest.raises(TypeError, match="ThresholdSweep"):
        tuned_threshold(logits, 0.1)
    with pytest.raises(ValueError, match="rows must be"):
        tuned_threshold(_sweep([[0.0] * 5]), 0.1, rows=torch.tensor([7]))
    with pytest.raises(ValueError, match="leave a test part"):
        split_trials(_sweep([[0.0] * 300]), 300, 5, 0.1, 0.1)
    with pytest.raises(ValueError, match="non-negative"):
        noisy_mnist1d(-1.0)


def test_the_chapter_registers_gpu_timing_cases():
    cases = registered_timing_cases()["guaranteed_exits"](torch.device("cpu"))
    assert set(cases) == {"early_exit_threshold_0_15", "static_depth_4"}
