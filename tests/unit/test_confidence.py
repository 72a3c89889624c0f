import math

import pytest
import torch

from dyn_helpers.decisions.confidence import (
    anytime_exits,
    anytime_predictions,
    average_cost,
    exits_entropy,
    exits_margin,
    exits_max_probability,
    exits_patience,
    normalised_entropy,
    threshold_for_budget,
    top2_margin,
)
from dyn_helpers.sample_wise.early_exit import MultiExitCNN, exits_at_threshold


def logits_of(probabilities: list[list[list[float]]]) -> torch.Tensor:
    """Logits whose softmax is exactly the given probabilities, shape (exits, samples, classes)."""
    return torch.tensor(probabilities).log()


# Two samples, three exits, three classes. Sample 0 is sure at exit 1; sample 1 becomes sure at exit 2.
HAND = logits_of(
    [
        [[0.90, 0.05, 0.05], [0.50, 0.30, 0.20]],
        [[0.90, 0.05, 0.05], [0.10, 0.80, 0.10]],
        [[0.90, 0.05, 0.05], [0.10, 0.10, 0.80]],
    ]
)


def predictions_as_logits(classes: list[list[int]], n_classes: int = 4) -> torch.Tensor:
    """Logits (exits, samples, classes) whose argmax at exit k for sample i is classes[i][k]."""
    return torch.nn.functional.one_hot(torch.tensor(classes).T, n_classes).float() * 5.0


def test_max_probability_stops_at_the_first_exit_sure_enough():
    assert exits_max_probability(HAND, 0.75).tolist() == [1, 2]
    assert exits_max_probability(HAND, 0.85).tolist() == [1, 3]
    assert exits_max_probability(HAND, 0.95).tolist() == [3, 3]


def test_max_probability_is_the_early_exit_rule_of_chapter_2():
    logits = torch.randn(4, 50, 10) * 3
    for threshold in (0.0, 0.3, 0.7, 1.0):
        expected = exits_at_threshold(list(logits), threshold)
        assert torch.equal(exits_max_probability(logits, threshold), expected)


def test_the_rules_take_the_exit_logits_a_multi_exit_model_returns():
    torch.manual_seed(0)
    model = MultiExitCNN(widths=(8, 8, 8), length=12).eval()
    x = torch.randn(30, 1, 12) * 3
    with torch.no_grad():
        exit_logits = model(x).extras["exit_logits"]
        model.exit_threshold = 0.2
        exits = model(x).decisions["exit"]
    assert torch.equal(exits_max_probability(exit_logits, 0.2), exits)
    with pytest.raises(TypeError, match="exit_logits"):
        exits_margin(model(x), 0.5)


def test_margin_is_the_gap_between_the_two_most_probable_classes():
    assert top2_margin(HAND)[0].tolist() == pytest.approx([0.85, 0.20], abs=1e-6)
    assert exits_margin(HAND, 0.5).tolist() == [1, 2]
    assert exits_margin(HAND, 0.8).tolist() == [1, 3]


def test_normalised_entropy_is_one_for_a_uniform_answer_and_near_zero_for_a_sure_one():
    logits = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [20.0, 0.0, 0.0, 0.0]]])
    entropy = normalised_entropy(logits)[0]
    assert entropy[0].item() == pytest.approx(1.0)
    assert entropy[1].item() < 1e-6


def test_entropy_stops_at_the_first_exit_calm_enough():
    entropy = normalised_entropy(HAND)
    sure = -(0.9 * math.log(0.9) + 2 * 0.05 * math.log(0.05)) / math.log(3)
    fairly_sure = -(0.8 * math.log(0.8) + 2 * 0.1 * math.log(0.1)) / math.log(3)
    assert entropy[0, 0].item() == pytest.approx(sure, abs=1e-6)
    assert entropy[1, 1].item() == pytest.approx(fairly_sure, abs=1e-6)
    assert exits_entropy(HAND, fairly_sure + 1e-4).tolist() == [1, 2]
    assert exits_entropy(HAND, sure + 1e-4).tolist() == [1, 3]
    assert exits_entropy(HAND, 1.0).tolist() == [1, 1]
    assert exits_entropy(HAND, 0.0).tolist() == [3, 3]


def test_patience_waits_for_the_same_class_at_consecutive_exits():
    logits = predictions_as_logits([[0, 0, 2, 3], [0, 1, 1, 1], [0, 1, 2, 3]])
    assert exits_patience(logits, 1).tolist() == [2, 3, 4]
    assert exits_patience(logits, 2).tolist() == [4, 4, 4]
    assert exits_patience(predictions_as_logits([[2, 2, 2, 2]]), 3).tolist() == [4]


