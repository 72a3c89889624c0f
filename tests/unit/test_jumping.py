import pytest
import torch
import torch.nn.functional as F

from dyn_helpers import measure
from dyn_helpers.outputs import ModelOutput
from dyn_helpers.temporal.jumping import (
    STOP,
    JumpGRU,
    counted_flops,
    jump_reward,
    lstm_jump_loss,
    max_budget,
    next_start,
    part_flops,
)

V, M, LENGTH = 8, 4, 20


def _tokens(n: int = 6, length: int = LENGTH, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return F.one_hot(torch.randint(V, (n, length), generator=generator), V).float()


def _reader(read: int = 2, max_jump: int = 4, budget: int = 3, **kwargs) -> JumpGRU:
    torch.manual_seed(0)
    return JumpGRU(V, 8, M, read=read, max_jump=max_jump, budget=budget, **kwargs).eval()


def _always_jump(model: JumpGRU, jump: int) -> JumpGRU:
    with torch.no_grad():
        model.policy.weight.zero_()
        model.policy.bias.zero_()
        model.policy.bias[jump] = 1.0
    return model


def _executions(model: JumpGRU, x: torch.Tensor) -> dict:
    outputs = {}
    for execution in ("batched", "jumping", "full"):
        model.execution = execution
        outputs[execution] = model(x)
    model.execution = "batched"
    return outputs


def test_a_jump_moves_the_next_read_that_many_tokens_past_the_last_one_read():
    assert next_start(4, 1) == 5  # jump 1: read on
    assert next_start(4, 3) == 7  # jump 3: tokens 5 and 6 are never read


def test_the_budget_can_reach_at_most_one_jump_per_read_that_fits_after_the_first():
    assert max_budget(20, 1) == 19
    assert max_budget(20, 3) == 6  # reads of 3 from tokens 0, 3, ..., 18: seven reads, six jumps
    assert max_budget(4, 4) == 0


def test_reads_R_tokens_then_jumps_until_the_budget_is_spent():
    model = _always_jump(_reader(read=2, max_jump=4, budget=3), 3)
    out = model(_tokens(1))
    read = out.decisions["reads"][0].nonzero().flatten().tolist()
    assert read == [0, 1, 4, 5, 8, 9, 12, 13]  # R = 2 tokens, then the next read 3 after the last
    assert out.decisions["jumps"][0].tolist() == [3, 3, 3]


def test_a_jump_of_0_stops_reading():
    out = _always_jump(_reader(read=2, budget=3), STOP)(_tokens(1))
    assert out.decisions["reads"][0].nonzero().flatten().tolist() == [0, 1]
    assert out.decisions["jumps"][0].tolist() == [STOP, -1, -1]


def test_the_reader_stops_at_the_end_of_the_sequence():
    model = _always_jump(_reader(read=3, max_jump=4, budget=6), 4)
    out = model(_tokens(1))
    read = out.decisions["reads"][0].nonzero().flatten().tolist()
    assert read == [0, 1, 2, 6, 7, 8, 12, 13, 14, 18, 19]  # the last read is cut by the end
    assert out.decisions["jumps"][0].tolist() == [4, 4, 4, -1, -1, -1]


def test_the_jumping_execution_takes_the_batched_decisions_and_gives_its_logits():
    model = _reader(read=1, max_jump=5, budget=8)
    x = _tokens(16)
    with torch.no_grad():
        model.policy.weight.mul_(20)  # decisions that differ between the inputs
    out = _executions(model, x)
    assert len(torch.unique(out["batched"].decisions["jumps"], dim=0)) > 1
    for name in ("reads", "jumps"):
        assert torch.equal(out["jumping"].decisions[name], out["batched"].decisions[name])
    assert torch.allclose(out["jumping"].logits, out["batched"].logits, atol=1e-6)


def test_the_full_execution_reads_every_token_with_no_policy():
    model = _reader()
    x = _tokens(3)
    out = _executions(model, x)["full"]
    assert torch.equal(out.decisions["reads"], torch.ones(3, LENGTH))
    h = torch.zeros(3, 8)
    for t in range(LENGTH):
        h = model.cell(x[:, t], h)
    assert torch.allclose(out.logits, model.head(h))


def test_the_jumping_execution_runs_exactly_the_flops_its_decisions_allow():
    model = _reader(read=1, max_jump=5, budget=8)
    with torch.no_grad():
        model.policy.weight.mul_(20)
    x = _tokens(8)
    batched = model(x)
    model.execution = "jumping"
    executed = measure.flops_per_sample(model, x).double()
    assert torch.equal(executed, counted_flops(model, batched))
    part = part_flops(model)
    assert part["cell"] > part["policy"] > 0
    model.execution = "full"
    assert measure.count_flops(model, x[:1]) == LENGTH * part["cell"] + part["head"]


def test_jumped_tokens_are_never_read_by_the_jumping_execution():
    model = _always_jump(_reader(read=1, max_jump=4, budget=3), 4)
    model.execution = "jumping"
    seen = []
    model.cell.register_forward_hook(lambda _m, args, _o: seen.append(args[0].argmax().item()))
    x = _tokens(1)
    model(x)
    assert seen == x[0, [0, 4, 8, 12]].argmax(1).tolist()


def test_training_samples_jumps_and_records_their_log_probability():
    model = _reader(read=1, max_jump=4, budget=6).train()
    torch.manual_seed(1)
    out = model(_tokens(1).repeat(64, 1, 1))
    assert len(torch.unique(out.decisions["jumps"], dim=0)) > 1
    assert out.extras["log_prob"].shape == (64,) and (out.extras["log_prob"] < 0).all()
    assert (out.extras["entropy"] > 0).all()


def test_the_reward_is_plus_1_when_correct_and_minus_1_when_wrong():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    assert jump_reward(logits, torch.tensor([0, 0, 1])).tolist() == [1.0, -1.0, -1.0]


def test_the_loss_trains_the_policy_and_the_reader():
    model = _reader(read=1, max_jump=4, budget=6).train()
    torch.manual_seed(0)
    out = model(_tokens(32))
    loss = lstm_jump_loss(entropy=0.01)(out, torch.randint(M, (32,)))
    loss.backward()
    assert loss.dim() == 0
    assert model.policy.weight.grad.abs().sum() > 0 and model.cell.weight_hh.grad.abs().sum() > 0


def test_the_loss_is_cross_entropy_plus_reinforce_with_a_leave_one_out_baseline():
    model = _reader(read=1, max_jump=4, budget=6).train()
    torch.manual_seed(0)
    out = model(_tokens(4))
    y = out.logits.argmax(1).clone()
    y[:2] = (y[:2] + 1) % M  # rewards -1, -1, +1, +1
    reward = torch.tensor([-1.0, -1.0, 1.0, 1.0])
    baseline = (reward.sum() - reward) / 3  # the mean reward of the other inputs
    surrogate = ((baseline - reward) * out.extras["log_prob"]).mean()
    expected = F.cross_entropy(out.logits, y) + surrogate - 0.1 * out.extras["entropy"].mean()
    assert torch.allclose(lstm_jump_loss(entropy=0.1)(out, y), expected)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"read": 0}, "read"),
        ({"max_jump": 0}, "max_jump"),
        ({"max_jump": -2}, "max_jump"),
        ({"budget": 0}, "budget"),
        ({"read": 1.5}, "read"),
        ({"budget": True}, "budget"),
    ],
)
def test_rejects_bad_jump_settings(kwargs, match):
    settings = {"read": 1, "max_jump": 4, "budget": 3} | kwargs
    with pytest.raises(ValueError, match=match):
        JumpGRU(V, 8, M, **settings)


