import math

import pytest
import torch

from dyn_helpers import data
from dyn_helpers.open_problems.interpretability import (
    box_centres,
    chance_squared_error,
    counterfactual_canvases,
    displacement_error,
    map_centres,
    mean_by_level,
    random_masks_like,
    rank_correlation,
    tracking_slope,
)
from dyn_helpers.spatial.boxes import box_mask


@pytest.fixture(scope="module")
def canvases():
    digits = data.digits().test
    return counterfactual_canvases(digits.x[:40], digits.y[:40], canvas_size=16, seed=3)


def test_the_three_canvases_differ_only_by_the_digit_where_it_was_pasted(canvases):
    for canvas, box in ((canvases.before, canvases.box_before), (canvases.after, canvases.box_after)):
        outside = ~box_mask(box, 16, 16)[:, None]
        assert torch.equal(canvas[outside], canvases.removed[outside])
        assert bool(((canvas - canvases.removed).abs().flatten(1).sum(1) > 0).all())


def test_the_canvases_hold_values_in_the_unit_interval_and_the_labels_given(canvases):
    for canvas in (canvases.before, canvases.after, canvases.removed):
        assert canvas.shape == (40, 1, 16, 16)
        assert 0 <= canvas.min() and canvas.max() <= 1
    assert torch.equal(canvases.y, data.digits().test.y[:40])


def test_the_shift_is_the_move_of_the_digits_box(canvases):
    assert torch.equal(canvases.shift, (canvases.box_after[:, :2] - canvases.box_before[:, :2]).float())
    assert bool((canvases.box_after[:, 2:] == 8).all())
    assert bool((canvases.box_after[:, :2] <= 8).all())


def test_the_canvases_are_reproducible_for_a_seed():
    digits = data.digits().test
    one, two = (counterfactual_canvases(digits.x[:5], digits.y[:5], seed=1) for _ in range(2))
    assert torch.equal(one.before, two.before) and torch.equal(one.box_after, two.box_after)


def test_a_mask_that_is_the_digits_box_moves_exactly_with_the_digit(canvases):
    before = map_centres(box_mask(canvases.box_before, 16, 16).float(), 16)
    after = map_centres(box_mask(canvases.box_after, 16, 16).float(), 16)
    assert torch.allclose(before, box_centres(canvases.box_before))
    assert displacement_error(before, after, canvases.shift).abs().max() < 1e-5
    assert tracking_slope(before, after, canvases.shift) == pytest.approx(1.0)


def test_a_decision_that_stays_put_has_slope_0_and_the_shifts_length_as_its_error():
    shift = torch.tensor([[3.0, 4.0], [-6.0, 8.0]])
    still = torch.tensor([[5.0, 5.0], [2.0, 1.0]])
    assert torch.allclose(displacement_error(still, still, shift), torch.tensor([5.0, 10.0]))
    assert tracking_slope(still, still, shift) == 0.0


def test_a_map_centre_on_a_coarse_grid_is_in_pixels():
    maps = torch.zeros(2, 4, 4)
    maps[0, 0, 3] = 1.0  # top-right cell of 4 pixels: centre (2, 14)
    maps[1] = 1.0  # uniform: the canvas's centre
    assert torch.allclose(map_centres(maps, 16), torch.tensor([[2.0, 14.0], [8.0, 8.0]]))


def test_an_empty_map_has_no_centre_and_the_slope_leaves_it_out():
    maps = torch.zeros(2, 2, 2)
    maps[1, 0, 0] = 1.0
    centres = map_centres(maps, 4)
    assert bool(centres[0].isnan().all()) and torch.equal(centres[1], torch.tensor([1.0, 1.0]))
    shift = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert tracking_slope(centres, centres + torch.tensor([2.0, 0.0]), shift) == pytest.approx(2.0)


def test_random_masks_keep_each_inputs_number_of_cells():
    masks = torch.zeros(3, 5, 5, dtype=torch.bool)
    masks[0, :2] = True
    masks[2] = True
    drawn = random_masks_like(masks, torch.Generator().manual_seed(0))
    assert drawn.dtype == torch.bool
    assert drawn.flatten(1).sum(1).tolist() == [10, 0, 25]


