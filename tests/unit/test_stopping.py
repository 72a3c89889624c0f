"""Specification of `dyn_helpers.temporal.stopping`: a reader that stops early in time, and its static rivals."""

import pytest
import torch

from dyn_helpers.data import mnist1d
from dyn_helpers.measure import count_flops, flops_per_sample
from dyn_helpers.outputs import ModelOutput
from dyn_helpers.temporal.skipping import prefix_steps, uniform_steps
from dyn_helpers.temporal.stopping import (
    PATCH,
    SEQ_LENGTH,
    EarlyStoppingReader,
    StaticReader,
    answers,
    as_steps,
    check_sequences,
    embedded_mnist1d,
    gru_step,
    loss_over_steps,
    patience_for_steps,
    reader_flops,
    static_readers,
    stop_steps,
    threshold_for_steps,
)

N_STEPS = SEQ_LENGTH // PATCH


def sequences(n: int = 12, length: int = SEQ_LENGTH) -> torch.Tensor:
    return 3 * torch.randn(n, 1, length, generator=torch.Generator().manual_seed(1))


def reader(rule: str = "none", **kwargs) -> EarlyStoppingReader:
    torch.manual_seed(0)
    return EarlyStoppingReader(16, rule=rule, **kwargs).eval()


# The data


def test_embedded_digits_sit_at_their_recorded_offset_inside_noise():
    digits, embedded = mnist1d(), embedded_mnist1d(length=60, noise=0.5, seed=3)
    x, box = embedded.test.x, embedded.test.box
    assert x.shape == (len(digits.test), 1, 60)
    assert torch.equal(embedded.test.y, digits.test.y)
    assert (box[:, 0] == 0).all() and (box[:, 2] == 1).all() and (box[:, 3] == 40).all()
    assert box[:, 1].min() >= 0 and box[:, 1].max() <= 20 and len(box[:, 1].unique()) == 21
    for i in range(5):
        offset = int(box[i, 1])
        assert torch.equal(x[i, 0, offset : offset + 40], digits.test.x[i, 0])
    outside = torch.cat([x[0, 0, : int(box[0, 1])], x[0, 0, int(box[0, 1]) + 40 :]])
    assert len(outside) == 20


def test_embedding_is_deterministic_for_its_seed():
    a, b, c = embedded_mnist1d(seed=1), embedded_mnist1d(seed=1), embedded_mnist1d(seed=2)
    assert torch.equal(a.val.x, b.val.x) and torch.equal(a.val.box, b.val.box)
    assert not torch.equal(a.val.box, c.val.box)


@pytest.mark.parametrize("length, noise", [(39, 0.5), (0, 0.5), (60, -1.0), (60, True)])
def test_embedding_rejects_a_length_shorter_than_the_digit_and_a_negative_noise(length, noise):
    with pytest.raises(ValueError, match="length|noise"):
        embedded_mnist1d(length=length, noise=noise)


# Bad input


@pytest.mark.parametrize(
    "x, message",
    [
        (torch.zeros(0, 1, 8), "at least one sequence"),
        (torch.zeros(2, 1, 0), "at least one sample"),
        (torch.zeros(2, 8), "shape"),
        (torch.zeros(2, 2, 8), "one channel"),
        (torch.zeros(2, 1, 10), "multiple of the patch"),
    ],
)
def test_sequences_that_are_empty_or_of_the_wrong_shape_are_refused(x, message):
    with pytest.raises(ValueError, match=message):
        as_steps(x, 4)
    with pytest.raises(ValueError, match=message):
        reader()(x)


def test_a_non_tensor_is_refused():
    with pytest.raises(TypeError, match="tensor"):
        check_sequences([[0.0]])


@pytest.mark.parametrize("threshold", [-0.1, 1.5])
def test_thresholds_outside_the_unit_interval_are_refused(threshold):
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\]"):
        reader("confidence", threshold=threshold)
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\]"):
        stop_steps(torch.randn(3, 5, 4), "confidence", threshold)


