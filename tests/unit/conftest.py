"""Fixtures shared by the unit tests: a small multi-exit network (early exits and their objectives)."""

import pytest
import torch

from dyn_helpers.sample_wise.early_exit import MultiExitCNN


@pytest.fixture
def model():
    """A small multi-exit CNN whose exits are sure enough for inputs to leave at each of them."""
    torch.manual_seed(0)
    model = MultiExitCNN(widths=(8, 8, 8), length=12).eval()
    with torch.no_grad():
        for head in model.exits:
            head.weight.mul_(10)
    return model
