"""Calibration of every notebook over many seeds and two numeric settings.

`python -m dyn_helpers.tools.calibrate [NOTEBOOK ...]` (what `make calibrate` calls) executes each
notebook under 12 base seeds spread far apart, 4 of them also under a second numeric setting
(`ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`, which changes the last digits of training
as another processor would), two runs at a time. For each notebook it writes
`book/results/calibration/<name>.json` with

- every closing claim's value in every run (`dyn_helpers.claims`), its mean and standard deviation;
- for every number in every compared output, its standard deviation over the runs: the basis of
  the tolerances with which `make test` compares outputs on another CPU (`dyn_helpers.tools.tolerance`).

The rule it serves: a claim's bound lies at least `MIN_MARGIN_SD` standard deviations from its
calibration mean, on the side the claim asserts. `book/calibration.md` shows every claim against
that rule; the tests fail a claim that breaks it or that has no calibration. A reported value
(`Claims.report`) has no bound: it is recorded and shown, not held to the rule.

The record is also the notebook's multi-seed record, which pages read with
`dyn_helpers.recorded.multi_seed`; `recorded.seed_record_path` says where it lives.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nbformat
from nbval.plugin import coalesce_streams, get_sanitize_patterns, transform_streams_for_comparison

from dyn_helpers import accounting, recorded
from dyn_helpers.claims import REPORT, is_clock_key
from dyn_helpers.repro import SEED_ENV_VAR
from dyn_helpers.tools import fingerprint, runs, tolerance

BASE_SEEDS = (0, 907, 1811, 2719, 3623, 4523, 5431, 6343, 7247, 8161, 9067, 9973)
SECOND_SETTING_SEEDS = (0, 2719, 5431, 8161)
SETTINGS = {
    "default": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
}
MIN_MARGIN_SD = 3.5
# On one platform, a record whose seed-0 values differ from the stored ones only in the last bits
# of the final arithmetic (a refactor that left training bit-identical) still belongs to the run.
SAME_PLATFORM_REL_TOL = 1e-12
CALIBRATION_DIR = recorded.seed_records_dir()
CACHE_DIR = runs.REPO_ROOT / "_build" / "calibration"
SANITIZE_FILE = runs.REPO_ROOT / "tests" / "nbval_sanitize.cfg"
PAGE = runs.REPO_ROOT / "book" / "calibration.md"
IGNORE_OUTPUT_TAGS = ("nbval-ignore-output", "nbval-skip")


def plan(
    seeds: Sequence[int] = BASE_SEEDS, second: Sequence[int] = SECOND_SETTING_SEEDS
) -> list[tuple[int, str]]:
    """The (seed, setting) runs of one notebook's calibration."""
    if not set(second) <= set(seeds):
        raise ValueError(f"seeds of the second setting {sorted(second)} must be among the base seeds")
    return [(seed, "default") for seed in seeds] + [(seed, "avx2") for seed in second]


def sanitizer(path: Path = SANITIZE_FILE):
    """The sanitize function nbval applies with `--nbval-sanitize-with path`."""
    patterns = get_sanitize_patterns(path.read_text(encoding="utf-8"))

    def sanitize(text: str) -> str:
        for regex, replace in patterns:
            text = re.sub(regex, replace, text)
        return text

    return sanitize


def compared_cells(nb: nbformat.NotebookNode) -> list[int]:
    """Ordinals (among code cells, as nbval numbers them) of the cells whose outputs nbval compares."""
    cells = [c for c in nb.cells if c.cell_type == "code"]
    return [i for i, c in enumerate(cells) if not set(c.metadata.get("tags", [])) & set(IGNORE_OUTPUT_TAGS)]


def output_numbers(nb: nbformat.NotebookNode, sanitize) -> list[dict[str, Any]]:
    """Skeleton and numbers of every compared text output, keyed by cell ordinal, field and index."""
    cells = [c for c in nb.cells if c.cell_type == "code"]
    found = []
    for ordinal in compared_cells(nb):
        outputs = transform_streams_for_comparison(
            coalesce_streams(nbformat.from_dict(cells[ordinal].outputs))
        )
        for field, values in tolerance.flatten_outputs(outputs, sanitize).items():
            for index, text in enumerate(values):
                if isinstance(text, str):
                    parsed = tolerance.parse(text)
                    found.append(
                        {
                            "cell": ordinal,
                            "field": field,
                            "index": index,
                            "skeleton": parsed.skeleton,
                            "values": list(parsed.values),
                        }
                    )
    return found


