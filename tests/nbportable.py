"""pytest plugin: nbval's output comparison, strict where the platform matches, tolerant elsewhere.

Loaded with `-p nbportable` (tests/ on PYTHONPATH) beside `--nbval`. For each notebook it reads
the platform fingerprint that `make notebooks` stored (`dyn_helpers.tools.fingerprint`):

- same platform (CPU model, CPU capability, torch version, kernel-selecting variables): nbval's
  own strict comparison, as before;
- another platform: text must match with every number replaced by a placeholder, and each
  number must match within the tolerance its calibration gives (`dyn_helpers.tools.tolerance`,
  `dyn_helpers.tools.calibrate`); counts, shapes and FLOPs that never vary over seeds must match exactly.

The terminal summary says which mode ran for each notebook, and which cells differed and by how much.
"""

from __future__ import annotations

import json
from collections import defaultdict
from functools import cache

import nbformat
import pytest
from nbval.plugin import IPyNbCell, transform_streams_for_comparison

from dyn_helpers import recorded
from dyn_helpers.tools import calibrate, fingerprint, tolerance

PROPERTY = "nbportable"
_strict_compare = IPyNbCell.compare_outputs
_summary: dict[str, dict] = defaultdict(lambda: {"mode": "?", "platform": "", "cells": {}})


@cache
def _notebook_mode(path: str) -> tuple[str, str]:
    """('strict' or 'tolerant', description of the stored and the current platform)."""
    stored = fingerprint.stored(nbformat.read(path, as_version=4)).get("platform")
    here = fingerprint.platform_fingerprint()
    if stored and fingerprint.same_platform(stored, here):
        return "strict", recorded.describe_platform(here)
    described = recorded.describe_platform(stored) if stored else "unknown"
    return "tolerant", f"stored on {described}; running on {recorded.describe_platform(here)}"


@cache
def _factor() -> float:
    """The tolerance factor k for all numbers the book's calibration covers."""
    records = {p.stem: calibrate.runs.load_json(p) for p in recorded.seed_records_dir().glob("*.json")}
    return tolerance.tolerance_factor(calibrate.compared_count(records))


def _record(path: str) -> dict:
    return calibrate.runs.load_json(recorded.seed_record_path(path))


def _note(item: IPyNbCell, mode: str, platform: str, differences: list[str], ok: bool) -> None:
    item.user_properties.append(
        (PROPERTY, json.dumps({"mode": mode, "platform": platform, "differences": differences, "ok": ok}))
    )


def _tolerant_compare(self: IPyNbCell, test, ref) -> bool:
    path = str(self.fspath)
    k = _factor()
    record = _record(path)
    got = tolerance.flatten_outputs(transform_streams_for_comparison(test), self.sanitize)
    stored = tolerance.flatten_outputs(transform_streams_for_comparison(ref), self.sanitize)
    self.comparison_traceback = []
    if set(got) != set(stored):
        self.comparison_traceback.append(f"output fields differ: stored {sorted(stored)}, got {sorted(got)}")
        return False
    notes = []
    for field, stored_values in stored.items():
        got_values = got[field]
        if len(got_values) != len(stored_values):
            self.comparison_traceback.append(
                f"{field}: {len(stored_values)} stored outputs, {len(got_values)} now"
            )
            return False
        for index, (a, b) in enumerate(zip(stored_values, got_values, strict=True)):
            if a == b:
                continue
            if not (isinstance(a, str) and isinstance(b, str)):
                self.comparison_traceback.append(f"{field} {index}: non-text output differs")
                return False
            row = calibrate.output_row(record, self.cell_num, field, index) or {}
            if row.get("varies") and calibrate.shape_seen(row, a, b):
                notes.append(
                    f"{field} {index}: its shape varies with the seed; only the shape of each line is checked"
                )
                continue
            sds = calibrate.output_sds(record, self.cell_num, field, index, tolerance.parse(a).skeleton)
            ok, differences = tolerance.compare(a, b, sds, k)
            notes += [f"{field} {index}, {d}" for d in differences]
            if not ok:
                why = "not calibrated: compared exactly" if sds is None else f"tolerance factor k = {k:.2f}"
                self.comparison_traceback += [
                    f"{field} {index} differs beyond its tolerance ({why}):",
                    *(f"  {d}" for d in differences if not d.within),
                    "stored:",
                    a,
                    "now:",
                    b,
                ]
                _note(self, "tolerant", _notebook_mode(path)[1], notes, False)
                return False
    _note(self, "tolerant", _notebook_mode(path)[1], notes, True)
    return True


def _compare_outputs(self: IPyNbCell, test, ref, skip_compare=None) -> bool:
    mode, platform = _notebook_mode(str(self.fspath))
    if mode == "strict":
        ok = _strict_compare(self, test, ref, skip_compare)
        _note(self, mode, platform, [], ok)
        return ok
    return _tolerant_compare(self, test, ref)


def pytest_configure(config: pytest.Config) -> None:
    IPyNbCell.compare_outputs = _compare_outputs


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when != "call":
        return
    for name, value in report.user_properties:
        if name != PROPERTY:
            continue
        note = json.loads(value)
        path, _, cell = report.nodeid.partition("::")
        entry = _summary[path]
        entry["mode"], entry["platform"] = note["mode"], note["platform"]
        if note["differences"] or not note["ok"]:
            entry["cells"][cell] = note


def pytest_terminal_summary(terminalreporter) -> None:
    if not _summary:
        return
    terminalreporter.section("output comparison (strict where the platform matches, else tolerant)")
    for path, entry in sorted(_summary.items()):
        terminalreporter.write_line(f"{entry['mode']:8s} {path}: {entry['platform']}")
        for cell, note in sorted(entry["cells"].items(), key=lambda kv: int(kv[0].split()[-1])):
            verdict = "within tolerance" if note["ok"] else "BEYOND TOLERANCE"
            terminalreporter.write_line(
                f"         {cell}: {len(note['differences'])} differences noted, {verdict}"
            )
            for line in note["differences"][:8]:
                terminalreporter.write_line(f"           {line}")
