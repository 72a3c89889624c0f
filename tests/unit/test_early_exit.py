import pytest
import torch

from dyn_helpers.layers import StaticCNN
from dyn_helpers.measure import count_flops, flops_per_sample
from dyn_helpers.outputs import ModelOutput
from dyn_helpers.sample_wise.early_exit import (
    BOOK_ARCHITECTURE,
    MultiExitCNN,
    early_exit_predictions,
    exit_flops,
    exits_at_threshold,
)
from dyn_helpers.training.exit_objectives import summed_exit_loss


def test_the_model_answers_with_its_last_exit_and_reports_every_exit():
    torch.manual_seed(0)
    model = MultiExitCNN(widths=(8, 8, 8), length=12)
    output = model(torch.randn(5, 1, 12))
    assert isinstance(output, ModelOutput) and model.exit_threshold is None
    assert [tuple(o.shape) for o in output.extras["exit_logits"]] == [(5, 10)] * 3
    assert output.logits is output.extras["exit_logits"][-1]
    assert output.decisions == {} and output.executed is None


def test_threshold_zero_answers_at_the_first_exit_and_one_at_the_last(model):
    x = torch.randn(4, 1, 12)
    model.exit_threshold = 0.0
    first = model(x)
    model.exit_threshold = 1.0
    last = model(x)
    assert first.decisions["exit"].tolist() == [1] * 4
    assert last.decisions["exit"].tolist() == [model.depth] * 4
    assert first.executed.tolist() == [[1, 0, 0]] * 4 and last.executed.tolist() == [[1, 1, 1]] * 4
    model.exit_threshold = None
    assert torch.equal(model(x).logits, last.logits)


def test_early_exiting_answers_with_the_exit_each_input_stopped_at(model):
    x = torch.randn(40, 1, 12) * 3
    with torch.no_grad():
        exit_logits = model(x).extras["exit_logits"]
        for threshold in (0.5, 0.7, 0.9):
            exits = exits_at_threshold(exit_logits, threshold)
            assert 1 < len(exits.unique())  # a mix of exits, so the rows really split
            model.exit_threshold = threshold
            batch = model(x)
            assert torch.equal(batch.decisions["exit"], exits)
            assert torch.equal(batch.logits.argmax(1), early_exit_predictions(exit_logits, exits))
            assert torch.equal(batch.executed, model.paths[exits])
            for i in range(len(x)):  # one input at a time: the same exits and the same answers
                one = model(x[i : i + 1])
                assert one.decisions["exit"].item() == exits[i].item()
                assert torch.allclose(one.logits[0], batch.logits[i], atol=1e-5)
            model.exit_threshold = None


def test_an_input_is_charged_the_flops_of_the_exit_it_stopped_at(model):
    x = torch.randn(30, 1, 12) * 3
    costs = exit_flops(model, x[:1])
    assert costs == sorted(costs) and len(set(costs)) == model.depth
    with torch.no_grad():
        exits = exits_at_threshold(model(x).extras["exit_logits"], 0.7)
    assert len(exits.unique()) == model.depth
    model.exit_threshold = 0.7
    counted = flops_per_sample(model, x)
    assert counted.tolist() == [costs[k - 1] for k in exits.tolist()]
    assert count_flops(model, x) == sum(counted.tolist())  # a batch runs only what its inputs need


def test_static_twin_costs_its_blocks_and_one_head():
    static, multi = StaticCNN(2, **BOOK_ARCHITECTURE), MultiExitCNN(**BOOK_ARCHITECTURE)
    x = torch.randn(1, 1, BOOK_ARCHITECTURE["length"])
    head = 2 * 48 * 40 * 10
    assert count_flops(static, x) == exit_flops(multi, x)[1] - head


@pytest.mark.parametrize("threshold", [-0.1, 1.5])
def test_thresholds_outside_the_unit_interval_are_rejected(model, threshold):
    with pytest.raises(ValueError, match="threshold"):
        model.exit_threshold = threshold
    with pytest.raises(ValueError, match="threshold"):
        MultiExitCNN(widths=(8,), length=12, exit_threshold=threshold)
    with pytest.raises(ValueError, match="threshold"):
        exits_at_threshold([torch.randn(2, 10)], threshold)


def test_the_batched_rules_take_the_list_of_exit_logits_not_the_output(model):
    output = model(torch.randn(3, 1, 12))
    with pytest.raises(TypeError, match="exit_logits"):
        exits_at_threshold(output, 0.5)


@pytest.mark.parametrize("depth", [0, 5, 2.0, True])
def test_impossible_static_depths_are_rejected(depth):
    with pytest.raises(ValueError, match="depth"):
        StaticCNN(depth, widths=(8, 8, 8, 8))


def test_empty_outputs_and_widths_are_rejected():
    with pytest.raises(ValueError, match="every exit's logits"):
        summed_exit_loss(ModelOutput(torch.randn(1, 10)), torch.tensor([0]))
    with pytest.raises(ValueError, match="widths"):
        MultiExitCNN(widths=())
