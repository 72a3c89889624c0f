"""Specification of `dyn_helpers.layers`: the shared block, head, static twin and row selection."""

import pytest
import torch

from dyn_helpers.layers import StaticCNN, add_residual_on_rows, conv_block


def test_the_residual_runs_only_on_the_selected_rows():
    torch.manual_seed(0)
    block = conv_block(4, 4).eval()
    x = torch.randn(5, 4, 8)
    run = torch.tensor([1, 0, 1, 0, 0])
    seen = []
    block.register_forward_hook(lambda module, args, out: seen.append(len(args[0])))
    with torch.no_grad():
        y = add_residual_on_rows(block, x, run)
        full = x + block(x)
    assert seen[0] == 2
    assert torch.equal(y[run == 0], x[run == 0]) and torch.allclose(y[run == 1], full[run == 1])


def test_no_selected_row_leaves_the_input_unchanged_and_computes_nothing():
    block = conv_block(2, 2).eval()
    x = torch.randn(3, 2, 6)
    assert torch.equal(add_residual_on_rows(block, x, torch.zeros(3, dtype=torch.bool)), x)


def test_run_must_give_one_decision_per_input():
    with pytest.raises(ValueError, match="run must have shape"):
        add_residual_on_rows(conv_block(2, 2), torch.randn(3, 2, 6), torch.ones(2))


def test_a_static_twin_returns_logits():
    assert StaticCNN(2, widths=(8, 8), length=10, n_classes=3)(torch.randn(4, 1, 10)).shape == (4, 3)
