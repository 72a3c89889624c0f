"""Specification of `dyn_helpers.tools.calibrate`: runs planned, summarised, and claims held to the rule."""

import math

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from dyn_helpers import recorded
from dyn_helpers.tools import calibrate, fingerprint, runs


def run(
    seed: int, value: float, accuracy: float, setting: str = "default", clock: float | None = None
) -> dict:
    """One calibration run; with `clock`, it also reports a wall-clock value `clock_ratio`."""
    claims = [{"key": "gap", "text": "a gap", "value": value, "op": "at_least", "bound": 0.0}]
    if clock is not None:
        claims.append({"key": "clock_ratio", "text": "a time", "value": clock, "op": "report", "bound": None})
    return {
        "seed": seed,
        "setting": setting,
        "code_fingerprint": "f",
        "wall_time_s": 1.0,
        "claims": claims,
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


def reported(seed: int, value: float, setting: str = "default") -> dict:
    """A run whose notebook reports a value without asserting it."""
    record = run(seed, 1.0, 97.0, setting)
    record["claims"].append(
        {"key": "spread", "text": "a spread", "value": value, "op": "report", "bound": None}
    )
    return record


def test_a_reported_value_is_summarised_without_a_bound() -> None:
    record = calibrate.summarise("chapters/x.ipynb", [reported(0, 1.0), reported(1, 3.0)])
    entry = record["claims"]["spread"]
    assert entry["op"] == "report" and entry["bound"] is None
    assert entry["values"] == [1.0, 3.0] and entry["mean"] == 2.0


def test_a_reported_value_needs_a_calibration_but_no_margin() -> None:
    record = calibrate.summarise("chapters/x.ipynb", [reported(s, float(s)) for s in range(16)])
    spread = {"key": "spread", "op": "report", "bound": None}
    assert calibrate.claim_problems([spread], record, 16) == []
    assert "no calibration" in calibrate.claim_problems([{**spread, "key": "other"}], record, 16)[0]
    assert "runs" in calibrate.claim_problems([spread], record, 20)[0]
    assert "op report" in calibrate.claim_problems([{**spread, "op": "at_least", "bound": 0}], record, 16)[0]


@pytest.fixture
def results(tmp_path, monkeypatch):
    """An empty results folder in place of book/results."""
    monkeypatch.setattr(recorded, "RESULTS_DIR", tmp_path)
    return tmp_path


def test_records_are_written_and_read_where_recorded_says(results) -> None:
    calibrate.write_record(
        "chapters/part/x.ipynb", [run(1, 3.0, 98.0), run(0, 1.0, 97.0)], "2026-01-02T03:04:05Z"
    )
    assert calibrate.record_file("chapters/part/x.ipynb") == recorded.seed_record_path("x")
    assert recorded.seed_record_path("x").parent == results / "calibration"
    record = calibrate.load_record("chapters/part/x.ipynb")
    assert [r["seed"] for r in record["runs"]] == [0, 1] and record["date"] == "2026-01-02T03:04:05Z"
    assert recorded.multi_seed("x").values("gap") == (1.0, 3.0)


def test_the_page_lists_a_reported_value_with_its_spread_and_range(results) -> None:
    calibrate.write_record("chapters/x.ipynb", [reported(s, float(s)) for s in range(4)])
    nb = new_notebook()
    nb.metadata[fingerprint.METADATA_KEY] = {
        "claims": [
            {"key": "gap", "text": "a gap", "value": 1.0, "op": "at_least", "bound": 0.0},
            {"key": "spread", "text": "a spread", "value": 0.0, "op": "report", "bound": None},
        ]
    }
    page = calibrate.render_page({"chapters/x.ipynb": nb})
    assert "| a spread (`spread`): reported, not asserted | | 1.5 ± 1.29 | 0 to 3 | |" in page
    assert "| a gap (`gap`) | ≥ 0 | 1 ± 0 | 1 to 1 | constant |" in page


STORED_PLATFORM = {"cpu": "AMD EPYC", "cpu_capability": "AVX512", "env": {}, "torch": "2.13.0+cpu"}


def stored_run(gap: float, fingerprint_: str = "new", platform: dict | None = None) -> dict:
    """What `make notebooks` stores: fingerprint, seed, platform and the claims."""
    return {
        "code_fingerprint": fingerprint_,
        "seed": 0,
        "platform": STORED_PLATFORM if platform is None else platform,
        "claims": [{"key": "gap", "text": "a gap", "value": gap, "op": "at_least", "bound": 0.0}],
    }


def multi_seed_record() -> dict:
    """A record of seeds 0, 1, 2 (gap 1, 3, 2) and seed 0 again under avx2 (gap 5), made on STORED_PLATFORM."""
    record = calibrate.summarise(
        "chapters/x.ipynb",
        [run(0, 1.0, 97.0), run(1, 3.0, 97.0), run(2, 2.0, 97.0), run(0, 5.0, 97.0, "avx2")],
    )
    record["platform"] = STORED_PLATFORM
    record["code_fingerprint_seed_0"] = "old"
    return record


def test_a_record_made_by_the_stored_code_belongs_to_the_stored_run() -> None:
    assert calibrate.record_staleness(stored_run(99.0, fingerprint_="old"), multi_seed_record()) is None


def test_on_the_same_platform_a_record_belongs_to_a_run_whose_values_it_reproduces() -> None:
    record = multi_seed_record()
    assert calibrate.record_staleness(stored_run(1.0), record) is None
    assert calibrate.record_staleness(stored_run(1.0 + 2e-16), record) is None
    reason = calibrate.record_staleness(stored_run(1.001), record)
    assert "same platform" in reason and "'gap' is 1.001" in reason


def test_on_another_platform_the_stored_values_must_lie_within_the_calibrated_spread() -> None:
    record = multi_seed_record()
    sd = record["claims"]["gap"]["sd"]
    elsewhere = {**STORED_PLATFORM, "cpu": "Intel Xeon"}
    assert calibrate.record_staleness(stored_run(1.0 + 3.4 * sd, platform=elsewhere), record) is None
    reason = calibrate.record_staleness(stored_run(1.0 + 3.6 * sd, platform=elsewhere), record)
    assert "more than 3.5 calibration sd" in reason


def test_wall_clock_values_need_not_be_reproduced_but_the_others_must_show_the_record_is_the_runs() -> None:
    record = calibrate.summarise(
        "chapters/x.ipynb", [run(0, 1.0, 97.0, clock=0.5), run(1, 3.0, 97.0, clock=0.7)]
    )
    record["platform"] = STORED_PLATFORM
    rerun = stored_run(1.0)
    rerun["claims"].append(
        {"key": "clock_ratio", "text": "a time", "value": 9.0, "op": "report", "bound": None}
    )
    assert calibrate.record_staleness(rerun, record) is None
    elsewhere = {**rerun, "platform": {**STORED_PLATFORM, "cpu": "Intel Xeon"}}
    assert calibrate.record_staleness(elsewhere, record) is None
    only_clock = {**rerun, "claims": rerun["claims"][1:]}
    assert "only wall-clock values" in calibrate.record_staleness(only_clock, record)


def test_a_record_without_the_stored_claims_or_seed_does_not_belong_to_the_run() -> None:
    record = multi_seed_record()
    renamed = stored_run(1.0)
    renamed["claims"][0]["key"] = "new_gap"
    assert "no value of 'new_gap'" in calibrate.record_staleness(renamed, record)
    assert "seed 7" in calibrate.record_staleness({**stored_run(1.0), "seed": 7}, record)
    assert "no claims" in calibrate.record_staleness({**stored_run(1.0), "claims": []}, record)
    assert "no record" in calibrate.record_staleness(stored_run(1.0), {})


def page(code: str, stored: dict) -> nbformat.NotebookNode:
    nb = new_notebook(cells=[new_code_cell(code)])
    nb.metadata[fingerprint.METADATA_KEY] = stored
    return nb


def test_a_page_that_reads_the_record_must_have_read_the_current_one() -> None:
    record = {"date": "2026-12-01T00:00:00Z"}
    reads = 'record = multi_seed("x")'
    current = page(reads, {runs.MULTI_SEED_KEY: "2026-12-01T00:00:00Z"})
    assert calibrate.shown_record_problem(current, record) is None
    older = page(reads, {runs.MULTI_SEED_KEY: "2026-11-30T07:33:07Z"})
    assert "2026-11-30T07:33:07Z" in calibrate.shown_record_problem(older, record)
    assert calibrate.shown_record_problem(page(reads, {runs.MULTI_SEED_KEY: None}), {}) is None
    assert calibrate.shown_record_problem(page(reads, {runs.MULTI_SEED_KEY: None}), record) is not None
    assert calibrate.shown_record_problem(page("x = 1", {runs.MULTI_SEED_KEY: None}), record) is None


def test_a_run_that_did_not_store_the_date_is_stale_only_if_its_code_reads_a_record() -> None:
    record = {"date": "2026-12-01T00:00:00Z"}
    assert calibrate.shown_record_problem(page("x = 1", {}), record) is None
    reads = page('record = multi_seed("x")', {})
    assert "does not say which" in calibrate.shown_record_problem(reads, record)