def test_a_patience_of_k_minus_one_or_more_always_runs_to_the_last_exit():
    logits = predictions_as_logits([[1, 1, 1], [0, 1, 2]])
    assert exits_patience(logits, 5).tolist() == [3, 3]


def test_the_budget_search_spends_as_much_of_the_budget_as_it_can():
    # One class per column; exit 1 confidences 0.3..0.9 (two classes, so below 0.5 means class 1).
    first = torch.tensor([[0.3, 0.7], [0.5, 0.5], [0.7, 0.3], [0.9, 0.1]]).log()
    val = torch.stack([first, torch.zeros(4, 2)])
    costs = [1.0, 3.0]  # average cost = 1 + 2 * (share that goes on to exit 2)
    assert threshold_for_budget(val, costs, 2.0) == pytest.approx(0.7, abs=1e-6)
    assert threshold_for_budget(val, costs, 1.0) == pytest.approx(0.5, abs=1e-6)
    assert threshold_for_budget(val, costs, 3.0) == 1.0


def test_the_budget_search_meets_the_budget_on_new_samples_from_the_same_distribution():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 4000, 10, generator=generator) * torch.tensor([1.0, 2.0, 3.0, 4.0])[:, None, None]
    val, test = logits[:, :2000], logits[:, 2000:]
    costs = [1.0, 2.0, 3.0, 4.0]
    for budget in (1.5, 2.0, 2.5, 3.0, 3.5):
        threshold = threshold_for_budget(val, costs, budget)
        assert average_cost(exits_max_probability(val, threshold), costs) <= budget
        assert average_cost(exits_max_probability(test, threshold), costs) == pytest.approx(budget, rel=0.1)


@pytest.mark.parametrize("budget", [0.5, 3.5])
def test_budgets_outside_the_reachable_range_are_rejected(budget):
    with pytest.raises(ValueError, match=r"reachable range \[1, 3\]"):
        threshold_for_budget(torch.randn(2, 5, 3), [1.0, 3.0], budget)


def test_anytime_answers_come_from_the_deepest_exit_the_budget_pays_for():
    costs = [1.0, 2.0, 4.0]
    budgets = [1.0, 1.5, 2.0, 3.9, 4.0, 10.0]
    assert anytime_exits(costs, budgets).tolist() == [1, 1, 2, 2, 3, 3]
    logits = predictions_as_logits([[0, 1, 2], [3, 3, 1]])
    assert anytime_predictions(logits, costs, budgets).tolist() == [
        [0, 3],
        [0, 3],
        [1, 3],
        [1, 3],
        [2, 1],
        [2, 1],
    ]


def test_a_budget_below_the_first_exit_leaves_no_anytime_answer():
    with pytest.raises(ValueError, match="first exit's cost"):
        anytime_exits([1.0, 2.0], [0.5, 1.0])


@pytest.mark.parametrize("threshold", [-0.1, 1.5])
@pytest.mark.parametrize("rule", [exits_max_probability, exits_entropy, exits_margin])
def test_thresholds_outside_the_unit_interval_are_rejected(rule, threshold):
    with pytest.raises(ValueError, match="threshold must be in"):
        rule(HAND, threshold)


@pytest.mark.parametrize("patience", [0, -1, 1.5, True])
def test_patience_must_be_a_positive_int(patience):
    with pytest.raises(ValueError, match="patience"):
        exits_patience(HAND, patience)


def test_logits_must_hold_exits_samples_and_classes():
    with pytest.raises(ValueError, match="shape"):
        exits_margin(torch.randn(5, 3), 0.5)


def test_exit_costs_must_match_the_exits_and_grow():
    with pytest.raises(ValueError, match="one cost per exit"):
        threshold_for_budget(torch.randn(2, 5, 3), [1.0, 2.0, 3.0], 2.0)
    with pytest.raises(ValueError, match="non-decreasing"):
        anytime_exits([2.0, 1.0], [2.0])


def test_the_budget_search_agrees_with_trying_every_threshold():
    logits = torch.randn(3, 40, 5, generator=torch.Generator().manual_seed(1)) * 2
    costs = [1.0, 2.0, 5.0]
    grid = [i / 1000 for i in range(1001)]
    for budget in (1.0, 1.7, 2.6, 4.0, 5.0):
        threshold = threshold_for_budget(logits, costs, budget)
        spent = average_cost(exits_max_probability(logits, threshold), costs)
        best_on_grid = max(
            average_cost(exits_max_probability(logits, t), costs)
            for t in grid
            if average_cost(exits_max_probability(logits, t), costs) <= budget
        )
        assert spent <= budget
        assert spent >= best_on_grid
