"""Specification of `dyn_helpers.harness`: seeds, the static comparison chosen on validation, tables."""

import math

import numpy as np
import pytest
import torch
from IPython.core.formatters import DisplayFormatter

from dyn_helpers.harness import Candidate, StaticChoice, Table, choose_static, over_seeds
from dyn_helpers.repro import seed_everything
from dyn_helpers.tools import calibrate, tolerance

# --- over_seeds ---------------------------------------------------------------------------------


def test_over_seeds_runs_each_seed_after_seeding_and_keys_the_results_in_order() -> None:
    results = over_seeds(lambda seed: (seed, torch.rand(1).item()), [5, 2, 9])
    assert list(results) == [5, 2, 9]
    for seed, (passed, draw) in results.items():
        seed_everything(seed)
        assert passed == seed and draw == torch.rand(1).item()


def test_over_seeds_accepts_any_sequence_such_as_a_range() -> None:
    assert over_seeds(lambda seed: seed * 10, range(3)) == {0: 0, 1: 10, 2: 20}


@pytest.mark.parametrize(
    ("seeds", "error", "message"),
    [
        ([], ValueError, "at least one seed"),
        ([1, 2, 1], ValueError, r"distinct, got \[1\]"),
        ([0, -1], ValueError, "non-negative"),
        ([True, 1], TypeError, "must be ints"),
        ([0, 1.0], TypeError, "must be ints"),
        ("012", TypeError, "sequence of ints"),
        ({0, 1}, TypeError, "sequence of ints"),
    ],
)
def test_over_seeds_rejects_bad_seeds(seeds, error, message) -> None:
    with pytest.raises(error, match=message):
        over_seeds(lambda seed: seed, seeds)


def test_over_seeds_needs_a_callable() -> None:
    with pytest.raises(TypeError, match="callable"):
        over_seeds("train", [0])


# --- Candidate and choose_static ----------------------------------------------------------------


def static(name: str, flops: float, val: float, test: float) -> Candidate:
    return Candidate(name, flops, val, test)


FAMILY = [
    static("depth 1", 100, 0.80, 0.80),
    static("depth 2", 200, 0.90, 0.85),
    static("depth 3", 300, 0.88, 0.95),  # worse on validation, better on test
    static("depth 4", 400, 0.97, 0.97),  # best, but above the budget
]


def test_the_twin_is_the_best_on_validation_at_or_below_the_budget() -> None:
    choice = choose_static(FAMILY, budget=350)
    assert choice.twin.name == "depth 2"  # not depth 3, which is only better on test
    assert choice.budget == 350.0


def test_the_neighbours_are_the_dearest_within_and_the_cheapest_above_the_budget() -> None:
    choice = choose_static(reversed(FAMILY), budget=350)
    assert (choice.cheaper.name, choice.dearer.name) == ("depth 3", "depth 4")
    assert [c.name for c in choice.candidates] == ["depth 1", "depth 2", "depth 3", "depth 4"]


def test_a_candidate_exactly_at_the_budget_is_within_it() -> None:
    choice = choose_static(FAMILY, budget=400)
    assert choice.twin.name == choice.cheaper.name == "depth 4"
    assert choice.dearer is None


def test_validation_ties_go_to_fewer_flops_then_to_the_name() -> None:
    tied = [static("b", 200, 0.9, 0.9), static("a", 200, 0.9, 0.8), static("c", 100, 0.9, 0.7)]
    assert choose_static(tied, 250).twin.name == "c"
    assert choose_static(tied[:2], 250).twin.name == "a"


def test_the_budget_may_be_a_zero_dimensional_tensor() -> None:
    assert choose_static(FAMILY, torch.tensor(250.0)).twin.name == "depth 2"


def test_candidate_numbers_may_be_tensors_or_numpy_and_are_stored_as_floats() -> None:
    c = Candidate("depth 1", torch.tensor(100), np.float32(0.5), 0.25, {"model": None})
    assert (c.flops, c.val_acc, c.test_acc) == (100.0, 0.5, 0.25)
    assert isinstance(c.flops, float) and c.extra == {"model": None}
    assert hash(c) == hash(Candidate("depth 1", 100, 0.5, 0.25))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"name": " "}, ValueError, "non-empty name"),
        ({"flops": -1}, ValueError, "flops of 'm' must be finite and non-negative"),
        ({"val_acc": math.nan}, ValueError, "val_acc of 'm' must be finite"),
        ({"test_acc": math.inf}, ValueError, "test_acc of 'm' must be finite"),
        ({"flops": True}, TypeError, "real number"),
        ({"val_acc": "0.9"}, TypeError, "real number"),
        ({"extra": [1]}, TypeError, "extra of 'm' must be a dict"),
    ],
)
def test_a_candidate_checks_its_fields(kwargs, error, message) -> None:
    with pytest.raises(error, match=message):
        Candidate(**{"name": "m", "flops": 1.0, "val_acc": 0.5, "test_acc": 0.5, **kwargs})


