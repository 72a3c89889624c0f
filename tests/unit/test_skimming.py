"""Skim-RNN on GRU cells (dyn_helpers.temporal.skimming)."""

import math

import pytest
import torch
import torch.nn.functional as F

from dyn_helpers import measure
from dyn_helpers.temporal.skimming import (
    FULL_READ,
    SKIM,
    SkimGRU,
    counted_flops,
    part_flops,
    skim_rnn_loss,
    width_for_flops,
)
from dyn_helpers.temporal.skipping import StaticGRU


def _sequences(n: int = 6, length: int = 20, symbols: int = 5, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return F.one_hot(torch.randint(symbols, (n, length), generator=gen), symbols).float()


def _model(execution: str = "masked", seed: int = 0) -> SkimGRU:
    torch.manual_seed(seed)
    model = SkimGRU(5, 8, 3, 3).eval()
    with torch.no_grad():
        model.decide.weight.mul_(6.0)  # choices that vary from token to token
        model.decide.bias.copy_(torch.tensor([0.0, 1.0]))  # and skims that are common
    model.execution = execution
    return model


def _as(model: SkimGRU, execution: str) -> SkimGRU:
    twin = SkimGRU(5, 8, 3, 3).eval()
    twin.load_state_dict(model.state_dict())
    twin.execution = execution
    return twin


def test_the_skimming_execution_gives_the_masked_outputs_at_batch_one():
    x = _sequences()
    masked = _model()
    skimming = _as(masked, "skimming")
    for i in range(len(x)):
        a, b = masked(x[i : i + 1]), skimming(x[i : i + 1])
        assert torch.equal(a.decisions["reads"], b.decisions["reads"])
        assert torch.allclose(a.logits, b.logits, atol=1e-6)
    shares = masked(x).decisions["reads"].mean(1)
    assert 0.1 < shares.min() and shares.max() < 0.9 and len(torch.unique(shares)) > 1  # real skims, varied


def test_the_skimming_execution_runs_each_input_of_a_batch_alone_and_agrees_with_masked():
    x = _sequences(8, 30, seed=1)
    masked = _model(seed=1)
    a, b = masked(x), _as(masked, "skimming")(x)
    assert torch.equal(a.decisions["reads"], b.decisions["reads"])
    assert torch.equal(a.executed, b.executed)
    assert torch.allclose(a.logits, b.logits, atol=1e-5)


def test_a_skim_updates_only_the_first_small_dimensions_and_copies_the_rest():
    model = _model()
    h = torch.randn(4, 8)
    new = model.skim(_sequences(4, 1)[:, 0], h)
    assert torch.equal(new[:, 3:], h[:, 3:]) and not torch.equal(new[:, :3], h[:, :3])


def test_a_model_that_always_reads_fully_is_the_full_execution_and_one_that_always_skims_is_the_small_cell():
    x = _sequences()
    model = _model()
    with torch.no_grad():
        model.decide.weight.zero_()
        model.decide.bias.copy_(torch.tensor([1.0, 0.0]))  # full read is likelier
    out = model(x)
    assert (out.decisions["reads"] == 1).all()
    assert torch.allclose(out.logits, _as(model, "full")(x).logits, atol=1e-6)
    with torch.no_grad():
        model.decide.bias.copy_(torch.tensor([0.0, 1.0]))
    h = torch.zeros(len(x), 8)
    for t in range(x.shape[1]):
        h[:, :3] = model.small(x[:, t], h[:, :3])
    assert (model(x).decisions["reads"] == 0).all()
    assert torch.allclose(model(x).logits, model.head(h), atol=1e-6)


def test_a_tie_between_the_two_choices_reads_fully_in_every_execution():
    model = _model()
    with torch.no_grad():
        model.decide.weight.zero_()
        model.decide.bias.zero_()
    x = _sequences(2, 5)
    assert (model(x).decisions["reads"] == 1).all()
    assert (_as(model, "skimming")(x).decisions["reads"] == 1).all()


def test_in_training_the_choice_is_a_hard_gumbel_sample_whose_gradient_reaches_the_decision_maker():
    model = _model().train()
    x = _sequences()
    out = model(x)
    assert set(out.extras["reads"].detach().unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(out.decisions["reads"], out.extras["reads"].detach())
    skim_rnn_loss(0.5)(out, torch.zeros(6, dtype=torch.long)).backward()
    assert model.decide.weight.grad.abs().sum() > 0
    assert model.big.weight_hh.grad.abs().sum() > 0 and model.small.weight_hh.grad.abs().sum() > 0


def test_the_budget_term_is_the_weight_times_the_share_of_full_reads():
    model = _model().train()
    x, y = _sequences(), torch.zeros(6, dtype=torch.long)
    torch.manual_seed(3)
    out = model(x)
    ce = F.cross_entropy(out.logits, y)
    expected = ce + 0.25 * out.decisions["reads"].mean()
    assert skim_rnn_loss(0.25)(out, y).item() == pytest.approx(expected.item())


def test_flops_count_the_chosen_cells_of_skimming_and_both_cells_at_every_step_when_masked():
    x = _sequences(1, 20)
    model = _model()
    part = part_flops(model)
    assert part["big"] > part["small"] > 0 and part["decide"] > 0 and part["head"] > 0
    reads = model(x).decisions["reads"]
    n_full = int(reads.sum().item())
    assert 0 < n_full < 20
    allowed = n_full * part["big"] + (20 - n_full) * part["small"] + 20 * part["decide"] + part["head"]
    assert measure.count_flops(_as(model, "skimming"), x) == allowed == counted_flops(model, reads).item()
    assert measure.count_flops(model, x) == 20 * (part["big"] + part["small"] + part["decide"]) + part["head"]
    assert measure.count_flops(_as(model, "full"), x) == 20 * part["big"] + part["head"]


def test_flops_counted_from_the_decisions_equal_flops_run_by_skimming_sequence_by_sequence():
    x = _sequences(5, 16, seed=2)
    model = _model(seed=2)
    reads = model(x).decisions["reads"]
    run = measure.flops_per_sample(_as(model, "skimming"), x).double()
    assert torch.equal(counted_flops(model, reads), run)


def test_the_widest_gru_within_a_budget_costs_at_most_the_budget_and_one_more_unit_costs_more():
    x = torch.zeros(1, 10, 5)
    budget = measure.count_flops(StaticGRU(5, 6, 3).eval(), x) + 1
    assert width_for_flops(5, 3, 10, budget) == 6
    assert width_for_flops(5, 3, 10, budget - 2) == 5


@pytest.mark.parametrize("small", [8, 9])
def test_the_small_cell_must_be_narrower_than_the_state(small):
    with pytest.raises(ValueError, match="small must be below hidden = 8"):
        SkimGRU(5, 8, small, 3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_symbols": 0}, "n_symbols must be a positive int"),
        ({"small": 0}, "small must be a positive int"),
        ({"hidden": 2.5}, "hidden must be a positive int"),
        ({"temperature": 0.0}, "temperature must be positive"),
        ({"execution": "jumping"}, "execution must be one of"),
    ],
)
def test_bad_model_arguments_are_rejected(kwargs, message):
    arguments = {"n_symbols": 5, "hidden": 8, "small": 3, "n_classes": 3} | kwargs
    execution = arguments.pop("execution", "masked")
    temperature = arguments.pop("temperature", 1.0)
    with pytest.raises(ValueError, match=message):
        SkimGRU(*arguments.values(), temperature=temperature, execution=execution)


def test_models_reject_empty_sequences_and_wrong_shapes():
    model = _model()
    with pytest.raises(ValueError, match="empty sequences"):
        model(torch.zeros(2, 0, 5))
    with pytest.raises(ValueError, match=r"shape \(N, T, 5\)"):
        model(torch.zeros(2, 4, 6))
    with pytest.raises(ValueError, match=r"shape \(N, T, 5\)"):
        model(torch.zeros(0, 4, 5))
    with pytest.raises(TypeError, match="x must be a tensor"):
        model([[0.0]])
    with pytest.raises(ValueError, match="evaluation only"):
        _as(model, "skimming").train()(torch.zeros(1, 4, 5))


@pytest.mark.parametrize("weight", [-0.1, math.nan, True, "1"])
def test_the_budget_weight_must_be_a_non_negative_number(weight):
    with pytest.raises(ValueError, match="weight must be a non-negative number"):
        skim_rnn_loss(weight)


@pytest.mark.parametrize("reads", [torch.ones(3), torch.ones(0, 4), torch.full((2, 3), 0.5)])
def test_counted_flops_rejects_reads_that_are_not_binary_decisions_of_shape_n_by_t(reads):
    with pytest.raises(ValueError, match="reads must"):
        counted_flops(_model(), reads)


def test_part_flops_and_width_for_flops_reject_bad_arguments():
    with pytest.raises(TypeError, match="model must be a SkimGRU"):
        part_flops(StaticGRU(5, 4, 3))
    with pytest.raises(ValueError, match="budget must be a positive number"):
        width_for_flops(5, 3, 10, -1.0)
    with pytest.raises(ValueError, match="even a GRU of width 1"):
        width_for_flops(5, 3, 10, 10.0)


def test_the_two_choices_are_the_decision_makers_two_logits():
    assert {FULL_READ, SKIM} == {0, 1}
    assert _model().decide.out_features == 2
