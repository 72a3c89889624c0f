"""Does the routing follow the object? Counterfactual tests of where a dynamic network computes. Taught in chapter 7.

The survey reads spatial decisions (masks, kept tokens, glimpses) as a view of which regions need
computation. On procedural canvases that reading can be tested: paste the same digit at two known
positions on the same background and ask whether the decision moves with it, or remove the digit
and ask what the decision does then.

- `counterfactual_canvases` builds the three canvases of each digit: at one position, at another,
  and the background alone (the same clutter and noise in all three).
- `map_centres` is the centre of mass of a mask or a kept-token map, `box_centres` the centre of a
  box (the digit's, or a glimpse's crop from `dyn_helpers.spatial.glimpses.crop_boxes`), in pixels.
- `displacement_error` and `tracking_slope` compare how far a decision moved with how far the digit
  did: error 0 and slope 1 when it follows the digit exactly, slope 0 when it ignores it.
- The chance baselines: `random_masks_like` (a random mask of the same size),
  `chance_squared_error` (what such masks give, in closed form) and, for glimpses,
  `dyn_helpers.spatial.glimpses.random_centres`.
- For exits: `mean_by_level` (mean exit by difficulty level) and `rank_correlation` (Spearman's).
"""

from typing import NamedTuple

import numpy as np
import torch

from dyn_helpers.checks import check_positive_ints


def _check_images(images: object, labels: object) -> None:
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 1:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must have shape (N, 1, h, w), got {shape}")
    if images.shape[-1] != images.shape[-2] or len(images) < 2:
        raise ValueError(f"images must be at least two square digits, got shape {tuple(images.shape)}")
    if not isinstance(labels, torch.Tensor) or tuple(labels.shape) != (len(images),):
        shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"labels must have shape ({len(images)},), got {shape}")


class CounterfactualCanvases(NamedTuple):
    """Each digit at one position (`before`), at another (`after`) and removed (`removed`), on one background.

    The canvases are (N, 1, C, C); `box_before` and `box_after` (N, 4) hold where the digit was
    pasted, as (top, left, height, width) in pixels; `y` (N,) the labels.
    """

    before: torch.Tensor
    after: torch.Tensor
    removed: torch.Tensor
    box_before: torch.Tensor
    box_after: torch.Tensor
    y: torch.Tensor

    @property
    def shift(self) -> torch.Tensor:
        """How far each digit moved, (N, 2) rows and columns in pixels."""
        return (self.box_after[:, :2] - self.box_before[:, :2]).float()


def counterfactual_canvases(
    images: torch.Tensor,
    labels: torch.Tensor,
    canvas_size: int = 16,
    n_clutter: int = 3,
    noise: float = 0.1,
    seed: int = 0,
) -> CounterfactualCanvases:
    """Paste each digit of `images` (N, 1, d, d) at two random positions of one cluttered, noisy background.

    The background is drawn as `dyn_helpers.data.cluttered_digits` draws it: `n_clutter` fragments
    of 3x3 pixels of other digits of `images`, and Gaussian noise of sd `noise`, values clipped to
    [0, 1]. The digit is added at two positions drawn independently and uniformly; the third canvas
    is the background alone. Only the digit differs between the three.
    """
    _check_images(images, labels)
    check_positive_ints(canvas_size=canvas_size)
    digit = images.shape[-1]
    if isinstance(canvas_size, bool) or canvas_size <= digit:
        raise ValueError(f"canvas_size must exceed the digit's size {digit}, got {canvas_size}")
    if isinstance(n_clutter, bool) or not isinstance(n_clutter, int) or n_clutter < 0:
        raise ValueError(f"n_clutter must be a non-negative int, got {n_clutter!r}")
    if not noise >= 0:
        raise ValueError(f"noise must be non-negative, got {noise}")
    rng = np.random.default_rng(seed)
    source = images[:, 0].numpy()
    n = len(source)
    background = np.zeros((n, 1, canvas_size, canvas_size), dtype=np.float32)
    for i in range(n):
        for _ in range(n_clutter):
            other = (i + rng.integers(1, n)) % n  # another digit
            r, c = rng.integers(0, digit - 2, size=2)
            top, left = rng.integers(0, canvas_size - 2, size=2)
            background[i, 0, top : top + 3, left : left + 3] += source[other, r : r + 3, c : c + 3]
    corners = rng.integers(0, canvas_size - digit + 1, size=(2, n, 2))
    pixel_noise = rng.normal(0.0, noise, size=background.shape).astype(np.float32)
    canvases = []
    for corner in corners:
        canvas = background.copy()
        for i, (top, left) in enumerate(corner):
            canvas[i, 0, top : top + digit, left : left + digit] += source[i]
        canvases.append(torch.from_numpy(np.clip(canvas + pixel_noise, 0.0, 1.0)))
    removed = torch.from_numpy(np.clip(background + pixel_noise, 0.0, 1.0))
    boxes = [torch.cat([torch.from_numpy(c), torch.full((n, 2), digit)], dim=1).long() for c in corners]
    return CounterfactualCanvases(canvases[0], canvases[1], removed, boxes[0], boxes[1], labels.clone())


