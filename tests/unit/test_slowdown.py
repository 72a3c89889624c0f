"""Specification of `dyn_helpers.open_problems.slowdown`: attacks on the saving of dynamic networks."""

import math

import pytest
import torch

from dyn_helpers.open_problems.slowdown import (
    check_budget,
    efficacy_lost,
    gate_opening_loss,
    pgd,
    random_sign_noise,
    uniform_exit_loss,
    universal_perturbation,
)


def test_the_uniform_exit_loss_is_smallest_at_uniform_exits_and_ignores_the_last():
    uniform = [torch.zeros(3, 10), torch.zeros(3, 10)]
    confident = [torch.eye(10)[:3] * 20, torch.zeros(3, 10)]
    assert uniform_exit_loss(uniform).item() == pytest.approx(math.log(10))
    assert uniform_exit_loss(confident) > uniform_exit_loss(uniform)
    last_changed = [torch.zeros(3, 10), torch.eye(10)[:3] * 20]
    assert uniform_exit_loss(last_changed) == uniform_exit_loss(uniform)


def test_the_gate_opening_loss_is_zero_when_every_gate_is_sure_to_open():
    assert gate_opening_loss(torch.ones(4, 3)).item() == pytest.approx(0.0)
    assert gate_opening_loss(torch.full((4, 3), 0.5)).item() == pytest.approx(math.log(2))
    assert torch.isfinite(gate_opening_loss(torch.zeros(2, 2)))


def test_pgd_stays_within_the_budget_and_lowers_the_objective():
    x = torch.randn(8, 1, 5)
    target = torch.randn(8, 1, 5)

    def objective(z):
        return ((z - target) ** 2).sum()

    attacked = pgd(objective, x, eps=0.3, steps=10)
    assert (attacked - x).abs().max() <= 0.3 + 1e-6
    assert objective(attacked) < objective(x)
    assert not attacked.requires_grad


def test_pgd_reaches_the_corner_of_the_box_for_a_linear_objective():
    x = torch.zeros(2, 1, 3)
    attacked = pgd(lambda z: z.sum(), x, eps=0.5, steps=4)
    assert torch.allclose(attacked, torch.full_like(x, -0.5))


def test_a_universal_perturbation_is_one_change_within_the_budget_for_every_input():
    x = torch.randn(20, 1, 6)
    delta = universal_perturbation(lambda z: z.mean(), x, eps=0.2, epochs=2, batch_size=7)
    assert delta.shape == (1, 1, 6) and delta.abs().max() <= 0.2 + 1e-6
    assert torch.allclose(delta, torch.full_like(delta, -0.2))


def test_random_sign_noise_moves_every_coordinate_by_exactly_eps_and_repeats_with_its_seed():
    x = torch.randn(5, 1, 4)
    noisy = random_sign_noise(x, 0.1, seed=3)
    assert torch.allclose((noisy - x).abs(), torch.full_like(x, 0.1))
    assert torch.equal(noisy, random_sign_noise(x, 0.1, seed=3))


def test_efficacy_lost_is_the_share_of_the_saving_taken_away():
    assert efficacy_lost(50.0, 50.0, 100.0) == 0.0
    assert efficacy_lost(50.0, 100.0, 100.0) == 1.0
    assert efficacy_lost(40.0, 70.0, 100.0) == pytest.approx(0.5)
    assert efficacy_lost(40.0, 30.0, 100.0) < 0  # an attack can also make inputs cheaper


@pytest.mark.parametrize("eps", [0, -0.1, float("inf"), float("nan"), True, "0.1", None])
def test_an_attack_budget_that_is_not_positive_is_refused(eps):
    with pytest.raises(ValueError, match="eps, the attack budget, must be a positive number"):
        check_budget(eps)
    with pytest.raises(ValueError, match="eps"):
        pgd(lambda z: z.sum(), torch.zeros(1, 1, 2), eps)


def test_bad_inputs_and_step_counts_are_refused_with_their_names():
    with pytest.raises(ValueError, match="steps"):
        pgd(lambda z: z.sum(), torch.zeros(1, 1, 2), 0.1, steps=0)
    with pytest.raises(ValueError, match="non-empty batch"):
        pgd(lambda z: z.sum(), torch.zeros(0, 1, 2), 0.1)
    with pytest.raises(TypeError, match="floating-point"):
        random_sign_noise(torch.zeros(2, 3, dtype=torch.int64), 0.1)
    with pytest.raises(ValueError, match="at least two exits"):
        uniform_exit_loss([torch.zeros(2, 10)])
    with pytest.raises(ValueError, match="gate_probs"):
        gate_opening_loss(torch.ones(3))


def test_efficacy_needs_a_saving_to_lose():
    with pytest.raises(ValueError, match="no saving to lose"):
        efficacy_lost(100.0, 100.0, 100.0)
    with pytest.raises(ValueError, match="attacked_cost"):
        efficacy_lost(10.0, -1.0, 100.0)
