import pytest
import torch

from dyn_helpers.stats import entropy_bits, mutual_information_bits


def test_mutual_information_and_entropy_of_known_cases():
    labels = torch.arange(8) % 4
    assert mutual_information_bits(labels, labels) == pytest.approx(2.0)
    assert entropy_bits(labels) == pytest.approx(2.0)
    assert mutual_information_bits(labels, torch.arange(8) // 4) == pytest.approx(0.0)


def test_labels_need_not_be_contiguous_integers():
    assert mutual_information_bits(torch.tensor([3, 3, 7, 7]), torch.tensor([-1, -1, 5, 5])) == pytest.approx(
        1.0
    )


@pytest.mark.parametrize(
    ("a", "b", "message"),
    [
        (torch.arange(3), torch.arange(4), "same length"),
        (torch.arange(4).view(2, 2), torch.arange(4).view(2, 2), "1-D"),
        (torch.arange(0), torch.arange(0), "empty"),
    ],
)
def test_bad_inputs_are_reported(a, b, message):
    with pytest.raises(ValueError, match=message):
        mutual_information_bits(a, b)
