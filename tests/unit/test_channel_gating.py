import pytest
import torch

from dyn_helpers.layers import StaticCNN
from dyn_helpers.measure import count_flops
from dyn_helpers.outputs import ModelOutput
from dyn_helpers.sample_wise.channel_gating import ChannelGatedCNN, GatedConvBlock, channel_usage, top_k_gate


def _sparse(model: ChannelGatedCNN) -> ChannelGatedCNN:
    model.execution = "sparse"
    return model


def _model(**kwargs) -> ChannelGatedCNN:
    torch.manual_seed(0)
    model = ChannelGatedCNN((8, 8, 8), **{"keep": 0.5, **kwargs})
    for block in model.blocks:  # non-trivial running statistics, so that BatchNorm is really checked
        block.bn.running_mean.uniform_(-0.5, 0.5)
        block.bn.running_var.uniform_(0.5, 2.0)
        if block.saliency is not None:
            torch.nn.init.normal_(block.saliency.bias, 1.0, 0.5)
    return model.eval()


def test_top_k_gate_keeps_the_k_largest_saliencies_and_zeroes_the_rest():
    saliency = torch.tensor([[0.1, 0.9, 0.5, 0.3], [2.0, 0.0, 1.0, 3.0]])
    assert torch.equal(top_k_gate(saliency, 2), torch.tensor([[0.0, 0.9, 0.5, 0.0], [2.0, 0.0, 0.0, 3.0]]))


@pytest.mark.parametrize("k", [0, 5])
def test_top_k_gate_rejects_k_outside_the_channel_count(k):
    with pytest.raises(ValueError, match="k must be"):
        top_k_gate(torch.rand(2, 4), k)


@pytest.mark.parametrize("keep", [0.0, 1.5, -0.1, True])
def test_keep_must_be_a_fraction_of_channels(keep):
    with pytest.raises(ValueError, match="keep"):
        ChannelGatedCNN((8, 8), keep=keep)


def test_each_gated_block_keeps_round_keep_times_width_channels_per_input():
    model = _model()
    usage = channel_usage(model, torch.randn(16, 1, 40))
    assert [block.k for block in model.blocks] == [4, 4, 4]
    for used in usage:
        assert used.shape == (16, 8)
        assert (used.sum(dim=1) <= 4).all()


def test_an_ungated_first_block_keeps_every_channel():
    model = _model(gate_first=False)
    assert model.blocks[0].saliency is None and model.blocks[0].k == 8
    assert channel_usage(model, torch.randn(5, 1, 40))[0].all()


def test_dense_execution_reports_the_kept_channels_and_each_blocks_gate():
    model = _model()
    output = model(torch.randn(5, 1, 40))
    assert isinstance(output, ModelOutput) and output.executed is None
    gates = output.extras["gates"]
    assert [gate.shape for gate in gates] == [(5, 8)] * 3
    assert torch.equal(output.decisions["channels"], torch.cat([gate > 0 for gate in gates], dim=1))


def test_sparse_execution_gives_the_dense_logits_and_decisions():
    for gate_first in (True, False):
        model = _model(gate_first=gate_first)
        x = torch.randn(6, 1, 40)
        with torch.no_grad():
            dense = model(x)
            sparse = _sparse(model)(x)
        assert torch.allclose(dense.logits, sparse.logits, atol=1e-5)
        assert torch.equal(dense.decisions["channels"], sparse.decisions["channels"])


def test_sparse_execution_reports_the_channels_it_computed():
    model = _sparse(_model(gate_first=False))
    output = model(torch.randn(4, 1, 40))
    first, rest = output.executed[:, :8], output.executed[:, 8:]
    assert first.all() and rest.sum(dim=1).tolist() == [2 * 4] * 4
    assert not (output.decisions["channels"] & ~output.executed).any()


def test_the_execution_mode_is_checked_when_set():
    model = _model()
    with pytest.raises(ValueError, match="execution"):
        model.execution = "fast"
    with pytest.raises(ValueError, match="execution"):
        ChannelGatedCNN((8,), execution="executed")
    assert ChannelGatedCNN((8,), execution="sparse").execution == "sparse"


def test_executed_flops_count_only_active_input_times_active_output_channels():
    model = _model()
    length, kernel, classes, width, k = 40, 5, 10, 8, 4
    convs = 2 * k * 1 * kernel * length + 2 * (2 * k * k * kernel * length)
    predictors = 2 * width * 1 + 2 * (2 * width * k)
    head = 2 * classes * k * length
    assert count_flops(_sparse(model), torch.randn(1, 1, 40)) == convs + predictors + head


def test_keeping_every_channel_costs_the_static_network_plus_the_predictors():
    model = ChannelGatedCNN((8, 8), keep=1.0, execution="sparse").eval()
    static = count_flops(StaticCNN(2, widths=(8, 8)), torch.randn(1, 1, 40))
    assert count_flops(model, torch.randn(1, 1, 40)) == static + 2 * 8 * 1 + 2 * 8 * 8


def test_sparse_execution_runs_each_input_alone_and_only_in_eval_mode():
    model = _sparse(_model())
    x = torch.randn(3, 1, 40)
    with torch.no_grad():
        alone = torch.cat([model(x[i : i + 1]).logits for i in range(3)])
    assert torch.equal(model(x).logits, alone)
    model.train()
    with pytest.raises(RuntimeError, match="eval"):
        model(x)


def test_gradients_reach_the_saliency_predictor_through_the_kept_channels():
    model = _model().train()
    model(torch.randn(4, 1, 40)).logits.sum().backward()
    assert all(block.saliency.weight.grad.abs().sum() > 0 for block in model.blocks)


def test_bad_sizes_and_models_are_rejected():
    with pytest.raises(ValueError, match="widths"):
        ChannelGatedCNN((), keep=0.5)
    with pytest.raises(ValueError, match="c_in"):
        GatedConvBlock(0, 4, keep=0.5)
    with pytest.raises(TypeError, match="ChannelGatedCNN"):
        channel_usage(StaticCNN(1, widths=(8,)), torch.randn(1, 1, 40))