def cache_file(key: str, seed: int, setting: str) -> Path:
    return CACHE_DIR / key.replace("/", "__") / f"{seed}-{setting}.json"


def run_one(notebook: Path, seed: int, setting: str) -> dict[str, Any]:
    """Execute one calibration run (cached under _build/calibration) and return its record."""
    key = runs.record_key(notebook)
    cached = cache_file(key, seed, setting)
    code = fingerprint.code_fingerprint(nbformat.read(notebook, as_version=4), seed)
    if cached.exists():
        record = json.loads(cached.read_text(encoding="utf-8"))
        if record.get("code_fingerprint") == code:
            return record
    nb, wall, claims = runs.execute(
        notebook, {SEED_ENV_VAR: str(seed), **SETTINGS[setting]}, allow_errors=True
    )
    # A cell that reads the multi-seed record reads the record this calibration is remaking (it may
    # lack a new claim): what it raises says nothing about the run.
    errors = [
        f"cell {i}: {out.get('ename')}: {out.get('evalue', '')[:300]}"
        for i, cell in enumerate(c for c in nb.cells if c.cell_type == "code")
        if runs.READS_RECORD not in cell.source
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    record = {
        "seed": seed,
        "setting": setting,
        "code_fingerprint": code,
        "wall_time_s": round(wall, 1),
        "errors": errors,
        "claims": claims,
        "outputs": output_numbers(nb, sanitizer()),
    }
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(record), encoding="utf-8")
    return record


