"""Specification of `dyn_helpers.tools.runs`: argument checks, stream coalescing, the stamp, the status page."""

import json
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from dyn_helpers import recorded
from dyn_helpers.tools import fingerprint, runs

RECORD = {
    "wall_time_s": 12.34,
    "date": "2025-01-31T12:05:00Z",
    "seed": 0,
    "cells": 20,
    "python": "3.11.9",
    "packages": {"torch": "2.3.0", "numpy": "1.26.4"},
    "platform": "Linux-6.1-x86_64",
    "cpu": "Example CPU @ 2.0GHz",
    "cores": 2,
    "torch_threads": 1,
}


def test_a_missing_notebook_is_a_value_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "absent.ipynb"
    with pytest.raises(ValueError, match="absent.ipynb"):
        runs.check_notebook(missing)


def test_a_file_that_is_not_a_notebook_is_a_value_error(tmp_path: Path) -> None:
    text = tmp_path / "notes.md"
    text.write_text("# not a notebook\n")
    with pytest.raises(ValueError, match="notes.md"):
        runs.check_notebook(text)


def test_a_path_of_the_wrong_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="int"):
        runs.check_notebook(3)  # type: ignore[arg-type]


def test_run_notebooks_checks_every_path_before_running_any(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="absent.ipynb"):
        runs.run_notebooks([tmp_path / "absent.ipynb"])


def test_record_keys_are_paths_relative_to_the_root(tmp_path: Path) -> None:
    notebook = tmp_path / "chapters" / "a" / "n.ipynb"
    assert runs.record_key(notebook, root=tmp_path) == "chapters/a/n.ipynb"
    with pytest.raises(ValueError, match="not inside"):
        runs.record_key(Path("/elsewhere/n.ipynb"), root=tmp_path)


def test_progress_bar_updates_are_coalesced_into_one_final_output() -> None:
    cell = new_code_cell("train()")
    cell.outputs = [
        new_output("stream", name="stderr", text="epoch  10%\r"),
        new_output("stream", name="stderr", text="epoch  50%\r"),
        new_output("stream", name="stderr", text="epoch 100%\n"),
        new_output("stream", name="stdout", text="done\n"),
        new_output("execute_result", data={"text/plain": "0.97"}, execution_count=1),
    ]
    nb = runs.coalesce_streams(new_notebook(cells=[cell]))
    outputs = nb.cells[0].outputs
    assert [o.output_type for o in outputs] == ["stream", "stream", "execute_result"]
    assert outputs[0].text == "epoch 100%\n"
    assert outputs[1].text == "done\n"


def test_coalescing_rejects_what_is_not_a_notebook() -> None:
    with pytest.raises(TypeError, match="NotebookNode"):
        runs.coalesce_streams({"cells": []})  # type: ignore[arg-type]


def test_the_status_page_lists_each_run_with_its_environment() -> None:
    page = runs.render_status({"chapters/b.ipynb": RECORD, "chapters/a.ipynb": RECORD}, [])
    assert page.startswith("# Status of the stored outputs\n")
    assert page.index("`chapters/a.ipynb`") < page.index("`chapters/b.ipynb`")
    assert "| `chapters/a.ipynb` | 12.3 | 2025-01-31 12:05 UTC | 0 | A |" in page
    assert "All notebooks together: 24.7 s." in page
    assert page.count("### Environment") == 1
    for row in ("| Python | 3.11.9 |", "| torch | 2.3.0 |", "| CPU | Example CPU @ 2.0GHz |"):
        assert row in page
    assert "| torch threads | 1 |" in page
    assert "No GPU timing record exists yet" in page


def test_runs_on_different_machines_get_different_environments() -> None:
    other = {**RECORD, "cpu": "Another CPU"}
    page = runs.render_status({"a.ipynb": RECORD, "b.ipynb": other}, [])
    assert "| `b.ipynb` | 12.3 | 2025-01-31 12:05 UTC | 0 | B |" in page
    assert "### Environment B" in page


def test_the_status_page_says_when_nothing_has_run() -> None:
    page = runs.render_status({}, [])
    assert "No run of `make notebooks` is recorded yet" in page
    assert "No GPU timing record exists yet" in page


def test_device_records_are_listed_with_device_kind_and_date(tmp_path: Path) -> None:
    (tmp_path / "notebook_runs.json").write_text(json.dumps({"x.ipynb": RECORD}))
    provenance = {"device": "cuda", "device_name": "NVIDIA H100", "date": "2025-02-01T08:00:00+00:00"}
    (tmp_path / "bench-nvidia-h100.json").write_text(json.dumps({"provenance": provenance}))
    devices = runs.device_records(tmp_path)
    assert devices == [
        {
            "file": "bench-nvidia-h100.json",
            "device": "NVIDIA H100",
            "kind": "GPU",
            "date": "2025-02-01T08:00:00+00:00",
        }
    ]
    page = runs.render_status({}, devices)
    assert "| `bench-nvidia-h100.json` | NVIDIA H100 | GPU | 2025-02-01 08:00 UTC |" in page
    assert "No GPU timing record exists yet" not in page


