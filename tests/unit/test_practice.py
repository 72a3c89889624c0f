"""Theory against practice: rows read from a timing record, and the record's freshness."""

import json

import pytest
import torch
from torch import nn

from dyn_helpers import recorded
from dyn_helpers.measure import TimingCase, check_references, flops_per_input
from dyn_helpers.open_problems import practice


def _m(case, batch, median, flops, **dynamic):
    return {"case": case, "batch_size": batch, "median_s": median, "flops_per_input": flops, **dynamic}


def _record(*measurements):
    return {"provenance": {"device": "cpu", "device_name": "test CPU"}, "measurements": list(measurements)}


DYNAMIC = {"reference": "ch/full", "counted_flops": 25.0}
RECORD = _record(
    _m("ch/full", 1, 2.0, 100.0),
    _m("ch/full", 256, 40.0, 100.0),
    _m("ch/skipping", 1, 1.0, 25.0, **DYNAMIC),
    _m("ch/masked", 1, 2.4, 101.0, **DYNAMIC),
    _m("ch/masked", 256, 44.0, 101.0, **DYNAMIC),
)


def test_rows_give_counted_executed_and_clock_in_percent_of_the_reference():
    rows = {row.case: row for row in practice.practice_rows(RECORD)}
    assert set(rows) == {"ch/skipping", "ch/masked"}
    masked = rows["ch/masked"]
    assert masked.chapter == "ch" and masked.reference == "ch/full"
    assert masked.counted == pytest.approx(25.0)
    assert masked.executed == pytest.approx({1: 101.0, 256: 101.0})
    assert masked.clock == pytest.approx({1: 120.0, 256: 110.0})


def test_the_clock_uses_the_reference_timed_in_alternation_where_the_record_has_it():
    record = _record(
        _m("ch/full", 1, 2.0, 100.0),
        _m("ch/skipping", 1, 1.0, 25.0, reference_median_s=4.0, **DYNAMIC),
    )
    assert practice.practice_rows(record)[0].clock[1] == pytest.approx(25.0)


def test_a_batch_size_the_execution_does_not_serve_has_no_values():
    skipping = practice.practice_rows(RECORD)[0]
    assert skipping.executed[256] is None and skipping.clock[256] is None
    assert skipping.realised(256) is None
    assert skipping.reason(256) == "runs one input at a time"


def test_the_realised_share_is_the_clock_saving_over_the_counted_saving():
    rows = {row.case: row for row in practice.practice_rows(RECORD)}
    assert rows["ch/skipping"].realised(1) == pytest.approx((100 - 50) / (100 - 25))
    assert rows["ch/masked"].realised(1) == pytest.approx((100 - 120) / (100 - 25))  # slower: negative


def test_nothing_is_realised_where_nothing_is_counted_as_saved():
    row = practice.PracticeRow("ch/attention", "ch/plain", 103.0, {1: 103.0}, {1: 180.0})
    assert row.realised(1) is None


def test_reasons_are_read_from_the_numbers():
    rows = {row.case: row for row in practice.practice_rows(RECORD)}
    assert rows["ch/masked"].reason(1) == "executes work its decisions skip; time beyond its FLOPs"
    assert rows["ch/skipping"].reason(1) == "time beyond its FLOPs"
    follows = practice.PracticeRow("ch/x", "ch/full", 50.0, {1: 50.0}, {1: 55.0})
    assert follows.reason(1) == "clock follows the FLOPs"
    faster = practice.PracticeRow("ch/x", "ch/full", 50.0, {1: 50.0}, {1: 30.0})
    assert faster.reason(1) == "faster than its FLOPs"


def test_a_reference_missing_from_the_record_is_an_error():
    record = _record(_m("ch/skipping", 1, 1.0, 25.0, **DYNAMIC))
    with pytest.raises(ValueError, match="reference ch/full is not in the record"):
        practice.practice_rows(record)


def test_bad_records_and_batch_sizes_are_rejected():
    with pytest.raises(ValueError, match="timing record"):
        practice.practice_rows({"measurements": []})
    with pytest.raises(ValueError, match="batch_sizes"):
        practice.practice_rows(RECORD, batch_sizes=(0,))


def test_a_record_is_current_only_with_exactly_the_registered_dynamic_cases():
    references = {"ch/skipping": "ch/full", "ch/masked": "ch/full"}
    practice.check_current(RECORD, references)
    with pytest.raises(ValueError, match=r"stale.*missing \['ch/new'\]"):
        practice.check_current(RECORD, references | {"ch/new": "ch/full"})
    with pytest.raises(ValueError, match="stale"):
        practice.check_current(RECORD, {"ch/skipping": "ch/other", "ch/masked": "ch/full"})


