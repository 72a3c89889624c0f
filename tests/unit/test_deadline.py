import math

import pytest
import torch

from dyn_helpers.applications.deadline import (
    NO_ANSWER,
    DeadlineAnswer,
    SimulatedClock,
    WallClock,
    answer_by_deadline,
    simulated_exits,
    simulated_predictions,
)
from dyn_helpers.sample_wise.early_exit import MultiExitCNN, exit_flops

COSTS = [1.0, 3.0, 6.0, 10.0]  # reaching exit k costs COSTS[k-1] units of the simulated clock


@pytest.fixture(scope="module")
def model() -> MultiExitCNN:
    torch.manual_seed(0)
    return MultiExitCNN(widths=(4, 4, 4, 4), length=40).eval()


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(1, 1, 40)


def run(model: MultiExitCNN, x: torch.Tensor, deadline: float, **kwargs) -> DeadlineAnswer:
    return answer_by_deadline(model, x, deadline, clock=SimulatedClock(COSTS), **kwargs)


class ScriptedClock:
    """A fake clock that reads the given times, one per call of `now`."""

    def __init__(self, times: list[float]) -> None:
        self.times = iter(times)

    def now(self) -> float:
        return next(self.times)

    def ran(self, step: int) -> None:
        pass


def test_a_generous_deadline_answers_at_the_last_exit_with_its_logits(model, x):
    answer = run(model, x, deadline=100.0)
    assert answer.exit == model.depth and answer.answered
    assert answer.finish_times == (1.0, 3.0, 6.0, 10.0)
    torch.testing.assert_close(answer.logits, model(x).extras["exit_logits"][-1], rtol=0, atol=0)


def test_the_answer_is_the_latest_exit_that_finished_by_the_deadline(model, x):
    answer = run(model, x, deadline=6.5)
    assert answer.exit == 3 and answer.blocks_run == 4  # step 4 ran, and ended too late
    torch.testing.assert_close(answer.logits, model(x).extras["exit_logits"][2], rtol=0, atol=0)
    assert run(model, x, deadline=6.0).exit == 3  # finishing exactly at the deadline is in time


def test_a_deadline_before_block_1_ends_gives_no_answer(model, x):
    late = run(model, x, deadline=0.5)
    assert late.exit == 0 and not late.answered and late.logits is None and late.blocks_run == 1
    refused = run(model, x, deadline=0.5, step_times=[1.0, 2.0, 3.0, 4.0])
    assert refused.exit == 0 and refused.blocks_run == 0  # with an estimate, it does not even start


def test_with_step_times_it_does_not_start_a_step_that_would_end_too_late(model, x):
    answer = run(model, x, deadline=6.5, step_times=[1.0, 2.0, 3.0, 4.0])
    assert answer.exit == 3 and answer.blocks_run == 3


def test_a_scripted_clock_drives_the_decision(model, x):
    # starts at 5, step 1 ends at 5.2, step 2 at 5.9: with a deadline of 0.5 only exit 1 is in time
    answer = answer_by_deadline(model, x, 0.5, clock=ScriptedClock([5.0, 5.2, 5.9]))
    assert answer.exit == 1 and answer.finish_times == pytest.approx((0.2, 0.9))


def test_the_wall_clock_answers_at_the_last_exit_without_a_real_deadline(model, x):
    assert answer_by_deadline(model, x, 1e9, clock=WallClock()).exit == model.depth


def test_simulated_exits_equal_the_controller_under_a_simulated_clock(model, x):
    deadlines = [0.5, 1.0, 2.9, 3.0, 5.0, 9.9, 10.0, 50.0]
    expected = [run(model, x, d).exit for d in deadlines]
    assert simulated_exits(COSTS, deadlines).tolist() == expected == [0, 1, 1, 2, 2, 3, 4, 4]


def test_simulated_predictions_take_each_inputs_exit_and_mark_no_answer():
    logits = torch.nn.functional.one_hot(torch.tensor([[0, 1], [2, 3], [4, 5]]), 6).float()  # (K=3, N=2)
    assert simulated_predictions(logits, torch.tensor([2, 3])).tolist() == [2, 5]
    assert simulated_predictions(logits, torch.tensor([0, 1])).tolist() == [NO_ANSWER, 1]


def test_on_a_flops_clock_each_step_ends_at_the_flops_counted_to_its_exit(model, x):
    costs = exit_flops(model, x)
    answer = answer_by_deadline(model, x, costs[-1], clock=SimulatedClock(costs))
    assert answer.finish_times == tuple(float(c) for c in costs) and answer.exit == model.depth
    assert answer_by_deadline(model, x, costs[1] - 1, clock=SimulatedClock(costs)).exit == 1


def test_the_simulated_clock_advances_by_each_steps_cost():
    clock = SimulatedClock(COSTS)
    clock.ran(1)
    clock.ran(2)
    assert clock.now() == 3.0
    with pytest.raises(ValueError, match="step"):
        clock.ran(5)


@pytest.mark.parametrize("deadline", [0, -1.0, math.nan])
def test_bad_deadlines_raise(model, x, deadline):
    with pytest.raises(ValueError, match="deadline"):
        run(model, x, deadline)
    with pytest.raises(ValueError, match="deadlines"):
        simulated_exits(COSTS, [1.0, deadline])


def test_bad_arguments_raise_with_clear_messages(model, x):
    with pytest.raises(TypeError, match="deadline"):
        run(model, x, "1 s")
    with pytest.raises(TypeError, match="MultiExitCNN"):
        answer_by_deadline(torch.nn.Linear(2, 2), x, 1.0)
    with pytest.raises(ValueError, match="one input"):
        run(model, torch.randn(2, 1, 40), 1.0)
    with pytest.raises(ValueError, match="step_times"):
        run(model, x, 1.0, step_times=[1.0, 2.0])
    with pytest.raises(ValueError, match="exit_costs"):
        SimulatedClock([2.0, 1.0])
    with pytest.raises(ValueError, match="exits"):
        simulated_predictions(torch.zeros(3, 2, 4), torch.tensor([1, 4]))