def test_random_masks_match_the_analytic_chance_error():
    n, grid, kept = 20000, 8, 12
    gen = torch.Generator().manual_seed(0)
    template = torch.zeros(n, grid, grid, dtype=torch.bool)
    template.view(n, -1)[:, :kept] = True
    shift = torch.randint(-6, 7, (n, 2), generator=gen).float()
    before = map_centres(random_masks_like(template, gen).float(), 16)
    after = map_centres(random_masks_like(template, gen).float(), 16)
    squared = displacement_error(before, after, shift) ** 2
    expected = chance_squared_error(shift, grid, kept, 16)
    assert squared.mean().item() == pytest.approx(expected.mean().item(), rel=0.02)
    assert abs(tracking_slope(before, after, shift)) < 0.02


def test_the_chance_error_of_a_full_mask_is_the_shifts_length():
    shift = torch.tensor([[3.0, 4.0]])
    assert chance_squared_error(shift, 4, 16, 16).item() == pytest.approx(25.0)


def test_rank_correlation_is_spearmans_with_ties():
    a = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert rank_correlation(a, a * 10) == pytest.approx(1.0)
    assert rank_correlation(a, -a) == pytest.approx(-1.0)
    ties = torch.tensor([1.0, 1.0, 2.0, 2.0])
    assert rank_correlation(ties, a) == pytest.approx(math.sqrt(0.8))


def test_mean_by_level_averages_in_equal_width_bins():
    values = torch.tensor([1.0, 2.0, 3.0, 4.0, 10.0])
    levels = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0])
    means, centres = mean_by_level(values, levels, 2)
    assert torch.allclose(means, torch.tensor([1.5, 17 / 3]))
    assert torch.allclose(centres, torch.tensor([0.25, 0.75]))
    means, _ = mean_by_level(values, levels, 4)
    assert bool(means[1].isnan())


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: counterfactual_canvases(torch.zeros(3, 8, 8), torch.zeros(3)), ValueError),
        (lambda: counterfactual_canvases(torch.zeros(3, 1, 8, 8), torch.zeros(2)), ValueError),
        (lambda: counterfactual_canvases(torch.zeros(3, 1, 8, 8), torch.zeros(3), canvas_size=8), ValueError),
        (lambda: counterfactual_canvases(torch.zeros(3, 1, 8, 8), torch.zeros(3), n_clutter=-1), ValueError),
        (lambda: counterfactual_canvases(torch.zeros(3, 1, 8, 8), torch.zeros(3), noise=-0.1), ValueError),
        (lambda: box_centres(torch.zeros(2, 3)), ValueError),
        (lambda: box_centres(torch.tensor([[-1, -1, -1, -1]])), ValueError),
        (lambda: map_centres(torch.zeros(2, 4, 3), 12), ValueError),
        (lambda: map_centres(torch.zeros(2, 3, 3), 16), ValueError),
        (lambda: map_centres(-torch.ones(2, 4, 4), 16), ValueError),
        (lambda: displacement_error(torch.zeros(2, 2), torch.zeros(3, 2), torch.zeros(2, 2)), ValueError),
        (lambda: displacement_error(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3)), ValueError),
        (lambda: tracking_slope(torch.zeros(2, 2), torch.zeros(2, 2), torch.zeros(2, 2)), ValueError),
        (lambda: random_masks_like(torch.zeros(4, 4)), ValueError),
        (lambda: chance_squared_error(torch.zeros(1, 2), 4, 17, 16), ValueError),
        (lambda: chance_squared_error(torch.zeros(1, 2), 3, 4, 16), ValueError),
        (lambda: rank_correlation(torch.ones(3), torch.arange(3.0)), ValueError),
        (lambda: rank_correlation(torch.ones(3), torch.ones(2)), ValueError),
        (lambda: mean_by_level(torch.ones(3), torch.ones(2), 2), ValueError),
        (lambda: mean_by_level(torch.ones(3), torch.ones(3), 0), ValueError),
    ],
)
def test_bad_inputs_raise(call, error):
    with pytest.raises(error):
        call()
