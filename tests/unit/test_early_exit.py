import pytest
import torch
import torch.nn.functional as F

from dyn_helpers.early_exit import (
    BOOK_ARCHITECTURE,
    MultiExitCNN,
    StaticCNN,
    distilled_exit_loss,
    early_exit_predictions,
    exit_flops,
    exits_at_threshold,
    summed_exit_loss,
    weighted_exit_loss,
)
from dyn_helpers.measure import count_flops, flops_per_sample


@pytest.fixture
def model():
    torch.manual_seed(0)
    return MultiExitCNN(widths=(8, 8, 8), length=12).eval()


def test_multi_exit_model_returns_one_logit_tensor_per_exit(model):
    outputs = model(torch.randn(5, 1, 12))
    assert [tuple(o.shape) for o in outputs] == [(5, 10)] * 3
    assert len(model(torch.randn(5, 1, 12), n_exits=2)) == 2


def test_threshold_zero_answers_at_the_first_exit_and_one_at_the_last(model):
    x = torch.randn(1, 1, 12)
    assert model.forward_early_exit(x, 0.0)[1] == 1
    assert model.forward_early_exit(x, 1.0)[1] == model.depth


def test_batched_rule_matches_one_input_at_a_time(model):
    x = torch.randn(40, 1, 12) * 3
    with torch.no_grad():
        logits = model(x)
        for threshold in (0.12, 0.2, 0.5):
            exits = exits_at_threshold(logits, threshold)
            predictions = early_exit_predictions(logits, exits)
            for i in range(len(x)):
                one_logits, k = model.forward_early_exit(x[i : i + 1], threshold)
                assert k == exits[i].item()
                assert one_logits.argmax().item() == predictions[i].item()


def test_an_input_is_charged_the_flops_of_the_exit_it_stopped_at(model):
    x = torch.randn(30, 1, 12) * 3
    costs = exit_flops(model, x[:1])
    assert costs == sorted(costs) and len(set(costs)) == model.depth
    counted = flops_per_sample(lambda inp: model.forward_early_exit(inp, 0.15)[0], x)
    with torch.no_grad():
        exits = exits_at_threshold(model(x), 0.15)
    assert counted.tolist() == [costs[k - 1] for k in exits.tolist()]


def test_static_twin_costs_its_blocks_and_one_head():
    static, multi = StaticCNN(2, **BOOK_ARCHITECTURE), MultiExitCNN(**BOOK_ARCHITECTURE)
    x = torch.randn(1, 1, BOOK_ARCHITECTURE["length"])
    head = 2 * 48 * 40 * 10
    assert count_flops(static, x) == exit_flops(multi, x)[1] - head


def test_summed_loss_adds_the_cross_entropy_of_every_exit():
    y = torch.tensor([0, 1])
    a, b = torch.randn(2, 10), torch.randn(2, 10)
    expected = torch.nn.functional.cross_entropy(a, y) + torch.nn.functional.cross_entropy(b, y)
    assert torch.allclose(summed_exit_loss([a, b], y), expected)


@pytest.mark.parametrize("threshold", [-0.1, 1.5])
def test_thresholds_outside_the_unit_interval_are_rejected(model, threshold):
    with pytest.raises(ValueError, match="threshold"):
        model.forward_early_exit(torch.randn(1, 1, 12), threshold)
    with pytest.raises(ValueError, match="threshold"):
        exits_at_threshold([torch.randn(2, 10)], threshold)


def test_early_exit_needs_one_input_at_a_time(model):
    with pytest.raises(ValueError, match="batch size 1"):
        model.forward_early_exit(torch.randn(2, 1, 12), 0.5)


@pytest.mark.parametrize("depth", [0, 5, 2.0, True])
def test_impossible_static_depths_are_rejected(depth):
    with pytest.raises(ValueError, match="depth"):
        StaticCNN(depth, widths=(8, 8, 8, 8))


def test_empty_outputs_and_widths_are_rejected():
    with pytest.raises(ValueError, match="at least one exit"):
        summed_exit_loss([], torch.tensor([0]))
    with pytest.raises(ValueError, match="widths"):
        MultiExitCNN(widths=())


def test_weighted_loss_with_unit_weights_is_the_summed_loss():
    y = torch.tensor([1, 2, 3])
    outputs = [torch.randn(3, 10) for _ in range(3)]
    assert torch.allclose(weighted_exit_loss(outputs, y, [1.0, 1.0, 1.0]), summed_exit_loss(outputs, y))
    assert torch.allclose(weighted_exit_loss(outputs, y, [0.0, 0.0, 2.0]), 2 * F.cross_entropy(outputs[2], y))


@pytest.mark.parametrize("weights", [[1.0], [1.0, -1.0]])
def test_weighted_loss_rejects_bad_weights(weights):
    with pytest.raises(ValueError, match="weights"):
        weighted_exit_loss([torch.randn(2, 10)] * 2, torch.tensor([0, 1]), weights)


def test_distilled_loss_without_distillation_is_the_summed_loss():
    y = torch.tensor([0, 4])
    outputs = [torch.randn(2, 10) for _ in range(3)]
    assert torch.allclose(distilled_exit_loss(outputs, y, alpha=0.0), summed_exit_loss(outputs, y))


def test_distilled_loss_is_the_cross_entropy_of_the_last_exit_when_students_agree_with_it():
    y = torch.tensor([0, 4])
    last = torch.randn(2, 10)
    loss = distilled_exit_loss([last.clone(), last], y, temperature=2.0, alpha=1.0)
    assert torch.allclose(loss, F.cross_entropy(last, y), atol=1e-6)


def test_distillation_does_not_move_the_teacher():
    teacher = torch.randn(2, 10, requires_grad=True)
    student = torch.randn(2, 10, requires_grad=True)
    distilled_exit_loss([student, teacher], torch.tensor([0, 1]), alpha=1.0).backward()
    assert torch.allclose(
        teacher.grad, torch.autograd.grad(F.cross_entropy(teacher, torch.tensor([0, 1])), teacher)[0]
    )


@pytest.mark.parametrize(
    ("kwargs", "name"), [({"temperature": 0.0}, "temperature"), ({"alpha": 1.5}, "alpha")]
)
def test_distilled_loss_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        distilled_exit_loss([torch.randn(2, 10)], torch.tensor([0, 1]), **kwargs)
