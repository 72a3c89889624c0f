"""Specification of dyn_helpers.accounting: one account per execution, and each chapter's table."""

from __future__ import annotations

import json

import pytest
import torch

from dyn_helpers.accounting import (
    accounted_chapters,
    accounting_keys,
    accounting_table,
    report_accounting,
    write_table_pages,
)
from dyn_helpers.claims import Claims, is_clock_key


def test_an_account_is_three_reported_values_and_only_the_time_is_a_clock_value() -> None:
    claims = Claims()
    report_accounting(
        claims, "sparse", "sparse convolution, gathered", counted=23.0, executed=25.5, clock_time=0.8
    )
    keys = [c.key for c in claims.claims]
    assert keys == ["acct_sparse_counted", "acct_sparse_executed", "clock_acct_sparse_time"]
    assert [is_clock_key(k) for k in keys] == [False, False, True]
    assert all(c.op == "report" for c in claims.claims)
    assert claims.claims[0].text.startswith("sparse convolution, gathered: FLOPs counted")


def test_an_account_takes_zero_dimensional_tensors() -> None:
    claims = Claims()
    report_accounting(claims, "x", "x", counted=torch.tensor(5.0), executed=5, clock_time=torch.tensor(1.2))
    assert claims.claims[2].value == pytest.approx(1.2)


@pytest.mark.parametrize(
    ("label", "method", "values", "error", "match"),
    [
        ("Sparse", "m", (1, 1, 1), ValueError, "lower-case identifier"),
        ("s", "", (1, 1, 1), ValueError, "non-empty name"),
        ("s", "a: b", (1, 1, 1), ValueError, "without ':'"),
        ("s", "m", (0, 1, 1), ValueError, "counted must be positive"),
        ("s", "m", (1, 1, -0.5), ValueError, "clock_time must be positive"),
        ("s", "m", (1, "1", 1), TypeError, "executed must be a number"),
        ("s", "m", (True, 1, 1), TypeError, "counted must be a number"),
    ],
)
def test_bad_accounts_are_refused(label, method, values, error, match) -> None:
    with pytest.raises(error, match=match):
        report_accounting(
            Claims(), label, method, counted=values[0], executed=values[1], clock_time=values[2]
        )


def test_claims_must_be_claims() -> None:
    with pytest.raises(TypeError, match="must be a Claims"):
        report_accounting([], "s", "m", counted=1, executed=1, clock_time=1)


def record(notebook: str, values: dict[str, list[float]], texts: dict[str, str]) -> dict:
    """A calibration record of two default-setting runs and one under a second setting."""
    runs = [
        {"seed": 0, "setting": "default"},
        {"seed": 907, "setting": "default"},
        {"seed": 0, "setting": "avx2"},
    ]
    return {
        "notebook": notebook,
        "date": "2026-11-30T17:07:23Z",
        "platform": {"cpu": "AMD EPYC", "cpu_capability": "AVX512", "env": {}, "torch": "2.13.0+cpu"},
        "runs": runs,
        "claims": {k: {"values": v, "text": texts.get(k, k), "op": "report"} for k, v in values.items()},
    }


@pytest.fixture
def results(tmp_path):
    """Records of two notebooks in chapter 03_x (one with an account, one without) and one in 04_y."""
    folder = tmp_path / "calibration"
    folder.mkdir()
    keys = accounting_keys("gathered")
    values = {
        keys[0]: [20.0, 30.0, 99.0],
        keys[1]: [22.0, 32.0, 99.0],
        keys[2]: [0.5, 0.7, 9.0],
        "gap": [1, 2, 3],
    }
    texts = {keys[0]: "pixels, gathered: FLOPs counted, % of the reference"}
    (folder / "pixels.json").write_text(json.dumps(record("chapters/03_x/pixels.ipynb", values, texts)))
    plain = record("chapters/03_x/other.ipynb", {"gap": [1.0, 2.0, 3.0]}, {})
    (folder / "other.json").write_text(json.dumps(plain))
    steps = dict(
        zip(accounting_keys("skip"), ([50.0, 50.0, 50.0], [51.0, 51.0, 51.0], [0.6, 0.6, 0.6]), strict=True)
    )
    (folder / "steps.json").write_text(json.dumps(record("chapters/04_y/steps.ipynb", steps, {})))
    return tmp_path


def test_the_table_has_one_row_per_account_with_mean_and_sd_over_the_base_seeds(results) -> None:
    assert accounted_chapters(results) == ["03_x", "04_y"]
    table = accounting_table("03_x", results)
    assert "| {doc}`pixels, gathered <pixels>` | 25.0 ± 7.1 | 27.0 ± 7.1 | 0.60 (0.50 to 0.70) |" in table
    assert (
        "- {doc}`pixels <pixels>`: calibration runs of 2 seeds (0, 907), finished 30 November 2026" in table
    )
    assert "other" not in table and "steps" not in table


def test_each_accounted_chapter_gets_its_table_page(results, tmp_path) -> None:
    chapters = tmp_path / "chapters"
    for name in ("03_x", "04_y"):
        (chapters / name).mkdir(parents=True)
    written = write_table_pages(chapters, results)
    assert [p.parent.name for p in written] == ["03_x", "04_y"]
    text = (chapters / "03_x" / "accounting_table.md").read_text()
    assert text.startswith("<!-- Written by") and accounting_table("03_x", results) in text


def test_a_chapter_without_accounts_is_an_error(results) -> None:
    with pytest.raises(ValueError, match="chapters/02_z reports an account"):
        accounting_table("02_z", results)
