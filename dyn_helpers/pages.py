"""What a page shows besides figures: the source of a helper, highlighted, and glued numbers.

A notebook that uses a model or function from `dyn_helpers` shows its source instead of a copy,
so the page and the package cannot drift apart. The source is part of the notebook's code
fingerprint (`dyn_helpers.tools.fingerprint`), so its display needs no output comparison.

Numbers the prose quotes are glued (myst-nb `glue`) in one call, `glue_all`, from a cell the page
hides; the prose gives each its format (`{glue:text}`gap:.2f``).
"""

import inspect
from collections.abc import Callable, Mapping
from numbers import Integral, Real
from typing import Any

from IPython.display import Code


def show_source(*objects: type | Callable) -> Code:
    """The source of one or more classes or functions, highlighted as Python, blank-line separated."""
    if not objects:
        raise TypeError("show_source needs at least one class or function")
    sources = []
    for obj in objects:
        if not (inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismethod(obj)):
            raise TypeError(f"show_source shows classes, functions and methods, got {type(obj).__name__}")
        sources.append(inspect.getsource(obj))
    return Code("\n".join(sources), language="python")


def glue_all(values: Mapping[str, Any], decimals: int | None = None) -> None:
    """Glue every value under its name for the prose, without displaying it.

    With `decimals`, real numbers are stored rounded to that many places, so the stored outputs
    the tests compare do not carry digits the page never shows; integers and text are kept as they are.
    """
    from myst_nb import glue

    if not isinstance(values, Mapping):
        raise TypeError(f"values must map names to values, got {type(values).__name__}")
    if decimals is not None and (isinstance(decimals, bool) or not isinstance(decimals, int) or decimals < 0):
        raise ValueError(f"decimals must be None or a non-negative int, got {decimals!r}")
    for name, value in values.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"glue names must be non-empty str, got {name!r}")
        if decimals is not None and isinstance(value, Real) and not isinstance(value, Integral):
            value = round(float(value), decimals)
        glue(name, value, display=False)
