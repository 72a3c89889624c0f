import json

import pytest

from dyn_helpers import recorded
from dyn_helpers.tools import bench


def test_suite_writes_one_record_with_provenance_for_the_device(tmp_path):
    path = bench.run("cpu", min_run_time=0.01, results_dir=tmp_path, chapters=["early_exiting"])
    record = json.loads(path.read_text())
    provenance = record["provenance"]
    assert path.name.startswith("bench-") and path.parent == tmp_path
    assert provenance["device"] == "cpu" and provenance["cuda"] is None
    assert {"device_name", "cpu", "torch", "python", "date", "command"} <= provenance.keys()
    cases = {m["case"] for m in record["measurements"]}
    assert "early_exiting/static_depth_4" in cases and "early_exiting/early_exit_all_exits" in cases
    assert {m["batch_size"] for m in record["measurements"]} == {1, 256}
    assert all(m["median_s"] > 0 and m["iqr_s"] >= 0 for m in record["measurements"])


def test_the_record_holds_flops_run_and_each_dynamic_case_names_its_reference(tmp_path):
    path = bench.run("cpu", min_run_time=0.01, results_dir=tmp_path, chapters=["early_exiting"])
    measurements = {(m["case"], m["batch_size"]): m for m in json.loads(path.read_text())["measurements"]}
    first_exit = measurements["early_exiting/early_exit_first_exit", 1]
    static = measurements["early_exiting/static_depth_4", 1]
    assert first_exit["reference"] == "early_exiting/static_depth_4" and "reference" not in static
    assert 0 < first_exit["counted_flops"] == first_exit["flops_per_input"] < static["flops_per_input"]
    assert first_exit["reference_median_s"] > 0 and "reference_median_s" not in static


def test_only_records_made_on_a_cuda_device_count_as_gpu_records(tmp_path):
    for name, device in (("cpu", "cpu"), ("gpu", "cuda:0")):
        record = {"provenance": {"device": device, "device_name": name}, "measurements": []}
        recorded.record_path(name, tmp_path).write_text(json.dumps(record))
    assert len(recorded.load_records(tmp_path)) == 2
    assert [r["provenance"]["device_name"] for r in recorded.gpu_records(tmp_path)] == ["gpu"]


def test_record_names_are_safe_file_names():
    assert recorded.record_path("NVIDIA H100 80GB HBM3").name == "bench-nvidia-h100-80gb-hbm3.json"


def test_a_missing_device_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="device"):
        bench.run("cuda:99", results_dir=tmp_path)


def test_the_suite_refuses_a_chapter_without_cases(tmp_path):
    with pytest.raises(ValueError, match="no timing cases"):
        bench.run("cpu", results_dir=tmp_path, chapters=["no_such_chapter"])


def _gpu_record(tmp_path, cases):
    provenance = {
        "device": "cuda:0",
        "device_name": "H100",
        "cuda": "12.4",
        "torch": "2.13.0",
        "date": "2026-11-30",
    }
    measurements = [{"case": c, "batch_size": 1, "median_s": 2.5e-5, "iqr_s": 1e-6} for c in cases]
    recorded.record_path("H100", tmp_path).write_text(
        json.dumps({"provenance": provenance, "measurements": measurements})
    )


def test_a_page_lists_only_its_own_gpu_cases_in_microseconds(tmp_path):
    _gpu_record(tmp_path, ["blockdrop/policy", "halting/act"])
    table = recorded.gpu_timings("blockdrop/", tmp_path)
    assert [row[table.columns.index("case")] for row in table.rows] == ["blockdrop/policy"]
    assert (
        "| H100 | 12.4 | 2.13.0 | 2026-11-30 | blockdrop/policy | 1 | 25.0 | 1.0 |" in table._repr_markdown_()
    )


def test_a_page_without_gpu_records_says_so_and_what_it_shows_instead(tmp_path, capsys):
    _gpu_record(tmp_path, ["halting/act"])
    recorded.show_gpu_timings("blockdrop/", shows="FLOPs only", results_dir=tmp_path)
    assert capsys.readouterr().out == recorded.NO_GPU_RECORD.format(shows="FLOPs only") + "\n"


def test_gpu_timings_need_a_case_prefix(tmp_path):
    with pytest.raises(ValueError, match="case_prefix"):
        recorded.gpu_timings("", tmp_path)
