"""Specification of `dyn_helpers.checks`: the argument checks that many helpers share."""

import pytest

from dyn_helpers.checks import check_positive_ints


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
