"""Specification of `dyn_helpers.spatial.sparse_conv`: one masked CNN, executed dense, masked and sparse."""

import pytest
import torch

from dyn_helpers.harness import Candidate, choose_static
from dyn_helpers.measure import count_flops
from dyn_helpers.outputs import ModelOutput
from dyn_helpers.spatial.sparse_conv import (
    MaskUnit,
    ResidualBranch,
    ResidualCNN,
    SparseResidualCNN,
    expand_mask,
    gather_scatter_bytes,
    gather_scatter_only,
    masked_residual,
    sparse_residual,
    spatial_cost,
    static_family,
)
from dyn_helpers.training.efficiency import target_rate_loss


def trained_looking_branch(channels: int = 6, hidden: int = 10) -> ResidualBranch:
    """A branch in evaluation mode whose BatchNorm statistics are far from their defaults."""
    torch.manual_seed(0)
    branch = ResidualBranch(channels, hidden)
    for bn in (branch.bn1, branch.bn2):
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.normal_()
        bn.bias.data.normal_()
    return branch.eval()


def canvases(n: int = 3, size: int = 16) -> torch.Tensor:
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("gather", ["tiles", "positions"])
@pytest.mark.parametrize("block_size", [1, 2, 4])
def test_sparse_execution_equals_the_masked_dense_computation(block_size, gather):
    branch = trained_looking_branch()
    x = torch.randn(2, 6, 16, 16)
    mask = (torch.rand(2, 1, 16 // block_size, 16 // block_size) < 0.3).float()
    with torch.no_grad():
        masked = masked_residual(branch, x, mask)
        sparse = sparse_residual(branch, x, mask, gather=gather)
    active = expand_mask(mask, block_size).bool().expand_as(x)
    assert active.any() and not active.all()
    assert torch.allclose(sparse[active], masked[active], atol=1e-5)
    assert torch.equal(sparse[~active], x[~active])


def test_sparse_execution_with_every_position_on_is_the_dense_block_and_with_none_is_the_identity():
    branch = trained_looking_branch()
    x = torch.randn(1, 6, 8, 8)
    with torch.no_grad():
        everywhere = sparse_residual(branch, x, torch.ones(1, 1, 8, 8))
        nowhere = sparse_residual(branch, x, torch.zeros(1, 1, 8, 8))
        assert torch.allclose(everywhere, x + branch(x), atol=1e-5)
    assert torch.equal(nowhere, x)


def test_sparse_execution_leaves_its_input_alone_unless_asked_to_write_into_it():
    branch = trained_looking_branch()
    x = torch.randn(1, 6, 8, 8)
    before = x.clone()
    with torch.no_grad():
        sparse_residual(branch, x, torch.ones(1, 1, 4, 4))
    assert torch.equal(x, before)


@pytest.mark.parametrize(("block_size", "gather"), [(1, "tiles"), (4, "tiles"), (4, "positions")])
def test_the_model_gives_the_same_logits_sparse_and_masked(block_size, gather):
    model = SparseResidualCNN(8, 2, block_size=block_size, density=0.3, gather=gather).eval()
    x = canvases()
    with torch.no_grad():
        masked = model(x)
        model.execution = "sparse"
        sparse = model(x)
    assert torch.allclose(sparse.logits, masked.logits, atol=1e-5)
    assert torch.equal(sparse.decisions["masks"], masked.decisions["masks"])
    assert torch.equal(sparse.executed, sparse.decisions["masks"].flatten(1))
    assert masked.executed is None


def test_a_shared_mask_is_computed_once_and_serves_every_block_in_every_execution():
    model = SparseResidualCNN(8, 3, shared_mask=True, density=0.3).eval()
    assert len(model.masks) == 1
    x = canvases()
    with torch.no_grad():
        masked = model(x)
        model.execution = "sparse"
        sparse = model(x)
    masks = sparse.decisions["masks"]
    assert torch.equal(masks[:, 0], masks[:, 1]) and torch.equal(masks[:, 0], masks[:, 2])
    assert torch.allclose(sparse.logits, masked.logits, atol=1e-5)


def test_sparse_execution_with_gradients_enabled_gives_the_same_logits():
    model = SparseResidualCNN(8, 2, density=0.3, execution="sparse").eval()
    x = canvases()
    with torch.no_grad():
        expected = model(x).logits
    assert torch.allclose(model(x).logits, expected, atol=1e-6)


def test_dense_execution_ignores_the_mask():
    model = SparseResidualCNN(8, 2, execution="dense").eval()
    x = canvases()
    with torch.no_grad():
        before = model(x)
        for unit in model.masks:
            torch.nn.init.constant_(unit.conv.bias, -10.0)  # every mask off
        after = model(x)
        model.execution = "masked"
        masked = model(x)
    assert isinstance(before, ModelOutput) and before.decisions == {}
    assert torch.equal(after.logits, before.logits)
    assert not torch.allclose(masked.logits, before.logits)
    assert bool((masked.decisions["masks"] == 0).all())


def test_dense_execution_is_the_static_network_with_the_same_weights():
    model = SparseResidualCNN(8, 2, execution="dense").eval()
    static = ResidualCNN(8, 2).eval()
    static.load_state_dict(model.state_dict(), strict=False)
    with torch.no_grad():
        assert torch.equal(model(canvases()).logits, static(canvases()))


@pytest.mark.parametrize(("block_size", "kept"), [(1, 64), (2, 16), (4, 4)])
def test_evaluation_masks_keep_the_requested_density_in_every_input(block_size, kept):
    model = SparseResidualCNN(8, 3, block_size=block_size, density=0.25).eval()
    with torch.no_grad():
        output = model(canvases(4))
    cells = (16 // block_size) ** 2
    assert bool((output.extras["densities"] == kept / cells).all())
    assert bool((output.decisions["masks"].sum(dim=(2, 3)) == 64).all())


def test_without_a_density_an_evaluation_mask_is_on_where_its_logit_is_positive():
    unit = MaskUnit(4, kernel_size=3).eval()
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        mask, prob = unit(x)
        assert torch.equal(mask, (unit.conv(x) > 0).float())
        assert torch.equal(unit(x).mask, mask)
    assert torch.equal(mask, (prob > 0.5).float())


def test_training_masks_are_hard_samples_that_pass_a_gradient_to_the_mask_unit():
    torch.manual_seed(0)
    model = SparseResidualCNN(8, 2, block_size=2).train()
    output = model(canvases(4))
    masks = output.decisions["masks"]
    assert bool(((masks == 0) | (masks == 1)).all())
    target_rate_loss(output.extras["densities"], 0.2).backward()
    assert all(unit.conv.bias.grad.abs().item() > 0 for unit in model.masks)


def test_the_target_rate_loss_lowers_the_density_of_the_masks():
    torch.manual_seed(0)
    model = SparseResidualCNN(4, 2)
    optimiser = torch.optim.Adam(model.masks.parameters(), lr=0.2)
    x = canvases(8, size=8)
    densities = []
    for _ in range(15):
        output = model(x)
        loss = target_rate_loss(output.extras["densities"], 0.2)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        densities.append(output.extras["densities"].mean().item())
    assert densities[0] > 0.7 and densities[-1] < 0.4


def test_executed_flops_and_bytes_moved_grow_with_density():
    model = SparseResidualCNN(8, 2)
    costs = []
    for density in (0.1, 0.5, 1.0):
        model.density = density
        costs.append(spatial_cost(model, canvases(2)))
    executed = [c.flops_executed[0].item() for c in costs]
    moved = [c.bytes_moved[0].item() for c in costs]
    assert executed[0] < executed[1] < executed[2] == costs[2].flops_masked
    assert moved[0] < moved[1] < moved[2]
    assert costs[0].flops_dense < costs[0].flops_masked  # the mask units cost a little
    assert bool((costs[0].flops_counted_as_saved > 0).all())
    assert bool((costs[2].flops_counted_as_saved == 0).all())


def test_spatial_cost_restores_the_model_s_mode():
    model = SparseResidualCNN(8, 1, density=0.5).train()
    cost = spatial_cost(model, canvases(2))
    assert model.execution == "masked" and model.training
    assert cost.flops_executed.shape == cost.bytes_moved.shape == cost.density.shape == (2,)
    assert torch.allclose(cost.density, torch.full((2,), 0.5))


def test_bytes_moved_count_each_gathered_window_and_each_scattered_block():
    assert gather_scatter_bytes(torch.tensor([1]), 1, 16).item() == (9 + 1) * 16 * 4
    assert gather_scatter_bytes(torch.tensor([3]), 4, 8, 2).item() == 3 * (36 + 16) * 8 * 2
    by_position = gather_scatter_bytes(torch.tensor([3]), 4, 8, 2, gather="positions")
    assert by_position.item() == 3 * (9 * 16 + 16) * 8 * 2


def test_the_model_reports_the_bytes_of_its_gathers_and_scatters():
    model = SparseResidualCNN(8, 2, block_size=4, density=0.25, execution="sparse").eval()
    with torch.no_grad():
        output = model(canvases(2))
    per_input = gather_scatter_bytes(torch.tensor(2 * 4), 4, 8)  # 2 blocks, 4 of 16 tiles each
    assert bool((output.extras["bytes_moved"] == per_input).all())


def test_the_static_family_spans_widths_and_resolutions_for_choose_static():
    family = static_family((4, 8), downsamples=(1, 2), n_blocks=2)
    assert list(family) == ["width 4", "width 8", "width 4, 1/2 resolution", "width 8, 1/2 resolution"]
    x = canvases(1)
    flops = {name: count_flops(model.eval(), x) for name, model in family.items()}
    assert flops["width 8, 1/2 resolution"] < flops["width 8"] / 3
    candidates = [Candidate(name, f, 0.5, 0.5) for name, f in flops.items()]
    assert choose_static(candidates, budget=flops["width 4"]).twin.flops <= flops["width 4"]
    assert all(isinstance(model(x), torch.Tensor) for model in family.values())


@pytest.mark.parametrize("density", [0.0, -0.1, 1.5, True, "half"])
def test_densities_outside_zero_to_one_are_rejected(density):
    with pytest.raises(ValueError, match="density"):
        MaskUnit(4, density=density)
    with pytest.raises(ValueError, match="density"):
        SparseResidualCNN(4, 1, density=density)
    model = SparseResidualCNN(4, 1)
    with pytest.raises(ValueError, match="density"):
        model.density = density


@pytest.mark.parametrize(
    "shape", [(2, 1, 3, 3), (2, 2, 8, 8), (1, 1, 8, 8), (2, 8, 8), (2, 1, 8, 4), (2, 1, 16, 16)]
)
def test_masks_of_the_wrong_shape_are_rejected(shape):
    branch = trained_looking_branch()
    x = torch.randn(2, 6, 8, 8)
    with pytest.raises(ValueError, match="mask must have shape"):
        sparse_residual(branch, x, torch.ones(shape))
    with pytest.raises(ValueError, match="mask must have shape"):
        masked_residual(branch, x, torch.ones(shape))


def test_a_block_size_that_does_not_divide_the_map_is_rejected():
    with pytest.raises(ValueError, match="block_size 3 does not divide the 16x16"):
        SparseResidualCNN(4, 1, block_size=3)(canvases())


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"block_size": 0}, "block_size"),
        ({"kernel_size": 2}, "kernel_size"),
        ({"temperature": 0.0}, "temperature"),
    ],
)
def test_bad_mask_unit_arguments_are_rejected(kwargs, name):
    with pytest.raises(ValueError, match=name):
        MaskUnit(4, **kwargs)