@pytest.mark.parametrize("patience", [0, -2, 1.5, True])
def test_a_patience_below_one_or_not_an_int_is_refused(patience):
    with pytest.raises(ValueError, match="patience must be a positive int"):
        reader("patience", patience=patience)
    with pytest.raises(ValueError, match="patience must be a positive int"):
        stop_steps(torch.randn(3, 5, 4), "patience", patience)


def test_an_unknown_rule_is_refused():
    with pytest.raises(ValueError, match="rule must be one of"):
        stop_steps(torch.randn(3, 5, 4), "entropy", 0.5)
    with pytest.raises(ValueError, match="rule must be one of"):
        reader("entropy")


@pytest.mark.parametrize("step_logits", [torch.randn(3, 4), torch.randn(0, 5, 4), torch.randn(3, 0, 4)])
def test_step_logits_of_the_wrong_shape_or_empty_are_refused(step_logits):
    with pytest.raises(ValueError, match="step_logits must"):
        stop_steps(step_logits, "none")


def test_budgets_outside_the_reachable_range_are_refused():
    logits = torch.randn(20, 6, 3)
    for budget in (0.5, 6.5):
        with pytest.raises(ValueError, match="reachable range"):
            threshold_for_steps(logits, budget)
    with pytest.raises(ValueError, match="reachable range"):
        patience_for_steps(logits, 1.5)  # patience 1 reads at least 2 steps
    with pytest.raises(ValueError, match="reachable range"):
        static_readers(10.0, N_STEPS)
    with pytest.raises(ValueError, match="reachable range"):
        static_readers(reader_flops(32, N_STEPS) + 1, N_STEPS)


def test_static_readers_refuse_steps_outside_the_sequence():
    with pytest.raises(ValueError, match="increasing steps"):
        StaticReader(8, (0, 25), N_STEPS)
    with pytest.raises(ValueError, match="increasing steps"):
        StaticReader(8, (3, 1), N_STEPS)
    with pytest.raises(ValueError, match="n_steps must be an int"):
        prefix_steps(N_STEPS, 26)
    with pytest.raises(ValueError, match="steps"):
        StaticReader(8, (0, 1), N_STEPS)(sequences(2, 40))


# The rules


