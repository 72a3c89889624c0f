"""Spatial: when does glance and focus beat static CNNs? Stands for chapter 3's glance_and_focus.

The book's GFNet-style model (`spatial.glimpses.GlanceFocus`: a `GlimpseCNN` of width `WIDTH` glancing at
the canvas at half resolution, a second one reading `CROP` x `CROP` full-resolution crops at the class
activation map's peaks, at most `MAX_GLIMPSES`, trained with `glance_focus_loss`) exits once its averaged
answer's top probability reaches a threshold; its points are `THRESHOLDS` (0: the glance alone, None:
every glimpse), all from one trained model. The static family is the notebook's: `GlimpseCNN` of width
16, 24 and 32 at half resolution and of width 16 at full resolution.

The property swept is the object's share of the canvas: one 8 x 8 digit on canvases of `CANVASES`
pixels (`data.cluttered_digits`), with clutter fragments in proportion to the canvas's area
(`clutter`: 4 on 32 x 32, as in the notebook), so that only the digit's share changes. A crop
larger than the canvas is cut to the canvas. The notebook's lr (1e-2) and batch (64); departure, fixed for
every value and seed: `EPOCHS` epochs (not 10), so that the family's record takes about 5 minutes on one core.
"""

from __future__ import annotations

import copy

import torch

from dyn_helpers import data
from dyn_helpers.leaderboard.board import Point, Task, point
from dyn_helpers.measure import count_flops
from dyn_helpers.payoff.sweeps import sweep
from dyn_helpers.spatial.glimpses import GlanceFocus, GlimpseCNN, glance_focus_loss

WIDTH = 16
CROP = 16
MAX_GLIMPSES = 2
EPOCHS = 6
BATCH = 64
THRESHOLDS = (0.0, 0.5, 0.8, 0.95, None)
STATICS = ((16, 2), (24, 2), (32, 2), (16, 1))  # (width, downsample)
CANVASES = (16, 24, 32)
NOTEBOOK_CANVAS, NOTEBOOK_CLUTTER = 32, 4


def clutter(canvas: int) -> int:
    """Clutter fragments on a `canvas` square: the notebook's 4 on 32 x 32, in proportion to the area."""
    return max(1, round(NOTEBOOK_CLUTTER * (canvas / NOTEBOOK_CANVAS) ** 2))


def canvas_task(canvas: float) -> Task:
    """One 8 x 8 digit on a `canvas` x `canvas` cluttered canvas."""
    size = int(canvas)
    splits = data.cluttered_digits(canvas_size=size, n_clutter=clutter(size), noise=0.1, seed=0)
    title = f"cluttered digits, {size}x{size} canvas ({64 / size**2:.0%} digit)"
    return Task("spatial-canvas", title, splits, epochs=EPOCHS, batch_size=BATCH)


def glance_focus_points(task: Task, seed: int) -> list[Point]:
    """Train one glance-and-focus model and score it at every threshold of `THRESHOLDS`."""
    canvas = task.splits.train.x.shape[-1]
    model = GlanceFocus(
        GlimpseCNN(WIDTH, downsample=2), GlimpseCNN(WIDTH), crop=min(CROP, canvas), max_glimpses=MAX_GLIMPSES
    )
    task.fit(model, seed, loss_fn=glance_focus_loss, desc="glance and focus")
    model.eval()
    x_one = task.splits.test.x[:1]
    model.threshold = 0.0
    glance = count_flops(model, x_one)  # the glance and its class activation map
    model.threshold, model.max_glimpses = None, 1
    glimpse = count_flops(model, x_one) - glance
    model.max_glimpses = MAX_GLIMPSES
    points = []
    for threshold in THRESHOLDS:
        looking = copy.deepcopy(model)
        looking.threshold = threshold

        @torch.no_grad()
        def flops_each(x: torch.Tensor, looking: GlanceFocus = looking) -> torch.Tensor:
            return glance + looking(x).decisions["glimpses"].double() * glimpse

        setting = "every glimpse" if threshold is None else f"threshold {threshold:g}"
        points.append(point(task, setting, looking, flops_each=flops_each))
    return points


def static_points(task: Task, seed: int) -> list[Point]:
    """Train the notebook's static `GlimpseCNN` networks, one point each."""
    points = []
    for width, downsample in STATICS:
        model = GlimpseCNN(width, downsample=downsample)
        task.fit(model, seed, desc=f"static width {width}, 1/{downsample} resolution")
        points.append(point(task, f"width {width}, 1/{downsample} resolution", model.eval()))
    return points


sweep(
    "spatial",
    "canvas",
    prop="canvas side (pixels; the digit takes 8 x 8)",
    values=CANVASES,
    method=f"glance and focus, width {WIDTH}, up to {MAX_GLIMPSES} glimpses of {CROP} x {CROP}",
    notebook="glance_and_focus",
    task=canvas_task,
    dynamic=glance_focus_points,
    statics=static_points,
)
