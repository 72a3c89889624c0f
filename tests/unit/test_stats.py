import math

import numpy as np
import pytest
import torch

from dyn_helpers.stats import SignTest, Summary, entropy_bits, mutual_information_bits, sign_test, summary


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


def test_the_sign_test_gives_the_exact_binomial_tail_on_the_tested_side():
    twelve_of_twelve = sign_test([0.5] * 12, side="positive")
    assert twelve_of_twelve == SignTest("positive", 12, 0, 0, 1 / 4096)
    ten_of_twelve = sign_test([1.0] * 10 + [-1.0] * 2, side="positive")
    assert ten_of_twelve.p_value == pytest.approx((1 + 12 + 66) / 4096)
    assert sign_test([1.0] * 10 + [-1.0] * 2, side="negative").p_value == pytest.approx(
        sum(math.comb(12, k) for k in range(2, 13)) / 4096
    )


def test_the_sign_test_drops_zeros():
    test = sign_test([0.0, 0.0, -2.0, -1.0, -3.0], side="negative")
    assert (test.n_positive, test.n_negative, test.n_zero) == (0, 3, 2)
    assert test.p_value == pytest.approx(1 / 8)
    assert sign_test([0.0, 0.0], side="positive").p_value == 1.0


def test_the_sign_test_takes_tensors_and_numpy_numbers():
    assert sign_test(torch.tensor([1.0, 2.0, -1.0]), side="positive").n_positive == 2
    assert sign_test([np.float64(1.0), np.float32(-1.0)], side="positive").n_negative == 1


@pytest.mark.parametrize(
    ("values", "side", "error", "message"),
    [
        ([], "positive", ValueError, "empty"),
        ([1.0, math.nan], "positive", ValueError, "finite"),
        ([1.0, math.inf], "negative", ValueError, "finite"),
        ([1.0], "greater", ValueError, "side"),
        ("12", "positive", TypeError, "iterable"),
        ([True, 1.0], "positive", TypeError, "real numbers"),
    ],
)
def test_bad_input_to_the_sign_test_is_reported(values, side, error, message):
    with pytest.raises(error, match=message):
        sign_test(values, side=side)


def test_a_summary_gives_count_mean_sample_sd_and_range():
    assert summary([1.0, 2.0, 3.0, 6.0]) == Summary(4, 3.0, pytest.approx(math.sqrt(14 / 3)), 1.0, 6.0)
    assert summary([2.5]) == Summary(1, 2.5, 0.0, 2.5, 2.5)
    with pytest.raises(ValueError, match="empty"):
        summary([])


def test_a_difference_within_rounding_noise_of_zero_is_a_tie_not_a_sign():
    test = sign_test([1.0, 2.0, 1.987e-06, -3e-15], side="positive")
    assert (test.n_positive, test.n_negative, test.n_zero) == (2, 0, 2)
