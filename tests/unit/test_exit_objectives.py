import pytest
import torch
import torch.nn.functional as F

from dyn_helpers.outputs import ModelOutput
from dyn_helpers.training.exit_objectives import distilled_exit_loss, summed_exit_loss, weighted_exit_loss


def exits_output(exit_logits: list[torch.Tensor]) -> ModelOutput:
    """What a MultiExitCNN returns without a threshold, for the given exits' logits."""
    return ModelOutput(exit_logits[-1], extras={"exit_logits": exit_logits})


def test_the_summed_loss_adds_the_cross_entropy_of_every_exit():
    y = torch.tensor([0, 1])
    a, b = torch.randn(2, 10), torch.randn(2, 10)
    expected = F.cross_entropy(a, y) + F.cross_entropy(b, y)
    assert torch.allclose(summed_exit_loss(exits_output([a, b]), y), expected)


def test_the_losses_read_every_exit_from_the_models_output(model):
    x, y = torch.randn(4, 1, 12), torch.tensor([0, 1, 2, 3])
    output = model(x)
    expected = sum(F.cross_entropy(logits, y) for logits in output.extras["exit_logits"])
    assert torch.equal(summed_exit_loss(output, y), expected)
    with pytest.raises(TypeError, match="ModelOutput"):
        summed_exit_loss(output.extras["exit_logits"], y)
    model.exit_threshold = 0.5
    with pytest.raises(ValueError, match="exit_threshold None"):
        summed_exit_loss(model(x), y)


def test_weighted_loss_with_unit_weights_is_the_summed_loss():
    y = torch.tensor([1, 2, 3])
    output = exits_output([torch.randn(3, 10) for _ in range(3)])
    assert torch.allclose(weighted_exit_loss(output, y, [1.0, 1.0, 1.0]), summed_exit_loss(output, y))
    last = output.extras["exit_logits"][2]
    assert torch.allclose(weighted_exit_loss(output, y, [0.0, 0.0, 2.0]), 2 * F.cross_entropy(last, y))


@pytest.mark.parametrize("weights", [[1.0], [1.0, -1.0]])
def test_weighted_loss_rejects_bad_weights(weights):
    with pytest.raises(ValueError, match="weights"):
        weighted_exit_loss(exits_output([torch.randn(2, 10)] * 2), torch.tensor([0, 1]), weights)


def test_distilled_loss_without_distillation_is_the_summed_loss():
    y = torch.tensor([0, 4])
    output = exits_output([torch.randn(2, 10) for _ in range(3)])
    assert torch.allclose(distilled_exit_loss(output, y, beta=0.0), summed_exit_loss(output, y))


def test_distilled_loss_is_the_cross_entropy_of_the_last_exit_when_students_agree_with_it():
    y = torch.tensor([0, 4])
    last = torch.randn(2, 10)
    loss = distilled_exit_loss(exits_output([last.clone(), last]), y, temperature=2.0, beta=1.0)
    assert torch.allclose(loss, F.cross_entropy(last, y), atol=1e-6)


def test_distillation_does_not_move_the_teacher():
    teacher = torch.randn(2, 10, requires_grad=True)
    student = torch.randn(2, 10, requires_grad=True)
    distilled_exit_loss(exits_output([student, teacher]), torch.tensor([0, 1]), beta=1.0).backward()
    assert torch.allclose(
        teacher.grad, torch.autograd.grad(F.cross_entropy(teacher, torch.tensor([0, 1])), teacher)[0]
    )


@pytest.mark.parametrize(("kwargs", "name"), [({"temperature": 0.0}, "temperature"), ({"beta": 1.5}, "beta")])
def test_distilled_loss_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        distilled_exit_loss(exits_output([torch.randn(2, 10)]), torch.tensor([0, 1]), **kwargs)
