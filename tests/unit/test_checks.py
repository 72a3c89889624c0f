"""Specification of `dyn_helpers.checks`: the argument checks that many helpers share."""

import numpy as np
import pytest
import torch

from dyn_helpers.checks import check_positive_ints, check_unit_interval


def test_positive_ints_pass_silently():
    assert check_positive_ints(width=1, depth=4, n_experts=10**6) is None
    assert check_positive_ints() is None


@pytest.mark.parametrize("value", [0, -1, 1.5, 2.0, True, False, "3", None])
def test_anything_but_a_positive_int_is_rejected_with_its_name_and_value(value):
    with pytest.raises(ValueError) as error:
        check_positive_ints(width=value)
    assert str(error.value) == f"width must be a positive int, got {value!r}"


def test_the_first_bad_argument_is_named():
    with pytest.raises(ValueError, match="^depth must"):
        check_positive_ints(width=4, depth=0, k=-1)


@pytest.mark.parametrize("value", [0, 0.0, 0.5, 1, 1.0, np.float32(0.9)])
def test_a_number_in_zero_to_one_passes(value):
    assert check_unit_interval(value, "threshold") is None


@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan"), True, "0.5", None, torch.tensor(0.5)])
def test_anything_but_a_number_in_zero_to_one_is_rejected_with_its_name_and_value(value):
    with pytest.raises(ValueError) as error:
        check_unit_interval(value, "threshold")
    assert str(error.value) == f"threshold must be in [0, 1], got {value!r}"


def test_none_passes_only_where_it_is_allowed_and_the_message_says_so():
    assert check_unit_interval(None, "threshold", none_ok=True) is None
    with pytest.raises(ValueError, match=r"^threshold must be in \[0, 1\] or None, got 2$"):
        check_unit_interval(2, "threshold", none_ok=True)
