"""Specification of `dyn_helpers.pages`: helper source shown highlighted."""

import pytest
from IPython.display import Code

from dyn_helpers.pages import show_source
from dyn_helpers.sample_wise.early_exit import MultiExitCNN, early_exit_predictions


def test_show_source_highlights_the_source_of_every_object_in_order():
    shown = show_source(MultiExitCNN.forward, early_exit_predictions)
    assert isinstance(shown, Code)
    first, second = shown.data.index("def forward"), shown.data.index("def early_exit_predictions")
    assert first < second
    assert "highlight" in shown._repr_html_()


@pytest.mark.parametrize("bad", [(), (42,), ("text",)])
def test_show_source_rejects_anything_but_classes_and_functions(bad):
    with pytest.raises(TypeError):
        show_source(*bad)
