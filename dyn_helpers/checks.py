"""The argument checks that many helpers share, written once.

A leaf module: it imports nothing from the package, so `data`, `layers` and every method can use it.
"""

from numbers import Real


def check_positive_ints(**sizes: object) -> None:
    """Raise `ValueError` unless every keyword's value is an int of at least 1 (a bool is not an int).

    `check_positive_ints(width=width, depth=depth)` names the first bad argument in its message.
    """
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def check_unit_interval(value: object, name: str, *, none_ok: bool = False) -> None:
    """Raise `ValueError` naming `name` unless `value` is a real number in [0, 1] (a bool is not).

    With `none_ok`, None passes too: thresholds that may be unset, meaning "never exit early".
    """
    if none_ok and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, Real) or not 0.0 <= value <= 1.0:
        alternative = " or None" if none_ok else ""
        raise ValueError(f"{name} must be in [0, 1]{alternative}, got {value!r}")
