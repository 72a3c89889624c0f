"""Specification of `dyn_helpers.tools.calibrate`: runs planned, summarised, and claims held to the rule."""

import math

import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from dyn_helpers.tools import calibrate


def run(seed: int, value: float, accuracy: float, setting: str = "default") -> dict:
    return {
        "seed": seed,
        "setting": setting,
        "code_fingerprint": "f",
        "wall_time_s": 1.0,
        "claims": [{"key": "gap", "text": "a gap", "value": value, "op": "at_least", "bound": 0.0}],
        "outputs": [
            {"cell": 2, "field": "stdout", "index": 0, "skeleton": "depth #: #%", "values": [4.0, accuracy]},
        ],
    }


def test_the_plan_has_twelve_seeds_far_apart_and_four_under_the_second_setting() -> None:
    plan = calibrate.plan()
    seeds = sorted({seed for seed, _ in plan})
    assert len(plan) == 16 and len(seeds) == 12 and 0 in seeds
    assert min(b - a for a, b in zip(seeds, seeds[1:], strict=False)) >= 100
    assert sum(setting == "avx2" for _, setting in plan) == 4


def test_second_setting_seeds_must_be_base_seeds() -> None:
    with pytest.raises(ValueError, match="among the base seeds"):
        calibrate.plan(seeds=(0, 1), second=(2,))


def test_a_summary_gives_claim_statistics_and_per_number_spreads() -> None:
    record = calibrate.summarise(
        "chapters/x.ipynb", [run(0, 1.0, 97.0), run(1, 3.0, 98.0), run(2, 2.0, 96.0)]
    )
    gap = record["claims"]["gap"]
    assert gap["values"] == [1.0, 3.0, 2.0] and gap["mean"] == 2.0 and gap["sd"] == pytest.approx(1.0)
    [row] = record["outputs"]
    assert row["skeleton"] == "depth #: #%" and row["sd"] == [0.0, pytest.approx(1.0)]


def test_an_output_whose_shape_changes_with_the_seed_is_marked_as_varying() -> None:
    other = run(1, 1.0, 97.0)
    other["outputs"][0]["skeleton"] = "width #: #%"
    record = calibrate.summarise("chapters/x.ipynb", [run(0, 1.0, 97.0), other])
    assert record["outputs"][0] == {
        "cell": 2,
        "field": "stdout",
        "index": 0,
        "varies": True,
        "skeletons": ["depth #: #%", "width #: #%"],
        "line_skeletons": ["depth #: #%", "width #: #%"],
    }
    assert calibrate.output_sds(record, 2, "stdout", 0, "depth #: #%") is None
    row = record["outputs"][0]
    assert calibrate.shape_seen(row, "depth 4: 97.1%", "width 8: 96.3%")
    assert not calibrate.shape_seen(row, "depth 4: 97.1%", "height 8: 96.3%")
    assert not calibrate.shape_seen(row, "depth 4: 97.1%", "depth 4: 97.1%\ndepth 2: 90.0%")


def test_a_stored_output_of_a_shape_the_calibration_never_saw_is_a_problem() -> None:
    cell = new_code_cell("print(1)", outputs=[new_output("stream", name="stdout", text="depth 4: 97.2%")])
    nb = new_notebook(cells=[new_code_cell("a = 1"), new_code_cell("b = 2"), cell])
    seen = calibrate.summarise("chapters/x.ipynb", [run(0, 1.0, 97.0)])
    assert calibrate.output_problems(nb, seen) == []
    cell.outputs[0].text = "width 4: 97.2%"
    assert "changed shape" in calibrate.output_problems(nb, seen)[0]
    assert "no calibration" in calibrate.output_problems(nb, {})[0]


def test_the_margin_counts_standard_deviations_on_the_claimed_side() -> None:
    assert calibrate.margin_sd("at_least", 0.0, 2.0, 0.5) == 4.0
    assert calibrate.margin_sd("at_most", 0.6, 0.5, 0.05) == pytest.approx(2.0)
    assert calibrate.margin_sd("at_most", 1.0, 1.0, 0.0) == math.inf
    assert calibrate.margin_sd("at_least", 1.0, 0.0, 0.0) == -math.inf
    with pytest.raises(ValueError, match="op"):
        calibrate.margin_sd("below", 0.0, 1.0, 1.0)


def test_a_bound_too_close_to_the_calibration_mean_is_a_problem() -> None:
    record = calibrate.summarise("chapters/x.ipynb", [run(s, 1.0 + 0.1 * (s % 3), 97.0) for s in range(16)])
    near = [{"key": "gap", "op": "at_least", "bound": 0.9}]
    far = [{"key": "gap", "op": "at_least", "bound": 0.5}]
    assert "sd from the calibration mean" in calibrate.claim_problems(near, record, 16)[0]
    assert calibrate.claim_problems(far, record, 16) == []
    assert (
        "no calibration"
        in calibrate.claim_problems([{"key": "new", "op": "at_least", "bound": 0}], record, 16)[0]
    )
    assert "runs" in calibrate.claim_problems(far, record, 20)[0]


def test_stored_outputs_are_read_as_nbval_compares_them() -> None:
    cell = new_code_cell(
        "print(1)", outputs=[new_output("stream", name="stdout", text="depth 4: 97.2% in 3.1 s\n")]
    )
    ignored = new_code_cell("x", outputs=[new_output("stream", name="stdout", text="1\n")])
    ignored.metadata["tags"] = ["nbval-ignore-output"]
    found = calibrate.output_numbers(new_notebook(cells=[cell, ignored]), calibrate.sanitizer())
    assert found == [
        {"cell": 0, "field": "stdout", "index": 0, "skeleton": "depth #: #% in TIME\n", "values": [4.0, 97.2]}
    ]


def test_spreads_are_pooled_over_lines_of_the_same_shape() -> None:
    skeleton = "seed #: entropy #\nseed #: entropy #\ntotal #"
    runs = [[0, 2.99, 1, 2.99, 5.0], [0, 2.93, 1, 2.99, 5.0], [0, 2.99, 1, 2.99, 5.0]]
    sds = calibrate.pooled_sds(skeleton, runs)
    own = 0.034641
    assert sds[1] == pytest.approx(own, abs=1e-6)
    assert sds[3] == pytest.approx(own / math.sqrt(2), abs=1e-6)
    assert sds[0] == sds[2] == sds[4] == 0.0
