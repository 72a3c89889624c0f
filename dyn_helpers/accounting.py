"""One account of what a dynamic method saves, kept the same for every method of a chapter.

The notebooks of chapters 3 and 4 report, for the execution they time, three numbers relative to
their *reference*: the same network run without its decision (every position, token or step, at
full resolution, for every input).

- *counted*: the FLOPs the counter sees when only what each input's decisions allow is counted,
  the decision makers included, in % of the reference's: the saving a paper would report.
- *executed*: the FLOPs the timed execution really runs, in % of the reference's. A mask
  multiplied into a dense result executes everything, whatever it counts.
- *clock time*: that execution's CPU wall-clock at batch size 1, over the reference's.

`report_accounting` adds them to a notebook's claims as reported values, so that the calibration
records them over seeds. `accounting_table` reads them back from the multi-seed records of one
chapter, and `write_table_pages` writes each such chapter's table (`TABLE_NAME`, which the chapter
page includes) from them; `python -m dyn_helpers.tools.calibrate --page` calls it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from dyn_helpers.claims import CLOCK_PREFIX, KEY_PATTERN, Claims
from dyn_helpers.recorded import REPO_ROOT, SeedRecord, seed_records_dir

CHAPTERS_DIR = REPO_ROOT / "chapters"
TABLE_NAME = "accounting_table.md"
TOC = REPO_ROOT / "_toc.yml"
COUNTED, EXECUTED, CLOCK_TIME = "counted", "executed", "time"
_ACCOUNT_KEY = re.compile(r"acct_(?P<label>[a-z][a-z0-9_]*)_counted")


def accounting_keys(label: str) -> tuple[str, str, str]:
    """The record keys of the three numbers of `label`: counted, executed and clock time."""
    if not isinstance(label, str) or not KEY_PATTERN.fullmatch(label):
        raise ValueError(f"label must be a lower-case identifier such as 'sparse', got {label!r}")
    return f"acct_{label}_{COUNTED}", f"acct_{label}_{EXECUTED}", f"{CLOCK_PREFIX}acct_{label}_{CLOCK_TIME}"


def report_accounting(
    claims: Claims, label: str, method: str, *, counted: float, executed: float, clock_time: float
) -> None:
    """Report one execution's account: FLOPs counted and executed (% of the reference) and clock time (ratio).

    `method` names the method and its execution in words ('sparse convolution, gathered'); it
    becomes the row's name in the chapter's table.
    """
    if not isinstance(claims, Claims):
        raise TypeError(f"claims must be a Claims, got {type(claims).__name__}")
    if not isinstance(method, str) or not method.strip() or ":" in method:
        raise ValueError(f"method must be a non-empty name without ':', got {method!r}")
    for name, value in (("counted", counted), ("executed", executed), ("clock_time", clock_time)):
        number = value.item() if hasattr(value, "item") else value
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise TypeError(f"{name} must be a number, got {type(value).__name__}")
        if not number > 0:
            raise ValueError(f"{name} must be positive, got {number}")
    keys = accounting_keys(label)
    claims.report(keys[0], counted, f"{method.strip()}: FLOPs counted, % of the reference")
    claims.report(keys[1], executed, f"{method.strip()}: FLOPs executed, % of the reference")
    claims.report(keys[2], clock_time, f"{method.strip()}: CPU time at batch 1 over the reference's")


def _toc_position(notebook: str) -> int:
    """Where the notebook stands in the table of contents (late if it is not there)."""
    text = TOC.read_text(encoding="utf-8") if TOC.is_file() else ""
    found = re.search(rf"/{re.escape(notebook)}\s*$", text, re.MULTILINE)
    return found.start() if found else len(text) + 1


def _mean_sd(record: SeedRecord, key: str) -> str:
    summary = record.summary(key)
    return f"{summary.mean:.1f} ± {summary.sd:.1f}"


def _median_range(record: SeedRecord, key: str) -> str:
    values = sorted(record.values(key))
    half = len(values) // 2
    median = values[half] if len(values) % 2 else (values[half - 1] + values[half]) / 2
    return f"{median:.2f} ({values[0]:.2f} to {values[-1]:.2f})"


def _accounting_records(results_dir: Path | None = None) -> list[tuple[str, str, dict]]:
    """(chapter folder, notebook, raw record) of every multi-seed record that reports an account."""
    found = []
    for path in sorted(seed_records_dir(results_dir).glob("*.json")):
        raw = json.loads(path.read_text(encoding="utf-8"))
        if any(_ACCOUNT_KEY.fullmatch(key) for key in raw.get("claims", {})):
            chapter = Path(raw.get("notebook") or f"chapters/?/{path.stem}.ipynb").parent.name
            found.append((chapter, path.stem, raw))
    return found


def accounted_chapters(results_dir: Path | None = None) -> list[str]:
    """The chapter folders ('03_spatial') with a notebook whose multi-seed record reports an account."""
    return sorted({chapter for chapter, _, _ in _accounting_records(results_dir)})


def accounting_table(chapter: str, results_dir: Path | None = None) -> str:
    """The table of chapter folder `chapter` ('03_spatial') in MyST Markdown, from the multi-seed records.

    One row per reported execution, in the order of the table of contents, linked to its page.
    FLOPs are a mean ± standard deviation over the record's base seeds; the time is their median,
    with its least and greatest value, because a run disturbed by other work on the machine lands
    far from the rest.
    A list under the table gives the records' provenance, once for the pages that share it.
    """
    records = [(name, raw) for folder, name, raw in _accounting_records(results_dir) if folder == chapter]
    if not records:
        raise ValueError(f"no multi-seed record of a notebook in chapters/{chapter} reports an account")
    rows, provenance = [], {}
    for name, raw in sorted(records, key=lambda item: (_toc_position(item[0]), item[0])):
        record = SeedRecord.from_record(name, raw)
        for key in sorted(raw["claims"]):
            if not (match := _ACCOUNT_KEY.fullmatch(key)):
                continue
            keys = accounting_keys(match["label"])
            method = raw["claims"][keys[0]]["text"].split(":")[0]
            rows.append(
                f"| {{doc}}`{method} <{name}>` | {_mean_sd(record, keys[0])} | "
                f"{_mean_sd(record, keys[1])} | {_median_range(record, keys[2])} |"
            )
        provenance.setdefault(record.provenance(), []).append(f"{{doc}}`{name} <{name}>`")
    header = [
        "| Method, execution | FLOPs counted (% of reference) | FLOPs executed (% of reference) "
        "| CPU time at batch 1 (× reference) |",
        "|:---|---:|---:|---:|",
    ]
    note = "FLOPs: mean ± standard deviation over the seeds of each page's record; time: median (least to greatest)."
    lines = [*header, *rows, "", note, "", "The records:", ""]
    lines += [f"- {', '.join(pages)}: {text}." for text, pages in provenance.items()]
    return "\n".join(lines) + "\n"


def table_page(chapter: str, results_dir: Path | None = None) -> str:
    """The text of chapter `chapter`'s table page: `accounting_table` under a line saying who wrote it."""
    note = "<!-- Written by `python -m dyn_helpers.tools.calibrate --page` from the multi-seed records. -->"
    return f"{note}\n\n{accounting_table(chapter, results_dir)}"


def write_table_pages(chapters_dir: Path = CHAPTERS_DIR, results_dir: Path | None = None) -> list[Path]:
    """Write the table page of every chapter whose records report an account; returns the pages written."""
    written = []
    for chapter in accounted_chapters(results_dir):
        path = chapters_dir / chapter / TABLE_NAME
        path.write_text(table_page(chapter, results_dir), encoding="utf-8")
        written.append(path)
    return written
