"""Specification of `dyn_helpers.claims`: claims hold or fail by their bound, and are logged."""

import json

import numpy as np
import pytest
import torch

from dyn_helpers.claims import CLAIMS_LOG_ENV_VAR, Claims


def test_claims_that_hold_print_a_table_and_pass(capsys) -> None:
    claims = Claims()
    claims.at_least("accuracy_gap", -0.5, -1.0, "within a point of the static model")
    claims.at_most("flops_ratio", np.float64(0.5), 0.6, "at most 60% of the FLOPs")
    claims.check()
    out = capsys.readouterr().out
    assert "accuracy_gap" in out and "flops_ratio" in out and "all 2 claims hold" in out


def test_a_claim_past_its_bound_fails_naming_it() -> None:
    claims = Claims()
    claims.at_most("flops_ratio", 0.61, 0.6, "at most 60% of the FLOPs")
    claims.at_least("gain", 1.0, 0.0, "a gain")
    with pytest.raises(AssertionError, match="flops_ratio") as failure:
        claims.check()
    assert "gain" not in str(failure.value)


def test_a_value_on_its_bound_holds() -> None:
    claims = Claims()
    claims.at_least("edge", 2, 2, "exactly on the bound")
    claims.check()


def test_values_are_logged_as_json_lines_when_asked(tmp_path, monkeypatch) -> None:
    log = tmp_path / "claims.jsonl"
    monkeypatch.setenv(CLAIMS_LOG_ENV_VAR, str(log))
    claims = Claims()
    claims.at_most("ratio", torch.tensor(0.25), 0.5, "a ratio")
    claims.at_least("failing", 0.0, 1.0, "a failing claim is logged too")
    with pytest.raises(AssertionError):
        claims.check()
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["key"], r["op"], r["value"], r["bound"]) for r in rows] == [
        ("ratio", "at_most", 0.25, 0.5),
        ("failing", "at_least", 0.0, 1.0),
    ]


@pytest.mark.parametrize("value", [True, "0.5", [0.5], np.array([0.5, 0.6])])
def test_a_value_that_is_not_one_real_number_is_a_type_error(value) -> None:
    with pytest.raises(TypeError, match="real number"):
        Claims().at_least("x", value, 0.0, "a claim")


def test_a_value_that_is_not_finite_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="finite"):
        Claims().at_most("x", float("nan"), 0.0, "a claim")


@pytest.mark.parametrize("key", ["", "Flops", "two words", "1st", None])
def test_a_key_that_is_not_a_lower_case_identifier_is_a_value_error(key) -> None:
    with pytest.raises(ValueError, match="identifier"):
        Claims().at_least(key, 1.0, 0.0, "a claim")


def test_a_key_used_twice_and_a_missing_sentence_are_value_errors() -> None:
    claims = Claims()
    claims.at_least("x", 1.0, 0.0, "a claim")
    with pytest.raises(ValueError, match="twice"):
        claims.at_least("x", 1.0, 0.0, "again")
    with pytest.raises(ValueError, match="sentence"):
        claims.at_most("y", 1.0, 2.0, " ")


def test_checking_no_claims_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="no claims"):
        Claims().check()


def test_a_reported_value_is_printed_and_logged_without_a_bound(tmp_path, monkeypatch, capsys) -> None:
    log = tmp_path / "claims.jsonl"
    monkeypatch.setenv(CLAIMS_LOG_ENV_VAR, str(log))
    claims = Claims()
    claims.at_least("gain", 1.0, 0.0, "a gain")
    claims.report("spread_gain", np.float64(-0.25), "the gain's change with the spread")
    claims.check()
    out = capsys.readouterr().out
    assert out.splitlines()[2] == "spread_gain     -0.2500                reported"
    assert "all 1 claims hold; 1 value reported" in out
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert rows[1] == {
        "key": "spread_gain",
        "text": "the gain's change with the spread",
        "value": -0.25,
        "op": "report",
        "bound": None,
    }


def test_a_reported_value_never_fails_and_counts_as_a_claim_to_check(capsys) -> None:
    claims = Claims()
    claims.report("difference", -100.0, "a difference nobody asserts")
    claims.report("other", 3.0, "another")
    claims.check()
    assert "no claims asserted; 2 values reported" in capsys.readouterr().out
    assert all(claim.holds for claim in claims.claims)


def test_a_reported_value_follows_the_rules_for_keys_and_values() -> None:
    claims = Claims()
    claims.at_most("x", 1.0, 2.0, "a claim")
    with pytest.raises(ValueError, match="twice"):
        claims.report("x", 1.0, "the same key")
    with pytest.raises(ValueError, match="finite"):
        claims.report("y", float("inf"), "a value")
    with pytest.raises(TypeError, match="real number"):
        claims.report("y", "1.0", "a value")


def test_the_table_of_asserted_claims_keeps_its_format(capsys) -> None:
    claims = Claims()
    claims.at_least("accuracy_gap", -0.5, -1.0, "within a point of the static model")
    claims.at_most("flops_ratio", 0.61, 0.6, "at most 60% of the FLOPs")
    assert claims.table() == (
        "claim              value         bound  verdict\n"
        "accuracy_gap     -0.5000 ≥     -1.0000  holds\n"
        "flops_ratio       0.6100 ≤      0.6000  FAILS"
    )
