import pytest
import torch

from dyn_helpers.outputs import ModelOutput
from dyn_helpers.sample_wise.halting import ACTResidualCNN, halting_weights, ponder_loss


def test_halting_weights_stop_at_the_first_block_reaching_one_minus_epsilon():
    scores = torch.tensor([[0.3, 0.5, 0.4, 0.2], [0.995, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.1]])
    weights, steps, remainder = halting_weights(scores, epsilon=0.01)
    assert steps.tolist() == [3, 1, 4]
    assert remainder.tolist() == pytest.approx([0.2, 1.0, 0.7])
    assert weights[0].tolist() == pytest.approx([0.3, 0.5, 0.2, 0.0])
    assert weights[1].tolist() == pytest.approx([1.0, 0.0, 0.0, 0.0])
    assert weights[2].tolist() == pytest.approx([0.1, 0.1, 0.1, 0.7])


def test_halting_weights_sum_to_one_for_every_input():
    scores = torch.rand(64, 5, generator=torch.Generator().manual_seed(0))
    weights, steps, remainder = halting_weights(scores)
    assert torch.allclose(weights.sum(dim=1), torch.ones(64))
    assert (weights >= 0).all()
    assert ((steps >= 1) & (steps <= 5)).all()
    assert (remainder > 0).all()


def test_the_last_block_always_halts_whatever_its_score():
    weights, steps, remainder = halting_weights(torch.zeros(2, 3))
    assert steps.tolist() == [3, 3]
    assert remainder.tolist() == [1.0, 1.0]
    assert weights[:, -1].tolist() == [1.0, 1.0]


def test_the_remainder_carries_the_gradient_of_the_ponder_cost():
    scores = torch.tensor([[0.2, 0.3, 0.9, 0.5]], requires_grad=True)
    _, steps, remainder = halting_weights(scores)
    (steps + remainder).sum().backward()
    assert scores.grad.tolist() == [[-1.0, -1.0, 0.0, 0.0]]


def test_act_network_returns_logits_steps_blocks_run_and_ponder_cost():
    torch.manual_seed(0)
    model = ACTResidualCNN(3, 8).eval()
    output = model(torch.randn(5, 1, 40))
    steps, ponder = output.decisions["steps"], output.extras["ponder"]
    assert isinstance(output, ModelOutput) and output.logits.shape == (5, 10)
    assert ((steps >= 1) & (steps <= 3)).all()
    assert torch.all(ponder >= steps) and torch.all(ponder <= steps + 1)
    assert torch.equal(output.executed, torch.arange(3) < steps[:, None])


def test_in_training_every_block_runs_on_every_input():
    torch.manual_seed(0)
    output = ACTResidualCNN(3, 8).train()(torch.randn(5, 1, 40))
    assert output.executed is None
    assert output.extras["ponder"].requires_grad


def test_a_negative_halting_bias_runs_every_block_and_a_positive_one_halts_after_the_first():
    torch.manual_seed(0)
    x = torch.randn(6, 1, 40)
    for bias, expected in [(-6.0, 4), (6.0, 1)]:
        model = ACTResidualCNN(4, 8, halting_bias=bias).eval()
        for unit in model.halt:
            torch.nn.init.zeros_(unit.weight)
        assert model(x).decisions["steps"].tolist() == [expected] * 6


def test_in_evaluation_a_halted_input_runs_no_further_block():
    torch.manual_seed(0)
    model = ACTResidualCNN(4, 8, halting_bias=-1.5).eval()
    for unit in model.halt:
        torch.nn.init.normal_(unit.weight, std=2.0)
    seen = []
    for block in model.blocks:
        block.register_forward_hook(lambda module, args, out: seen.append(len(args[0])))
    x = torch.randn(32, 1, 40) * torch.linspace(0.1, 5, 32).view(-1, 1, 1)  # inputs of many scales
    output = model(x)
    steps = output.decisions["steps"]
    ran = [int((steps > block).sum()) for block in range(4)]
    assert output.executed.sum(dim=0).tolist() == ran
    assert seen == [n for n in ran if n > 0]
    assert len(set(steps.tolist())) > 1


def test_evaluation_and_training_modes_agree_when_batch_norm_is_fixed():
    torch.manual_seed(0)
    model = ACTResidualCNN(4, 8, halting_bias=-0.5)
    for unit in model.halt:
        torch.nn.init.normal_(unit.weight, std=2.0)
    x = torch.randn(16, 1, 40)
    model.eval()
    expected = model(x)
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.eval()
    got = model(x)
    assert torch.equal(got.decisions["steps"], expected.decisions["steps"])
    assert torch.allclose(got.logits, expected.logits, atol=1e-5)
    assert torch.allclose(got.extras["ponder"], expected.extras["ponder"], atol=1e-6)


def test_ponder_loss_adds_tau_times_the_mean_ponder_cost():
    logits = torch.zeros(2, 10)
    y = torch.tensor([0, 1])
    output = ModelOutput(logits, extras={"ponder": torch.tensor([2.5, 3.5])})
    base = ponder_loss(0.0)(output, y)
    assert ponder_loss(0.1)(output, y).item() == pytest.approx(base.item() + 0.3)


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, True, "0.01"])
def test_bad_epsilon_is_rejected(bad):
    with pytest.raises(ValueError, match="epsilon"):
        halting_weights(torch.rand(2, 3), epsilon=bad)
    with pytest.raises(ValueError, match="epsilon"):
        ACTResidualCNN(2, 4, epsilon=bad)


def test_bad_scores_are_rejected():
    with pytest.raises(ValueError, match="shape"):
        halting_weights(torch.rand(3))
    with pytest.raises(ValueError, match="shape"):
        halting_weights(torch.rand(3, 0))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        halting_weights(torch.tensor([[0.5, 1.5]]))


@pytest.mark.parametrize("kwargs", [{"n_blocks": 0}, {"width": 0}, {"n_blocks": 2.0}, {"width": True}])
def test_bad_sizes_are_rejected(kwargs):
    with pytest.raises(ValueError, match="positive int"):
        ACTResidualCNN(**{"n_blocks": 2, "width": 4, **kwargs})


@pytest.mark.parametrize("bad", [-0.1, True, "0.1"])
def test_bad_tau_is_rejected(bad):
    with pytest.raises(ValueError, match="tau"):
        ponder_loss(bad)
