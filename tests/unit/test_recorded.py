"""Specification of `dyn_helpers.recorded`: where multi-seed records live and what a page reads from them."""

import json

import pytest

from dyn_helpers import recorded
from dyn_helpers.stats import SignTest

SEEDS = (0, 907, 1811, 2719, 3623, 4523, 5431, 6343, 7247, 8161, 9067, 9973)
PLATFORM = {"cpu": "AMD EPYC", "cpu_capability": "AVX512", "env": {}, "torch": "2.13.0+cpu"}


def calibration(claims: dict[str, list[float]], repeats: int = 4) -> dict:
    """A calibration record of 12 default-setting seeds, then `repeats` avx2 runs of the first seeds."""
    runs = [{"seed": s, "setting": "default", "wall_time_s": 1.0} for s in SEEDS]
    runs += [{"seed": s, "setting": "avx2", "wall_time_s": 1.0} for s in SEEDS[:repeats]]
    return {
        "notebook": "chapters/02_sample_wise/example.ipynb",
        "date": "2026-11-30T07:33:07Z",
        "platform": PLATFORM,
        "runs": runs,
        "claims": {
            key: {"text": f"the {key}", "op": "at_least", "bound": 0.0, "values": values}
            for key, values in claims.items()
        },
    }


@pytest.fixture
def results(tmp_path, monkeypatch):
    """An empty results folder in place of book/results; `write(name, record)` stores a record there."""
    monkeypatch.setattr(recorded, "RESULTS_DIR", tmp_path)

    def write(name: str, record: dict) -> None:
        path = recorded.seed_record_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record), encoding="utf-8")

    return write


GAIN = [1.0, 2.0, 0.5, 1.5, 3.0, 0.25, 1.0, 2.0, -0.5, 1.0, 0.75, 2.0]
NOISE = [1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 0.0, 1.0, -1.0, 0.5, -0.5, 0.25]
REPEATS = [99.0, 99.0, 99.0, 99.0]


def test_a_record_lives_under_calibration_named_after_its_notebook(tmp_path) -> None:
    expected = tmp_path / "calibration" / "blockdrop.json"
    assert recorded.seed_record_path("blockdrop", tmp_path) == expected
    assert recorded.seed_record_path("chapters/02_sample_wise/blockdrop.ipynb", tmp_path) == expected
    assert recorded.seed_record_path("blockdrop").parent == recorded.RESULTS_DIR / "calibration"


@pytest.mark.parametrize(
    ("name", "error"), [("", ValueError), ("..", ValueError), ("two words", ValueError), (3, TypeError)]
)
def test_a_record_name_that_names_no_notebook_is_rejected(name, error) -> None:
    with pytest.raises(error, match="notebook"):
        recorded.seed_record_path(name)


def test_values_are_those_of_the_independent_default_setting_seeds(results) -> None:
    results("example", calibration({"gain": GAIN + REPEATS}))
    record = recorded.multi_seed("example")
    assert record.seeds == SEEDS
    assert record.values("gain") == tuple(GAIN)
    assert record.date == "2026-11-30T07:33:07Z"
    assert record.platform == "AMD EPYC, AVX512, torch 2.13.0+cpu"
    assert record.keys == ("gain",)


def test_a_summary_describes_the_seeds_only(results) -> None:
    results("example", calibration({"gain": GAIN + REPEATS}))
    summary = recorded.multi_seed("example").summary("gain")
    assert (summary.n, summary.min, summary.max) == (12, -0.5, 3.0)
    assert summary.mean == pytest.approx(sum(GAIN) / 12)


def test_the_provenance_names_seeds_date_and_platform(results) -> None:
    results("example", calibration({"gain": GAIN + REPEATS}))
    assert recorded.multi_seed("example").provenance() == (
        "calibration runs of 12 seeds (0, 907, ..., 9973), finished 30 November 2026"
        " on AMD EPYC, AVX512, torch 2.13.0+cpu"
    )


def test_a_few_seeds_are_all_named() -> None:
    record = calibration({"gain": [1.0] * 12}, repeats=0)
    record["runs"], record["claims"]["gain"]["values"] = record["runs"][:3], [1.0] * 3
    record["platform"] = {**PLATFORM, "env": {"ATEN_CPU_CAPABILITY": "avx2"}}
    provenance = recorded.SeedRecord.from_record("example", record).provenance()
    assert provenance.startswith("calibration runs of 3 seeds (0, 907, 1811), finished 30 November 2026")
    assert provenance.endswith("torch 2.13.0+cpu, ATEN_CPU_CAPABILITY=avx2")


