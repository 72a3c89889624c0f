"""Measurements recorded by the book's tooling, for the pages to show: GPU timing records.

`python -m dyn_helpers.tools.bench` writes one JSON record per device to `book/results/`; a page
lists the measurements of its own chapter with the device, versions and date that produced them.
"""

import json
import re
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent.parent / "book" / "results"


def record_path(device_name: str, results_dir: Path = RESULTS_DIR) -> Path:
    """Where the timing record of the device called `device_name` is stored."""
    slug = re.sub(r"[^a-z0-9]+", "-", device_name.lower()).strip("-")
    if not slug:
        raise ValueError(f"device_name must contain letters or digits, got {device_name!r}")
    return results_dir / f"bench-{slug}.json"


def load_records(results_dir: Path = RESULTS_DIR) -> list[dict]:
    """Every timing record stored in `results_dir`, CPU and GPU alike."""
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(results_dir.glob("bench-*.json"))]


def gpu_records(results_dir: Path = RESULTS_DIR) -> list[dict]:
    """The stored timing records that a CUDA GPU produced."""
    return [r for r in load_records(results_dir) if r["provenance"]["device"].startswith("cuda")]