def test_rejects_a_budget_or_a_read_the_sequence_cannot_hold():
    with pytest.raises(ValueError, match="budget = 10 jumps cannot be reached"):
        _reader(read=2, budget=10)(_tokens(2))  # 20 tokens read 2 at a time: at most 9 jumps
    with pytest.raises(ValueError, match="reads 4 tokens at a time"):
        _reader(read=4, budget=1)(_tokens(2, length=3))
    with pytest.raises(ValueError, match="read must be at most"):
        max_budget(3, 4)


def test_rejects_empty_sequences_and_wrong_shapes():
    model = _reader()
    with pytest.raises(ValueError, match="empty sequences"):
        model(torch.zeros(2, 0, V))
    with pytest.raises(ValueError, match="shape"):
        model(torch.zeros(2, LENGTH))
    with pytest.raises(ValueError, match="shape"):
        model(torch.zeros(2, LENGTH, V + 1))
    with pytest.raises(TypeError):
        model([[0.0] * V])


def test_jumping_runs_in_evaluation_only():
    model = _reader(execution="jumping").train()
    with pytest.raises(ValueError, match="evaluation only"):
        model(_tokens(1))


def test_rejects_bad_loss_and_reward_arguments():
    with pytest.raises(ValueError, match="entropy"):
        lstm_jump_loss(-0.1)
    with pytest.raises(ValueError, match="logits"):
        jump_reward(torch.zeros(3, 2), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="jump"):
        next_start(3, 0)
    with pytest.raises(ValueError, match="decisions"):
        counted_flops(_reader(), ModelOutput(torch.zeros(1, M)))
