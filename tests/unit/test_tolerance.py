"""Specification of `dyn_helpers.tools.tolerance`: numbers within calibrated tolerances, the rest exact."""

import pytest

from dyn_helpers.tools import tolerance


def test_numbers_are_split_from_the_text_with_their_printed_places() -> None:
    parsed = tolerance.parse("seed 0: threshold 0.900, accuracy 97.20%, FLOPs 1,260,480, gap −0.5")
    assert parsed.skeleton == "seed #: threshold #, accuracy #%, FLOPs #, gap #"
    assert parsed.values == (0.0, 0.9, 97.2, 1260480.0, -0.5)
    assert parsed.decimals == (0, 3, 2, 0, 1)


def test_a_list_and_scientific_notation_are_numbers_too() -> None:
    parsed = tolerance.parse("shares [0.193, 0.465], error 2.5e-07, x1.47")
    assert parsed.values == (0.193, 0.465, 2.5e-07, 1.47)
    assert parsed.skeleton == "shares [#, #], error #, x#"


def test_the_tolerance_factor_grows_with_the_number_of_compared_values() -> None:
    one, many = tolerance.tolerance_factor(1), tolerance.tolerance_factor(2000)
    assert 3.5 < one < many < 7.0


def test_a_trained_number_within_its_tolerance_passes_and_is_reported() -> None:
    ok, differences = tolerance.compare("accuracy 97.20%", "accuracy 97.50%", [0.3], k=6.0)
    assert ok
    assert [(d.stored, d.got) for d in differences] == [(97.2, 97.5)]
    assert differences[0].tol == pytest.approx(6.0 * 0.3 + 0.01)


def test_a_stored_accuracy_moved_by_more_than_its_tolerance_fails() -> None:
    sd, k = 0.3, 6.0
    moved = 97.20 + 1.01 * tolerance.tolerance(sd, 2, k)
    ok, differences = tolerance.compare("accuracy 97.20%", f"accuracy {moved:.2f}%", [sd], k)
    assert not ok and not differences[0].within


def test_a_number_that_never_varied_over_seeds_must_match_exactly() -> None:
    ok, _ = tolerance.compare(
        "FLOPs 57,600\naccuracy 97.20%", "FLOPs 57,601\naccuracy 97.20%", [0.0, 0.3], 6.0
    )
    assert not ok


def test_an_output_without_calibration_must_match_exactly() -> None:
    assert tolerance.compare("loss 0.92", "loss 0.92", None, 6.0)[0]
    assert not tolerance.compare("loss 0.92", "loss 0.93", None, 6.0)[0]


def test_changed_text_around_the_numbers_fails() -> None:
    ok, differences = tolerance.compare("best static (depth 4)", "best static (width 4)", [0.0], 6.0)
    assert not ok and differences == []


def test_standard_deviations_must_fit_the_output() -> None:
    with pytest.raises(ValueError, match="standard deviations"):
        tolerance.compare("a 1 b 2", "a 1 b 3", [0.1], 6.0)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_the_tolerance_factor_needs_a_positive_count(bad) -> None:
    with pytest.raises(ValueError, match="positive int"):
        tolerance.tolerance_factor(bad)


def test_outputs_are_flattened_as_nbval_compares_them() -> None:
    outputs = [
        {"output_type": "stream", "stdout": "loss 0.5 in 3.2 s\n"},
        {
            "output_type": "display_data",
            "data": {"text/plain": "<Figure>", "image/png": "iVBOR"},
            "metadata": {},
        },
    ]
    flat = tolerance.flatten_outputs(outputs, lambda s: s.replace("3.2 s", "TIME"))
    assert flat == {"stdout": ["loss 0.5 in TIME\n"], "text/plain": ["<Figure>"]}


def test_a_constant_number_beside_a_trained_one_is_a_discrete_outcome_reported_not_failed() -> None:
    stored = "plans 1, accuracy 95.60%\nFLOPs 57,600"
    ok, differences = tolerance.compare(
        stored, "plans 2, accuracy 95.70%\nFLOPs 57,600", [0.0, 0.3, 0.0], 6.0
    )
    assert ok and differences[0].discrete and "reported, not failed" in str(differences[0])
    ok, _ = tolerance.compare(stored, "plans 1, accuracy 95.70%\nFLOPs 57,601", [0.0, 0.3, 0.0], 6.0)
    assert not ok


def test_a_round_off_level_number_need_only_stay_at_that_level() -> None:
    assert tolerance.compare("largest difference 1.1e-06", "largest difference 9.5e-07", [0.0], 6.0)[0]
    assert not tolerance.compare("largest difference 1.1e-06", "largest difference 2.0e-03", [0.0], 6.0)[0]


def test_a_displayed_table_is_compared_through_its_plain_text_and_its_markdown_alike() -> None:
    outputs = [
        {
            "output_type": "display_data",
            "data": {"text/plain": "acc 94.38\n", "text/markdown": "| acc |\n|---:|\n| 94.38 |"},
            "metadata": {},
        }
    ]
    flat = tolerance.flatten_outputs(outputs, lambda s: s)
    assert flat == {"text/plain": ["acc 94.38\n"], "text/markdown": ["| acc |\n|---:|\n| 94.38 |"]}
    assert tolerance.compare(flat["text/markdown"][0], "| acc |\n|---:|\n| 94.50 |", [0.3], 6.0)[0]
