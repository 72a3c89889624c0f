"""The book's timing suite: `python -m dyn_helpers.tools.bench` writes one JSON record per device.

Every chapter registers its cases with `dyn_helpers.measure.timing_cases`; the suite imports the
package's modules so that their registrations run, times each case on the device at hand (CUDA
when available, else the CPU) at its batch sizes, and writes `book/results/bench-<device>.json`
with the provenance of `dyn_helpers.devices.provenance`. Each measurement holds the FLOPs run per
input at its batch size; a dynamic case's also names its reference and the FLOPs its decisions
allow (`TimingCase`), which chapter 7's theory-against-practice table reads
(`dyn_helpers.open_problems.practice`). Pages list the measurements of their own chapter
(`dyn_helpers.recorded.gpu_records`); a GPU number in the book exists only if this suite ran on
that GPU.
"""

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import torch

from dyn_helpers.devices import provenance, resolve_device
from dyn_helpers.measure import (
    TimingCase,
    check_references,
    compare_latency,
    flops_per_input,
    latency,
    registered_timing_cases,
)
from dyn_helpers.recorded import RESULTS_DIR, record_path
from dyn_helpers.repro import seed_everything

COMMAND = "python -m dyn_helpers.tools.bench"


def timings(device: torch.device, min_run_time: float, chapters: Sequence[str] | None = None) -> list[dict]:
    """Time the cases of `chapters` (every registered chapter if None) on `device`.

    A dynamic case is timed in alternation with its reference at each batch size both serve
    (`measure.compare_latency`), so that the ratio of their times is not skewed by a slow spell
    of the machine; the reference's median of that pairing is kept as `reference_median_s`.
    """
    builders = registered_timing_cases()
    unknown = sorted(set(chapters or ()) - set(builders))
    if unknown:
        raise ValueError(f"no timing cases are registered for {unknown}; known: {sorted(builders)}")
    rows = []
    for chapter, build in builders.items():
        if chapters is not None and chapter not in chapters:
            continue
        cases = build(device)
        check_references(chapter, cases)
        for name, case in cases.items():
            dynamic = {}
            if case.reference is not None:
                counted_by = cases[case.counted_by or name]
                dynamic = {
                    "reference": f"{chapter}/{case.reference}",
                    "counted_flops": flops_per_input(counted_by.fn, counted_by.inputs),
                }
            for batch_size in case.batch_sizes:
                rows.append(
                    {"case": f"{chapter}/{name}", **_timed(case, cases, batch_size, device, min_run_time)}
                    | {"flops_per_input": flops_per_input(case.fn, case.inputs, batch_size=batch_size)}
                    | dynamic
                )
    return rows


def _timed(
    case: TimingCase, cases: dict[str, TimingCase], batch_size: int, device: torch.device, min_run_time: float
) -> dict:
    reference = cases[case.reference] if case.reference is not None else None
    if reference is None or batch_size not in reference.batch_sizes:
        return latency(
            case.fn, case.inputs, batch_size=batch_size, device=device, min_run_time=min_run_time
        ).as_dict()
    rounds = 3
    timed = compare_latency(
        {"case": case.fn, "reference": reference.fn},
        case.inputs,
        batch_size=batch_size,
        device=device,
        min_run_time=min_run_time / rounds,
        rounds=rounds,
    )
    return timed["case"].as_dict() | {"reference_median_s": timed["reference"].median_s}


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