def test_a_cpu_bench_record_alone_is_not_a_gpu_record(tmp_path: Path) -> None:
    provenance = {"device": "cpu", "device_name": "Example CPU", "date": "2025-02-01T08:00:00"}
    (tmp_path / "bench-example-cpu.json").write_text(json.dumps({"provenance": provenance}))
    page = runs.render_status({}, runs.device_records(tmp_path))
    assert "No GPU timing record exists yet" in page
    assert "| `bench-example-cpu.json` | Example CPU | CPU | 2025-02-01 08:00 UTC |" in page


def test_write_status_renders_the_runs_file(tmp_path: Path) -> None:
    runs_file = tmp_path / "results" / "notebook_runs.json"
    runs.save_runs({"chapters/a.ipynb": RECORD}, runs_file)
    page = tmp_path / "status.md"
    runs.write_status(runs_file, page)
    assert "`chapters/a.ipynb`" in page.read_text()


def test_a_runs_file_that_is_not_an_object_is_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "notebook_runs.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        runs.load_json(bad)


def test_the_kernel_runs_single_threaded_with_inline_plots(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    env = runs.kernel_env()
    assert env["OMP_NUM_THREADS"] == "1"
    assert "MPLBACKEND" not in env


def test_package_versions_name_every_key_package() -> None:
    versions = runs.package_versions()
    assert set(versions) == set(runs.KEY_PACKAGES)
    assert versions["torch"].startswith("2.")


def test_the_command_line_rejects_a_missing_notebook_by_name(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        runs.main(["no_such_notebook.ipynb"])
    assert exit_info.value.code == 2
    assert "no_such_notebook.ipynb" in capsys.readouterr().err


@pytest.mark.parametrize("jobs", [0, -1, 1.5, True])
def test_the_number_of_jobs_must_be_a_positive_int(jobs) -> None:
    with pytest.raises(ValueError, match="positive int"):
        runs.run_notebooks([], jobs=jobs)


def test_a_stored_run_keeps_the_date_of_the_multi_seed_record_it_could_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recorded, "RESULTS_DIR", tmp_path / "results")
    notebook = tmp_path / "example.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("x = 1")]), notebook)
    claims = [{"key": "gap", "text": "a gap", "value": 1.0, "op": "at_least", "bound": 0.0}]
    monkeypatch.setattr(runs, "execute", lambda path: (nbformat.read(path, as_version=4), 1.0, claims))
    assert runs.multi_seed_date(notebook) is None
    runs.execute_notebook(notebook)
    assert fingerprint.stored(nbformat.read(notebook, as_version=4))[runs.MULTI_SEED_KEY] is None
    record = recorded.seed_record_path("example")
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"date": "2026-11-30T07:33:07Z"}))
    assert runs.multi_seed_date(notebook) == "2026-11-30T07:33:07Z"
    runs.execute_notebook(notebook)
    stored = fingerprint.stored(nbformat.read(notebook, as_version=4))
    assert stored[runs.MULTI_SEED_KEY] == "2026-11-30T07:33:07Z" and stored["claims"] == claims


def test_records_made_by_make_targets_are_listed_by_group_with_their_time(tmp_path: Path) -> None:
    def write(path: Path, elapsed: float) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        provenance = {"date": "2026-12-01T05:00:00Z", "cpu": "Test CPU"}
        path.write_text(json.dumps({"seeds": [1, 2], "elapsed_s": elapsed, "provenance": provenance}))

    write(tmp_path / "leaderboard" / "b" / "x.json", 10.0)
    write(tmp_path / "leaderboard" / "b" / "y.json", 5.0)
    write(tmp_path / "leaderboard" / "timing-cpu.json", 3.0)
    write(tmp_path / "payoff" / "depth.json", 7.0)
    made = {m["records"]: m for m in runs.made_records(tmp_path)}
    assert set(made) == {"leaderboard/b", "leaderboard/timing-cpu.json", "payoff"}
    assert made["leaderboard/b"]["count"] == 2 and made["leaderboard/b"]["elapsed_s"] == 15.0
    assert made["payoff"]["target"] == "make payoff"
    page = runs.render_status({}, [], list(made.values()))
    assert "## Records made by make targets" in page and "`make leaderboard`" in page
