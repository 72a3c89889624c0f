"""Notebook runs: re-execute notebooks in place, record how long they took, write the status page.

`python -m dyn_helpers.tools.runs [NOTEBOOK ...]` (what `make notebooks` calls) executes each
notebook with a fresh kernel in the notebook's own folder, stores the outputs (progress-bar
updates coalesced into one output), records the wall time with the versions and hardware that
produced them in `book/results/notebook_runs.json`, and regenerates `book/status.md`. Each
notebook's metadata also keeps the date of the multi-seed record it could read
(`dyn_helpers.recorded.multi_seed`), so that `make test` knows when a page shows an older record.
Without notebooks it only regenerates the status page.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient
from nbconvert.preprocessors import CoalesceStreamsPreprocessor

from dyn_helpers import recorded
from dyn_helpers.claims import CLAIMS_LOG_ENV_VAR
from dyn_helpers.devices import provenance
from dyn_helpers.repro import SEED_ENV_VAR, default_seed
from dyn_helpers.tools import fingerprint

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = recorded.RESULTS_DIR
RUNS_FILE = RESULTS_DIR / "notebook_runs.json"
STATUS_PAGE = REPO_ROOT / "book" / "status.md"
CELL_TIMEOUT_S = 600
KERNEL_NAME = "python3"
KEY_PACKAGES = ("torch", "numpy", "scikit-learn", "mnist1d", "matplotlib", "ipykernel", "nbclient")
KERNEL_THREADS = "1"
# Metadata key of the date of the multi-seed record a run could read, and what code reading one contains.
MULTI_SEED_KEY = "multi_seed_record"
READS_RECORD = "multi_seed("


def check_notebook(path: str | os.PathLike[str]) -> Path:
    """Return `path` resolved, or raise `ValueError` if it is not an existing `.ipynb` file."""
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"a notebook path must be a str or os.PathLike, got {type(path).__name__}")
    resolved = Path(path).resolve()
    if resolved.suffix != ".ipynb" or not resolved.is_file():
        raise ValueError(f"expected an existing .ipynb file, got {str(path)!r}")
    return resolved


def record_key(notebook: Path, root: Path = REPO_ROOT) -> str:
    """The key of a notebook's record: its path relative to `root`, with forward slashes."""
    try:
        return notebook.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        raise ValueError(f"notebook {str(notebook)!r} is not inside {str(root)!r}") from None


