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


def _table_cell(plain: str, markdown: str) -> nbformat.NotebookNode:
    cell = new_code_cell("display(table)")
    cell.outputs = [
        new_output("display_data", data={"text/plain": plain, "text/markdown": markdown}, metadata={})
    ]
    return cell


def test_a_table_of_the_same_numbers_takes_their_calibrated_spreads(calibrated):
    previous, _ = calibrated
    previous.cells.append(_cell("width 8 accuracy 91.5 ± 0.7\nwidth 16 accuracy 93.0 ± 0.4\n"))
    record = _record(previous)
    record["outputs"][-1]["sd"] = [0.0, 0.3, 0.1, 0.0, 0.2, 0.1]
    nb, _ = calibrated
    nb = nbformat.from_dict(previous)
    nb.cells[-1] = _table_cell(
        "width  accuracy\n    8  91.5 ± 0.7\n   16  93.0 ± 0.4",
        "| width | accuracy |\n|---:|---:|\n| 8 | 91.5 ± 0.7 |\n| 16 | 93.0 ± 0.4 |",
    )
    with pytest.raises(ValueError, match="reformatted-from"):
        realign.realigned_outputs(nb, record)
    moved = realign.realigned_outputs(nb, record, previous=previous)
    table_rows = [r for r in moved if r["cell"] == 2]
    assert {r["field"] for r in table_rows} == {"text/plain", "text/markdown"}
    assert all(r["sd"] == [0.0, 0.3, 0.1, 0.0, 0.2, 0.1] for r in table_rows)
    assert not calibrate.output_problems(nb, {"outputs": moved})


def test_a_table_with_other_numbers_is_not_taken_for_a_reformatted_one(calibrated):
    previous, _ = calibrated
    previous.cells.append(_cell("width 8 accuracy 91.5\n"))
    record = _record(previous)
    nb = nbformat.from_dict(previous)
    nb.cells[-1] = _table_cell(
        "width  accuracy\n    8  91.6", "| width | accuracy |\n|---:|---:|\n| 8 | 91.6 |"
    )
    with pytest.raises(ValueError, match="code cell 2"):
        realign.realigned_outputs(nb, record, previous=previous)


def test_the_previous_notebook_must_be_the_one_the_record_was_calibrated_on(calibrated):
    previous, record = calibrated
    stale = nbformat.from_dict(previous)
    stale.cells[1] = _cell("accuracy (%) 91.5\n")
    nb = nbformat.from_dict(previous)
    nb.cells.append(_cell("total 3\n"))
    with pytest.raises(ValueError, match="does not print what the record calibrated"):
        realign.realigned_outputs(nb, record, previous=stale)


def test_cells_of_one_shape_are_told_apart_by_their_numbers_with_the_previous_notebook(calibrated):
    previous, _ = calibrated
    previous.cells += [_cell("0.5\n"), _cell("0.25\n")]
    record = _record(previous)
    record["outputs"][-2]["sd"], record["outputs"][-1]["sd"] = [0.5], [0.25]
    nb = nbformat.from_dict(previous)
    del nb.cells[3]  # the cell that printed 0.5 is gone; the one that printed 0.25 remains
    assert realign.realigned_outputs(nb, record)[-1]["sd"] == [0.5]  # by shape alone: the wrong one
    assert realign.realigned_outputs(nb, record, previous=previous)[-1]["sd"] == [0.25]