def test_every_registered_reference_is_a_static_case_of_the_same_chapter():
    references = practice.registered_references()
    assert len(references) >= 30
    assert all(case.split("/")[0] == ref.split("/")[0] for case, ref in references.items())
    assert references["skip_rnn/masked"] == "skip_rnn/full"


def _case(reference=None, counted_by=None, shape=(4, 3)):
    return TimingCase(
        nn.Linear(shape[1], 2),
        torch.zeros(shape),
        batch_sizes=(1,),
        reference=reference,
        counted_by=counted_by,
    )


def test_references_must_name_a_static_case_of_the_chapter_with_inputs_of_the_same_shape():
    check_references("ch", {"full": _case(), "fast": _case("full"), "masked": _case("full", "fast")})
    with pytest.raises(ValueError, match="'nothing' is not a case of ch"):
        check_references("ch", {"fast": _case("nothing")})
    with pytest.raises(ValueError, match="counted_by 'gone'"):
        check_references("ch", {"full": _case(), "masked": _case("full", "gone")})
    with pytest.raises(ValueError, match="itself dynamic"):
        check_references("ch", {"a": _case("b"), "b": _case("a")})
    with pytest.raises(ValueError, match="another shape"):
        check_references("ch", {"full": _case(shape=(4, 5)), "fast": _case("full")})


def test_a_timing_case_checks_its_names():
    with pytest.raises(ValueError, match="reference must be the name"):
        _case(reference="not a name")
    with pytest.raises(ValueError, match="give its reference too"):
        _case(counted_by="fast")


def test_flops_per_input_charges_a_batch_for_what_it_ran():
    linear = nn.Linear(3, 2)
    x = torch.zeros(8, 3)
    assert flops_per_input(linear, x, batch_size=1, n_inputs=4) == 2 * 3 * 2
    assert flops_per_input(linear, x, batch_size=8) == 2 * 3 * 2
    with pytest.raises(ValueError, match="fewer than one batch"):
        flops_per_input(linear, x, batch_size=9)
    with pytest.raises(ValueError, match="positive"):
        flops_per_input(linear, x, n_inputs=0)


def test_the_table_has_one_row_per_dynamic_case_and_blank_cells_where_nothing_ran():
    table = practice.practice_table(practice.practice_rows(RECORD))
    assert table.columns[:3] == ("case", "reference", "counted (%)")
    assert [row[0] for row in table.rows] == ["ch/skipping", "ch/masked"]
    skipping = dict(zip(table.columns, table.cells[0], strict=True))
    assert skipping["reference"] == "full" and skipping["clock, batch 1 (%)"] == "50"
    assert skipping["realised, batch 1"] == "+0.67" and skipping["clock, batch 256 (%)"] == ""


def test_the_summary_counts_cases_by_what_their_clock_keeps():
    rows = practice.practice_rows(RECORD)
    at_1, at_256 = practice.summarise(rows, 1), practice.summarise(rows, 256)
    assert (at_1.n_run, at_1.n_saving, at_1.n_half_kept, at_1.n_slower, at_1.n_executing_skipped) == (
        2,
        2,
        1,
        1,
        1,
    )
    assert (at_256.n_run, at_256.n_half_kept, at_256.n_slower) == (1, 0, 1)


def test_the_latest_record_of_a_device_type_is_found(tmp_path):
    for name, device, date in (
        ("old cpu", "cpu", "2026-01-01"),
        ("new cpu", "cpu", "2026-06-01"),
        ("gpu", "cuda:0", "2026-07-01"),
    ):
        record = {"provenance": {"device": device, "device_name": name, "date": date}, "measurements": []}
        recorded.record_path(name, tmp_path).write_text(json.dumps(record))
    assert practice.latest_record("cpu", tmp_path)["provenance"]["device_name"] == "new cpu"
    assert practice.latest_record("cuda", tmp_path)["provenance"]["device_name"] == "gpu"
    assert practice.latest_record("cpu", tmp_path / "nothing_here") is None
    with pytest.raises(ValueError, match="device_type"):
        practice.latest_record("tpu", tmp_path)


def test_a_record_says_where_it_comes_from_in_one_line():
    record = _record(_m("ch/full", 1, 2.0, 100.0) | {"threads": 1})
    record["provenance"] |= {"torch": "2.13.0", "date": "2026-12-01T03:00:00Z", "command": "make bench"}
    assert practice.describe_record(record) == (
        "test CPU (cpu), torch 2.13.0, 1 thread; 2026-12-01T03:00:00Z, by make bench"
    )


def test_the_committed_cpu_record_holds_every_registered_dynamic_case():
    record = practice.latest_record("cpu")
    assert record is not None, "no CPU timing record in book/results/: run `make bench` on a CPU"
    practice.check_current(record, practice.registered_references())