def box_centres(boxes: torch.Tensor) -> torch.Tensor:
    """The centre (row, column) in pixels of each box (N, 4) (top, left, height, width): (N, 2) floats.

    Pixel i spans [i, i + 1), so a box of 8 pixels from 0 has its centre at 4.
    """
    if not isinstance(boxes, torch.Tensor) or boxes.dim() != 2 or boxes.shape[1] != 4:
        shape = tuple(boxes.shape) if isinstance(boxes, torch.Tensor) else type(boxes).__name__
        raise ValueError(f"boxes must have shape (N, 4) (top, left, height, width), got {shape}")
    if bool((boxes[:, 2:] <= 0).any()):
        raise ValueError("every box must have a positive height and width (a missing glimpse is -1)")
    boxes = boxes.double()
    return (boxes[:, :2] + boxes[:, 2:] / 2).float()


def map_centres(maps: torch.Tensor, canvas_size: int) -> torch.Tensor:
    """The centre of mass (row, column) in pixels of each map (N, h, h) laid on a `canvas_size` canvas.

    A map holds non-negative weights (a 0/1 mask, kept tokens) on a square grid whose cells are
    `canvas_size / h` pixels wide; cell j's centre lies at (j + 1/2) times that. Returns (N, 2)
    floats, NaN for a map with no mass (nothing kept: no centre).
    """
    if not isinstance(maps, torch.Tensor) or maps.dim() != 3 or maps.shape[1] != maps.shape[2]:
        shape = tuple(maps.shape) if isinstance(maps, torch.Tensor) else type(maps).__name__
        raise ValueError(f"maps must have shape (N, h, h), a square grid, got {shape}")
    check_positive_ints(canvas_size=canvas_size)
    if canvas_size % maps.shape[-1]:
        raise ValueError(f"the grid's size {maps.shape[-1]} must divide canvas_size {canvas_size}")
    weights = maps.double()
    if bool((weights < 0).any()) or not bool(weights.isfinite().all()):
        raise ValueError("maps must hold finite non-negative weights")
    cell = canvas_size / maps.shape[-1]
    position = (torch.arange(maps.shape[-1], dtype=torch.float64) + 0.5) * cell
    mass = weights.sum(dim=(1, 2))
    rows = (weights.sum(2) * position).sum(1) / mass
    cols = (weights.sum(1) * position).sum(1) / mass
    centres = torch.stack([rows, cols], dim=1)
    return centres.masked_fill((mass == 0)[:, None], float("nan")).float()


def _check_pairs(before: torch.Tensor, after: torch.Tensor, shift: torch.Tensor) -> None:
    for name, t in (("before", before), ("after", after), ("shift", shift)):
        if not isinstance(t, torch.Tensor) or t.dim() != 2 or t.shape[1] != 2:
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name} must have shape (N, 2) (row, column), got {shape}")
    if not len(before) == len(after) == len(shift):
        raise ValueError(
            f"before, after and shift must hold the same number of inputs, got "
            f"{len(before)}, {len(after)} and {len(shift)}"
        )


