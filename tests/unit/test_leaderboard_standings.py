"""Standings from records: gaps to the seed's static front, the verdict of a sign test, the table."""

import pytest

from dyn_helpers.leaderboard import standings


def _record(family, runs, board="b", notebook="early_exiting"):
    return {
        "label": family,
        "family": family,
        "board": board,
        "notebook": notebook,
        "fingerprint": "f",
        "runs": [
            {
                "seed": seed,
                "chosen": "p",
                "executed_flops": flops,
                "points": [
                    {"setting": "p", "val_acc": acc, "test_acc": acc, "val_flops": flops, "test_flops": flops}
                ],
            }
            for seed, (flops, acc) in enumerate(runs)
        ],
    }


SEEDS = range(5)
RECORDS = {
    "small": _record("static", [(1.0, 50.0)] * 5),
    "large": _record("static", [(3.0, 70.0)] * 5),
    "good": _record("depth", [(2.0, 62.0 + s) for s in SEEDS]),
    "poor": _record("width", [(2.0, 55.0 + s / 10) for s in SEEDS]),
    "cheap": _record("spatial", [(0.5, 52.0)] * 5),
}
TIMING = {"entries": {n: {"fingerprint": "f", "s_per_input": {"1": 1e-4, "256": 1e-5}} for n in RECORDS}}


@pytest.fixture
def rows():
    return {r.name: r for r in standings.rows(RECORDS, TIMING)}


def test_a_method_is_measured_against_the_mix_of_static_networks_of_its_cost(rows):
    # The front at 2 FLOPs is the 50/50 mix of the two static networks: 60%.
    assert rows["good"].gap.mean == pytest.approx(4.0)
    assert rows["good"].verdict == "ahead of"
    assert rows["poor"].verdict == "behind"
    assert rows["small"].gap is None and rows["small"].verdict == "static"


def test_below_the_cheapest_static_network_the_cheapest_is_the_rival(rows):
    assert rows["cheap"].gap.mean == pytest.approx(2.0)


def test_the_table_is_sortable_and_links_each_method_to_its_notebook(rows):
    table = standings.sortable_table(list(rows.values()))
    assert '<table class="sortable' in table
    assert table.count("<tr>") == 1 + len(rows)
    assert 'href="../02_sample_wise/early_exiting.html"' in table
    assert 'data-sort="4.0"' in table


def test_the_clock_front_reads_the_static_networks_times(rows):
    gap = standings.clock_gap(rows["good"], list(rows.values()), 1)
    assert gap == pytest.approx(rows["good"].accuracy.mean - 70.0)  # as fast as the largest static network
