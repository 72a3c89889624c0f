"""Specification of `dyn_helpers.spatial.boxes`: a decision's grid against the object's box."""

import pytest
import torch

from dyn_helpers.spatial.boxes import box_mask, mask_box_agreement, mask_box_iou


def test_a_box_is_drawn_on_the_cells_it_covers_at_least_half_of():
    boxes = torch.tensor([[0, 0, 8, 8], [4, 6, 8, 8]])
    drawn = box_mask(boxes, canvas_size=16, grid_size=4)
    assert drawn.shape == (2, 4, 4) and drawn.dtype == torch.bool
    assert drawn[0, :2, :2].all() and drawn[0].sum() == 4
    assert drawn[1].sum() == 6 and drawn[1, 1:3, 1:4].all()  # columns 6-13 cover half of cells 1 and 3


def test_at_full_resolution_the_box_mask_is_the_box():
    drawn = box_mask(torch.tensor([[3, 5, 4, 2]]), canvas_size=10, grid_size=10)
    assert drawn[0].sum() == 8 and drawn[0, 3:7, 5:7].all()


def test_a_mask_equal_to_its_box_scores_one_and_a_disjoint_one_zero():
    boxes = torch.tensor([[0, 0, 8, 8], [0, 0, 8, 8]])
    masks = box_mask(boxes, 16, 8).float()
    masks[1] = 1 - masks[1]
    assert torch.equal(mask_box_iou(masks, boxes, 16), torch.tensor([1.0, 0.0]))


def test_iou_keeps_the_mask_s_extra_dimensions_one_value_per_block():
    boxes = torch.tensor([[0, 0, 8, 8]])
    masks = torch.zeros(1, 3, 4, 4)
    masks[0, 0, :2, :2] = 1  # the box
    masks[0, 1] = 1  # everything: 4 of 16
    iou = mask_box_iou(masks, boxes, 16)
    assert iou.shape == (1, 3)
    assert torch.allclose(iou, torch.tensor([[1.0, 0.25, 0.0]]))


def test_a_mask_larger_than_its_box_covers_it_all_with_a_share_inside_at_the_box_s_size():
    boxes = torch.tensor([[0, 0, 4, 4]])
    masks = torch.zeros(1, 1, 8, 8)
    masks[0, 0, :4, :8] = 1  # the box and as much again beside it
    agreement = mask_box_agreement(masks, boxes, 8)
    assert agreement.covered.item() == 1.0
    assert agreement.inside.item() == 0.5 == agreement.iou.item()


def test_an_empty_mask_scores_zero_on_every_count():
    agreement = mask_box_agreement(torch.zeros(1, 8, 8), torch.tensor([[0, 0, 4, 4]]), 8)
    assert all(torch.equal(value, torch.zeros(1)) for value in agreement)


@pytest.mark.parametrize(
    ("boxes", "grid", "match"),
    [
        (torch.tensor([[0, 0, 8, 8]]), 5, "divide"),
        (torch.tensor([[10, 0, 8, 8]]), 4, "canvas"),
        (torch.tensor([[-1, 0, 8, 8]]), 4, "canvas"),
        (torch.tensor([[0, 0, 8]]), 4, r"\(N, 4\)"),
    ],
)
def test_boxes_off_the_canvas_and_grids_that_do_not_divide_it_are_rejected(boxes, grid, match):
    with pytest.raises(ValueError, match=match):
        box_mask(boxes, 16, grid)


def test_a_mask_that_is_not_a_square_grid_per_box_is_rejected():
    boxes = torch.tensor([[0, 0, 8, 8]])
    with pytest.raises(ValueError, match="square"):
        mask_box_iou(torch.ones(1, 4, 2), boxes, 16)
    with pytest.raises(ValueError, match="same number"):
        mask_box_iou(torch.ones(2, 4, 4), boxes, 16)