@pytest.mark.parametrize(
    ("candidates", "budget", "error", "message"),
    [
        ([], 100, ValueError, "at least one static model"),
        ([FAMILY[0], static("depth 1", 50, 0.1, 0.1)], 100, ValueError, r"distinct, got \['depth 1'\]"),
        ([("depth 1", 100, 0.8, 0.8)], 100, TypeError, "harness.Candidate"),
        (FAMILY, 0, ValueError, "budget .* must be finite and positive"),
        (FAMILY, -5, ValueError, "budget .* must be finite and positive"),
        (FAMILY, math.nan, ValueError, "budget .* must be finite and positive"),
        (FAMILY, "300", TypeError, "budget .* must be a real number"),
    ],
)
def test_choose_static_rejects_bad_input(candidates, budget, error, message) -> None:
    with pytest.raises(error, match=message):
        choose_static(candidates, budget)


def test_with_nothing_at_or_below_the_budget_it_asks_for_a_cheaper_static_model() -> None:
    with pytest.raises(
        ValueError, match=r"cheapest, 'depth 1', costs 100 FLOPs.*budget of 99\.5; add a cheaper"
    ):
        choose_static(FAMILY, budget=99.5)


def test_the_choice_says_in_one_sentence_what_is_compared_and_why() -> None:
    sentence = choose_static(FAMILY, budget=350).describe()
    assert sentence == (
        "The static twin is depth 2 (200 FLOPs per input), the best on validation of the 3 static "
        "models costing at most the dynamic model's 350 FLOPs per input; its neighbours in cost are "
        "depth 3 (300 FLOPs), the dearest within that budget, and depth 4 (400 FLOPs), the cheapest "
        "above it."
    )
    assert "dynamic model's 283,064.3 FLOPs per input" in choose_static(FAMILY, 283064.3).describe()
    alone = choose_static(FAMILY[:1], budget=150).describe()
    assert alone.endswith(
        "of the 1 static model costing at most the dynamic model's 150 FLOPs per input; its neighbours "
        "in cost are depth 1 (100 FLOPs), the dearest within that budget, and no static model above it."
    )


def test_the_choice_as_a_table_shows_twin_and_neighbours_with_flops_and_both_accuracies() -> None:
    table = choose_static(FAMILY, budget=350).table(acc_format=".2f")
    assert isinstance(table, Table)
    assert str(table) == (
        "role               static model  FLOPs per input  val acc  test acc\n"
        "twin               depth 2                   200     0.90      0.85\n"
        "cheaper neighbour  depth 3                   300     0.88      0.95\n"
        "dearer neighbour   depth 4                   400     0.97      0.97"
    )
    without_dearer = choose_static(FAMILY, budget=500).table()
    assert [row[0] for row in without_dearer.rows] == ["twin", "cheaper neighbour"]
    assert without_dearer.cells[0][3] == "0.9700"


def test_a_static_choice_is_a_frozen_record() -> None:
    choice = choose_static(FAMILY, budget=350)
    assert isinstance(choice, StaticChoice)
    with pytest.raises(AttributeError):
        choice.twin = FAMILY[0]


# --- Table --------------------------------------------------------------------------------------

ROWS = [["plain", 266496, 94.381, -0.19], ["dynamic filter", 308352, 94.7, 0.33]]
FORMATS = {"FLOPs": ",d", "acc (%)": ".2f", "gain": "+.2f"}


def test_a_table_prints_aligned_text_left_and_numbers_right() -> None:
    table = Table(["model", "FLOPs", "acc (%)", "gain"], ROWS, FORMATS)
    assert str(table) == (
        "model             FLOPs  acc (%)   gain\n"
        "plain           266,496    94.38  -0.19\n"
        "dynamic filter  308,352    94.70  +0.33"
    )
    assert repr(table) == str(table)


def test_a_table_is_a_markdown_table_when_displayed() -> None:
    table = Table(["model", "FLOPs", "acc (%)", "gain"], ROWS, FORMATS)
    assert table._repr_markdown_() == (
        "| model | FLOPs | acc (%) | gain |\n"
        "|:---|---:|---:|---:|\n"
        "| plain | 266,496 | 94.38 | -0.19 |\n"
        "| dynamic filter | 308,352 | 94.70 | +0.33 |"
    )
    shown = DisplayFormatter().format(table)[0]
    assert shown == {"text/plain": str(table), "text/markdown": table._repr_markdown_()}


def test_markdown_escapes_what_would_break_the_table_or_turn_into_markup() -> None:
    table = Table(["a|b"], [["x_1 * y"], ["[0.5]"]])
    assert table._repr_markdown_().splitlines()[0] == r"| a\|b |"
    assert table._repr_markdown_().splitlines()[2:] == [r"| x\_1 \* y |", r"| \[0.5\] |"]


