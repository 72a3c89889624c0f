import pytest
import torch

from dyn_helpers.sample_wise.gates import Gate
from dyn_helpers.training.efficiency import expected_usage
from dyn_helpers.training.estimators import (
    binary_concrete,
    gumbel_softmax,
    leave_one_out_baseline,
    reinforce_surrogate,
    straight_through_bernoulli,
    straight_through_categorical,
)


def test_straight_through_forward_is_exactly_zero_or_one():
    z = straight_through_bernoulli(torch.rand(1000))
    assert set(z.unique().tolist()) <= {0.0, 1.0}


def test_straight_through_gradient_equals_the_sigmoid_derivative():
    theta = torch.linspace(-3, 3, 13, requires_grad=True)
    straight_through_bernoulli(torch.sigmoid(theta)).sum().backward()
    sigma = torch.sigmoid(theta.detach())
    assert torch.allclose(theta.grad, sigma * (1 - sigma))


def test_straight_through_categorical_is_one_hot_with_the_softmax_gradient():
    theta = torch.randn(50, 4, requires_grad=True)
    z = straight_through_categorical(torch.softmax(theta, -1))
    assert torch.equal(z.detach().sum(-1), torch.ones(50))
    assert set(z.detach().unique().tolist()) <= {0.0, 1.0}
    v = torch.arange(4.0)
    (z * v).sum().backward()
    expected = torch.autograd.functional.vjp(lambda t: torch.softmax(t, -1), theta.detach(), v.expand(50, 4))[
        1
    ]
    assert torch.allclose(theta.grad, expected, atol=1e-6)


def test_gumbel_softmax_samples_sum_to_one():
    y = gumbel_softmax(torch.randn(100, 5), temperature=0.7)
    assert torch.allclose(y.sum(-1), torch.ones(100), atol=1e-6)
    assert (y > 0).all()


def test_gumbel_softmax_becomes_one_hot_as_temperature_falls():
    logits = torch.randn(2000, 4)
    top = [
        gumbel_softmax(logits, t, generator=torch.Generator().manual_seed(0)).amax(-1).mean()
        for t in (5, 1, 0.1, 0.01)
    ]
    assert all(a < b for a, b in zip(top, top[1:], strict=False))
    assert top[-1] > 0.99


def test_hard_gumbel_softmax_is_one_hot_forward_and_soft_backward():
    logits = torch.randn(10, 3, requires_grad=True)
    y = gumbel_softmax(logits, 1.0, hard=True)
    assert torch.equal(y.detach().sum(-1), torch.ones(10))
    (y * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert logits.grad.abs().sum() > 0


def test_binary_concrete_opens_with_probability_sigmoid_of_the_logit_at_any_temperature():
    logits = torch.full((200_000,), 0.8)
    for temperature in (0.1, 1.0, 3.0):
        z = binary_concrete(logits, temperature, hard=True, generator=torch.Generator().manual_seed(1))
        assert set(z.detach().unique().tolist()) <= {0.0, 1.0}
        assert abs(z.mean().item() - torch.sigmoid(torch.tensor(0.8)).item()) < 0.005


def test_reinforce_estimate_is_unbiased_on_a_two_outcome_problem():
    # E[f(z)] with z ~ Bernoulli(sigmoid(theta)), f(0) = 1, f(1) = 3: gradient 2 * sigmoid'(theta).
    theta = torch.full((400_000,), 0.5, requires_grad=True)
    p = torch.sigmoid(theta)
    z = torch.bernoulli(p.detach(), generator=torch.Generator().manual_seed(0))
    log_prob = z * torch.log(p) + (1 - z) * torch.log(1 - p)
    reinforce_surrogate(log_prob, 1 + 2 * z).sum().backward()
    s = torch.sigmoid(torch.tensor(0.5)).item()
    assert abs(theta.grad.mean().item() - 2 * s * (1 - s)) < 0.005


def test_a_constant_baseline_leaves_the_mean_and_cuts_the_variance():
    theta = torch.full((400_000,), 0.5, requires_grad=True)
    p = torch.sigmoid(theta)
    z = torch.bernoulli(p.detach(), generator=torch.Generator().manual_seed(0))
    log_prob = z * torch.log(p) + (1 - z) * torch.log(1 - p)
    plain = torch.autograd.grad(reinforce_surrogate(log_prob, 1 + 2 * z).sum(), theta, retain_graph=True)[0]
    based = torch.autograd.grad(reinforce_surrogate(log_prob, 1 + 2 * z, 2.2).sum(), theta)[0]
    assert abs(plain.mean() - based.mean()) < 0.01
    assert based.var() < 0.5 * plain.var()


def test_leave_one_out_baseline_is_the_mean_of_the_others():
    cost = torch.tensor([1.0, 2.0, 6.0])
    assert torch.allclose(leave_one_out_baseline(cost), torch.tensor([4.0, 3.5, 1.5]))


@pytest.mark.parametrize("temperature", [0.0, -1.0])
def test_a_temperature_that_is_not_positive_is_rejected(temperature):
    with pytest.raises(ValueError, match="temperature"):
        gumbel_softmax(torch.zeros(3), temperature)
    with pytest.raises(ValueError, match="temperature"):
        binary_concrete(torch.zeros(3), temperature)
    with pytest.raises(ValueError, match="temperature"):
        Gate(3, "gumbel", temperature=temperature)


def test_probabilities_outside_the_unit_interval_are_rejected():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        straight_through_bernoulli(torch.tensor([0.5, 1.2]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        expected_usage(torch.tensor([-0.1]))