def displacement_error(before: torch.Tensor, after: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """How far, in pixels, each decision's move (after - before) is from the digit's `shift`: (N,).

    All three are (N, 2) (rows, columns). 0 when the decision moves exactly with the digit; the
    length of the shift when it stays put. NaN where a centre is NaN (an empty map).
    """
    _check_pairs(before, after, shift)
    return (after.double() - before.double() - shift.double()).norm(dim=1).float()


def tracking_slope(before: torch.Tensor, after: torch.Tensor, shift: torch.Tensor) -> float:
    """The least-squares slope of the decision's move on the digit's shift, through the origin.

    sum of (after - before) . shift over sum of squared shift lengths, over the inputs whose centres
    are finite: 1 when the decision follows the digit, 0 when its move is unrelated to the shift.
    """
    _check_pairs(before, after, shift)
    moved, shift = (after - before).double(), shift.double()
    finite = moved.isfinite().all(dim=1)
    spread = (shift[finite] ** 2).sum()
    if spread == 0:
        raise ValueError("no input with a finite centre has a non-zero shift: the slope is undefined")
    return float((moved[finite] * shift[finite]).sum() / spread)


def random_masks_like(masks: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random mask of each input's size: as many cells on as `masks` (N, h, w) has, placed uniformly.

    The chance counterpart of a learned mask or a set of kept tokens. Returns bools (N, h, w).
    """
    if not isinstance(masks, torch.Tensor) or masks.dim() != 3:
        shape = tuple(masks.shape) if isinstance(masks, torch.Tensor) else type(masks).__name__
        raise ValueError(f"masks must have shape (N, h, w), got {shape}")
    flat = masks.flatten(1).bool()
    ranks = torch.rand(flat.shape, generator=generator).argsort(dim=1).argsort(dim=1)
    return (ranks < flat.sum(dim=1, keepdim=True)).view(masks.shape)


def chance_squared_error(shift: torch.Tensor, grid_size: int, kept: int, canvas_size: int) -> torch.Tensor:
    """The expected squared displacement error of two independent random masks of `kept` cells: (N,).

    Each mask's centre has mean at the canvas's centre and, on each axis, the variance of the mean
    of `kept` cell positions drawn without replacement from the `grid_size` ** 2 cells,
    s2 (G - k) / (k (G - 1)) with s2 the variance of one cell's position and G the number of cells.
    The move of the centre is then centred at 0 with variance 2 var per axis, so the expected squared
    error is the squared shift plus 4 var.
    """
    check_positive_ints(grid_size=grid_size, kept=kept, canvas_size=canvas_size)
    cells = grid_size**2
    if kept > cells:
        raise ValueError(f"kept must be at most the {cells} cells of the grid, got {kept}")
    if canvas_size % grid_size:
        raise ValueError(f"grid_size {grid_size} must divide canvas_size {canvas_size}")
    if not isinstance(shift, torch.Tensor) or shift.dim() != 2 or shift.shape[1] != 2:
        raise ValueError("shift must have shape (N, 2) (row, column)")
    cell = canvas_size / grid_size
    s2 = (grid_size**2 - 1) / 12 * cell**2  # variance of one axis of a uniformly drawn cell's centre
    var = 0.0 if cells == 1 else s2 * (cells - kept) / (kept * (cells - 1))
    return ((shift.double() ** 2).sum(dim=1) + 4 * var).float()


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation of two (N,) tensors, ties given their average rank: in [-1, 1].

    Raises `ValueError` if either is constant (no ranks to correlate).
    """
    for name, t in (("a", a), ("b", b)):
        if not isinstance(t, torch.Tensor) or t.dim() != 1:
            raise ValueError(f"{name} must be a one-dimensional tensor")
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(
            f"a and b must hold the same number (at least 2) of values, got {len(a)} and {len(b)}"
        )
    from scipy.stats import rankdata

    ranks = [torch.from_numpy(rankdata(t.double().numpy())) for t in (a, b)]
    centred = [r - r.mean() for r in ranks]
    norms = [c.norm() for c in centred]
    if min(norms) == 0:
        raise ValueError("a and b must both vary: the rank correlation of a constant is undefined")
    return float((centred[0] * centred[1]).sum() / (norms[0] * norms[1]))


def mean_by_level(
    values: torch.Tensor, levels: torch.Tensor, n_levels: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean of `values` (N,) in each of `n_levels` equal-width bins of `levels` (N,), and the bins' centres.

    Used for the mean exit depth by noise level; a bin with no input gives NaN.
    """
    check_positive_ints(n_levels=n_levels)
    for name, t in (("values", values), ("levels", levels)):
        if not isinstance(t, torch.Tensor) or t.dim() != 1:
            raise ValueError(f"{name} must be a one-dimensional tensor")
    if len(values) != len(levels) or len(values) == 0:
        raise ValueError(
            f"values and levels must be non-empty and of one length, got {len(values)} and {len(levels)}"
        )
    low, high = levels.min().double(), levels.max().double()
    width = (high - low) / n_levels
    if width == 0:
        bins = torch.zeros(len(levels), dtype=torch.long)
    else:
        bins = ((levels.double() - low) / width).floor().long().clamp(max=n_levels - 1)
    sums = torch.zeros(n_levels, dtype=torch.float64).index_add(0, bins, values.double())
    counts = torch.zeros(n_levels, dtype=torch.float64).index_add(
        0, bins, torch.ones(len(bins), dtype=torch.float64)
    )
    centres = low + (torch.arange(n_levels, dtype=torch.float64) + 0.5) * width
    return (sums / counts).float(), centres.float()
