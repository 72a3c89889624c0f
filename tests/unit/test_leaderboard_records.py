"""The committed leaderboard records belong to today's code, cover every method of the book, and
follow the board's rule; the standings read from them are what the page shows."""

import pytest

from dyn_helpers.leaderboard import board as lb
from dyn_helpers.leaderboard import standings


@pytest.fixture(scope="module")
def records():
    return standings.load_records()


def test_every_entry_has_a_record_made_from_todays_code_lock_and_seeds(records):
    assert set(records) == set(lb.entries())


def test_the_timing_record_times_every_entry_from_its_current_record(records):
    timing = standings.load_timing(records)
    assert timing["provenance"]["device"] == "cpu"
    for row in timing["entries"].values():
        assert set(row["s_per_input"]) == {str(b) for b in lb.TIMED_BATCHES}
        assert all(s > 0 for s in row["s_per_input"].values())


def test_every_chapter_notebook_is_on_the_board_or_says_why_not():
    on_board = standings.check_coverage()
    assert "early_exiting" in on_board


def test_each_record_chose_the_point_the_rule_chooses_from_its_own_points(records):
    for name, record in records.items():
        for run in record["runs"]:
            points = [
                lb.Point(
                    p["setting"],
                    p["val_acc"] / 100,
                    p["test_acc"] / 100,
                    p["val_flops"],
                    p["test_flops"],
                    None,
                )
                for p in run["points"]
            ]
            assert lb.choose(points).setting == run["chosen"], (name, run["seed"])


def test_no_execution_runs_clearly_fewer_flops_than_its_decisions_allow(records):
    # Executed FLOPs are counted on the first batch of test inputs, counted FLOPs over the whole test
    # split; for a method whose cost varies from input to input the two differ by sampling alone.
    for name, record in records.items():
        for run in record["runs"]:
            chosen = next(p for p in run["points"] if p["setting"] == run["chosen"])
            assert run["executed_flops"] >= 0.9 * chosen["test_flops"], name


def test_static_rows_are_the_front_and_dynamic_rows_are_measured_against_it(records):
    rows = standings.rows(records, standings.load_timing(records))
    assert all((r.gap is None) == r.is_static for r in rows)
    assert all(r.verdict in ("static", "ahead of", "behind", "level with") for r in rows)
