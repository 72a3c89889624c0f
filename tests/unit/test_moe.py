import pytest
import torch
import torch.nn.functional as F

from dyn_helpers.measure import count_flops, flops_per_sample
from dyn_helpers.sample_wise.moe import (
    DenseClassifier,
    Expert,
    Experts,
    MoEClassifier,
    MoELayer,
    combine_expert_outputs,
    expert_load,
    load_cv,
    moe_loss,
    route,
    switch_balancing_loss,
)


def _one_expert(experts: Experts, e: int, x: torch.Tensor) -> torch.Tensor:
    chunks = [x if j == e else x[:0] for j in range(len(experts))]
    return experts(chunks)[e]


def test_stacked_experts_compute_what_separate_expert_mlps_compute():
    experts = Experts(3, 4, 6)
    x = torch.randn(5, 4)
    for e in range(3):
        mlp = Expert(4, 6)
        with torch.no_grad():
            mlp[0].weight.copy_(experts.w1[e].T)
            mlp[0].bias.copy_(experts.b1[e])
            mlp[2].weight.copy_(experts.w2[e].T)
            mlp[2].bias.copy_(experts.b2[e])
        assert torch.allclose(_one_expert(experts, e, x), mlp(x), atol=1e-6)


def test_a_shard_of_experts_is_a_copy_of_a_slice():
    experts = Experts(4, 3, 5)
    part = experts.shard(range(2, 4))
    assert len(part) == 2 and torch.equal(part.w1, experts.w1[2:4])
    assert part.w1.data_ptr() != experts.w1.data_ptr()


def test_combining_puts_each_rows_expert_output_back_in_place():
    experts = Experts(3, 4, 6)
    x, ids = torch.randn(7, 4), torch.tensor([2, 0, 2, 1, 0, 2, 1])
    out = combine_expert_outputs(experts, x, ids)
    for i in range(7):
        assert torch.allclose(out[i], _one_expert(experts, int(ids[i]), x[i : i + 1])[0], atol=1e-6)
    shard = experts.shard(range(1, 3))
    assert torch.allclose(combine_expert_outputs(shard, x[2:4], ids[2:4], first=1), out[2:4], atol=1e-6)
    with pytest.raises(ValueError, match="expert_ids"):
        combine_expert_outputs(shard, x, ids, first=1)
    with pytest.raises(ValueError, match="one chunk"):
        experts([x])


def test_top1_gate_is_the_chosen_experts_probability_and_topk_gates_sum_to_one():
    logits = torch.randn(20, 5)
    one = route(logits, 1)
    assert torch.equal(one.experts[:, 0], logits.argmax(1))
    assert torch.allclose(one.gates[:, 0], logits.softmax(1).amax(1))
    two = route(logits, 2)
    assert torch.allclose(two.gates.sum(1), torch.ones(20))
    assert torch.equal(two.experts, logits.topk(2, dim=1).indices)


def test_layer_output_is_the_gated_sum_of_the_chosen_experts():
    torch.manual_seed(0)
    layer = MoELayer(6, 12, n_experts=4, k=2)
    x = torch.randn(9, 6)
    y, routing = layer(x)
    for i in range(len(x)):
        expected = sum(
            g * _one_expert(layer.experts, int(e), x[i : i + 1])[0]
            for e, g in zip(routing.experts[i], routing.gates[i], strict=True)
        )
        assert torch.allclose(y[i], expected, atol=1e-6)


def test_gradients_reach_the_router_and_only_the_experts_that_ran():
    torch.manual_seed(0)
    layer = MoELayer(4, 8, n_experts=3, k=1)
    with torch.no_grad():
        layer.router.weight.zero_()
        layer.router.weight[1] = 1.0
    layer(torch.ones(5, 4))[0].sum().backward()
    assert layer.router.weight.grad.abs().sum() > 0
    per_expert = layer.experts.w1.grad.abs().sum(dim=(1, 2))
    assert per_expert[1] > 0 and per_expert[0] == 0 and per_expert[2] == 0


