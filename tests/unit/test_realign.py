import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from dyn_helpers.tools import calibrate, realign


def _cell(text: str) -> nbformat.NotebookNode:
    cell = new_code_cell("print(...)")
    cell.outputs = [new_output("stream", name="stdout", text=text)]
    return cell


def _record(nb: nbformat.NotebookNode) -> dict:
    rows = calibrate.output_numbers(nb, calibrate.sanitizer())
    return {
        "outputs": [{**{k: r[k] for k in ("cell", "field", "index", "skeleton")}, "sd": [0.1]} for r in rows]
    }


@pytest.fixture
def calibrated():
    nb = new_notebook(cells=[new_markdown_cell("# T"), _cell("accuracy 91.5%\n"), _cell("flops 1200\n")])
    return nb, _record(nb)


def test_a_cell_inserted_before_moves_the_calibration_to_the_new_ordinals(calibrated):
    nb, record = calibrated
    nb.cells.insert(1, new_code_cell("draw()"))
    moved = realign.realigned_outputs(nb, record)
    assert [(r["cell"], r["skeleton"]) for r in moved] == [(1, "accuracy #%\n"), (2, "flops #\n")]
    assert all(r["sd"] == [0.1] for r in moved)
    assert not calibrate.output_problems(nb, {"outputs": moved})


def test_a_new_cell_with_numbers_is_refused_unless_declared_exact(calibrated):
    nb, record = calibrated
    nb.cells.insert(1, _cell("worked example: 0.25 + 0.5 = 0.75\n"))
    with pytest.raises(ValueError, match="exact-new"):
        realign.realigned_outputs(nb, record)
    moved = realign.realigned_outputs(nb, record, exact_new=True)
    assert moved[0] == {
        "cell": 0,
        "field": "stdout",
        "index": 0,
        "skeleton": "worked example: # + # = #\n",
        "sd": [0.0, 0.0, 0.0],
        "exact": True,
    }
    assert [r["cell"] for r in moved[1:]] == [1, 2]


def test_a_changed_output_is_not_matched_to_the_calibration(calibrated):
    nb, record = calibrated
    nb.cells[2] = _cell("flops per input 1200\n")
    with pytest.raises(ValueError, match="code cell 1"):
        realign.realigned_outputs(nb, record)
