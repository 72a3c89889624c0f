import pytest
import torch

from dyn_helpers import train
from dyn_helpers.data import Split
from dyn_helpers.measure import count_flops, flops_per_sample
from dyn_helpers.outputs import ModelOutput
from dyn_helpers.sample_wise.gates import Gate, GatedResidualCNN
from dyn_helpers.training.estimators import (
    reinforce_surrogate,
)


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


def test_unknown_estimators_and_mismatched_shapes_are_rejected():
    with pytest.raises(ValueError, match="estimator"):
        Gate(3, "magic")
    with pytest.raises(ValueError, match="estimator"):
        GatedResidualCNN(2, 8, estimator="magic")
    with pytest.raises(ValueError, match="same shape"):
        reinforce_surrogate(torch.zeros(3), torch.zeros(4))
