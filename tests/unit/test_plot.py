import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest

from dyn_helpers.plot import PALETTE, accuracy_vs_cost, cost_vs_difficulty, exit_histogram, use_house_style


def test_house_style_uses_the_colour_blind_safe_palette():
    use_house_style()
    assert plt.rcParams["axes.prop_cycle"].by_key()["color"][: len(PALETTE)] == list(PALETTE)


def test_accuracy_vs_cost_draws_curves_as_lines_and_baselines_as_markers():
    ax = accuracy_vs_cost(
        {"early exit": ([1, 2, 3], [80, 85, 90])}, {"static": (3, 89, 0.5), "narrow": (1, 80)}
    )
    assert len(ax.lines) >= 1 and len(ax.containers) == 2
    assert ax.get_xlabel() == "FLOPs per sample" and "accuracy" in ax.get_ylabel()
    plt.close("all")


def test_accuracy_vs_cost_rejects_mismatched_curves():
    with pytest.raises(ValueError, match="curve"):
        accuracy_vs_cost({"bad": ([1, 2], [3])})


def test_exit_histogram_shows_the_share_at_each_exit():
    ax = exit_histogram([1, 1, 2, 4], n_exits=4)
    assert [round(p.get_height()) for p in ax.patches] == [50, 25, 0, 25]
    plt.close("all")


@pytest.mark.parametrize("exits", [[0, 1], [5], []])
def test_exit_histogram_rejects_exits_out_of_range(exits):
    with pytest.raises(ValueError, match="exits"):
        exit_histogram(exits, n_exits=4)


def test_cost_vs_difficulty_bins_by_difficulty():
    ax = cost_vs_difficulty([0.1, 0.2, 0.3, 0.4], [1, 1, 3, 3], bins=2)
    assert list(ax.lines[0].get_ydata()) == [1, 3]
    plt.close("all")


def test_cost_vs_difficulty_rejects_too_many_bins():
    with pytest.raises(ValueError, match="bins"):
        cost_vs_difficulty([0.1, 0.2], [1, 2], bins=3)
