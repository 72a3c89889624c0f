"""The argument checks that many helpers share, written once.

A leaf module: it imports nothing from the package, so `data`, `layers` and every method can use it.
"""


def check_positive_ints(**sizes: object) -> None:
    """Raise `ValueError` unless every keyword's value is an int of at least 1 (a bool is not an int).

    `check_positive_ints(width=width, depth=depth)` names the first bad argument in its message.
    """
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
