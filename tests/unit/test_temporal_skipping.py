"""Skip-RNN on a GRU cell and its static rivals (dyn_helpers.temporal.skipping)."""

import math

import pytest
import torch
import torch.nn.functional as F

from dyn_helpers import measure
from dyn_helpers.temporal.skipping import (
    SkipGRU,
    StaticGRU,
    binarize,
    prefix_steps,
    skip_rnn_loss,
    static_family,
    steps_to_next_update,
    uniform_steps,
    update_budget_loss,
)


def _sequences(n: int = 6, length: int = 20, symbols: int = 5, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return F.one_hot(torch.randint(symbols, (n, length), generator=gen), symbols).float()


def _model(execution: str = "masked", gate_bias: float = -1.0, seed: int = 0) -> SkipGRU:
    torch.manual_seed(seed)
    model = SkipGRU(5, 8, 3, gate_bias=gate_bias).eval()
    with torch.no_grad():
        model.gate.weight.mul_(4.0)  # update probabilities that vary from step to step
    model.execution = execution
    return model


def _as(model: SkipGRU, execution: str) -> SkipGRU:
    twin = SkipGRU(5, 8, 3).eval()
    twin.load_state_dict(model.state_dict())
    twin.execution = execution
    return twin


@pytest.mark.parametrize(("delta", "steps"), [(1.0, 1), (0.5, 1), (0.49, 2), (0.25, 2), (0.2, 3), (0.1, 5)])
def test_the_next_update_comes_when_the_accumulated_probability_reaches_one_half(delta, steps):
    assert steps_to_next_update(delta, 100) == steps


def test_the_next_update_agrees_with_the_float32_accumulation_of_the_masked_execution():
    gen = torch.Generator().manual_seed(0)
    for delta in torch.rand(300, generator=gen) ** 3:
        k = torch.arange(1, 2001, dtype=torch.float32)
        masked = int(k[(k * delta >= 0.5)][0].item()) if (k * delta >= 0.5).any() else 2000
        assert steps_to_next_update(delta.item(), 2000) == masked


def test_a_small_or_zero_probability_skips_to_the_limit():
    assert steps_to_next_update(0.0, 7) == 7
    assert steps_to_next_update(1e-30, 7) == 7
    assert steps_to_next_update(0.1, 3) == 3


@pytest.mark.parametrize(("delta", "limit"), [(-0.1, 5), (1.5, 5), (math.nan, 5), (True, 5), (0.5, 0)])
def test_steps_to_next_update_rejects_bad_arguments(delta, limit):
    with pytest.raises(ValueError):
        steps_to_next_update(delta, limit)


def test_binarize_rounds_at_one_half_and_passes_the_gradient_straight_through():
    u = torch.tensor([0.1, 0.5, 0.7], requires_grad=True)
    hard = binarize(u)
    assert hard.tolist() == [0.0, 1.0, 1.0]
    (hard * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert u.grad.tolist() == [1.0, 2.0, 3.0]


def test_the_skipping_execution_gives_the_masked_outputs_at_batch_one():
    x = _sequences()
    masked = _model()
    skipping = _as(masked, "skipping")
    for i in range(len(x)):
        a, b = masked(x[i : i + 1]), skipping(x[i : i + 1])
        assert torch.equal(a.decisions["updates"], b.decisions["updates"])
        assert torch.allclose(a.logits, b.logits, atol=1e-6)
    shares = masked(x).decisions["updates"].mean(1)
    assert 0.1 < shares.min() and shares.max() < 0.9 and len(torch.unique(shares)) > 1  # real skips, varied


def test_the_skipping_execution_runs_each_input_of_a_batch_alone_and_agrees_with_masked():
    x = _sequences(8, 30, seed=1)
    masked = _model(seed=1)
    a, b = masked(x), _as(masked, "skipping")(x)
    assert torch.equal(a.decisions["updates"], b.decisions["updates"])
    assert torch.equal(a.executed, b.executed)
    assert torch.allclose(a.logits, b.logits, atol=1e-5)


def test_the_first_step_is_always_updated_and_a_sure_gate_updates_every_step_like_the_full_execution():
    x = _sequences()
    assert (_model()(x).decisions["updates"][:, 0] == 1).all()
    always = _model(gate_bias=50.0)
    out = always(x)
    assert (out.decisions["updates"] == 1).all()
    assert torch.allclose(out.logits, _as(always, "full")(x).logits, atol=1e-6)


def test_flops_count_the_updates_taken_by_skipping_and_every_step_otherwise():
    x = _sequences(1, 20)
    model = _model()
    cell = measure.count_flops(lambda v: model.cell(v[:, 0]), x)
    gate = measure.count_flops(model.gate, torch.zeros(1, 8))
    head = measure.count_flops(model.head, torch.zeros(1, 8))
    n_updates = int(model(x).decisions["updates"].sum().item())
    assert n_updates < 20
    assert measure.count_flops(_as(model, "skipping"), x) == n_updates * (cell + gate) + head
    assert measure.count_flops(model, x) == 20 * (cell + gate) + head
    assert measure.count_flops(_as(model, "full"), x) == 20 * cell + head


def test_the_budget_loss_reaches_the_gate_through_the_straight_through_estimator():
    x, y = _sequences(), torch.zeros(6, dtype=torch.long)
    model = _model().train()
    out = model(x)
    assert update_budget_loss(out.extras["updates"], 0.5).item() == pytest.approx(
        0.5 * out.decisions["updates"].mean().item()
    )
    update_budget_loss(out.extras["updates"], 1.0).backward()
    assert model.gate.weight.grad.abs().sum() > 0 and model.gate.bias.grad.item() != 0
    loss = skip_rnn_loss(0.1)(model(x), y)
    assert loss.dim() == 0 and torch.isfinite(loss)


@pytest.mark.parametrize("weight", [-0.1, math.nan, True, "1"])
def test_the_budget_weight_must_be_a_non_negative_number(weight):
    with pytest.raises(ValueError, match="weight must be a non-negative number"):
        skip_rnn_loss(weight)


def test_the_budget_loss_rejects_updates_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"updates must be a non-empty tensor of shape \(N, T\)"):
        update_budget_loss(torch.ones(3), 0.1)


def test_models_reject_empty_sequences_and_wrong_shapes():
    model = _model()
    with pytest.raises(ValueError, match="empty sequences"):
        model(torch.zeros(2, 0, 5))
    with pytest.raises(ValueError, match=r"shape \(N, T, 5\)"):
        model(torch.zeros(2, 4, 6))
    with pytest.raises(ValueError, match=r"shape \(N, T, 5\)"):
        StaticGRU(5, 4, 3)(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="reads step 9"):
        StaticGRU(5, 4, 3, [0, 9])(torch.zeros(2, 4, 5))
    with pytest.raises(ValueError, match="evaluation only"):
        _as(model, "skipping").train()(torch.zeros(1, 4, 5))
    with pytest.raises(ValueError, match="execution must be one of"):
        model.execution = "jumping"


def test_prefix_and_uniform_steps_pick_n_of_length_steps():
    assert prefix_steps(10, 3) == [0, 1, 2]
    assert uniform_steps(12, 3) == [2, 6, 10]
    assert uniform_steps(5, 5) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("n_steps", [0, 11, 2.5])
def test_a_number_of_steps_outside_the_sequence_is_rejected(n_steps):
    with pytest.raises(ValueError, match="n_steps must be an int in 1 .. length = 10"):
        uniform_steps(10, n_steps)


def test_a_static_gru_reads_only_its_steps_and_pays_for_them_alone():
    torch.manual_seed(0)
    model = StaticGRU(5, 4, 3, [1, 3]).eval()
    x = _sequences(2, 6)
    changed = x.clone()
    changed[:, [0, 2, 4, 5]] = _sequences(2, 4, seed=9)
    assert torch.equal(model(x), model(changed))
    everything = StaticGRU(5, 4, 3).eval()
    head = measure.count_flops(model.head, torch.zeros(1, 4))
    assert measure.count_flops(everything, x[:1]) - head == 3 * (measure.count_flops(model, x[:1]) - head)


def test_the_static_family_has_a_prefix_and_a_uniform_reader_per_length_and_a_full_reader_per_width():
    family = static_family(5, 3, 12, hidden=8, n_steps=[3, 6], widths=[2])
    assert list(family) == [
        "prefix 3, width 8",
        "uniform 3, width 8",
        "prefix 6, width 8",
        "uniform 6, width 8",
        "all 12, width 2",
    ]
    assert family["uniform 3, width 8"].steps == [2, 6, 10] and family["all 12, width 2"].steps is None


def test_between_updates_the_accumulated_probability_grows_by_delta_each_step():
    masked = _model(gate_bias=math.log(0.2 / 0.8))
    with torch.no_grad():
        masked.gate.weight.zero_()  # delta = 0.2 after every update: updated every third step
    out = masked(_sequences(1, 9))
    assert out.decisions["updates"][0].tolist() == [1, 0, 0, 1, 0, 0, 1, 0, 0]
    assert out.extras["u_tilde"][0].tolist() == pytest.approx([1.0, 0.2, 0.4, 0.6, 0.2, 0.4, 0.6, 0.2, 0.4])