def test_the_tolerance_tool_reads_the_same_numbers_from_both_forms() -> None:
    table = Table(["model", "FLOPs", "acc (%)", "gain"], ROWS, FORMATS)
    plain, markdown = tolerance.parse(str(table)), tolerance.parse(table._repr_markdown_())
    assert plain.values == markdown.values == (266496.0, 94.38, -0.19, 308352.0, 94.7, 0.33)
    assert plain.decimals == markdown.decimals


def test_the_markdown_form_keeps_its_skeleton_when_a_number_gains_a_digit() -> None:
    def markdown(acc: float) -> str:
        return tolerance.parse(
            Table(["acc (%)"], [[acc], [50.0]], {"acc (%)": ".2f"})._repr_markdown_()
        ).skeleton

    assert markdown(9.87) == markdown(100.0)


def test_the_book_sanitizer_leaves_both_forms_unchanged() -> None:
    table = Table(["model", "FLOPs", "acc (%)", "gain"], ROWS, FORMATS)
    sanitize = calibrate.sanitizer()
    assert sanitize(str(table)) == str(table)
    assert sanitize(table._repr_markdown_()) == table._repr_markdown_()


def test_unformatted_cells_print_ints_whole_floats_with_four_decimals_and_none_empty() -> None:
    table = Table(["n", "loss", "note"], [[3, 0.123456, None], [np.int64(12), torch.tensor(2.0), True]])
    assert table.cells == (("3", "0.1235", ""), ("12", "2.0000", "True"))
    assert str(table).splitlines()[1] == " 3  0.1235"


def test_a_callable_format_gives_the_cell_text() -> None:
    table = Table(["acc"], [[0.9512]], {"acc": lambda v: f"{100 * v:.1f}%"})
    assert table.cells == (("95.1%",),)


def test_a_table_from_records_takes_the_keys_in_the_order_first_seen() -> None:
    table = Table.from_records(
        [{"model": "a", "acc": 0.5}, {"model": "b", "FLOPs": 10}], formats={"acc": ".1f"}
    )
    assert table.columns == ("model", "acc", "FLOPs")
    assert table.cells == (("a", "0.5", ""), ("b", "", "10"))


def test_a_table_from_records_can_choose_its_columns() -> None:
    table = Table.from_records([{"model": "a", "acc": 0.5, "seed": 0}], columns=["acc", "model"])
    assert table.columns == ("acc", "model") and table.cells == (("0.5000", "a"),)
    assert str(Table.from_records([], columns=["model"])) == "model"


@pytest.mark.parametrize("spec", [".5f", ".6g", "10.8e", ".5%"])
def test_a_format_printing_more_than_four_decimals_is_rejected(spec) -> None:
    with pytest.raises(ValueError, match="at most 4"):
        Table(["acc"], [], {"acc": spec})


def test_a_callable_printing_more_than_four_decimals_is_rejected() -> None:
    with pytest.raises(ValueError, match="'0.123457', more than 4 decimals"):
        Table(["acc"], [[0.1234567]], {"acc": lambda v: f"{v:.6f}"})


@pytest.mark.parametrize(
    ("columns", "rows", "formats", "error", "message"),
    [
        ([], [], None, ValueError, "non-empty sequence of names"),
        ("model", [], None, ValueError, "non-empty sequence of names"),
        (["a", "a"], [], None, ValueError, "distinct non-empty strings"),
        (["a", ""], [], None, ValueError, "distinct non-empty strings"),
        (["a"], [[1, 2]], None, ValueError, "row 0 has 2 values for 1 columns"),
        (["a"], ["x"], None, TypeError, "row 0 must be a sequence"),
        (["a"], [], {"b": ".1f"}, ValueError, r"columns the table does not have: \['b'\]"),
        (["a"], [], {"a": 2}, TypeError, "format spec or a callable"),
        (["a"], [[1.5]], {"a": ",d"}, ValueError, "column 'a' cannot format 1.5 with ',d'"),
        (["a"], [[1.5]], {"a": lambda v: v}, TypeError, "must return str"),
    ],
)
def test_a_table_rejects_bad_input(columns, rows, formats, error, message) -> None:
    with pytest.raises(error, match=message):
        Table(columns, rows, formats)


@pytest.mark.parametrize(
    ("records", "error", "message"),
    [
        ({"model": "a"}, TypeError, "sequence of dicts"),
        ([{"model": "a"}, ["b"]], TypeError, "record 1 must be a dict"),
        ([], ValueError, "pass columns"),
    ],
)
def test_a_table_from_records_rejects_bad_records(records, error, message) -> None:
    with pytest.raises(error, match=message):
        Table.from_records(records)
