"""What a page shows besides figures: the source of a helper, highlighted.

A notebook that uses a model or function from `dyn_helpers` shows its source instead of a copy,
so the page and the package cannot drift apart. The source is part of the notebook's code
fingerprint (`dyn_helpers.tools.fingerprint`), so its display needs no output comparison.
"""

import inspect
from collections.abc import Callable

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
