"""Where a spatial decision lands against the object's known box. Taught in chapter 3.

`dyn_helpers.data.cluttered_digits` returns the box (top, left, height, width) of each digit on its
canvas. A mask, a set of kept tokens or a glimpse lives on a coarser grid of cells over the canvas;
`box_mask` draws the box on that grid; `mask_box_agreement` scores a mask against it (intersection
over union, the share of the mask inside the box, the share of the box the mask covers).
"""

from typing import NamedTuple

import torch


def _check_boxes(boxes: torch.Tensor, canvas_size: int) -> None:
    if not isinstance(boxes, torch.Tensor) or boxes.dim() != 2 or boxes.shape[1] != 4:
        shape = tuple(boxes.shape) if isinstance(boxes, torch.Tensor) else type(boxes).__name__
        raise ValueError(f"boxes must have shape (N, 4) (top, left, height, width), got {shape}")
    top, left, height, width = boxes.unbind(1)
    inside = (top >= 0) & (left >= 0) & (height > 0) & (width > 0)
    inside &= (top + height <= canvas_size) & (left + width <= canvas_size)
    if not bool(inside.all()):
        bad = boxes[~inside][0].tolist()
        raise ValueError(f"every box must lie on the {canvas_size}x{canvas_size} canvas, got {bad}")


def box_mask(boxes: torch.Tensor, canvas_size: int, grid_size: int) -> torch.Tensor:
    """The cells of a `grid_size` x `grid_size` grid over the canvas that each box covers at least half of.

    Returns a bool tensor (N, grid_size, grid_size); `grid_size` must divide `canvas_size`.
    """
    for name, value in (("canvas_size", canvas_size), ("grid_size", grid_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if canvas_size % grid_size:
        raise ValueError(f"grid_size {grid_size} must divide canvas_size {canvas_size}")
    _check_boxes(boxes, canvas_size)
    pixels = torch.arange(canvas_size, device=boxes.device)
    top, left, height, width = (v[:, None] for v in boxes.unbind(1))
    rows = (pixels >= top) & (pixels < top + height)
    cols = (pixels >= left) & (pixels < left + width)
    drawn = (rows[:, :, None] & cols[:, None, :]).float()[:, None]
    cell = canvas_size // grid_size
    return torch.nn.functional.avg_pool2d(drawn, cell)[:, 0] >= 0.5


class BoxAgreement(NamedTuple):
    """How a mask lies against its box, per mask: intersection over union, the fraction of the mask's
    cells inside the box (chance level: the box's share of the grid), and the fraction of the box's
    cells the mask keeps."""

    iou: torch.Tensor
    inside: torch.Tensor
    covered: torch.Tensor


def mask_box_agreement(mask: torch.Tensor, boxes: torch.Tensor, canvas_size: int) -> BoxAgreement:
    """How each mask agrees with its box drawn on the mask's grid (`box_mask`).

    `mask` (N, ..., h, w) holds 0/1 or bools on a square grid (h = w) over the canvas; each field of
    the result has shape (N, ...), and is 0 where its denominator is.
    """
    if not isinstance(mask, torch.Tensor) or mask.dim() < 3 or mask.shape[-1] != mask.shape[-2]:
        shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(f"mask must have shape (N, ..., h, h), a square grid, got {shape}")
    if len(mask) != len(boxes):
        raise ValueError(
            f"mask and boxes must hold the same number of inputs, got {len(mask)} and {len(boxes)}"
        )
    target = box_mask(boxes, canvas_size, mask.shape[-1])
    target = target.view(len(target), *([1] * (mask.dim() - 3)), *target.shape[1:])
    on = mask.bool()

    def count(t: torch.Tensor) -> torch.Tensor:
        return t.flatten(-2).sum(-1)

    both = count(on & target)
    return BoxAgreement(
        both / count(on | target).clamp(min=1),
        both / count(on).clamp(min=1),
        both / count(target.expand_as(on)).clamp(min=1),
    )


def mask_box_iou(mask: torch.Tensor, boxes: torch.Tensor, canvas_size: int) -> torch.Tensor:
    """Intersection over union of each mask with its box: `mask_box_agreement(...).iou`."""
    return mask_box_agreement(mask, boxes, canvas_size).iou
