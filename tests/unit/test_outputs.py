"""Specification of `dyn_helpers.outputs`: one output protocol for static and dynamic models."""

import pytest
import torch

from dyn_helpers.outputs import Mode, ModelOutput, as_output, concat, logits_of


def _output(n: int, ponder: float) -> ModelOutput:
    return ModelOutput(
        torch.randn(n, 3),
        decisions={"gates": torch.ones(n, 2)},
        executed=torch.ones(n, 2),
        extras={"exit_logits": [torch.randn(n, 3), torch.randn(n, 3)], "ponder": torch.tensor(ponder)},
    )


def test_a_static_models_logits_conform_as_they_are():
    logits = torch.randn(4, 3)
    assert logits_of(logits) is logits
    assert as_output(logits).decisions == {} and as_output(logits).executed is None


def test_concat_joins_batches_and_weighs_scalars_by_batch_size():
    joined = concat([_output(3, 1.0), _output(1, 5.0)])
    assert joined.logits.shape == (4, 3) and joined.decisions["gates"].shape == (4, 2)
    assert joined.executed.shape == (4, 2)
    assert [t.shape for t in joined.extras["exit_logits"]] == [(4, 3), (4, 3)]
    assert joined.extras["ponder"].item() == pytest.approx(2.0)


def test_concat_of_logits_is_logits():
    assert concat([torch.zeros(2, 3), torch.ones(1, 3)]).shape == (3, 3)


def test_decisions_must_have_one_row_per_input():
    with pytest.raises(ValueError, match="decision 'gates'"):
        ModelOutput(torch.randn(4, 3), decisions={"gates": torch.ones(3, 2)})


def test_anything_else_is_not_a_model_output():
    with pytest.raises(TypeError, match="ModelOutput"):
        as_output((torch.randn(2, 3),))


def test_detach_cuts_the_graph():
    logits = torch.randn(2, 3, requires_grad=True)
    out = ModelOutput(logits * 2, extras={"probs": logits.sigmoid()}).detach()
    assert not out.logits.requires_grad and not out.extras["probs"].requires_grad


class _Switchable:
    execution = Mode("dense", "sparse")

    def __init__(self, execution: str = "dense") -> None:
        self.execution = execution


def test_a_mode_is_an_attribute_checked_against_its_choices():
    model = _Switchable()
    model.execution = "sparse"
    assert model.execution == "sparse" and _Switchable.execution.choices == ("dense", "sparse")
    with pytest.raises(ValueError, match="execution must be one of"):
        model.execution = "fast"
