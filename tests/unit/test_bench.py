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
