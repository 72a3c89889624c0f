"""The stored outputs belong to the current code; every closing claim is calibrated; the multi-seed
records belong to the stored runs, and the pages show the current ones.

These checks read files only and take seconds; they run before any notebook executes.
"""

from pathlib import Path

import nbformat
import pytest

from dyn_helpers import accounting
from dyn_helpers.repro import DEFAULT_SEED
from dyn_helpers.tools import calibrate, fingerprint, runs

NOTEBOOKS = sorted((runs.REPO_ROOT / "chapters").glob("*/*.ipynb"))
KEYS = [runs.record_key(path) for path in NOTEBOOKS]


def _refresh(key: str) -> str:
    return f"refresh it with `make notebooks NOTEBOOKS={key}`"


@pytest.fixture(params=NOTEBOOKS, ids=KEYS)
def notebook(request) -> tuple[str, nbformat.NotebookNode]:
    path: Path = request.param
    return runs.record_key(path), nbformat.read(path, as_version=4)


def test_stored_outputs_come_from_the_current_code_and_seed(notebook):
    key, nb = notebook
    stored = fingerprint.stored(nb)
    assert stored.get("code_fingerprint"), f"{key} has no stored fingerprint: {_refresh(key)}"
    current = fingerprint.code_fingerprint(nb, seed=DEFAULT_SEED)
    assert stored["code_fingerprint"] == current, (
        f"{key}: its stored outputs are stale (its code cells, a dyn_helpers module it imports, "
        f"requirements.lock or the seed changed since they were made); {_refresh(key)}"
    )


def test_the_stored_run_checked_its_claims(notebook):
    key, nb = notebook
    assert fingerprint.stored(nb).get("claims"), f"{key}: no closing claims were recorded; {_refresh(key)}"


def test_every_claim_lies_far_enough_inside_its_calibration(notebook):
    key, nb = notebook
    record = calibrate.load_record(key)
    assert record, f"{key} is not calibrated: run `make calibrate NOTEBOOKS={key}`"
    problems = calibrate.claim_problems(
        fingerprint.stored(nb).get("claims", []), record, len(calibrate.plan())
    )
    assert not problems, f"{key}: " + "; ".join(problems)


def test_the_calibration_covers_every_compared_output(notebook):
    key, nb = notebook
    problems = calibrate.output_problems(nb, calibrate.load_record(key))
    assert not problems, f"{key}: " + "; ".join(problems) + f"; re-run `make calibrate NOTEBOOKS={key}`"


def test_the_calibration_page_is_current():
    notebooks = {key: nbformat.read(path, as_version=4) for key, path in zip(KEYS, NOTEBOOKS, strict=True)}
    assert calibrate.PAGE.read_text(encoding="utf-8") == calibrate.render_page(notebooks), (
        "book/calibration.md is stale: regenerate it with `make calibration-page`"
    )


def test_the_chapter_tables_made_from_the_records_are_current():
    chapters = accounting.accounted_chapters()
    pages = sorted(p.parent.name for p in accounting.CHAPTERS_DIR.glob(f"*/{accounting.TABLE_NAME}"))
    assert pages == chapters, (
        f"chapters with records that report an account: {chapters}; with a table: {pages}"
    )
    for chapter in chapters:
        written = (accounting.CHAPTERS_DIR / chapter / accounting.TABLE_NAME).read_text(encoding="utf-8")
        assert written == accounting.table_page(chapter), (
            f"chapters/{chapter}/{accounting.TABLE_NAME} is stale: regenerate it with `make calibration-page`"
        )


def test_the_multi_seed_record_belongs_to_the_stored_run(notebook):
    key, nb = notebook
    reason = calibrate.record_staleness(fingerprint.stored(nb), calibrate.load_record(key))
    assert reason is None, (
        f"{key}: its multi-seed record does not belong to the stored run ({reason}); "
        f"run `make calibrate NOTEBOOKS={key}`"
    )


def test_the_page_shows_the_current_multi_seed_record(notebook):
    key, nb = notebook
    problem = calibrate.shown_record_problem(nb, calibrate.load_record(key))
    assert problem is None, (
        f"{key}: {problem}; re-run `make notebooks NOTEBOOKS={key}`: the page glues numbers from the record"
    )