def kernel_env(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The kernel's environment: this one, with one OpenMP thread, the inline plot backend, `overrides`."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = KERNEL_THREADS
    env.pop("MPLBACKEND", None)
    env.update(overrides or {})
    return env


def coalesce_streams(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Merge consecutive stream outputs of each cell and apply carriage returns, in place.

    A progress bar that redraws itself a hundred times is then stored as one final line.
    """
    if not isinstance(nb, nbformat.NotebookNode):
        raise TypeError(f"expected an nbformat.NotebookNode, got {type(nb).__name__}")
    CoalesceStreamsPreprocessor().preprocess(nb, {})
    return nb


def package_versions() -> dict[str, str]:
    """The installed versions of the packages that shape a run's results."""
    versions = {}
    for name in KEY_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def execute(
    notebook: Path, env: Mapping[str, str] | None = None, allow_errors: bool = False
) -> tuple[nbformat.NotebookNode, float, list]:
    """Execute a notebook in its own folder without writing it; return it, its wall time and its claims.

    `env` adds to the kernel's environment (a seed, a numeric setting). The claims are those its
    closing cell checked (`dyn_helpers.claims`), as dicts, failing ones included. With
    `allow_errors`, a cell that raises does not stop the run (the calibration wants every value).
    """
    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        allow_errors=allow_errors,
        kernel_name=KERNEL_NAME,
        resources={"metadata": {"path": str(notebook.parent)}},
        store_widget_state=False,
    )
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "claims.jsonl"
        start = time.perf_counter()
        client.execute(env=kernel_env({**(env or {}), CLAIMS_LOG_ENV_VAR: str(log)}))
        wall_time = time.perf_counter() - start
        lines = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    return coalesce_streams(nb), wall_time, [json.loads(line) for line in lines]


def multi_seed_date(notebook: Path) -> str | None:
    """The date of the notebook's multi-seed record (`dyn_helpers.recorded`), or None if it has none.

    Read before the notebook runs: if the record changes meanwhile, the stored date is the older.
    """
    return load_json(recorded.seed_record_path(notebook.name)).get("date")


def execute_notebook(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Execute a notebook in place in its own folder, stamp its fingerprints; return its run record."""
    notebook = check_notebook(path)
    shown = multi_seed_date(notebook)
    nb, wall_time, claims = execute(notebook)
    stamp = fingerprint.stamp(nb)
    nb.metadata[fingerprint.METADATA_KEY]["claims"] = claims
    nb.metadata[fingerprint.METADATA_KEY][MULTI_SEED_KEY] = shown
    nbformat.write(nb, notebook)
    return {
        **provenance("cpu"),
        "wall_time_s": round(wall_time, 1),
        "seed": default_seed(),
        "cells": len(nb.cells),
        "code_fingerprint": stamp["code_fingerprint"],
        "numeric_platform": stamp["platform"],
        "packages": package_versions(),
        "torch_threads": int(KERNEL_THREADS),
    }


def load_json(path: Path) -> dict[str, Any]:
    """Read a JSON object from `path`; an absent file reads as an empty dict."""
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def save_runs(runs: Mapping[str, Any], path: Path = RUNS_FILE) -> None:
    """Write the run records as indented JSON, keys sorted."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(runs, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _lookup(record: Mapping[str, Any], *keys: str) -> str:
    """The first of `keys` found in `record` or in its `provenance` part, else 'unknown'."""
    for source in (record, record.get("provenance") or {}):
        if not isinstance(source, Mapping):
            continue
        for key in keys:
            if source.get(key):
                return str(source[key])
    return "unknown"


def device_records(results_dir: Path = RESULTS_DIR) -> list[dict[str, str]]:
    """File, device, kind (GPU or CPU) and date of every timing record (`bench-*.json`) in `results_dir`."""
    records = []
    for path in sorted(results_dir.glob("bench-*.json")):
        record = load_json(path)
        records.append(
            {
                "file": path.name,
                "device": _lookup(record, "device_name", "device", "gpu"),
                "kind": "GPU" if _lookup(record, "device").startswith("cuda") else "CPU",
                "date": _lookup(record, "date", "created", "timestamp"),
            }
        )
    return records


# Multi-seed records that make targets write, too long to make inside a notebook: the folder under
# book/results/ and the target that writes them.
MADE_RECORDS = {"leaderboard": "make leaderboard", "payoff": "make payoff"}


def made_records(results_dir: Path = RESULTS_DIR) -> list[dict[str, Any]]:
    """One row per group of records written by a make target (`MADE_RECORDS`): how many, seeds, time, date, CPU.

    A group is a folder of records (a leaderboard board, the payoff sweeps) or a single record file
    beside them (the leaderboard's timing).
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for folder, target in MADE_RECORDS.items():
        for path in sorted((results_dir / folder).rglob("*.json")):
            key = path.parent.relative_to(results_dir).as_posix()
            if path.parent == results_dir / folder and folder == "leaderboard":
                key = path.relative_to(results_dir).as_posix()
            record = load_json(path)
            record["_target"] = target
            groups.setdefault(key, []).append(record)
    rows = []
    for key, records in groups.items():
        seeds = {len(r["seeds"]) for r in records if isinstance(r.get("seeds"), list)}
        rows.append(
            {
                "records": key,
                "target": records[0]["_target"],
                "count": len(records),
                "seeds": ", ".join(str(n) for n in sorted(seeds)) or "-",
                "elapsed_s": sum(float(r.get("elapsed_s", 0.0)) for r in records),
                "date": max(str(r.get("provenance", {}).get("date", "")) for r in records),
                "cpu": ", ".join(
                    sorted({str(r.get("provenance", {}).get("cpu", "unknown")) for r in records})
                ),
            }
        )
    return rows


def _environment(record: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """The software and hardware rows of a run record, in display order."""
    packages = record.get("packages", {})
    rows = [("Python", str(record.get("python", "unknown")))]
    rows += [(name, str(version)) for name, version in sorted(packages.items())]
    rows += [
        ("CPU", str(record.get("cpu", "unknown"))),
        ("CPU cores", str(record.get("cores", "unknown"))),
        ("torch threads", str(record.get("torch_threads", "unknown"))),
        ("platform", str(record.get("platform", "unknown"))),
        ("numeric platform", recorded.describe_platform(record.get("numeric_platform") or {})),
    ]
    return tuple(rows)


def _display_date(iso: str) -> str:
    """An ISO 8601 time such as '2025-01-31T12:00:00Z' as '2025-01-31 12:00 UTC'.

    A time without a zone is taken as UTC; anything that is not ISO 8601 comes back unchanged.
    """
    try:
        when = datetime.fromisoformat(str(iso))
    except ValueError:
        return str(iso)
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%d %H:%M UTC")


def render_status(
    runs: Mapping[str, Mapping[str, Any]],
    devices: Sequence[Mapping[str, str]],
    made: Sequence[Mapping[str, Any]] = (),
) -> str:
    """The status page (MyST markdown) for notebook run records, device timing records and the
    multi-seed records of make targets (`made_records`)."""
    lines = [
        "# Status of the stored outputs",
        "",
        "Every number and figure in this book is an output stored in a notebook. This page says",
        "which run produced them: when, how long it took, and with which software and hardware.",
        "It is generated by `python -m dyn_helpers.tools.runs` (`make notebooks`) from",
        "`book/results/notebook_runs.json`; do not edit it by hand.",
        "",
        "The *numeric platform* (CPU model, the CPU capability torch dispatches to, the torch version",
        "and any kernel-selecting environment variables) is what moves the last digits of training.",
        "`make test` compares re-executed outputs strictly with the stored ones where it matches, and",
        "elsewhere within tolerances calibrated over many seeds ([calibration](calibration.md)).",
        "",
        "## Notebook runs",
        "",
    ]
    if not runs:
        lines += [
            "No run of `make notebooks` is recorded yet, so this page cannot say yet which machine",
            "produced the stored outputs.",
            "",
        ]
    else:
        environments: list[tuple[tuple[str, str], ...]] = []
        lines += [
            "| Notebook | Run time (s) | Date | Seed | Environment |",
            "|---|--:|---|--:|---|",
        ]
        for key in sorted(runs):
            record = runs[key]
            env = _environment(record)
            if env not in environments:
                environments.append(env)
            label = chr(ord("A") + environments.index(env))
            wall = record.get("wall_time_s")
            wall_text = f"{float(wall):.1f}" if isinstance(wall, int | float) else "unknown"
            date = _display_date(record.get("date", "unknown"))
            lines.append(f"| `{key}` | {wall_text} | {date} | {record.get('seed', '?')} | {label} |")
        total = sum(float(r.get("wall_time_s", 0.0)) for r in runs.values())
        lines += ["", f"All notebooks together: {total:.1f} s.", ""]
        for index, env in enumerate(environments):
            lines += [f"### Environment {chr(ord('A') + index)}", "", "| | |", "|---|---|"]
            lines += [f"| {name} | {value} |" for name, value in env]
            lines.append("")
    lines += ["## Recorded timings", ""]
    if not any(d.get("kind") == "GPU" for d in devices):
        lines += [
            "No GPU timing record exists yet: `make bench` on a machine with a GPU writes one to",
            "`book/results/`.",
            "",
        ]
    if devices:
        lines += [
            "Records written by `make bench` (`python -m dyn_helpers.tools.bench`):",
            "",
            "| Record | Device | Kind | Date |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| `{d['file']}` | {d['device']} | {d.get('kind', '?')} | {_display_date(d['date'])} |"
            for d in devices
        ]
        lines.append("")
    if made:
        lines += [
            "## Records made by make targets",
            "",
            "Multi-seed records too long to make inside a notebook; the pages read them and check that",
            "they belong to today's code. Time is the sum of the records' own run times.",
            "",
            "| Records | Target | Files | Seeds | Time (s) | Latest | CPU |",
            "|---|---|--:|---|--:|---|---|",
        ]
        lines += [
            f"| `{m['records']}` | `{m['target']}` | {m['count']} | {m['seeds']} | {m['elapsed_s']:.0f} "
            f"| {_display_date(m['date'])} | {m['cpu']} |"
            for m in made
        ]
        lines.append("")
    return "\n".join(lines)


def write_status(runs_file: Path = RUNS_FILE, page: Path = STATUS_PAGE) -> None:
    """Regenerate the status page from the run records, the device records and the make targets' records beside them."""
    results = runs_file.parent
    page.write_text(
        render_status(load_json(runs_file), device_records(results), made_records(results)), encoding="utf-8"
    )


def run_notebooks(paths: Sequence[str | os.PathLike[str]], jobs: int = 1) -> dict[str, Any]:
    """Execute `paths`, `jobs` at a time, merge their records into the runs file, regenerate the status page.

    With two jobs on two cores each notebook's recorded time includes the contention of the
    other, as in `make test`, which also runs two notebooks at a time.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive int, got {jobs!r}")
    notebooks = [check_notebook(path) for path in paths]
    runs = load_json(RUNS_FILE)
    print(
        f"running {len(notebooks)} notebooks, {jobs} at a time ({SEED_ENV_VAR}={default_seed()})", flush=True
    )
    try:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = {
                pool.submit(execute_notebook, notebook): record_key(notebook) for notebook in notebooks
            }
            for future in as_completed(futures):
                key = futures[future]
                runs[key] = future.result()
                print(f"  {key}: {runs[key]['wall_time_s']:.1f} s", flush=True)
                save_runs(runs)
    finally:
        write_status()
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m dyn_helpers.tools.runs", description=__doc__.split("\n")[0]
    )
    parser.add_argument("notebooks", nargs="*", help="notebooks to execute in place (.ipynb)")
    parser.add_argument("--jobs", type=int, default=1, help="notebooks at a time (default 1)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    for path in args.notebooks:
        try:
            check_notebook(path)
        except ValueError as err:
            parser.error(str(err))
    run_notebooks(args.notebooks, args.jobs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
