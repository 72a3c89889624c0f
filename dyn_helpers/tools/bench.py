"""The book's timing suite: `python -m dyn_helpers.tools.bench` writes one JSON record per device.

Every chapter registers its cases with `dyn_helpers.measure.timing_cases`; the suite imports the
package's modules so that their registrations run, times each case on the device at hand (CUDA
when available, else the CPU) at its batch sizes, and writes `book/results/bench-<device>.json`
with the provenance of `dyn_helpers.devices.provenance`. Pages list the measurements of their
own chapter (`dyn_helpers.recorded.gpu_records`); a GPU number in the book exists only if this
suite ran on that GPU.
"""

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import torch

from dyn_helpers.devices import provenance, resolve_device
from dyn_helpers.measure import latency, registered_timing_cases
from dyn_helpers.recorded import RESULTS_DIR, record_path
from dyn_helpers.repro import seed_everything

COMMAND = "python -m dyn_helpers.tools.bench"


def timings(device: torch.device, min_run_time: float, chapters: Sequence[str] | None = None) -> list[dict]:
    """Time the cases of `chapters` (every registered chapter if None) on `device`."""
    builders = registered_timing_cases()
    unknown = sorted(set(chapters or ()) - set(builders))
    if unknown:
        raise ValueError(f"no timing cases are registered for {unknown}; known: {sorted(builders)}")
    rows = []
    for chapter, build in builders.items():
        if chapters is not None and chapter not in chapters:
            continue
        for name, case in build(device).items():
            for batch_size in case.batch_sizes:
                result = latency(
                    case.fn, case.inputs, batch_size=batch_size, device=device, min_run_time=min_run_time
                )
                rows.append({"case": f"{chapter}/{name}", **result.as_dict()})
    return rows


def run(
    device: str | None = None,
    min_run_time: float = 0.5,
    results_dir: Path = RESULTS_DIR,
    chapters: Sequence[str] | None = None,
) -> Path:
    """Run the suite on `device` (CUDA when available if None) and write its record."""
    dev = resolve_device(device)
    seed_everything(0)
    stamp = {**provenance(dev), "command": COMMAND}
    record = {"provenance": stamp, "measurements": timings(dev, min_run_time, chapters)}
    path = record_path(stamp["device_name"], results_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="cpu or cuda[:N]; default: CUDA when available")
    parser.add_argument("--min-run-time", type=float, default=0.5, help="seconds of timing per case")
    parser.add_argument("--chapter", action="append", help="time only this chapter (repeatable)")
    args = parser.parse_args()
    print(f"wrote {run(args.device, args.min_run_time, chapters=args.chapter)}")


if __name__ == "__main__":
    main()
