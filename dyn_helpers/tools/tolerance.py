"""Comparing a notebook's outputs with the stored ones within tolerances derived from seeds.

On the platform that stored the outputs, nbval compares them strictly. On any other CPU the
last digits of training differ, and training amplifies them, so a re-run there is much like one
more random draw. There an output is split into its *skeleton* (the text with every number
replaced by `#`) and its numbers. The skeleton must match exactly. Each number must match within

    tolerance = k · sd + one unit in the last printed digit,

where `sd` is that number's standard deviation over the calibration runs (many seeds, two
numeric settings; `dyn_helpers.tools.calibrate`), and `k` makes the difference of two independent
draws (standard deviation √2·sd) fall outside the tolerance with probability at most
`FAMILY_ERROR` over all compared numbers together (a Bonferroni bound). A number whose `sd` is 0,
such as a count, a shape, a parameter count or a FLOPs count of a static model, must match exactly,
unless it shares its line with a trained number: a discrete outcome of training (a number of
plans, a validation-chosen cost) can stay the same over all calibration runs and still change on
another processor, so such a change is reported and not failed; so is a change of a number at
float32 round-off level (below `ROUNDOFF`), such as the largest error of an identity check.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

from dyn_helpers.checks import check_positive_ints

NUMBER = re.compile(r"(?<![\d.])[-+−]?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?")
PLACEHOLDER = "#"
FAMILY_ERROR = 0.01
# Below this magnitude a number is float32 round-off (an identity check's largest difference):
# which kernels run decides its digits, so it need only stay below it.
ROUNDOFF = 1e-4


@dataclass(frozen=True)
class Parsed:
    """An output text as its skeleton, its numbers, and each number's last printed decimal place."""

    skeleton: str
    values: tuple[float, ...]
    decimals: tuple[int, ...]
    lines: tuple[int, ...] = ()


def parse(text: str) -> Parsed:
    """Split `text` into skeleton and numbers ('1,260,480' is one number; '−' counts as minus)."""
    if not isinstance(text, str):
        raise TypeError(f"expected output text as str, got {type(text).__name__}")
    values, decimals, lines = [], [], []

    def take(match: re.Match[str]) -> str:
        lines.append(text.count("\n", 0, match.start()))
        token = match.group(0).replace(",", "").replace("−", "-")
        mantissa = re.split(r"[eE]", token)[0]
        places = len(mantissa.split(".")[1]) if "." in mantissa else 0
        if "e" in token.lower():
            places -= int(re.split(r"[eE]", token)[1])
        values.append(float(token))
        decimals.append(places)
        return PLACEHOLDER

    skeleton = NUMBER.sub(take, text)
    return Parsed(skeleton, tuple(values), tuple(decimals), tuple(lines))


def tolerance_factor(n_values: int, family_error: float = FAMILY_ERROR) -> float:
    """k such that all of `n_values` differences of two draws stay inside k·sd with prob. 1 - family_error."""
    check_positive_ints(n_values=n_values)
    if not 0 < family_error < 1:
        raise ValueError(f"family_error must be in (0, 1), got {family_error!r}")
    z = NormalDist().inv_cdf(1 - family_error / (2 * n_values))
    return math.sqrt(2) * z


def tolerance(sd: float, decimals: int, k: float) -> float:
    """The allowed absolute difference for a number printed with `decimals` places; 0 when sd is 0."""
    if sd < 0 or k < 0:
        raise ValueError(f"sd and k must be non-negative, got sd={sd}, k={k}")
    if sd == 0:
        return 0.0
    return k * sd + 10.0 ** (-decimals)


@dataclass(frozen=True)
class Difference:
    """A number that differs from the stored one: where, by how much, and the tolerance."""

    position: int
    stored: float
    got: float
    tol: float
    discrete: bool = False

    @property
    def within(self) -> bool:
        return self.discrete or abs(self.got - self.stored) <= self.tol

    def __str__(self) -> str:
        if self.discrete:
            return (
                f"number {self.position}: stored {self.stored:g}, got {self.got:g} (constant over the calibration, "
                "beside trained numbers or at round-off level: reported, not failed)"
            )
        verdict = "within" if self.within else "OUTSIDE"
        return (
            f"number {self.position}: stored {self.stored:g}, got {self.got:g} "
            f"(difference {self.got - self.stored:+.4g}, tolerance {self.tol:.4g}, {verdict})"
        )


def compare(stored: str, got: str, sds: Sequence[float] | None, k: float) -> tuple[bool, list[Difference]]:
    """Compare an output text with the stored one; return (passes, the numbers that differ).

    `sds` holds each number's calibration standard deviation, in order; `None` means the output
    was not calibrated, and then it must match exactly. A number with `sd` 0 must match exactly,
    except on a line that also holds a trained number (one with `sd` > 0): there it is a discrete
    outcome of training that happened not to change over the calibration runs (a number of plans,
    a validation-chosen cost), and a change is reported, not failed.
    """
    a, b = parse(stored), parse(got)
    if a.skeleton != b.skeleton or len(a.values) != len(b.values):
        return False, []
    if sds is not None and len(sds) != len(a.values):
        raise ValueError(f"expected {len(a.values)} standard deviations for this output, got {len(sds)}")
    trained_lines = {line for line, sd in zip(a.lines, sds or [], strict=False) if sd > 0}
    differences = []
    for i, (x, y, places) in enumerate(zip(a.values, b.values, a.decimals, strict=True)):
        if x == y:
            continue
        sd = float(sds[i]) if sds is not None else 0.0
        roundoff = sd == 0 and max(abs(x), abs(y)) < ROUNDOFF
        discrete = sd == 0 and (a.lines[i] in trained_lines or roundoff)
        differences.append(
            Difference(i, x, y, tolerance(sd, places, k) if sds is not None else 0.0, discrete)
        )
    return all(d.within for d in differences), differences


# The output fields nbval leaves out of its comparison (images only with nbdime).
SKIP_COMPARE = frozenset(
    {
        "metadata",
        "traceback",
        "prompt_number",
        "output_type",
        "name",
        "execution_count",
        "application/vnd.jupyter.widget-view+json",
        "image/png",
        "image/jpeg",
    }
)


def flatten_outputs(outputs: Sequence[dict], sanitize: Callable[[str], str]) -> dict[str, list]:
    """A cell's outputs as nbval compares them: field name (MIME type or stream name) to values.

    `outputs` are already coalesced and have streams keyed by their name, as nbval's
    `transform_streams_for_comparison` leaves them; `sanitize` is applied to every string.
    """
    flat: dict[str, list] = {}
    for output in outputs:
        for key, value in output.items():
            if key in SKIP_COMPARE:
                continue
            items = value.items() if key == "data" else [(key, value)]
            for field, content in items:
                if field in SKIP_COMPARE:
                    continue
                flat.setdefault(field, []).append(sanitize(content) if isinstance(content, str) else content)
    return flat