def test_a_consistent_sign_passes_its_check_and_returns_the_test(results) -> None:
    results("example", calibration({"gain": GAIN + REPEATS}))
    record = recorded.multi_seed("example")
    test = record.check_sign("gain", "positive")
    assert test == record.sign_test("gain", "positive")
    assert (test.n_positive, test.n_negative, test.n_zero) == (11, 1, 0)
    assert test.p_value == pytest.approx(13 / 4096)


def test_a_sign_the_seeds_do_not_support_fails_its_check_with_the_counts(results) -> None:
    results("example", calibration({"gain": GAIN + REPEATS, "noise": NOISE + REPEATS}))
    record = recorded.multi_seed("example")
    with pytest.raises(AssertionError, match=r"gain is not consistently negative .*1 negative.*p = 1"):
        record.check_sign("gain", "negative")
    with pytest.raises(AssertionError, match="noise is not consistently positive over 12 seeds"):
        record.check_sign("noise", "positive")


def test_no_consistent_sign_passes_for_noise_and_fails_for_a_consistent_gain(results) -> None:
    results("example", calibration({"gain": GAIN + REPEATS, "noise": NOISE + REPEATS}))
    record = recorded.multi_seed("example")
    test = record.check_no_consistent_sign("noise")
    assert isinstance(test, SignTest) and (test.n_positive, test.n_negative, test.n_zero) == (6, 5, 1)
    with pytest.raises(AssertionError, match="gain is consistently positive"):
        record.check_no_consistent_sign("gain")


def test_a_stricter_level_can_reject_what_the_default_level_accepts(results) -> None:
    results("example", calibration({"gain": GAIN + REPEATS}))
    record = recorded.multi_seed("example")
    with pytest.raises(AssertionError, match="not consistently positive"):
        record.check_sign("gain", "positive", alpha=0.001)
    record.check_no_consistent_sign("gain", alpha=0.001)


@pytest.mark.parametrize("alpha", [0, 1, -0.1, True, "0.05"])
def test_a_level_outside_zero_to_one_is_a_value_error(results, alpha) -> None:
    results("example", calibration({"gain": GAIN + REPEATS}))
    with pytest.raises(ValueError, match="alpha"):
        recorded.multi_seed("example").check_sign("gain", "positive", alpha=alpha)


def test_an_unknown_key_is_a_key_error_naming_the_keys_available(results) -> None:
    results("example", calibration({"gain": GAIN + REPEATS, "noise": NOISE + REPEATS}))
    with pytest.raises(KeyError, match="has no value 'gian'; it has gain, noise"):
        recorded.multi_seed("example").summary("gian")


def test_a_missing_record_says_how_to_make_it(results) -> None:
    with pytest.raises(FileNotFoundError, match=r"make calibrate NOTEBOOKS=chapters/.*absent\.ipynb"):
        recorded.multi_seed("absent")


def test_a_record_whose_values_do_not_line_up_with_its_runs_is_rejected(results) -> None:
    results("example", calibration({"gain": GAIN}))
    with pytest.raises(ValueError, match="12 values of 'gain' for 16 runs"):
        recorded.multi_seed("example")


def test_the_platform_is_described_in_one_line() -> None:
    assert recorded.describe_platform(PLATFORM) == "AMD EPYC, AVX512, torch 2.13.0+cpu"
    assert recorded.describe_platform({}) == "?, ?, torch ?"


def test_every_stored_record_of_the_book_can_be_read() -> None:
    for path in sorted(recorded.seed_records_dir().glob("*.json")):
        record = recorded.multi_seed(path.stem)
        assert len(record.seeds) == 12 and record.keys


def test_a_table_summarises_each_value_over_the_seeds(results) -> None:
    results("example", calibration({"gain": GAIN + REPEATS, "noise": NOISE + REPEATS}))
    record = recorded.multi_seed("example")
    table = record.table(["gain"], decimals=2)
    assert table.columns == ("value", "mean", "sd", "min", "max")
    gain = record.summary("gain")
    assert table.cells == (("gain", f"{gain.mean:.2f}", f"{gain.sd:.2f}", "-0.50", "3.00"),)
    assert [row[0] for row in record.table().rows] == ["gain", "noise"]
    with pytest.raises(TypeError, match="sequence of names"):
        record.table("gain")
    with pytest.raises(ValueError, match="decimals"):
        record.table(decimals=-1)
