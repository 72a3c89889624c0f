"""A notebook's closing claims: each one a measured value held against a bound.

Every notebook ends with a cell such as::

    claims = Claims()
    claims.at_most("flops_ratio", flops_ratio, 0.60, "early exit runs at no more than 60% of the FLOPs")
    claims.at_least("acc_gap", gap, -1.0, "and is within 1 point of the best static model")
    claims.check()

`check` prints the claims as a table and raises `AssertionError` naming every claim that fails.
`claims.report("key", value, "what it measures")` adds a measured value without a bound: it is
printed and logged like a claim but not asserted, so that the calibration records it over seeds
and a page can state it from the notebook's multi-seed record (`dyn_helpers.recorded.multi_seed`).
Each claim has a short key that stays fixed while its bound is tuned: the calibration over many
seeds (`python -m dyn_helpers.tools.calibrate`, `make calibrate`) finds claims by notebook and key.
A key that starts with `clock_` (`CLOCK_PREFIX`) names a value measured on the wall clock, which
changes from run to run on the same machine; the calibration records it like any other, but does
not expect a rerun to reproduce it.
With `DYN_HELPERS_CLAIMS_LOG` set to a file path, `check` also appends one JSON line per claim
to that file, which is how the calibration reads the values.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass
from numbers import Real
from pathlib import Path

CLAIMS_LOG_ENV_VAR = "DYN_HELPERS_CLAIMS_LOG"
KEY_PATTERN = re.compile(r"[a-z][a-z0-9_]*")
OPERATORS = {"at_least": "≥", "at_most": "≤"}
REPORT = "report"  # the op of a value that is reported, not asserted
CLOCK_PREFIX = "clock_"  # the start of the key of a value measured on the wall clock


def is_clock_key(key: str) -> bool:
    """Whether claim `key` names a wall-clock measurement (it starts with `CLOCK_PREFIX`)."""
    return key.startswith(CLOCK_PREFIX)


@dataclass(frozen=True)
class Claim:
    """One claim: `value` must be at least (or at most) `bound`; a reported value (op 'report') has no bound."""

    key: str
    text: str
    value: float
    op: str
    bound: float | None

    @property
    def holds(self) -> bool:
        if self.op == REPORT:
            return True
        if self.op == "at_least":
            return self.value >= self.bound
        return self.value <= self.bound


def _as_float(name: str, x: object) -> float:
    """`x` as a finite float; a 0-d tensor or array counts as a number, a bool does not."""
    if hasattr(x, "item") and getattr(x, "ndim", 0) == 0:
        x = x.item()
    if isinstance(x, bool) or not isinstance(x, Real):
        raise TypeError(f"{name} must be a real number, got {type(x).__name__}")
    value = float(x)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


class Claims:
    """The closing claims of one notebook, checked together by `check`."""

    def __init__(self) -> None:
        self._claims: list[Claim] = []

    def _add(self, op: str, key: str, value: object, bound: object | None, text: str) -> None:
        if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
            raise ValueError(f"a claim key is a lower-case identifier such as 'flops_ratio', got {key!r}")
        if any(claim.key == key for claim in self._claims):
            raise ValueError(f"claim key {key!r} is used twice")
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"claim {key!r} needs a sentence saying what it claims")
        bound = None if op == REPORT else _as_float("bound", bound)
        claim = Claim(key, text.strip(), _as_float(f"value of {key!r}", value), op, bound)
        self._claims.append(claim)

    def at_least(self, key: str, value: object, bound: object, text: str) -> None:
        """Claim that `value >= bound`; `text` says it in words."""
        self._add("at_least", key, value, bound, text)

    def at_most(self, key: str, value: object, bound: object, text: str) -> None:
        """Claim that `value <= bound`; `text` says it in words."""
        self._add("at_most", key, value, bound, text)

    def report(self, key: str, value: object, text: str) -> None:
        """Report `value` without asserting it: printed and logged, so the calibration records it over seeds."""
        self._add(REPORT, key, value, None, text)

    @property
    def claims(self) -> tuple[Claim, ...]:
        return tuple(self._claims)

    def table(self) -> str:
        """The claims as a plain-text table: value, comparison, bound and verdict ('reported' for a value without bound)."""
        width = max((len(c.key) for c in self._claims), default=3)
        lines = [f"{'claim':<{width}}  {'value':>10}    {'bound':>10}  verdict"]
        for c in self._claims:
            if c.op == REPORT:
                lines.append(f"{c.key:<{width}}  {c.value:10.4f}    {'':>10}  reported")
                continue
            verdict = "holds" if c.holds else "FAILS"
            lines.append(f"{c.key:<{width}}  {c.value:10.4f} {OPERATORS[c.op]}  {c.bound:10.4f}  {verdict}")
        return "\n".join(lines)

    def check(self) -> None:
        """Print the table, log the values if asked to, raise `AssertionError` if any claim fails.

        At least one claim or reported value is needed.
        """
        if not self._claims:
            raise ValueError("no claims to check")
        print(self.table())
        log = os.environ.get(CLAIMS_LOG_ENV_VAR, "").strip()
        if log:
            with Path(log).open("a", encoding="utf-8") as out:
                for claim in self._claims:
                    out.write(json.dumps(asdict(claim), ensure_ascii=False) + "\n")
        failed = [c for c in self._claims if not c.holds]
        if failed:
            raise AssertionError(
                "claims that do not hold: "
                + "; ".join(
                    f"{c.key} ({c.text}): {c.value:.4f} not {OPERATORS[c.op]} {c.bound:.4f}" for c in failed
                )
            )
        asserted = sum(c.op != REPORT for c in self._claims)
        reported = len(self._claims) - asserted
        message = f"all {asserted} claims hold" if asserted else "no claims asserted"
        if reported:
            message += f"; {reported} value{'s' if reported != 1 else ''} reported"
        print(message)
