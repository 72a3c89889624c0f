"""Specification of `dyn_helpers.pages`: helper source shown highlighted."""

import pytest
from IPython.display import Code

from dyn_helpers.pages import glue_all, show_source
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


def test_glue_all_glues_every_value_rounded_only_where_asked(monkeypatch):
    import myst_nb

    glued = {}
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display: glued.update({name: (value, display)}))
    glue_all({"gap": 0.123456, "runs": 12, "from": "12 seeds"}, decimals=2)
    assert glued == {"gap": (0.12, False), "runs": (12, False), "from": ("12 seeds", False)}


@pytest.mark.parametrize(
    ("values", "decimals", "error"),
    [([1], None, TypeError), ({"": 1}, None, ValueError), ({"a": 1}, -1, ValueError)],
)
def test_glue_all_rejects_what_it_cannot_glue(values, decimals, error):
    with pytest.raises(error):
        glue_all(values, decimals)