def test_sparse_execution_needs_evaluation_mode_and_a_channels_last_map_to_write_into():
    model = SparseResidualCNN(4, 1, execution="sparse").train()
    with pytest.raises(RuntimeError, match="eval"):
        model(canvases())
    with pytest.raises(ValueError, match="channels-last"):
        sparse_residual(
            trained_looking_branch(), torch.randn(1, 6, 8, 8), torch.ones(1, 1, 8, 8), inplace=True
        )


def test_an_unknown_execution_or_gather_and_an_image_with_channels_are_rejected():
    with pytest.raises(ValueError, match="execution"):
        SparseResidualCNN(4, 1, execution="skipped")
    with pytest.raises(ValueError, match="gather"):
        SparseResidualCNN(4, 1, gather="rows")
    with pytest.raises(TypeError, match="shared_mask"):
        SparseResidualCNN(4, 1, shared_mask="yes")
    with pytest.raises(ValueError, match="gather"):
        sparse_residual(
            trained_looking_branch(), torch.randn(1, 6, 8, 8), torch.ones(1, 1, 8, 8), gather="rows"
        )
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        ResidualCNN(4, 1)(torch.rand(2, 3, 16, 16))


@pytest.mark.parametrize("gather", ["tiles", "positions"])
def test_the_data_movement_alone_leaves_the_map_as_it_was(gather) -> None:
    x = torch.randn(2, 4, 8, 8)
    mask = (torch.rand(2, 1, 4, 4) < 0.5).float()
    moved = gather_scatter_only(x, mask, gather=gather)
    assert torch.equal(moved, x) and moved.is_contiguous(memory_format=torch.channels_last)
    assert moved.data_ptr() != x.data_ptr()
    assert torch.equal(gather_scatter_only(x, torch.zeros(2, 1, 4, 4), gather=gather), x)


def test_the_data_movement_alone_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="gather must be one of"):
        gather_scatter_only(torch.randn(1, 4, 8, 8), torch.ones(1, 1, 8, 8), gather="rows")
    with pytest.raises(ValueError, match="mask must have shape"):
        gather_scatter_only(torch.randn(1, 4, 8, 8), torch.ones(1, 1, 3, 3))
