"""Exit thresholds with a finite-sample guarantee (Learn-then-Test), against a threshold tuned on
validation. Taught in chapter 7 (guaranteed_exits.ipynb).

A multi-exit network's threshold decides how much it may lose against its own last exit. Here the
loss of an input is binary: `"disagreement"` (its exit's answer differs from the last exit's, the
consistency that CALM controls) or `"harm"` (the last exit is right and its exit is wrong, whose
rate bounds the accuracy lost against the full network). `sweep_thresholds` computes each input's
exit and loss at every threshold of a grid, from strict to loose; `guaranteed_threshold` picks the
loosest threshold that Learn-then-Test certifies, with a binomial or Hoeffding p-value and
fixed-sequence testing, so that its risk is at most epsilon with probability at least 1 - delta
over the draw of the calibration set; `tuned_threshold` is the usual rule, the loosest threshold
whose calibration loss is at most epsilon. `split_trials` measures both over many random
calibration/test splits of stored logits.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from numbers import Real

import numpy as np
import torch
from scipy.stats import binom

from dyn_helpers.checks import check_positive_ints
from dyn_helpers.data import Splits, mnist1d
from dyn_helpers.decisions.confidence import stack_logits
from dyn_helpers.layers import StaticCNN
from dyn_helpers.measure import TimingCase, timing_cases
from dyn_helpers.sample_wise.early_exit import (
    BOOK_ARCHITECTURE,
    MultiExitCNN,
    early_exit_predictions,
    exits_at_threshold,
)

LOSSES = ("disagreement", "harm")
BOUNDS = ("binomial", "hoeffding")


def _check_open_unit(value: object, name: str) -> float:
    """`value` as a float, or `ValueError` unless it is a real number strictly between 0 and 1."""
    if isinstance(value, bool) or not isinstance(value, Real) or not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be a number in the open interval (0, 1), got {value!r}")
    return float(value)


def _check_bound(bound: str) -> None:
    if bound not in BOUNDS:
        raise ValueError(f"bound must be one of {BOUNDS}, got {bound!r}")


def noisy_mnist1d(noise: float = 0.5, seed: int = 0) -> Splits:
    """MNIST-1D with Gaussian noise of `noise` times the training inputs' standard deviation added to
    every split (the same draw for a given `seed`), so that the exits differ and the last one errs."""
    if isinstance(noise, bool) or not isinstance(noise, Real) or noise < 0:
        raise ValueError(f"noise must be a non-negative number (a multiple of the data's sd), got {noise!r}")
    clean = mnist1d()
    sd = clean.train.x.std().item()
    generator = torch.Generator().manual_seed(seed)

    def noisy(part):
        return replace(part, x=part.x + noise * sd * torch.randn(part.x.shape, generator=generator))

    parts = {name: noisy(getattr(clean, name)) for name in ("train", "val", "test")}
    return replace(clean, name=f"mnist1d, noise {noise:g} sd", **parts)


@dataclass(frozen=True)
class ThresholdSweep:
    """Each input's exit and binary loss at each threshold of a grid, thresholds from strict to loose.

    `thresholds` (T,), `exits` (T, N) 1-based exit numbers out of `n_exits`, `losses` (T, N) 0. or
    1. Row `i` is threshold `thresholds[i]`; the full network (every input at the last exit, loss 0)
    is not a row.
    """

    thresholds: torch.Tensor
    exits: torch.Tensor
    losses: torch.Tensor
    loss: str
    n_exits: int


def sweep_thresholds(
    logits: Sequence[torch.Tensor] | torch.Tensor,
    labels: torch.Tensor | None,
    thresholds: Sequence[float],
    loss: str = "disagreement",
) -> ThresholdSweep:
    """Exits and losses of every input at every threshold, from every exit's logits (K, N, classes).

    `thresholds` must decrease strictly (strict to loose) within [0, 1]. `"disagreement"` needs no
    labels; `"harm"` needs `labels` (N,).
    """
    stacked = stack_logits(logits)
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    grid = torch.as_tensor([float(t) for t in thresholds], dtype=torch.float64)
    if len(grid) == 0 or (grid.diff() >= 0).any() or grid.min() < 0 or grid.max() > 1:
        raise ValueError(
            f"thresholds must decrease strictly within [0, 1] (strict to loose), got {grid.tolist()}"
        )
    if loss == "harm" and labels is None:
        raise ValueError("loss 'harm' needs the labels")
    if labels is not None and (labels.dim() != 1 or len(labels) != stacked.shape[1]):
        raise ValueError(
            f"labels must have shape ({stacked.shape[1]},), one per input of the logits, got {tuple(labels.shape)}"
        )
    exits = torch.stack([exits_at_threshold(stacked, t) for t in grid.tolist()])
    answers = torch.stack([early_exit_predictions(stacked, e) for e in exits])
    final = stacked[-1].argmax(dim=-1)
    if loss == "disagreement":
        losses = answers != final
    else:
        losses = (final == labels) & (answers != labels)
    return ThresholdSweep(grid, exits, losses.double(), loss, len(stacked))


def binomial_p_value(risk: torch.Tensor, n: int, epsilon: float) -> torch.Tensor:
    """p-values of "risk above epsilon" from empirical risks of a binary loss on `n` inputs.

    P(Binomial(n, epsilon) <= n * risk): exact for a binary loss (the tightest of the two bounds).
    """
    check_positive_ints(n=n)
    epsilon = _check_open_unit(epsilon, "epsilon")
    counts = torch.round(torch.as_tensor(risk, dtype=torch.float64) * n)
    return torch.as_tensor(binom.cdf(counts.numpy(), n, epsilon), dtype=torch.float64)


def hoeffding_p_value(risk: torch.Tensor, n: int, epsilon: float) -> torch.Tensor:
    """p-values of "risk above epsilon" from Hoeffding's inequality for a loss in [0, 1]:
    exp(-2 n (epsilon - risk)^2) where the empirical risk is below epsilon, else 1."""
    check_positive_ints(n=n)
    epsilon = _check_open_unit(epsilon, "epsilon")
    gap = (epsilon - torch.as_tensor(risk, dtype=torch.float64)).clamp(min=0.0)
    return torch.where(gap > 0, torch.exp(-2 * n * gap**2), torch.ones_like(gap))


def smallest_calibration_size(epsilon: float, delta: float, bound: str = "binomial") -> int:
    """The fewest calibration inputs with which `bound` can certify any threshold: even a loss of 0
    on every one gives a p-value above `delta` with fewer."""
    epsilon, delta = _check_open_unit(epsilon, "epsilon"), _check_open_unit(delta, "delta")
    _check_bound(bound)
    if bound == "binomial":  # (1 - epsilon)^n <= delta
        n = math.ceil(math.log(delta) / math.log1p(-epsilon))
        return n if (1 - epsilon) ** n <= delta else n + 1
    return math.ceil(math.log(1 / delta) / (2 * epsilon**2))  # exp(-2 n epsilon^2) <= delta


def _check_rows(sweep: ThresholdSweep, rows: torch.Tensor | None) -> torch.Tensor:
    if not isinstance(sweep, ThresholdSweep):
        raise TypeError(f"sweep must be a ThresholdSweep (from sweep_thresholds), got {type(sweep).__name__}")
    n = sweep.losses.shape[1]
    if rows is None:
        return torch.arange(n)
    rows = torch.as_tensor(rows)
    if rows.dim() != 1 or len(rows) == 0 or rows.min() < 0 or rows.max() >= n:
        raise ValueError(f"rows must be a non-empty 1-D tensor of input indices in [0, {n})")
    return rows


def _guaranteed_index(risk: torch.Tensor, n: int, epsilon: float, delta: float, bound: str) -> int:
    """Fixed-sequence testing: the last row of the leading run of p-values <= delta, -1 if none."""
    p = (binomial_p_value if bound == "binomial" else hoeffding_p_value)(risk, n, epsilon)
    failed = (p > delta).nonzero()
    return (int(failed[0]) if len(failed) else len(p)) - 1


def _tuned_index(risk: torch.Tensor, epsilon: float) -> int:
    """The loosest row whose empirical risk is at most epsilon, -1 if none."""
    passed = (risk <= epsilon).nonzero()
    return int(passed[-1]) if len(passed) else -1


def guaranteed_threshold(
    sweep: ThresholdSweep,
    epsilon: float,
    delta: float,
    bound: str = "binomial",
    rows: torch.Tensor | None = None,
) -> float | None:
    """Learn-then-Test on the calibration inputs `rows` of `sweep` (all by default): the loosest
    threshold reached by testing "risk above epsilon" from strict to loose, stopping at the first
    p-value above `delta`; None (run the full network) if the strictest fails.

    Then with probability at least 1 - delta over the draw of the calibration set, the chosen
    threshold's risk on new inputs from the same distribution is at most epsilon. Raises
    `ValueError` if there are too few calibration inputs for any threshold to be certified.
    """
    rows = _check_rows(sweep, rows)
    epsilon, delta = _check_open_unit(epsilon, "epsilon"), _check_open_unit(delta, "delta")
    _check_bound(bound)
    needed = smallest_calibration_size(epsilon, delta, bound)
    if len(rows) < needed:
        raise ValueError(
            f"{len(rows)} calibration inputs are too few: the {bound} bound certifies nothing at "
            f"epsilon = {epsilon:g}, delta = {delta:g} with fewer than {needed}"
        )
    index = _guaranteed_index(sweep.losses[:, rows].mean(dim=1), len(rows), epsilon, delta, bound)
    return None if index < 0 else float(sweep.thresholds[index])


def tuned_threshold(sweep: ThresholdSweep, epsilon: float, rows: torch.Tensor | None = None) -> float | None:
    """The usual rule: the loosest threshold whose mean loss on `rows` (all by default) is at most
    `epsilon`; None (run the full network) if none is."""
    rows = _check_rows(sweep, rows)
    epsilon = _check_open_unit(epsilon, "epsilon")
    index = _tuned_index(sweep.losses[:, rows].mean(dim=1), epsilon)
    return None if index < 0 else float(sweep.thresholds[index])


@dataclass(frozen=True)
class SplitTrials:
    """Both rules over random calibration sets: per draw (n_splits,), the test risk and mean cost at
    the threshold each rule chose on the calibration set."""

    epsilon: float
    delta: float
    guaranteed_risk: torch.Tensor
    guaranteed_cost: torch.Tensor
    tuned_risk: torch.Tensor
    tuned_cost: torch.Tensor
    full_cost: float

    def breach_rate(self, rule: str) -> float:
        """The share of draws whose test risk exceeds epsilon, for rule 'guaranteed' or 'tuned'."""
        if rule not in ("guaranteed", "tuned"):
            raise ValueError(f"rule must be 'guaranteed' or 'tuned', got {rule!r}")
        return (getattr(self, f"{rule}_risk") > self.epsilon).double().mean().item()


def calibration_draws(n: int, n_cal: int, n_splits: int, resample: bool, seed: int = 0) -> torch.Tensor:
    """How often each of `n` pooled inputs is in each draw's calibration set: (n_splits, n) counts.

    `resample=False`: `n_cal` distinct inputs (a random split, the rest is the test part);
    `resample=True`: `n_cal` inputs drawn with replacement, as independent draws from the pool.
    """
    check_positive_ints(n=n, n_cal=n_cal, n_splits=n_splits)
    if not resample and n_cal >= n:
        raise ValueError(f"n_cal must leave a test part: it must be below the {n} inputs, got {n_cal}")
    generator = np.random.default_rng(seed)
    if resample:
        picks = generator.integers(0, n, size=(n_splits, n_cal))
    else:
        picks = generator.random((n_splits, n)).argsort(axis=1)[:, :n_cal]
    flat = (np.arange(n_splits)[:, None] * n + picks).ravel()
    return torch.as_tensor(
        np.bincount(flat, minlength=n_splits * n).reshape(n_splits, n), dtype=torch.float64
    )


def split_trials(
    sweep: ThresholdSweep,
    n_cal: int,
    n_splits: int,
    epsilon: float,
    delta: float,
    bound: str = "binomial",
    exit_costs: Sequence[float] | None = None,
    resample: bool = False,
    seed: int = 0,
) -> SplitTrials:
    """Choose each rule's threshold on `n_splits` random calibration sets of `n_cal` of the sweep's
    inputs and measure it on the test part.

    `resample=False`: random splits, the test part is the rest of the inputs. `resample=True`: the
    inputs stand for the population; each calibration set is drawn from them with replacement and
    the test risk is the risk over all of them, the population risk that the guarantee bounds.
    Costs are in `exit_costs` (the cost of reaching each exit; exit numbers by default). The full
    network (every input at the last exit) has loss 0 and answers where no threshold is chosen.
    """
    _check_rows(sweep, None)
    check_positive_ints(n_cal=n_cal, n_splits=n_splits)
    epsilon, delta = _check_open_unit(epsilon, "epsilon"), _check_open_unit(delta, "delta")
    _check_bound(bound)
    n, k = sweep.losses.shape[1], sweep.n_exits
    needed = smallest_calibration_size(epsilon, delta, bound)
    if n_cal < needed:
        raise ValueError(
            f"n_cal = {n_cal} is too small: the {bound} bound certifies nothing at epsilon = {epsilon:g}, "
            f"delta = {delta:g} with fewer than {needed} calibration inputs"
        )
    counts = calibration_draws(n, n_cal, n_splits, resample, seed)  # (S, N)
    if exit_costs is None:
        costs = torch.arange(1, k + 1, dtype=torch.float64)
    else:
        costs = torch.as_tensor([float(c) for c in exit_costs], dtype=torch.float64)
    if len(costs) < k:
        raise ValueError(f"exit_costs must give a cost for each of the {k} exits, got {len(costs)}")
    # Row 0: the full network (loss 0, last exit); row i + 1: threshold i.
    losses = torch.cat([torch.zeros(1, n, dtype=torch.float64), sweep.losses])
    cost = torch.cat([costs[k - 1].expand(1, n), costs[sweep.exits - 1]])
    weights = torch.ones_like(counts) if resample else 1.0 - counts  # who the test part is
    test_risk = weights @ losses.T / weights.sum(dim=1, keepdim=True)  # (S, T + 1)
    test_cost = weights @ cost.T / weights.sum(dim=1, keepdim=True)
    risk = counts @ sweep.losses.T / n_cal  # (S, T): each calibration set's empirical risk
    p = (binomial_p_value if bound == "binomial" else hoeffding_p_value)(risk, n_cal, epsilon)
    failed = torch.cat([p > delta, torch.ones(len(p), 1, dtype=torch.bool)], dim=1)
    rows = {
        "guaranteed": failed.int().argmax(dim=1),  # the first failure: rows before it are certified
        "tuned": _last_true(risk <= epsilon),
    }
    picked = {
        rule: (test_risk.gather(1, r[:, None])[:, 0], test_cost.gather(1, r[:, None])[:, 0])
        for rule, r in rows.items()
    }
    return SplitTrials(epsilon, delta, *picked["guaranteed"], *picked["tuned"], full_cost=float(costs[k - 1]))


def _last_true(mask: torch.Tensor) -> torch.Tensor:
    """Per row of `mask` (S, T): 1 + the index of its last True, 0 where none is."""
    positions = torch.arange(1, mask.shape[1] + 1).expand_as(mask)
    return torch.where(mask, positions, torch.zeros_like(positions)).amax(dim=1)


def breach_allowance(n_splits: int, delta: float, level: float = 1e-3) -> float:
    """The largest share of `n_splits` independent splits that may breach epsilon when each does so
    with probability at most `delta`, before the chance of a larger share falls below `level`."""
    check_positive_ints(n_splits=n_splits)
    delta, level = _check_open_unit(delta, "delta"), _check_open_unit(level, "level")
    return float(binom.isf(level, n_splits, delta)) / n_splits


@timing_cases("guaranteed_exits")
def _timing_cases(device: torch.device) -> dict[str, TimingCase]:
    """The early-exit CNN at a middling threshold and the static CNN of full depth.

    The guarantee changes only the threshold; early_exiting times the same network at its cheapest
    and dearest paths, so here one threshold between them stands for a calibrated one.
    """
    x = torch.randn(256, 1, BOOK_ARCHITECTURE["length"])
    depth = len(BOOK_ARCHITECTURE["widths"])
    model = MultiExitCNN(**BOOK_ARCHITECTURE, exit_threshold=0.15).to(device).eval()
    return {
        "early_exit_threshold_0_15": TimingCase(
            model, x[:64], batch_sizes=(1,), reference=f"static_depth_{depth}"
        ),
        f"static_depth_{depth}": TimingCase(StaticCNN(depth, **BOOK_ARCHITECTURE).to(device).eval(), x),
    }
