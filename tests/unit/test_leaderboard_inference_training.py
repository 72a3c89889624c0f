import dataclasses

import pytest
import torch

from dyn_helpers import data
from dyn_helpers.decisions import confidence
from dyn_helpers.leaderboard import board
from dyn_helpers.leaderboard import inference_training as it
from dyn_helpers.leaderboard.board import Task
from dyn_helpers.leaderboard.static import MNIST1D
from dyn_helpers.measure import flops_per_sample
from dyn_helpers.sample_wise.early_exit import BOOK_ARCHITECTURE, MultiExitCNN, exit_flops

ENTRIES = (
    "exit_entropy_criterion",
    "exit_patience_criterion",
    "budgeted_batch_exit",
    "anytime_exit",
    "exit_self_distillation",
    "gates_gumbel_target_rate",
    "gates_usage_penalty",
    "policy_reinforce",
)


@pytest.fixture(scope="module")
def tiny() -> Task:
    """MNIST-1D cut to a few hundred inputs, with a budget of 2 epochs."""
    splits = data.mnist1d()

    def cut(split: data.Split, n: int) -> data.Split:
        return dataclasses.replace(split, x=split.x[:n], y=split.y[:n], difficulty=None)

    small = dataclasses.replace(
        splits, train=cut(splits.train, 256), val=cut(splits.val, 64), test=cut(splits.test, 48)
    )
    return Task("tiny", "tiny MNIST-1D", small, epochs=2)


@pytest.fixture(scope="module")
def points(tiny: Task) -> dict[str, list[board.Point]]:
    """Every entry's points on the tiny task (the FLOPs of each are verified by `board.point`)."""
    entries = board.entries(MNIST1D)
    result = {}
    for name in ENTRIES:
        torch.manual_seed(0)
        result[name] = entries[name].train(tiny, 0)
    return result


def test_the_entries_are_registered_on_the_board_with_their_notebooks():
    entries = board.entries(MNIST1D)
    notebooks = {name: entries[name].notebook for name in ENTRIES}
    assert set(notebooks.values()) == {
        "confidence_criteria",
        "budgeted_inference",
        "multi_exit_objectives",
        "gradient_estimators",
        "efficiency_losses",
        "policy_vs_gates",
    }
    assert all(entries[name].family == "depth" for name in ENTRIES)


@pytest.mark.parametrize("name", ENTRIES)
def test_every_entry_returns_several_points_whose_counted_flops_verify(points, name):
    found = points[name]
    assert len(found) >= 3 and len({p.setting for p in found}) == len(found)
    assert all(isinstance(p, board.Point) and p.test_flops > 0 for p in found)
    assert board.choose(found) in found


def test_each_setting_is_named_after_its_knob(points):
    assert [p.setting for p in points["exit_patience_criterion"]] == [
        "patience 1",
        "patience 2",
        "patience 3",
    ]
    assert [p.setting for p in points["anytime_exit"]] == [f"budget up to exit {k}" for k in range(1, 5)]
    assert points["exit_entropy_criterion"][-1].setting == "last exit"


def test_an_exit_rule_charges_a_stricter_setting_no_fewer_flops(points):
    """Exit settings are listed from the most lenient to the strictest: each input leaves no earlier."""
    for name in (
        "exit_entropy_criterion",
        "exit_patience_criterion",
        "anytime_exit",
        "exit_self_distillation",
    ):
        flops = [p.test_flops for p in points[name]]
        assert flops == sorted(flops), name


def test_the_gated_entries_sweep_the_gates_opening_threshold(points):
    for name in ("gates_gumbel_target_rate", "gates_usage_penalty"):
        assert [p.setting for p in points[name]] == [f"gate opens above {t:g}" for t in it.GATE_THRESHOLDS]


def test_the_anytime_exits_cost_the_blocks_and_classifiers_up_to_them(tiny, points):
    costs = exit_flops(MultiExitCNN(**BOOK_ARCHITECTURE), tiny.splits.test.x[:1])
    assert [p.test_flops for p in points["anytime_exit"]] == costs


def test_a_budget_holds_on_the_validation_split_where_its_threshold_was_set(tiny, points):
    last = exit_flops(MultiExitCNN(**BOOK_ARCHITECTURE), tiny.splits.test.x[:1])[-1]
    for fraction, p in zip(it.BUDGET_FRACTIONS, points["budgeted_batch_exit"], strict=True):
        assert p.val_flops <= fraction * last + 1e-6


@pytest.fixture
def multi_exit() -> MultiExitCNN:
    torch.manual_seed(0)
    model = MultiExitCNN(widths=(8, 8, 8, 8), length=12).eval()
    with torch.no_grad():
        for head in model.exits:
            head.weight.mul_(10)
    return model


@pytest.mark.parametrize(
    ("rule", "exits_of"),
    [
        (it.entropy_rule(0.3), lambda logits: confidence.exits_entropy(logits, 0.3)),
        (it.entropy_rule(0.05), lambda logits: confidence.exits_entropy(logits, 0.05)),
        (it.patience_rule(1), lambda logits: confidence.exits_patience(logits, 1)),
        (it.patience_rule(2), lambda logits: confidence.exits_patience(logits, 2)),
    ],
)
def test_rule_exit_stops_each_input_where_the_chapters_rule_says(multi_exit, rule, exits_of):
    x = torch.randn(64, 1, 12) * 3
    with torch.no_grad():
        every = torch.stack(multi_exit(x).extras["exit_logits"])
        output = it.RuleExit(multi_exit, rule)(x)
    exits = exits_of(every)
    assert torch.equal(output.decisions["exit"], exits)
    assert torch.allclose(output.logits, every[exits - 1, torch.arange(len(x))], atol=1e-5)


def test_rule_exit_runs_only_the_blocks_an_input_needs(multi_exit):
    x = torch.randn(8, 1, 12) * 3
    run = it.RuleExit(multi_exit, it.patience_rule(1))
    with torch.no_grad():
        exits = run(x).decisions["exit"]
    costs = torch.tensor(exit_flops(multi_exit, x[:1]))
    assert torch.equal(flops_per_sample(run, x), costs[exits - 1])


def test_the_wrappers_check_their_arguments(multi_exit):
    with pytest.raises(TypeError, match="MultiExitCNN"):
        it.RuleExit(torch.nn.Linear(2, 2), it.patience_rule(1))
    with pytest.raises(ValueError, match="exit number"):
        it.FirstExits(multi_exit, 5)


def test_the_policy_needs_two_stages_of_budget(tiny):
    with pytest.raises(ValueError, match="at least 2 epochs"):
        it.train_policy(dataclasses.replace(tiny, epochs=1), 0)
