"""Procedural token streams whose informative steps are known, for the temporal chapter. Taught in chapter 4.

`burst_streams` makes sequences of `length` tokens in which a short *burst* of `burst` consecutive
steps, starting at a random step, carries the label and every other step is filler. Inside the
burst each token is the class symbol with probability `p_signal` and another class symbol
otherwise, so reading more of the burst gives a surer answer (a majority vote), and reading
outside it gives nothing. The data come offline and deterministic for their `seed`; every part
is a `StreamSplit`, a `dyn_helpers.data.Split` that also holds the token ids, where the
information is (`informative`) and the last informative step (`answer_at`).
"""

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dyn_helpers.checks import check_positive_ints
from dyn_helpers.data import Split, Splits


@dataclass(frozen=True)
class StreamSplit(Split):
    """A `Split` of token streams: inputs `x` (N, T, V) one-hot over V symbols, labels `y`, and

    - `tokens` (N, T), int64: the symbol at each step;
    - `informative` (N, T), bool: the steps that carry the label;
    - `answer_at` (N,), int64: the last informative step, after which nothing more is learned.
    """

    tokens: torch.Tensor | None = None
    informative: torch.Tensor | None = None
    answer_at: torch.Tensor | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.x.dim() != 3:
            raise ValueError(f"x must have shape (N, T, V), got {tuple(self.x.shape)}")
        n, length = self.x.shape[:2]
        for name, shape in (("tokens", (n, length)), ("informative", (n, length)), ("answer_at", (n,))):
            value = getattr(self, name)
            if value is None or tuple(value.shape) != shape:
                got = None if value is None else tuple(value.shape)
                raise ValueError(f"{name} must be a tensor of shape {shape}, got {got}")

    @property
    def length(self) -> int:
        """T, the number of steps of every sequence."""
        return self.x.shape[1]


def _check_fraction(name: str, value: float, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low < value <= high:
        raise ValueError(f"{name} must be a number in ({low:g}, {high:g}], got {value!r}")


def burst_streams(
    n: int = 3000,
    length: int = 48,
    burst: int = 8,
    *,
    n_classes: int = 4,
    n_fillers: int = 4,
    p_signal: float = 0.5,
    fractions: tuple[float, float] = (0.2, 0.2),
    seed: int = 0,
) -> Splits:
    """`n` sequences of `length` tokens whose label sits in a burst of `burst` steps at a random start.

    Symbols 0 .. n_classes - 1 are class symbols, the next `n_fillers` are filler. The burst starts
    uniformly in 0 .. length - burst; in it each token is the label's symbol with probability
    `p_signal`, else one of the other class symbols, uniformly; outside it every token is a
    uniformly drawn filler. `fractions` are the validation and test shares. Taught in chapter 4.
    """
    check_positive_ints(n=n, length=length, burst=burst, n_fillers=n_fillers)
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
        raise ValueError(f"n_classes must be an int of at least 2, got {n_classes!r}")
    if burst > length:
        raise ValueError(f"burst must fit in the sequence: burst = {burst} > length = {length}")
    _check_fraction("p_signal", p_signal, 1.0 / n_classes, 1.0)
    if len(fractions) != 2 or any(not 0.0 < f < 1.0 for f in fractions) or sum(fractions) >= 1.0:
        raise ValueError(f"fractions must be two shares in (0, 1) with a sum below 1, got {fractions!r}")
    n_val, n_test = (round(f * n) for f in fractions)
    if min(n_val, n_test, n - n_val - n_test) < 1:
        raise ValueError(f"n = {n} is too small to give every part at least one sequence")
    rng = np.random.default_rng(seed)
    labels = rng.integers(n_classes, size=n)
    starts = rng.integers(length - burst + 1, size=n)
    tokens = n_classes + rng.integers(n_fillers, size=(n, length))
    steps = np.arange(length)
    informative = (steps >= starts[:, None]) & (steps < starts[:, None] + burst)
    other = (labels[:, None] + 1 + rng.integers(n_classes - 1, size=(n, length))) % n_classes
    signal = np.where(rng.random((n, length)) < p_signal, labels[:, None], other)
    tokens = np.where(informative, signal, tokens)
    tokens_t = torch.as_tensor(tokens, dtype=torch.int64)
    x = F.one_hot(tokens_t, n_classes + n_fillers).float()
    parts = np.split(np.arange(n), [n - n_val - n_test, n - n_test])
    splits = [
        StreamSplit(
            x[idx],
            torch.as_tensor(labels[idx], dtype=torch.int64),
            tokens=tokens_t[idx],
            informative=torch.as_tensor(informative[idx]),
            answer_at=torch.as_tensor(starts[idx] + burst - 1, dtype=torch.int64),
        )
        for idx in parts
    ]
    return Splits("burst streams", *splits, n_classes=n_classes)