def test_flops_per_token_count_only_the_k_experts_that_ran():
    d, h = 16, 32
    expert_flops = count_flops(Expert(d, h), torch.randn(1, d))
    for n_experts in (1, 16):
        for k in (1, 2):
            if k > n_experts:
                continue
            layer = MoELayer(d, h, n_experts, k)
            router_flops = 2 * d * n_experts
            assert (
                flops_per_sample(lambda x, m=layer: m(x)[0], torch.randn(2, d)).tolist()
                == [router_flops + k * expert_flops] * 2
            )


def test_parameters_grow_with_the_number_of_experts():
    sizes = [sum(p.numel() for p in MoELayer(8, 16, n).parameters()) for n in (1, 2, 4)]
    per_expert = sum(p.numel() for p in Expert(8, 16).parameters()) + 8  # an MLP and a router row
    assert sizes == [n * per_expert for n in (1, 2, 4)]


def test_switch_loss_is_one_for_a_uniform_router_and_larger_when_collapsed():
    uniform = torch.full((8, 4), 0.25)
    assert switch_balancing_loss(uniform, torch.arange(8)[:, None] % 4).item() == pytest.approx(1.0)
    collapsed = F.one_hot(torch.zeros(8, dtype=torch.long), 4).float() * 0.96 + 0.01
    assert switch_balancing_loss(collapsed, torch.zeros(8, 1, dtype=torch.long)).item() == pytest.approx(3.88)


def test_moe_loss_adds_the_weighted_balancing_loss_to_cross_entropy():
    torch.manual_seed(0)
    model = MoEClassifier(4, 1, width=4, d_model=8, d_hidden=8)
    x, y = torch.randn(6, 1, 40), torch.randint(0, 10, (6,))
    out = model(x)
    ce = F.cross_entropy(out.logits, y)
    balance = switch_balancing_loss(out.extras["router_probs"], out.decisions["experts"])
    assert torch.allclose(moe_loss(0)(out, y), ce)
    assert torch.allclose(moe_loss(0.5)(out, y), ce + 0.5 * balance)
    with pytest.raises(ValueError, match="balance_weight"):
        moe_loss(-0.1)


def test_classifier_reports_its_experts_what_ran_and_the_router_probabilities():
    moe = MoEClassifier(8, 2, width=8).eval()
    output = moe(torch.randn(5, 1, 40))
    experts, probs = output.decisions["experts"], output.extras["router_probs"]
    assert output.logits.shape == (5, 10) and probs.shape == (5, 8) and experts.shape == (5, 2)
    assert torch.equal(experts, probs.topk(2, dim=1).indices)
    assert output.executed.shape == (5, 8) and output.executed.sum(dim=1).tolist() == [2] * 5
    assert torch.equal(output.executed.gather(1, experts), torch.ones(5, 2, dtype=torch.bool))


def test_classifier_and_its_dense_twin_cost_the_same_but_the_router():
    x = torch.randn(2, 1, 40)
    moe, dense = MoEClassifier(8, 1, width=8), DenseClassifier(width=8)
    assert isinstance(dense(x), torch.Tensor)
    assert count_flops(moe, x[:1]) - count_flops(dense, x[:1]) == 2 * 32 * 8


def test_load_cv_of_known_cases():
    assert load_cv(expert_load(torch.arange(8) % 4, 4)) == 0.0
    assert load_cv(expert_load(torch.zeros(8, dtype=torch.long), 4)) == pytest.approx(3**0.5)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"d_model": 0}, "d_model"),
        ({"n_experts": 0}, "n_experts"),
        ({"k": 3}, "k"),
        ({"d_hidden": 1.5}, "d_hidden"),
    ],
)
def test_bad_layer_sizes_are_reported_naming_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        MoELayer(**{"d_model": 4, "d_hidden": 8, "n_experts": 2, **kwargs})


def test_bad_inputs_are_reported():
    with pytest.raises(ValueError, match="shape"):
        MoELayer(4, 8, 2)(torch.randn(3, 5))
    with pytest.raises(ValueError, match="k must be at most"):
        route(torch.randn(3, 2), 3)
    with pytest.raises(ValueError, match="expert indices"):
        expert_load(torch.tensor([0, 4]), 4)
    with pytest.raises(ValueError, match="one entry per expert"):
        load_cv(torch.tensor([1.0]))
