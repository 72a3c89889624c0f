"""Specification of `dyn_helpers.open_problems.architecture`: dense connections and gradient
equilibrium for a multi-exit chain, and each exit's gradient on a shared block."""

import pytest
import torch
import torch.nn.functional as F

from dyn_helpers import measure
from dyn_helpers.open_problems.architecture import (
    NARROW_ARCHITECTURE,
    DenseExitCNN,
    GradientEquilibriumCNN,
    dense_exit_flops,
    exit_gradients,
    scale_gradient,
)
from dyn_helpers.outputs import ModelOutput
from dyn_helpers.sample_wise.early_exit import MultiExitCNN, exit_flops

SMALL = {"widths": (4, 5, 3), "n_classes": 3, "length": 8, "kernel_size": 3}


def twins(seed: int = 0) -> tuple[GradientEquilibriumCNN, MultiExitCNN]:
    """A gradient-equilibrium network and a plain one with the same weights, in eval mode."""
    torch.manual_seed(seed)
    equilibrium = GradientEquilibriumCNN(**SMALL).eval()
    plain = MultiExitCNN(**SMALL).eval()
    plain.load_state_dict(equilibrium.state_dict())
    return equilibrium, plain


def batch(n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    return torch.randn(n, 1, SMALL["length"]), torch.randint(0, SMALL["n_classes"], (n,))


def test_scale_gradient_is_the_identity_forward_and_scales_the_gradient_backward():
    x = torch.randn(5, requires_grad=True)
    y = scale_gradient(x, 0.25)
    assert torch.equal(y, x)
    (y * torch.arange(5.0)).sum().backward()
    torch.testing.assert_close(x.grad, 0.25 * torch.arange(5.0))


def test_scale_gradient_zero_stops_the_gradient():
    x = torch.randn(3, requires_grad=True)
    scale_gradient(x, 0).sum().backward()
    assert torch.equal(x.grad, torch.zeros(3))


@pytest.mark.parametrize("scale", [-1.0, float("inf"), float("nan"), True, "2"])
def test_scale_gradient_rejects_a_scale_that_is_not_a_finite_non_negative_number(scale):
    with pytest.raises(ValueError, match="scale"):
        scale_gradient(torch.ones(2), scale)


def test_scale_gradient_rejects_what_is_not_a_tensor():
    with pytest.raises(TypeError, match="tensor"):
        scale_gradient([1.0, 2.0], 1.0)


def test_the_equilibrium_network_predicts_exactly_as_the_plain_network_with_the_same_weights():
    equilibrium, plain = twins()
    x, _ = batch()
    for a, b in zip(equilibrium(x).extras["exit_logits"], plain(x).extras["exit_logits"], strict=True):
        assert torch.equal(a, b)
    equilibrium.exit_threshold = plain.exit_threshold = 0.5
    out_e, out_p = equilibrium(x), plain(x)
    assert torch.equal(out_e.logits, out_p.logits)
    assert torch.equal(out_e.decisions["exit"], out_p.decisions["exit"])


def test_each_block_receives_the_mean_of_the_gradients_of_the_losses_of_its_exit_and_the_later_ones():
    equilibrium, plain = twins()
    x, y = batch()
    depth = plain.depth
    for block in range(1, depth + 1):
        per_exit = exit_gradients(plain, x, y, block)  # plain: each exit's own gradient
        expected = per_exit[block - 1 :].mean(dim=0)
        equilibrium.zero_grad()
        sum(F.cross_entropy(lg, y) for lg in equilibrium(x).extras["exit_logits"]).backward()
        got = torch.cat([p.grad.flatten() for p in equilibrium.blocks[block - 1].parameters()])
        torch.testing.assert_close(got, expected)
        # The plain network's summed loss gives the sum instead.
        plain.zero_grad()
        sum(F.cross_entropy(lg, y) for lg in plain(x).extras["exit_logits"]).backward()
        summed = torch.cat([p.grad.flatten() for p in plain.blocks[block - 1].parameters()])
        torch.testing.assert_close(summed, per_exit[block - 1 :].sum(dim=0))


def test_each_exit_classifier_receives_its_own_losss_full_gradient_under_equilibrium():
    equilibrium, plain = twins()
    x, y = batch()
    for model in (equilibrium, plain):
        model.zero_grad()
        sum(F.cross_entropy(lg, y) for lg in model(x).extras["exit_logits"]).backward()
    for head_e, head_p in zip(equilibrium.exits, plain.exits, strict=True):
        torch.testing.assert_close(head_e.weight.grad, head_p.weight.grad)


def test_exit_gradients_of_the_equilibrium_network_are_the_plain_ones_scaled_by_the_backward_pass():
    equilibrium, plain = twins()
    x, y = batch()
    first = exit_gradients(equilibrium, x, y, 1)
    plain_first = exit_gradients(plain, x, y, 1)
    depth = plain.depth
    # Exit j's gradient on block 1 passes the scales 1/(K-k+1) and K-k of blocks k < j, then 1/(K-j+1).
    for j in range(1, depth + 1):
        scale = 1.0
        for k in range(1, j):
            scale *= (depth - k) / (depth - k + 1)
        scale /= depth - j + 1
        torch.testing.assert_close(first[j - 1], scale * plain_first[j - 1])


def test_exit_gradients_are_zero_for_exits_before_the_block_and_leave_the_model_as_it_was():
    _, plain = twins()
    plain.train()
    x, y = batch()
    stats = plain.blocks[0][1].running_mean.clone()
    grads = exit_gradients(plain, x, y, 2)
    assert grads.shape == (plain.depth, sum(p.numel() for p in plain.blocks[1].parameters()))
    assert torch.equal(grads[0], torch.zeros_like(grads[0]))
    assert grads[1:].abs().sum(dim=1).gt(0).all()
    assert plain.training
    assert torch.equal(plain.blocks[0][1].running_mean, stats)
    assert all(p.grad is None for p in plain.parameters())


def test_exit_gradients_check_their_arguments():
    equilibrium, _ = twins()
    x, y = batch()
    with pytest.raises(TypeError, match="MultiExitCNN or a DenseExitCNN"):
        exit_gradients(torch.nn.Linear(2, 2), x, y, 1)
    for block in (0, 4, 1.0, True):
        with pytest.raises(ValueError, match="block"):
            exit_gradients(equilibrium, x, y, block)
    with pytest.raises(ValueError, match="same"):
        exit_gradients(equilibrium, x, y[:-1], 1)
    equilibrium.exit_threshold = 0.5
    with pytest.raises(ValueError, match="every exit"):
        exit_gradients(equilibrium, x, y, 1)


def test_gradient_equilibrium_costs_no_flops():
    equilibrium = GradientEquilibriumCNN(**NARROW_ARCHITECTURE).eval()
    plain = MultiExitCNN(**NARROW_ARCHITECTURE).eval()
    x = torch.randn(1, 1, NARROW_ARCHITECTURE["length"])
    assert measure.count_flops(equilibrium, x) == measure.count_flops(plain, x)
    assert exit_flops(equilibrium, x) == exit_flops(plain, x)


def test_the_narrow_architecture_is_the_books_with_narrower_blocks():
    assert NARROW_ARCHITECTURE["widths"] == (16, 16, 16, 16)
    assert GradientEquilibriumCNN(**NARROW_ARCHITECTURE).depth == 4


def test_a_dense_block_reads_the_input_and_every_earlier_blocks_output():
    dense = DenseExitCNN(**SMALL)
    assert [block[0].in_channels for block in dense.blocks] == [1, 1 + 4, 1 + 4 + 5]
    assert [head.in_features for head in dense.exits] == [w * SMALL["length"] for w in SMALL["widths"]]


def test_a_dense_network_returns_every_exits_logits_like_the_plain_one():
    dense = DenseExitCNN(**SMALL).eval()
    x, _ = batch()
    out = dense(x)
    assert isinstance(out, ModelOutput)
    assert len(out.extras["exit_logits"]) == dense.depth == 3
    assert all(lg.shape == (len(x), SMALL["n_classes"]) for lg in out.extras["exit_logits"])
    assert torch.equal(out.logits, out.extras["exit_logits"][-1])


def test_a_dense_network_run_up_to_exit_k_gives_exactly_the_full_runs_first_k_exits():
    dense = DenseExitCNN(**SMALL).eval()
    x, _ = batch()
    full = dense(x).extras["exit_logits"]
    for k in range(1, dense.depth + 1):
        part = dense(x, upto=k)
        assert len(part.extras["exit_logits"]) == k
        for a, b in zip(part.extras["exit_logits"], full[:k], strict=True):
            assert torch.equal(a, b)


def test_a_dense_block_depends_on_the_input_directly_not_only_through_the_previous_block():
    dense = DenseExitCNN(**SMALL).eval()
    x, _ = batch()
    x.requires_grad_(True)
    features = [x]
    for block in dense.blocks:
        features.append(block(torch.cat(features, dim=1)))
    # Block 3's output, with block 2's output held fixed, still moves with x.
    held = features[2].detach()
    out = dense.blocks[2](torch.cat([x, features[1], held], dim=1)).sum()
    (grad,) = torch.autograd.grad(out, x)
    assert grad.abs().sum() > 0


@pytest.mark.parametrize("upto", [0, 4, 1.5, True])
def test_a_dense_network_rejects_an_exit_it_does_not_have(upto):
    with pytest.raises(ValueError, match="upto"):
        DenseExitCNN(**SMALL)(batch()[0], upto=upto)


@pytest.mark.parametrize("widths", [(), (4, 0), (-1,)])
def test_a_dense_network_rejects_widths_that_are_not_positive(widths):
    with pytest.raises(ValueError, match="widths"):
        DenseExitCNN(widths=widths)


def test_dense_exit_flops_count_each_exits_run_and_equal_the_plain_chains_at_the_first_exit():
    dense = DenseExitCNN(**NARROW_ARCHITECTURE).eval()
    plain = MultiExitCNN(**NARROW_ARCHITECTURE).eval()
    x = torch.randn(1, 1, NARROW_ARCHITECTURE["length"])
    costs = dense_exit_flops(dense, x)
    assert costs == [measure.count_flops(lambda z, k=k: dense(z, upto=k), x) for k in range(1, 5)]
    assert costs[-1] == measure.count_flops(dense, x)
    plain_costs = exit_flops(plain, x)
    assert costs[0] == plain_costs[0]
    assert all(d > p for d, p in zip(costs[1:], plain_costs[1:], strict=True))
    # A convolution's FLOPs grow with the channels it reads: 2 * in * out * kernel * length.
    widths, length, kernel = (
        (16, 16, 16, 16),
        NARROW_ARCHITECTURE["length"],
        NARROW_ARCHITECTURE["kernel_size"],
    )
    extra = [
        2 * (1 + 16 * (k - 1) - (16 if k > 1 else 1)) * widths[k - 1] * kernel * length for k in range(1, 5)
    ]
    assert [d - p for d, p in zip(costs, plain_costs, strict=True)] == [sum(extra[:k]) for k in range(1, 5)]


def test_dense_exit_flops_check_their_arguments():
    dense = DenseExitCNN(**SMALL).eval()
    with pytest.raises(TypeError, match="DenseExitCNN"):
        dense_exit_flops(MultiExitCNN(**SMALL), torch.randn(1, 1, SMALL["length"]))
    with pytest.raises(ValueError, match="batch size 1"):
        dense_exit_flops(dense, torch.randn(2, 1, SMALL["length"]))


def test_exit_gradients_work_on_a_dense_network_and_give_the_last_exits_own_gradient():
    dense = DenseExitCNN(**SMALL).eval()
    x, y = batch()
    grads = exit_gradients(dense, x, y, 1)
    dense.zero_grad()
    F.cross_entropy(dense(x).logits, y).backward()
    last = torch.cat([p.grad.flatten() for p in dense.blocks[0].parameters()])
    torch.testing.assert_close(grads[-1], last)
