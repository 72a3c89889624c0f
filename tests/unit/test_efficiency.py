import pytest
import torch

from dyn_helpers.training.efficiency import expected_usage, target_rate_loss


def test_efficiency_losses():
    probs = torch.tensor([[0.2, 1.0], [0.4, 0.0]])
    assert expected_usage(probs).item() == pytest.approx(0.4)
    assert target_rate_loss(probs, 0.5).item() == pytest.approx(((0.3 - 0.5) ** 2 + 0.0) / 2)


@pytest.mark.parametrize("target", [-0.1, 1.5])
def test_target_rates_outside_the_unit_interval_are_rejected(target):
    with pytest.raises(ValueError, match="target"):
        target_rate_loss(torch.full((4, 2), 0.5), target)