def test_confidence_stops_at_the_first_confident_step_and_patience_after_a_stable_streak():
    step_logits = torch.tensor(
        [
            [[1.0, 0, 0], [2.5, 0, 0], [3.0, 0, 0], [3.0, 0, 0], [3.0, 0, 0]],
            [[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [0, 0, 1.0], [0, 0, 1.2]],
        ]
    )
    assert stop_steps(step_logits, "confidence", 0.8).tolist() == [2, 5]
    assert stop_steps(step_logits, "patience", 2).tolist() == [3, 5]
    assert stop_steps(step_logits, "none").tolist() == [5, 5]
    assert answers(step_logits, torch.tensor([2, 5])).argmax(1).tolist() == [0, 2]


def test_the_threshold_and_patience_chosen_for_a_budget_keep_it_and_spend_it():
    logits = torch.randn(200, 10, 4, generator=torch.Generator().manual_seed(0)) * 2
    for budget in (5.0, 6.5, 8.0):
        tau = threshold_for_steps(logits, budget)
        assert stop_steps(logits, "confidence", tau).double().mean() <= budget
        pi = patience_for_steps(logits, budget)
        assert stop_steps(logits, "patience", pi).double().mean() <= budget
        if pi < 9:
            assert stop_steps(logits, "patience", pi + 1).double().mean() > budget
    assert threshold_for_steps(logits, 10.0) == 1.0


# The model


def test_one_gru_step_is_the_step_nn_gru_takes():
    model = reader()
    steps = as_steps(sequences(3), PATCH)
    with torch.no_grad():
        states, _ = model.gru(steps)
        h = torch.zeros(3, 16)
        for t in range(N_STEPS):
            h = gru_step(model.gru, steps[:, t], h)
            assert torch.allclose(h, states[:, t], atol=1e-5)


@pytest.mark.parametrize(
    "rule, kwargs", [("confidence", {"threshold": 0.2}), ("patience", {"patience": 2}), ("none", {})]
)
@pytest.mark.parametrize("batch", [1, 12])
def test_stepwise_execution_stops_where_the_rule_on_every_steps_logits_stops(rule, kwargs, batch):
    model, x = reader(rule, **kwargs), sequences(12)
    with torch.no_grad():
        full = model(x)
        model.execution = "stepwise"
        parts = [model(x[i : i + batch]) for i in range(0, len(x), batch)]
    stops = torch.cat([p.decisions["stop"] for p in parts])
    assert torch.equal(stops, full.decisions["stop"])
    assert torch.allclose(torch.cat([p.logits for p in parts]), full.logits, atol=1e-5)
    assert torch.equal(torch.cat([p.executed for p in parts]), full.executed)
    if rule != "none":
        assert 1 < stops.float().mean() < N_STEPS  # the test exercises real stops


def test_parallel_execution_answers_with_the_step_it_stops_at():
    model, x = reader("confidence", threshold=0.3), sequences(6)
    with torch.no_grad():
        output = model(x)
    assert isinstance(output, ModelOutput)
    step_logits = output.extras["step_logits"]
    assert step_logits.shape == (6, N_STEPS, 10)
    assert torch.equal(output.logits, answers(step_logits, output.decisions["stop"]))
    assert torch.equal(output.executed.sum(1).long(), output.decisions["stop"])


def test_stepwise_execution_at_batch_one_runs_only_the_steps_it_reads():
    model, x = reader("confidence", threshold=0.2), sequences(6)
    with torch.no_grad():
        stops = model(x).decisions["stop"]
    model.execution = "stepwise"
    per_step = reader_flops(16, 1, 1)
    assert torch.equal(flops_per_sample(model, x), stops * per_step)
    model.rule = "none"  # the reference: every step, one classifier at the end
    assert count_flops(model, x[:1]) == reader_flops(16, N_STEPS)


def test_the_loss_over_steps_weights_later_steps_more():
    step_logits = torch.zeros(2, 4, 3, requires_grad=True)
    loss = loss_over_steps(
        ModelOutput(step_logits[:, -1], extras={"step_logits": step_logits}), torch.tensor([0, 1])
    )
    loss.backward()
    assert torch.allclose(loss, torch.log(torch.tensor(3.0)))
    pull = step_logits.grad.abs().sum(dim=(0, 2))
    assert torch.allclose(pull / pull[0], torch.tensor([1.0, 2.0, 3.0, 4.0]))


# The static readers


def test_the_static_readers_read_a_prefix_and_an_even_spread_of_the_steps():
    readers = static_readers(reader_flops(32, 5), N_STEPS)
    prefix, spread, _ = readers.values()
    assert prefix.positions.tolist() == prefix_steps(N_STEPS, 5) == [0, 1, 2, 3, 4]
    assert spread.positions.tolist() == uniform_steps(N_STEPS, 5) == [2, 7, 12, 17, 22]


def test_a_static_reader_costs_what_reader_flops_says_for_every_input():
    x = sequences(3)
    for hidden, positions in ((16, prefix_steps(N_STEPS, 7)), (9, uniform_steps(N_STEPS, 25))):
        model = StaticReader(hidden, positions, N_STEPS).eval()
        assert flops_per_sample(model, x).tolist() == [reader_flops(hidden, len(positions))] * 3


def test_a_static_reader_reads_only_its_positions():
    model = StaticReader(8, uniform_steps(N_STEPS, 5), N_STEPS).eval()
    x, y = sequences(2), sequences(2).clone()
    y[:, :, PATCH : 2 * PATCH] += 5.0  # step 1 is not among 2, 7, 12, 17, 22
    with torch.no_grad():
        assert torch.equal(model(x).logits, model(y).logits)


def test_static_readers_cost_at_most_the_budget_and_spend_most_of_it():
    budget = 0.6 * reader_flops(32, N_STEPS)
    readers = static_readers(budget, N_STEPS, 32)
    assert len(readers) == 3
    x = sequences(1)
    for name, model in readers.items():
        flops = count_flops(model.eval(), x)
        assert 0.85 * budget < flops <= budget, name
