"""The book's timing suite: `python -m dyn_helpers.bench` writes one JSON record per device.

It times the models of the early-exiting chapter on the device at hand (CUDA when available,
else the CPU) at several batch sizes and writes `book/results/bench-<device>.json` with its
provenance: device name, torch and CUDA versions, date, batch sizes, medians and spreads.
Notebooks show these records beside their live CPU measurements; a GPU number in the book
exists only if this suite ran on that GPU.
"""

import argparse
import datetime as dt
import json
import platform
import re
from pathlib import Path

import torch

from dyn_helpers.devices import cpu_model_name, device_name, resolve_device
from dyn_helpers.early_exit import BOOK_ARCHITECTURE, MultiExitCNN, StaticCNN
from dyn_helpers.measure import latency
from dyn_helpers.repro import seed_everything

RESULTS_DIR = Path(__file__).resolve().parent.parent / "book" / "results"
BATCH_SIZES = (1, 256)


def record_path(name: str, results_dir: Path = RESULTS_DIR) -> Path:
    """Where the record of the device called `name` is stored."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return results_dir / f"bench-{slug}.json"


def provenance(device: torch.device) -> dict:
    """What produced a record: device, versions, date and host."""
    return {
        "device": str(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "python": platform.python_version(),
        "host_cpu": cpu_model_name(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "python -m dyn_helpers.bench",
    }


def early_exit_timings(device: torch.device, min_run_time: float) -> list[dict]:
    """Static CNNs of every depth, and the early-exit CNN at its cheapest and dearest path.

    Threshold 0 answers at the first exit, threshold 1 runs every block and every exit; a
    trained model's average latency lies between, weighted by its exit distribution.
    """
    length = BOOK_ARCHITECTURE["length"]
    x = torch.randn(max(BATCH_SIZES), 1, length)
    rows = []
    multi = MultiExitCNN(**BOOK_ARCHITECTURE).to(device).eval()
    for depth in range(1, multi.depth + 1):
        static = StaticCNN(depth, **BOOK_ARCHITECTURE).to(device).eval()
        for batch_size in BATCH_SIZES:
            result = latency(static, x, batch_size=batch_size, device=device, min_run_time=min_run_time)
            rows.append({"case": f"early_exiting/static_depth_{depth}", **result.as_dict()})
    for threshold, name in ((0.0, "first_exit"), (1.0, "all_exits")):
        result = latency(
            lambda xb, t=threshold: multi.forward_early_exit(xb, t)[0],
            x[:64],
            device=device,
            min_run_time=min_run_time,
        )
        rows.append({"case": f"early_exiting/early_exit_{name}", **result.as_dict()})
    return rows


def run(device: str | None = None, min_run_time: float = 0.5, results_dir: Path = RESULTS_DIR) -> Path:
    """Run the suite on `device` (CUDA when available if None) and write its record."""
    dev = resolve_device(device)
    seed_everything(0)
    record = {"provenance": provenance(dev), "measurements": early_exit_timings(dev, min_run_time)}
    path = record_path(record["provenance"]["device_name"], results_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return path


def load_records(results_dir: Path = RESULTS_DIR) -> list[dict]:
    """Every timing record stored in `results_dir`, CPU and GPU alike."""
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(results_dir.glob("bench-*.json"))]


def gpu_records(results_dir: Path = RESULTS_DIR) -> list[dict]:
    """The stored records that a CUDA GPU produced."""
    return [r for r in load_records(results_dir) if r["provenance"]["device"].startswith("cuda")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="cpu or cuda[:N]; default: CUDA when available")
    parser.add_argument("--min-run-time", type=float, default=0.5, help="seconds of timing per case")
    args = parser.parse_args()
    print(f"wrote {run(args.device, args.min_run_time)}")


if __name__ == "__main__":
    main()