def _sd(values: Sequence[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def pooled_sds(skeleton: str, runs_values: Sequence[Sequence[float]]) -> list[float]:
    """Each number's spread over the runs, pooled over the lines of the same shape.

    Lines of one output that differ only in their numbers ("seed 0: ...", "seed 1: ...") print
    the same quantity for other seeds or models, so the k-th number of each such line is pooled
    (root mean square of their standard deviations); a number keeps its own spread where that is
    larger. Sixteen runs alone underestimate the tails of a bounded quantity, such as an entropy
    near its maximum.
    """
    own = [_sd(column) for column in zip(*runs_values, strict=True)]
    line_of = [
        skeleton.count("\n", 0, m.start()) for m in re.finditer(re.escape(tolerance.PLACEHOLDER), skeleton)
    ]
    lines = skeleton.split("\n")
    groups: dict[tuple[str, int], list[int]] = {}
    rank: dict[int, int] = {}
    for i, line in enumerate(line_of):
        rank[line] = rank.get(line, -1) + 1
        groups.setdefault((lines[line], rank[line]), []).append(i)
    pooled = list(own)
    for members in groups.values():
        if len(members) > 1:
            rms = math.sqrt(statistics.fmean(own[i] ** 2 for i in members))
            for i in members:
                pooled[i] = max(own[i], rms)
    return [round(sd, 6) for sd in pooled]


def summarise(key: str, records: Sequence[Mapping[str, Any]], date: str | None = None) -> dict[str, Any]:
    """The calibration record of one notebook from its runs, finished at `date` (ISO 8601; default now)."""
    if not records:
        raise ValueError(f"no calibration runs for {key}")
    claims: dict[str, dict[str, Any]] = {}
    for record in records:
        for claim in record["claims"]:
            entry = claims.setdefault(
                claim["key"],
                {"text": claim["text"], "op": claim["op"], "bound": claim["bound"], "values": []},
            )
            entry["values"].append(claim["value"])
    for entry in claims.values():
        entry["mean"] = statistics.fmean(entry["values"])
        entry["sd"] = _sd(entry["values"])
    outputs: dict[tuple, dict[str, Any]] = {}
    for record in records:
        for out in record["outputs"]:
            where = (out["cell"], out["field"], out["index"])
            entry = outputs.setdefault(where, {"skeletons": set(), "values": []})
            entry["skeletons"].add(out["skeleton"])
            entry["values"].append(out["values"])
    table = []
    for (cell, field, index), entry in sorted(outputs.items()):
        row: dict[str, Any] = {"cell": cell, "field": field, "index": index}
        lengths = {len(v) for v in entry["values"]}
        if len(entry["skeletons"]) > 1 or len(lengths) > 1 or len(entry["values"]) < len(records):
            row["varies"] = True
            row["skeletons"] = sorted(entry["skeletons"])
            row["line_skeletons"] = sorted({line for sk in entry["skeletons"] for line in sk.split("\n")})
        else:
            row["skeleton"] = entry["skeletons"].pop()
            row["sd"] = pooled_sds(row["skeleton"], entry["values"])
        table.append(row)
    first = records[0]
    errors = [f"seed {r['seed']} {r['setting']}, {e}" for r in records for e in r.get("errors", [])]
    return {
        "notebook": key,
        "errors": errors,
        "date": date or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "platform": fingerprint.platform_fingerprint(),
        "runs": [{k: r[k] for k in ("seed", "setting", "wall_time_s")} for r in records],
        "settings": {name: SETTINGS[name] for name in sorted({r["setting"] for r in records})},
        "code_fingerprint_seed_0": next(
            (r["code_fingerprint"] for r in records if r["seed"] == 0 and r["setting"] == "default"),
            first["code_fingerprint"],
        ),
        "claims": claims,
        "outputs": table,
    }


def write_record(key: str, records: Sequence[Mapping[str, Any]], date: str | None = None) -> None:
    """Summarise one notebook's runs, finished at `date` (default now), into its calibration record."""
    ordered = sorted(records, key=lambda r: (r["setting"] != "default", r["setting"], r["seed"]))
    path = record_file(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(summarise(key, ordered, date), indent=1, sort_keys=True, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )


def from_cache(paths: Sequence[str | os.PathLike[str]]) -> None:
    """Rewrite the records of `paths` from their cached runs, whatever code made them.

    For a change that leaves every value alone, such as a bound or a claim's sentence. The cache
    must hold every planned run.
    """
    for path in paths:
        key = runs.record_key(runs.check_notebook(path))
        cached = [cache_file(key, seed, setting) for seed, setting in plan()]
        missing = [c.name for c in cached if not c.exists()]
        if missing:
            raise ValueError(f"{key}: no cached runs {', '.join(missing)}; run the calibration")
        finished = datetime.fromtimestamp(max(c.stat().st_mtime for c in cached), UTC)
        write_record(
            key,
            [json.loads(c.read_text(encoding="utf-8")) for c in cached],
            finished.strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
    write_page()


def record_file(key: str) -> Path:
    """Where the calibration record of notebook `key` lives (`dyn_helpers.recorded.seed_record_path`)."""
    return recorded.seed_record_path(key)


def load_record(key: str) -> dict[str, Any]:
    """The calibration record of notebook `key` (a path relative to the repository), or {}."""
    return runs.load_json(record_file(key))


def record_staleness(stored: Mapping[str, Any], record: Mapping[str, Any]) -> str | None:
    """Why a notebook's multi-seed record does not belong to its stored run; None when it does.

    `stored` is what `make notebooks` stored in the notebook (`fingerprint.stored`). The record
    belongs to the run if its seed-0 run had the stored code fingerprint; or, made on the
    stored run's platform, if its default-setting run of the stored seed gave every stored claim
    the stored value, to `SAME_PLATFORM_REL_TOL` (a refactor that leaves results bit-identical
    keeps the record); or,
    made on another platform, if every stored value lies within `MIN_MARGIN_SD` calibration
    standard deviations of that run's value. Wall-clock values (`claims.is_clock_key`) are not
    reproducible, so only their presence is checked; the other values must show the record is
    the run's.
    """
    if not record:
        return "there is no record"
    if stored.get("code_fingerprint") and record.get("code_fingerprint_seed_0") == stored["code_fingerprint"]:
        return None
    claims = stored.get("claims") or []
    if not claims:
        return "the stored run recorded no claims to compare"
    if all(is_clock_key(claim["key"]) for claim in claims):
        return "the stored run recorded only wall-clock values, which no rerun reproduces"
    seed = stored.get("seed", 0)
    index = next(
        (i for i, r in enumerate(record.get("runs", [])) if r["seed"] == seed and r["setting"] == "default"),
        None,
    )
    if index is None:
        return f"the record has no default-setting run of seed {seed}"
    same = fingerprint.same_platform(record.get("platform") or {}, stored.get("platform") or {})
    for claim in claims:
        entry = record.get("claims", {}).get(claim["key"])
        if entry is None or len(entry["values"]) != len(record["runs"]):
            return f"the record has no value of {claim['key']!r} for each of its runs"
        ran = entry["values"][index]
        if is_clock_key(claim["key"]):
            continue
        if same and not math.isclose(claim["value"], ran, rel_tol=SAME_PLATFORM_REL_TOL, abs_tol=1e-12):
            return (
                f"on the same platform, {claim['key']!r} is {claim['value']!r} in the stored run "
                f"and {ran!r} in the record's run of seed {seed}"
            )
        if not same and abs(claim["value"] - ran) > MIN_MARGIN_SD * entry["sd"]:
            return (
                f"{claim['key']!r} is {claim['value']:.6g} in the stored run and {ran:.6g} in the record's "
                f"run of seed {seed}, more than {MIN_MARGIN_SD} calibration sd ({entry['sd']:.3g}) apart"
            )
    return None


def shown_record_problem(nb: nbformat.NotebookNode, record: Mapping[str, Any]) -> str | None:
    """Why the stored page may not show the numbers of the current multi-seed record; None if it does.

    Only a notebook whose code reads its record (`runs.READS_RECORD`) is concerned: `make notebooks`
    stores the date of the record it read (`runs.MULTI_SEED_KEY`), which must be the record's date.
    """
    if not any(runs.READS_RECORD in source for source in fingerprint.code_cells(nb)):
        return None
    stored = fingerprint.stored(nb)
    date = record.get("date") if record else None
    if runs.MULTI_SEED_KEY not in stored:
        return "the stored run does not say which multi-seed record it read"
    if stored[runs.MULTI_SEED_KEY] != date:
        return f"the stored run read the record of {stored[runs.MULTI_SEED_KEY]}, the record is of {date}"
    return None


def margin_sd(op: str, bound: float, mean: float, sd: float) -> float:
    """How many calibration standard deviations the mean lies inside the bound (negative: outside)."""
    if op not in ("at_least", "at_most"):
        raise ValueError(f"op must be 'at_least' or 'at_most', got {op!r}")
    inside = mean - bound if op == "at_least" else bound - mean
    if sd == 0:
        return math.inf if inside >= 0 else -math.inf
    return inside / sd


def claim_problems(claims: Sequence[Mapping[str, Any]], record: Mapping[str, Any], n_runs: int) -> list[str]:
    """What breaks the calibration rule among a notebook's current claims (as stored by `make notebooks`)."""
    problems = []
    calibrated = record.get("claims", {})
    for claim in claims:
        entry = calibrated.get(claim["key"])
        if entry is None:
            problems.append(f"claim {claim['key']!r} has no calibration")
            continue
        if len(entry["values"]) < n_runs or entry["op"] != claim["op"]:
            problems.append(
                f"claim {claim['key']!r}: calibration has {len(entry['values'])} runs of op {entry['op']}"
            )
            continue
        if claim["op"] == REPORT:
            continue
        margin = margin_sd(claim["op"], claim["bound"], entry["mean"], entry["sd"])
        if margin < MIN_MARGIN_SD:
            problems.append(
                f"claim {claim['key']!r}: bound {claim['bound']:g} lies {margin:.2f} sd from the calibration mean "
                f"{entry['mean']:.4g} (sd {entry['sd']:.3g}); at least {MIN_MARGIN_SD} needed"
            )
    return problems


def output_row(record: Mapping[str, Any], cell: int, field: str, index: int) -> dict[str, Any] | None:
    """The calibration of one output (cell ordinal, field, index among that field's outputs), if any."""
    for row in record.get("outputs", []):
        if (row["cell"], row["field"], row["index"]) == (cell, field, index):
            return dict(row)
    return None


def shape_seen(row: Mapping[str, Any], stored: str, got: str) -> bool:
    """For an output whose shape varies with the seed: same number of lines, each of a calibrated shape."""
    a, b = tolerance.parse(stored).skeleton.split("\n"), tolerance.parse(got).skeleton.split("\n")
    seen = set(row.get("line_skeletons", []))
    return len(a) == len(b) and set(a) <= seen and set(b) <= seen


def output_sds(
    record: Mapping[str, Any], cell: int, field: str, index: int, skeleton: str
) -> list[float] | None:
    """Calibrated standard deviations of one output's numbers; None if not calibrated or varying."""
    row = output_row(record, cell, field, index)
    if row is None or row.get("varies") or row.get("skeleton") != skeleton:
        return None
    return list(row["sd"])


def output_problems(nb: nbformat.NotebookNode, record: Mapping[str, Any]) -> list[str]:
    """Stored outputs that the calibration does not cover (their structure changed since)."""
    problems = []
    for out in output_numbers(nb, sanitizer()):
        row = output_row(record, out["cell"], out["field"], out["index"])
        where = f"cell {out['cell']} ({out['field']} {out['index']})"
        if row is None:
            problems.append(f"{where} has no calibration")
        elif row.get("varies"):
            if not set(out["skeleton"].split("\n")) <= set(row.get("line_skeletons", [])):
                problems.append(f"{where} has lines of a shape the calibration never saw")
        elif out["skeleton"] != row.get("skeleton"):
            problems.append(f"{where} changed shape since calibration")
    return problems


def compared_count(records: Mapping[str, Mapping[str, Any]]) -> int:
    """How many numbers the tolerant comparison may compare over the whole book."""
    return max(1, sum(len(row.get("sd", [])) for r in records.values() for row in r.get("outputs", [])))


def _cell(text: str) -> str:
    """`text` safe inside a Markdown table cell."""
    return text.replace("|", "\\|")


def _format_margin(margin: float) -> str:
    if math.isinf(margin):
        return "constant" if margin > 0 else "FAILS"
    return f"{margin:.1f}"


def _reported_row(key: str, text: str, entry: Mapping[str, Any] | None) -> str:
    """The calibration page's row of a reported value: mean ± sd and range, no bound and no margin."""
    if entry is None:
        return f"| {_cell(text)} (`{key}`): reported, not asserted | | not calibrated | | |"
    return (
        f"| {_cell(text)} (`{key}`): reported, not asserted | | {entry['mean']:.4g} ± {entry['sd']:.3g}"
        f" | {min(entry['values']):.4g} to {max(entry['values']):.4g} | |"
    )


def render_page(notebooks: Mapping[str, nbformat.NotebookNode]) -> str:
    """The calibration page: every current claim against its calibration."""
    lines = [
        "# Calibration of the claims",
        "",
        "Every notebook ends by asserting its claims. A claim must hold on any CPU and under seeds nobody",
        "tried, so each is calibrated: the notebook is run under 12 base seeds spread far apart",
        f"({', '.join(map(str, BASE_SEEDS))}), and seeds {', '.join(map(str, SECOND_SETTING_SEEDS))} are run",
        "again with `ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`, which changes the last digits of",
        "training the way another processor does. A bound must lie at least",
        f"{MIN_MARGIN_SD} standard deviations of the calibration runs from their mean, on the side the",
        "claim asserts; `make test` fails a claim that breaks this rule. The same runs give the",
        "tolerances with which `make test` compares outputs on a CPU other than the one that stored them.",
        "",
        "Generated by `python -m dyn_helpers.tools.calibrate` (`make calibrate`) from `book/results/calibration/`;",
        "do not edit by hand. *Margin* is (mean − bound)/sd for an at-least claim and (bound − mean)/sd for",
        "an at-most claim; *constant* means the value did not change over the runs. A claim the",
        "calibration showed not to hold reliably is either restated with the bound the runs support or",
        "no longer asserted; the latter are listed with their values, so the notebook's prose can point here.",
        "",
    ]
    for key in sorted(notebooks):
        record = load_record(key)
        meta = fingerprint.stored(notebooks[key])
        lines += [f"## `{key}`", ""]
        if not record:
            lines += ["Not calibrated yet.", ""]
            continue
        n = len(record["runs"])
        wall = sum(r["wall_time_s"] for r in record["runs"])
        lines += [
            f"{n} runs, {wall / 60:.0f} min of one core, finished {runs._display_date(record['date'])},"
            f" {recorded.describe_platform(record['platform'])}.",
            "",
            "| Claim | Bound | Mean ± sd | Range | Margin (sd) |",
            "|---|--:|--:|--:|--:|",
        ]
        for claim in meta.get("claims", []):
            entry = record["claims"].get(claim["key"])
            if claim["op"] == REPORT:
                lines.append(_reported_row(claim["key"], claim["text"], entry))
                continue
            sign = "≥" if claim["op"] == "at_least" else "≤"
            if entry is None:
                lines.append(
                    f"| {_cell(claim['text'])} (`{claim['key']}`) | {sign} {claim['bound']:g} | not calibrated | | |"
                )
                continue
            margin = margin_sd(claim["op"], claim["bound"], entry["mean"], entry["sd"])
            lines.append(
                f"| {_cell(claim['text'])} (`{claim['key']}`) | {sign} {claim['bound']:g} | {entry['mean']:.4g} ± {entry['sd']:.3g}"
                f" | {min(entry['values']):.4g} to {max(entry['values']):.4g} | {_format_margin(margin)} |"
            )
        asserted = {claim["key"] for claim in meta.get("claims", [])}
        for key_, entry in sorted(record["claims"].items()):
            if key_ not in asserted:
                lines.append(
                    f"| {_cell(entry['text'])} (`{key_}`): calibrated, no longer asserted | | {entry['mean']:.4g} ± {entry['sd']:.3g}"
                    f" | {min(entry['values']):.4g} to {max(entry['values']):.4g} | |"
                )
        lines.append("")
    return "\n".join(lines)


def write_page(paths: Sequence[Path] | None = None) -> None:
    """Regenerate the calibration page for `paths` (default: every notebook under chapters/), and the
    tables chapter pages include from the multi-seed records (`dyn_helpers.accounting`)."""
    paths = paths or sorted((runs.REPO_ROOT / "chapters").glob("*/*.ipynb"))
    notebooks = {runs.record_key(p): nbformat.read(p, as_version=4) for p in paths}
    PAGE.write_text(render_page(notebooks), encoding="utf-8")
    accounting.write_table_pages()


def calibrate(paths: Sequence[str | os.PathLike[str]], jobs: int = 2) -> None:
    """Run the calibration of `paths`, `jobs` runs at a time, and write their records and the page."""
    notebooks = [runs.check_notebook(p) for p in paths]
    tasks = [(nb, seed, setting) for seed, setting in plan() for nb in notebooks]
    done: dict[Path, list[dict[str, Any]]] = {nb: [] for nb in notebooks}
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(run_one, *task): task for task in tasks}
        for future in as_completed(futures):
            nb, seed, setting = futures[future]
            record = future.result()
            done[nb].append(record)
            print(f"{runs.record_key(nb)} seed {seed} {setting}: {record['wall_time_s']:.1f} s", flush=True)
            if len(done[nb]) == len(plan()):
                write_record(runs.record_key(nb), done[nb])
    write_page()


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m dyn_helpers.tools.calibrate", description=__doc__.split("\n")[0]
    )
    parser.add_argument("notebooks", nargs="*", help="notebooks to calibrate (.ipynb)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (default 2)")
    parser.add_argument("--page", action="store_true", help="only regenerate book/calibration.md")
    parser.add_argument(
        "--from-cache",
        action="store_true",
        help="rewrite the records from cached runs (after a change of bounds only)",
    )
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    if args.page or not args.notebooks:
        write_page()
        return 0
    if args.from_cache:
        from_cache(args.notebooks)
        return 0
    calibrate(args.notebooks, args.jobs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
