"""Statistics: entropy and mutual information of paired integer labels; values over seeds.

Mutual information serves where a chapter asks whether a dynamic network's decisions depend on
the class: the expert a token goes to (mixture_of_experts.ipynb, `dyn_helpers.sample_wise.moe`)
and the blocks an input runs (layer_skipping.ipynb,
`dyn_helpers.sample_wise.skipping.plan_class_dependence`).
`summary` and `sign_test` describe a measurement over independent seeds, as a multi-seed record
holds it (`dyn_helpers.recorded.multi_seed`).
"""

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from numbers import Real

import torch


def mutual_information_bits(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mutual information I(A; B) in bits between two paired sequences of integer labels."""
    if (
        not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor))
        or a.shape != b.shape
        or a.dim() != 1
    ):
        raise ValueError("a and b must be 1-D integer tensors of the same length")
    if len(a) == 0:
        raise ValueError("a and b must not be empty")
    a_ids, a_idx = torch.unique(a, return_inverse=True)
    b_ids, b_idx = torch.unique(b, return_inverse=True)
    joint = torch.zeros(len(a_ids), len(b_ids), dtype=torch.float64)
    joint.index_put_((a_idx, b_idx), torch.ones(len(a), dtype=torch.float64), accumulate=True)
    joint /= len(a)
    outer = joint.sum(1, keepdim=True) * joint.sum(0, keepdim=True)
    nz = joint > 0
    return float((joint[nz] * (joint[nz] / outer[nz]).log()).sum() / math.log(2))


def entropy_bits(a: torch.Tensor) -> float:
    """Entropy H(A) in bits of a sequence of integer labels (the most I(A; B) can be)."""
    return mutual_information_bits(a, a)


@dataclass(frozen=True)
class Summary:
    """Count, mean, sample standard deviation (0 for one value), least and greatest of some values."""

    n: int
    mean: float
    sd: float
    min: float
    max: float


@dataclass(frozen=True)
class SignTest:
    """An exact one-sided sign test: the counts of signs, and the p-value for `side`."""

    side: str
    n_positive: int
    n_negative: int
    n_zero: int
    p_value: float


SIDES = ("positive", "negative")
# Values closer to 0 than this are ties: two equal accuracies, computed in float32 and subtracted,
# differ by rounding noise (about 2e-6 points), which must not count as a sign. The effects the
# book tests are thousands of times larger.
TIE_TOLERANCE = 1e-4


def _finite_values(values: Iterable[float] | torch.Tensor) -> list[float]:
    """`values` as a non-empty list of finite floats, or a clear error."""
    if isinstance(values, torch.Tensor):
        values = values.flatten().tolist()
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise TypeError(f"values must be an iterable of real numbers, got {type(values).__name__}")
    found = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, Real):
            raise TypeError(f"values must be real numbers, got {type(value).__name__}")
        found.append(float(value))
    if not found:
        raise ValueError("values must not be empty")
    bad = [v for v in found if not math.isfinite(v)]
    if bad:
        raise ValueError(f"values must be finite, got {bad[0]}")
    return found


def summary(values: Iterable[float] | torch.Tensor) -> Summary:
    """Count, mean, sample standard deviation, least and greatest of `values` (finite, at least one)."""
    found = _finite_values(values)
    sd = statistics.stdev(found) if len(found) > 1 else 0.0
    return Summary(len(found), statistics.fmean(found), sd, min(found), max(found))


def sign_test(values: Iterable[float] | torch.Tensor, *, side: str) -> SignTest:
    """Exact one-sided binomial sign test of whether `values` tend to be > 0 ('positive') or < 0 ('negative').

    Zeros, and values within `TIE_TOLERANCE` of 0, are dropped; the p-value is the chance, with each remaining sign a fair coin, of at
    least as many values on `side` as observed (1.0 when every value is zero). Used for
    multi-seed statements (`dyn_helpers.recorded.SeedRecord.sign_test`).
    """
    if side not in SIDES:
        raise ValueError(f"side must be 'positive' or 'negative', got {side!r}")
    found = _finite_values(values)
    positive = sum(v > TIE_TOLERANCE for v in found)
    negative = sum(v < -TIE_TOLERANCE for v in found)
    n = positive + negative
    hits = positive if side == "positive" else negative
    p_value = sum(math.comb(n, k) for k in range(hits, n + 1)) / 2**n
    return SignTest(side, positive, negative, len(found) - n, p_value)
