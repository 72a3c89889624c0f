"""Specification of the nbval plugin `tests/nbportable.py`, end to end on a one-cell notebook.

On another platform a trained number within its calibrated tolerance passes, and a stored
accuracy moved by more than its tolerance fails; on the same platform the comparison is strict.
"""

import json
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from dyn_helpers import recorded
from dyn_helpers.tools import fingerprint, tolerance

pytest_plugins = ["pytester"]
TESTS_DIR = Path(__file__).resolve().parent.parent
SD = 0.3


@pytest.fixture
def run_nbval(pytester, monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(TESTS_DIR))
    import nbportable

    monkeypatch.setattr(recorded, "RESULTS_DIR", tmp_path)
    calibration = recorded.seed_records_dir()
    calibration.mkdir()
    record = {
        "outputs": [{"cell": 0, "field": "stdout", "index": 0, "skeleton": "accuracy #%\n", "sd": [SD]}]
    }
    (calibration / "probe.json").write_text(json.dumps(record))

    def run(stored_text: str, platform: dict) -> pytest.RunResult:
        nbportable._notebook_mode.cache_clear()
        nbportable._factor.cache_clear()
        cell = new_code_cell('print("accuracy 97.20%")', execution_count=1)
        cell.outputs = [new_output("stream", name="stdout", text=stored_text)]
        nb = new_notebook(cells=[cell])
        nb.metadata[fingerprint.METADATA_KEY] = {"platform": platform}
        nbformat.write(nb, pytester.path / "probe.ipynb")
        return pytester.runpytest_inprocess("-p", "nbportable", "--nbval", "probe.ipynb")

    return run


OTHER = {"cpu": "Another CPU", "cpu_capability": "AVX2", "torch": "0.0", "env": {}}


def tol() -> float:
    return tolerance.tolerance(SD, 2, tolerance.tolerance_factor(1))


def test_on_another_platform_a_number_within_its_tolerance_passes(run_nbval) -> None:
    result = run_nbval(f"accuracy {97.20 + 0.5 * tol():.2f}%\n", OTHER)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["*tolerant*stored on Another CPU*", "*1 differences noted, within tolerance*"]
    )


def test_on_another_platform_a_stored_accuracy_moved_beyond_its_tolerance_fails(run_nbval) -> None:
    result = run_nbval(f"accuracy {97.20 + 1.5 * tol():.2f}%\n", OTHER)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*beyond its tolerance*", "*BEYOND TOLERANCE*"])


def test_on_the_same_platform_the_comparison_is_strict(run_nbval) -> None:
    here = fingerprint.platform_fingerprint()
    run_nbval("accuracy 97.20%\n", here).assert_outcomes(passed=1)
    result = run_nbval(f"accuracy {97.20 + 0.5 * tol():.2f}%\n", here)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*strict*"])
