"""The house figure style: cost on the x-axis, accuracy on the y-axis, colour-blind-safe colours.

Dynamic models are drawn as curves, static baselines as markers with their spread over seeds.
"""

from collections.abc import Mapping, Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

# Okabe and Ito's palette, safe for the common forms of colour blindness.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")


def use_house_style() -> None:
    """Set the book's matplotlib defaults: PNG output, readable labels, the palette."""
    mpl.rcParams.update(
        {
            "figure.figsize": (6.4, 4.0),
            "figure.dpi": 100,
            "savefig.dpi": 100,
            "font.size": 11,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.prop_cycle": mpl.cycler(color=PALETTE),
            "legend.frameon": False,
        }
    )
    try:
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:
        return
    set_matplotlib_formats("png")


def _axes(ax: Axes | None) -> Axes:
    return ax if ax is not None else plt.subplots()[1]


def accuracy_vs_cost(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    points: Mapping[str, tuple[float, float] | tuple[float, float, float]] | None = None,
    *,
    xlabel: str = "FLOPs per sample",
    ylabel: str = "test accuracy (%)",
    logx: bool = False,
    ax: Axes | None = None,
) -> Axes:
    """Accuracy against cost: each dynamic model a curve, each static baseline a marker.

    `curves` maps a label to (costs, accuracies); `points` maps a label to (cost, accuracy)
    or (cost, accuracy, spread), the spread drawn as an error bar.
    """
    ax = _axes(ax)
    for i, (label, (costs, accs)) in enumerate(curves.items()):
        if len(costs) != len(accs):
            raise ValueError(f"curve {label!r} has {len(costs)} costs but {len(accs)} accuracies")
        ax.plot(costs, accs, "-", lw=2, color=PALETTE[i % len(PALETTE)], label=label)
    markers = "osD^vP*X"
    for j, (label, point) in enumerate((points or {}).items()):
        if len(point) not in (2, 3):
            raise ValueError(f"point {label!r} must be (cost, accuracy) or (cost, accuracy, spread)")
        cost, acc, spread = (*point, 0.0) if len(point) == 2 else point
        color = PALETTE[(len(curves) + j) % len(PALETTE)]
        ax.errorbar(
            [cost],
            [acc],
            yerr=[spread],
            fmt=markers[j % len(markers)],
            ms=7,
            capsize=3,
            color=color,
            label=label,
        )
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    return ax


def exit_histogram(exits: Sequence[int], n_exits: int, *, ax: Axes | None = None) -> Axes:
    """The share of samples answered at each exit (exits numbered from 1)."""
    exits = np.asarray(exits)
    if n_exits < 1:
        raise ValueError(f"n_exits must be at least 1, got {n_exits}")
    if exits.size == 0 or exits.min() < 1 or exits.max() > n_exits:
        raise ValueError(f"exits must be a non-empty sequence of integers in [1, {n_exits}]")
    ax = _axes(ax)
    share = np.bincount(exits, minlength=n_exits + 1)[1:] / exits.size * 100
    ax.bar(np.arange(1, n_exits + 1), share, color=PALETTE[0])
    ax.set_xticks(np.arange(1, n_exits + 1))
    ax.set_xlabel("exit")
    ax.set_ylabel("samples answered (%)")
    return ax


def cost_vs_difficulty(
    difficulty: Sequence[float],
    cost: Sequence[float],
    *,
    bins: int = 5,
    ylabel: str = "FLOPs per sample",
    xlabel: str = "known difficulty",
    label: str | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Mean cost (with its standard error) in equal-count bins of the known difficulty."""
    difficulty, cost = np.asarray(difficulty, dtype=float), np.asarray(cost, dtype=float)
    if difficulty.shape != cost.shape or difficulty.ndim != 1:
        raise ValueError("difficulty and cost must be 1-D sequences of the same length")
    if not 1 <= bins <= difficulty.size:
        raise ValueError(f"bins must be in [1, {difficulty.size}], got {bins}")
    ax = _axes(ax)
    groups = np.array_split(np.argsort(difficulty, kind="stable"), bins)
    centers = [difficulty[g].mean() for g in groups]
    means = [cost[g].mean() for g in groups]
    errors = [cost[g].std(ddof=1) / np.sqrt(len(g)) if len(g) > 1 else 0.0 for g in groups]
    ax.errorbar(centers, means, yerr=errors, fmt="o-", capsize=3, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if label:
        ax.legend()
    return ax
