"""Measurements recorded by the book's tooling, for the pages to show: GPU timings and multi-seed records.

`python -m dyn_helpers.tools.bench` writes one JSON record per device to `book/results/`; a page
lists the measurements of its own chapter with the device, versions and date that produced them.

`python -m dyn_helpers.tools.calibrate` (`make calibrate`) runs each notebook under 12 base seeds
and writes `book/results/calibration/<notebook>.json`: every closing claim's value in every run.
That calibration record is the notebook's *multi-seed record*: a page states what holds across
seeds with `multi_seed("blockdrop").summary(key)` or `.check_sign(key, "positive")`, and names
where the numbers come from with `.provenance()`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from IPython.display import display

from dyn_helpers import stats
from dyn_helpers.harness import Table

RESULTS_DIR = Path(__file__).resolve().parent.parent / "book" / "results"
REPO_ROOT = RESULTS_DIR.parent.parent
SEED_RECORDS = "calibration"
DEFAULT_SETTING = "default"
NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


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


NO_GPU_RECORD = (
    "No GPU record yet: no CUDA GPU has run `make bench` for this edition, so this page shows {shows}."
)


def gpu_timings(case_prefix: str, results_dir: Path = RESULTS_DIR) -> Table:
    """The recorded GPU timings of the cases whose name starts with `case_prefix` ('blockdrop/'),
    one row per case and batch size, each with the device, CUDA, torch and date that produced it."""
    if not isinstance(case_prefix, str) or not case_prefix:
        raise ValueError(f"case_prefix must be a non-empty str such as 'blockdrop/', got {case_prefix!r}")
    rows = [
        {
            "device": p["device_name"],
            "CUDA": p["cuda"],
            "torch": p["torch"],
            "date": p["date"],
            "case": m["case"],
            "batch": m["batch_size"],
            "median (µs)": m["median_s"] * 1e6,
            "IQR (µs)": m["iqr_s"] * 1e6,
        }
        for record in gpu_records(results_dir)
        for p in [record["provenance"]]
        for m in record["measurements"]
        if m["case"].startswith(case_prefix)
    ]
    columns = ["device", "CUDA", "torch", "date", "case", "batch", "median (µs)", "IQR (µs)"]
    return Table.from_records(rows, columns, formats={"median (µs)": ".1f", "IQR (µs)": ".1f"})


def show_gpu_timings(
    case_prefix: str, shows: str = "CPU timings only", results_dir: Path = RESULTS_DIR
) -> None:
    """Display the GPU timings of a page's cases, or say that none are recorded and what the page
    `shows` instead."""
    table = gpu_timings(case_prefix, results_dir)
    if table.rows:
        display(table)
    else:
        print(NO_GPU_RECORD.format(shows=shows))


def seed_records_dir(results_dir: Path | None = None) -> Path:
    """The folder of the multi-seed (calibration) records."""
    return (RESULTS_DIR if results_dir is None else results_dir) / SEED_RECORDS


def seed_record_path(notebook: str, results_dir: Path | None = None) -> Path:
    """Where the multi-seed record of a notebook lives: the one definition of that place.

    `notebook` is its name ('blockdrop') or its path ('chapters/02_sample_wise/blockdrop.ipynb');
    notebook names are unique in the book.
    """
    if not isinstance(notebook, str):
        raise TypeError(f"notebook must be a str such as 'blockdrop', got {type(notebook).__name__}")
    name = Path(notebook).stem if notebook.endswith(".ipynb") else Path(notebook).name
    if not NAME_PATTERN.fullmatch(name):
        raise ValueError(f"notebook must name a notebook such as 'blockdrop', got {notebook!r}")
    return seed_records_dir(results_dir) / f"{name}.json"


def describe_platform(platform: Mapping[str, Any]) -> str:
    """A numeric platform fingerprint in one line, such as 'AMD EPYC, AVX512, torch 2.13.0+cpu'."""
    env = platform.get("env") or {}
    text = f"{platform.get('cpu', '?')}, {platform.get('cpu_capability', '?')}, torch {platform.get('torch', '?')}"
    if env:
        text += ", " + " ".join(f"{k}={v}" for k, v in sorted(env.items()))
    return text


def _long_date(iso: str) -> str:
    """An ISO 8601 time such as '2026-11-30T07:33:07Z' as '30 November 2026'."""
    when = datetime.fromisoformat(iso)
    return f"{when.day} {when:%B %Y}"


def _seed_list(seeds: tuple[int, ...]) -> str:
    """'0, 907, ..., 9973' for many seeds, every seed for four or fewer."""
    shown = (
        [str(s) for s in seeds] if len(seeds) <= 4 else [str(seeds[0]), str(seeds[1]), "...", str(seeds[-1])]
    )
    return ", ".join(shown)


@dataclass(frozen=True)
class SeedRecord:
    """A notebook's multi-seed record: each claim's value under every independent seed.

    `seeds` are the base seeds of the default numeric setting, in the record's order; the runs
    that repeat some of them under a second setting are not independent and are left out.
    `date` is when the calibration finished (ISO 8601); `platform` describes the CPU, its
    capability and the torch version that ran it.
    """

    name: str
    seeds: tuple[int, ...]
    date: str
    platform: str
    claims: Mapping[str, tuple[float, ...]] = field(repr=False)

    @classmethod
    def from_record(cls, name: str, record: Mapping[str, Any]) -> SeedRecord:
        """Read a calibration record, as `dyn_helpers.tools.calibrate` writes it."""
        runs = list(record.get("runs") or [])
        default = [i for i, run in enumerate(runs) if run.get("setting") == DEFAULT_SETTING]
        if not default:
            raise ValueError(f"the multi-seed record of {name!r} has no run of the default setting")
        if not record.get("date"):
            raise ValueError(f"the multi-seed record of {name!r} has no date")
        claims = {}
        for key, entry in sorted((record.get("claims") or {}).items()):
            values = entry["values"]
            if len(values) != len(runs):
                raise ValueError(
                    f"the multi-seed record of {name!r} has {len(values)} values of {key!r} for "
                    f"{len(runs)} runs (a run stopped before its claims cell; see its errors): "
                    f"run `make calibrate NOTEBOOKS={_notebook_path(name)}`"
                )
            claims[key] = tuple(float(values[i]) for i in default)
        return cls(
            name=name,
            seeds=tuple(int(runs[i]["seed"]) for i in default),
            date=str(record["date"]),
            platform=describe_platform(record.get("platform") or {}),
            claims=MappingProxyType(claims),
        )

    @property
    def keys(self) -> tuple[str, ...]:
        """The keys of the claims and reported values the record holds, sorted."""
        return tuple(sorted(self.claims))

    def values(self, key: str) -> tuple[float, ...]:
        """The value of `key` under each of `seeds`, in the same order."""
        if key not in self.claims:
            raise KeyError(
                f"the multi-seed record of {self.name!r} has no value {key!r}; it has {', '.join(self.keys)}"
            )
        return self.claims[key]

    def summary(self, key: str) -> stats.Summary:
        """Count, mean, standard deviation, least and greatest value of `key` over the seeds."""
        return stats.summary(self.values(key))

    def table(self, keys: Sequence[str] | None = None, decimals: int = 3) -> Table:
        """Mean, standard deviation, least and greatest value over the seeds of each of `keys`
        (all by default), printed with `decimals` decimals."""
        if isinstance(decimals, bool) or not isinstance(decimals, int) or decimals < 0:
            raise ValueError(f"decimals must be a non-negative int, got {decimals!r}")
        keys = self.keys if keys is None else keys
        if isinstance(keys, str):
            raise TypeError(f"keys must be a sequence of names, got the str {keys!r}")
        stat = ("mean", "sd", "min", "max")
        rows = [[key, *(getattr(self.summary(key), s) for s in stat)] for key in keys]
        return Table(["value", *stat], rows, formats=dict.fromkeys(stat, f".{decimals}f"))

    def sign_test(self, key: str, side: str) -> stats.SignTest:
        """Exact one-sided sign test of whether `key` tends to be 'positive' or 'negative' over the seeds."""
        return stats.sign_test(self.values(key), side=side)

    def provenance(self) -> str:
        """Where the numbers come from, such as 'calibration runs of 12 seeds (0, 907, ..., 9973),
        finished 30 November 2026 on AMD EPYC, AVX512, torch 2.13.0+cpu'."""
        n = len(self.seeds)
        return (
            f"calibration runs of {n} seed{'s' if n != 1 else ''} ({_seed_list(self.seeds)}), "
            f"finished {_long_date(self.date)} on {self.platform}"
        )

    def check_sign(self, key: str, side: str, alpha: float = 0.05) -> stats.SignTest:
        """Raise `AssertionError` unless the one-sided sign test finds `key` consistently on `side` at level `alpha`.

        Returns the test, whose counts and p-value a page can glue.
        """
        _check_alpha(alpha)
        test = self.sign_test(key, side)
        if test.p_value > alpha:
            raise AssertionError(
                f"{self.name}: {key} is not consistently {side} over {len(self.seeds)} seeds "
                f"({_counts(test)}; one-sided sign test p = {test.p_value:.3g} > {alpha:g})"
            )
        return test

    def check_no_consistent_sign(self, key: str, alpha: float = 0.05) -> stats.SignTest:
        """Raise `AssertionError` if a one-sided sign test at level `alpha` finds `key` consistently
        positive or consistently negative; for statements such as 'no consistent difference'.

        Returns the one-sided test with the smaller p-value.
        """
        _check_alpha(alpha)
        tests = [self.sign_test(key, side) for side in stats.SIDES]
        for test in tests:
            if test.p_value <= alpha:
                raise AssertionError(
                    f"{self.name}: {key} is consistently {test.side} over {len(self.seeds)} seeds "
                    f"({_counts(test)}; one-sided sign test p = {test.p_value:.3g} <= {alpha:g})"
                )
        return min(tests, key=lambda test: test.p_value)


def _check_alpha(alpha: float) -> None:
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha < 1:
        raise ValueError(f"alpha must be a number between 0 and 1, got {alpha!r}")


def _counts(test: stats.SignTest) -> str:
    return f"{test.n_positive} positive, {test.n_negative} negative, {test.n_zero} zero"


def _notebook_path(name: str) -> str:
    """The notebook called `name` relative to the repository, for the command that remakes its record."""
    found = sorted((REPO_ROOT / "chapters").glob(f"*/{name}.ipynb"))
    return found[0].relative_to(REPO_ROOT).as_posix() if found else f"chapters/<part>/{name}.ipynb"


def multi_seed(notebook: str, results_dir: Path | None = None) -> SeedRecord:
    """The multi-seed record of a notebook ('blockdrop'), as `make calibrate` last wrote it."""
    path = seed_record_path(notebook, results_dir)
    name = path.stem
    if not path.is_file():
        raise FileNotFoundError(
            f"no multi-seed record of {name!r} at {path}: run `make calibrate NOTEBOOKS={_notebook_path(name)}`"
        )
    record = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(record, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(record).__name__}")
    return SeedRecord.from_record(name, record)
