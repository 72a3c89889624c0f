import pytest
import torch

from dyn_helpers import train
from dyn_helpers.data import Split
from dyn_helpers.gates import (
    Gate,
    GatedResidualCNN,
    binary_concrete,
    expected_usage,
    gumbel_softmax,
    leave_one_out_baseline,
    reinforce_surrogate,
    straight_through_bernoulli,
    straight_through_categorical,
    target_rate_loss,
)
from dyn_helpers.measure import count_flops, flops_per_sample
from dyn_helpers.outputs import ModelOutput


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


def test_gate_decides_zero_or_one_per_input_and_is_deterministic_in_eval():
    for estimator in ("straight_through", "gumbel", "reinforce"):
        gate = Gate(6, estimator)
        out = gate(torch.randn(32, 6))
        assert out.decision.shape == (32,) and set(out.decision.detach().unique().tolist()) <= {0.0, 1.0}
        gate.eval()
        x = torch.randn(32, 6)
        assert torch.equal(gate(x).decision, (gate(x).prob > 0.5).float())


def test_only_reinforce_gates_pass_no_gradient_through_the_decision():
    for estimator, has_grad in (("straight_through", True), ("gumbel", True), ("reinforce", False)):
        gate = Gate(4, estimator)
        assert gate(torch.randn(8, 4)).decision.requires_grad is has_grad


def test_gated_network_returns_logits_gates_and_what_the_losses_need():
    model = GatedResidualCNN(3, 8, length=12)
    output = model(torch.randn(5, 1, 12))
    assert isinstance(output, ModelOutput) and output.logits.shape == (5, 10)
    gates = output.decisions["gates"]
    assert gates.shape == output.extras["probs"].shape == output.extras["log_probs"].shape == (5, 3)
    assert set(gates.detach().unique().tolist()) <= {0.0, 1.0}
    assert output.executed is None  # training computes every block and masks it


def test_evaluation_reports_the_open_gates_as_the_blocks_that_ran():
    model = GatedResidualCNN(3, 8, length=12).eval()
    output = model(torch.randn(5, 1, 12))
    assert torch.equal(output.executed, output.decisions["gates"])
    expected = torch.where(output.decisions["gates"] > 0, output.extras["probs"], 1 - output.extras["probs"])
    assert torch.allclose(output.extras["log_probs"], expected.log(), atol=1e-6)


def test_a_closed_gate_skips_its_block_at_inference():
    torch.manual_seed(0)
    model = GatedResidualCNN(3, 8, length=12).eval()
    for gate in model.gates:
        torch.nn.init.zeros_(gate.logit.weight)
    x = torch.randn(4, 1, 12)
    all_open = flops_per_sample(model, x)
    for gate in model.gates:
        torch.nn.init.constant_(gate.logit.bias, -1.0)
    all_closed = flops_per_sample(model, x)
    block = count_flops(GatedResidualCNN(1, 8, estimator=None, length=12), x[:1]) - count_flops(
        GatedResidualCNN(0, 8, estimator=None, length=12), x[:1]
    )
    assert torch.equal(all_open - all_closed, torch.full((4,), 3 * block))


def test_masked_execution_gives_the_same_logits_but_computes_every_block():
    torch.manual_seed(0)
    model = GatedResidualCNN(3, 8, length=12).eval()
    for gate in model.gates:
        torch.nn.init.constant_(gate.logit.bias, -1.0)
    x = torch.randn(4, 1, 12)
    sparse = model(x)
    model.execution = "masked"
    masked = model(x)
    assert masked.executed is None and torch.equal(masked.decisions["gates"], sparse.decisions["gates"])
    assert torch.allclose(masked.logits, sparse.logits, atol=1e-6)
    every_block = count_flops(GatedResidualCNN(3, 8, estimator=None, length=12), x[:1])
    gates = sum(count_flops(gate, torch.zeros(1, 8)) for gate in model.gates)
    assert count_flops(model, x[:1]) == every_block + gates


def test_an_unknown_execution_mode_is_rejected():
    with pytest.raises(ValueError, match="execution"):
        GatedResidualCNN(2, 8, execution="dense")
    model = GatedResidualCNN(2, 8)
    with pytest.raises(ValueError, match="execution"):
        model.execution = "lazy"
    assert model.execution == "sparse"


def test_static_twin_returns_plain_logits():
    model = GatedResidualCNN(2, 8, estimator=None, length=12)
    logits = model(torch.randn(3, 1, 12))
    assert isinstance(logits, torch.Tensor) and logits.shape == (3, 10)


def test_training_helpers_take_the_gated_network_without_adapters():
    model = GatedResidualCNN(2, 8, length=40)
    split = Split(torch.randn(20, 1, 40), torch.randint(0, 10, (20,)))
    train.fit(model, split, epochs=1, batch_size=8)
    output = train.predict(model, split.x, batch_size=7)
    assert output.decisions["gates"].shape == (20, 2) and torch.equal(
        output.executed, output.decisions["gates"]
    )
    loss, accuracy = train.evaluate(model, split)
    assert loss > 0 and 0 <= accuracy <= 1


def test_efficiency_losses():
    probs = torch.tensor([[0.2, 1.0], [0.4, 0.0]])
    assert expected_usage(probs).item() == pytest.approx(0.4)
    assert target_rate_loss(probs, 0.5).item() == pytest.approx(((0.3 - 0.5) ** 2 + 0.0) / 2)


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


@pytest.mark.parametrize("target", [-0.1, 1.5])
def test_target_rates_outside_the_unit_interval_are_rejected(target):
    with pytest.raises(ValueError, match="target"):
        target_rate_loss(torch.full((4, 2), 0.5), target)


def test_unknown_estimators_and_mismatched_shapes_are_rejected():
    with pytest.raises(ValueError, match="estimator"):
        Gate(3, "magic")
    with pytest.raises(ValueError, match="estimator"):
        GatedResidualCNN(2, 8, estimator="magic")
    with pytest.raises(ValueError, match="same shape"):
        reinforce_surrogate(torch.zeros(3), torch.zeros(4))
