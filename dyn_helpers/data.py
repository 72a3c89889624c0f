"""Data that ships with a package or is generated offline, split once and ready for torch.

Every dataset comes as `Splits`: fixed train / validation / test parts. Generation is
deterministic for its `seed`, which is independent of the training seed, so that every
run of a notebook sees the same data.
"""

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import torch
from torch.utils.data import TensorDataset

from dyn_helpers.checks import check_positive_ints

# The geometry of the data the book's models read: one input's shape (no batch dimension) and the
# number of classes. Constructors take their defaults from here; the loaders check their data.
MNIST1D_SHAPE = (1, 40)
MNIST1D_LENGTH = MNIST1D_SHAPE[-1]
MNIST1D_CLASSES = 10
DIGITS_SHAPE = (1, 8, 8)
DIGITS_CLASSES = 10


@dataclass(frozen=True)
class Split:
    """One part of a dataset: inputs `x`, labels `y` and, optionally, a known per-sample difficulty
    and, for data placed on a canvas, the box (top, left, height, width) in pixels of each sample's object."""

    x: torch.Tensor
    y: torch.Tensor
    difficulty: torch.Tensor | None = None
    box: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if len(self.x) == 0:
            raise ValueError("a Split needs at least one sample, got an empty x")
        if len(self.x) != len(self.y):
            raise ValueError(f"x and y must have the same length, got {len(self.x)} and {len(self.y)}")
        if self.difficulty is not None and len(self.difficulty) != len(self.y):
            raise ValueError(
                f"difficulty must have one value per sample ({len(self.y)}), got {len(self.difficulty)}"
            )
        if self.box is not None and tuple(self.box.shape) != (len(self.y), 4):
            raise ValueError(
                f"box must have shape ({len(self.y)}, 4) (top, left, height, width), got {tuple(self.box.shape)}"
            )

    def __len__(self) -> int:
        return len(self.y)

    def dataset(self) -> TensorDataset:
        """The inputs and labels as a `TensorDataset` for a `DataLoader`."""
        return TensorDataset(self.x, self.y)


@dataclass(frozen=True)
class Splits:
    """A dataset's train, validation and test parts."""

    name: str
    train: Split
    val: Split
    test: Split
    n_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input, without the batch dimension."""
        return tuple(self.train.x.shape[1:])


def _split_indices(labels: np.ndarray, fractions: tuple[float, float], seed: int) -> tuple:
    """Stratified indices for (train, val, test) with the given validation and test fractions."""
    rng = np.random.default_rng(seed)
    parts: tuple[list, list, list] = ([], [], [])
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        n_val, n_test = (round(f * len(idx)) for f in fractions)
        parts[1].extend(idx[:n_val])
        parts[2].extend(idx[n_val : n_val + n_test])
        parts[0].extend(idx[n_val + n_test :])
    return tuple(np.sort(np.asarray(p)) for p in parts)


def _check_geometry(name: str, x: np.ndarray, y: np.ndarray, shape: tuple, n_classes: int) -> None:
    """Raise `RuntimeError` unless the inputs have `shape` and the labels are exactly 0 .. n_classes - 1."""
    labels = np.unique(y).tolist()
    if tuple(x.shape[1:]) != shape or labels != list(range(n_classes)):
        raise RuntimeError(
            f"{name} came with inputs of shape {tuple(x.shape[1:])} and labels {labels}, expected "
            f"{shape} and 0 .. {n_classes - 1}: the generator changed, so the book's models no longer fit"
        )


def _as_split(x: np.ndarray, y: np.ndarray, idx: np.ndarray) -> Split:
    return Split(torch.as_tensor(x[idx], dtype=torch.float32), torch.as_tensor(y[idx], dtype=torch.long))


@lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]  # (N, 1, 8, 8) in [0, 1]
    labels = digits.target.astype(np.int64)
    _check_geometry("digits", images, labels, DIGITS_SHAPE, DIGITS_CLASSES)
    return images, labels


def digits(seed: int = 0) -> Splits:
    """scikit-learn's 8x8 handwritten digits (1,797 images), split 60/20/20 by class.

    Inputs have shape (1, 8, 8) with values in [0, 1]. Taught in chapter 1.
    """
    images, labels = _digits_arrays()
    train, val, test = _split_indices(labels, (0.2, 0.2), seed)
    parts = (_as_split(images, labels, i) for i in (train, val, test))
    return Splits("digits", *parts, n_classes=DIGITS_CLASSES)


def cluttered_digits(
    canvas_size: int = 20, n_clutter: int = 3, noise: float = 0.1, seed: int = 0, *, scale: int = 1
) -> Splits:
    """Digits placed at a random position on a larger noisy canvas with clutter, and where each digit is.

    Each `canvas_size` square canvas holds one digit magnified `scale` times (nearest neighbour, so
    it spans 8 * scale pixels) at a random position, `n_clutter` random fragments (3x3 pixels of
    another digit, magnified alike) and Gaussian pixel noise of standard deviation `noise`; values
    are clipped to [0, 1]. Each split's `box` holds the square the digit was pasted into, as
    (top, left, height, width) in pixels, an int64 tensor of shape (N, 4). Splits follow `digits`;
    the defaults give the canvases of the first version. Taught in chapter 3.
    """
    check_positive_ints(scale=scale)
    if isinstance(canvas_size, bool) or not isinstance(canvas_size, int) or canvas_size < 8 * scale:
        raise ValueError(
            f"canvas_size must be an int of at least 8 * scale = {8 * scale} (the digit's size), got {canvas_size!r}"
        )
    if isinstance(n_clutter, bool) or not isinstance(n_clutter, int) or n_clutter < 0:
        raise ValueError(f"n_clutter must be a non-negative int, got {n_clutter!r}")
    if not noise >= 0:
        raise ValueError(f"noise must be non-negative, got {noise}")
    images, labels = _digits_arrays()
    rng = np.random.default_rng(seed)
    n, digit, fragment = len(images), 8 * scale, 3 * scale
    canvas = np.zeros((n, 1, canvas_size, canvas_size), dtype=np.float32)
    box = np.zeros((n, 4), dtype=np.int64)

    def magnified(image: np.ndarray) -> np.ndarray:
        return image.repeat(scale, axis=0).repeat(scale, axis=1)

    for i in range(n):
        for _ in range(n_clutter):
            source = magnified(images[rng.integers(n), 0])
            r, c = rng.integers(0, 6, size=2) * scale
            piece = source[r : r + fragment, c : c + fragment]
            top, left = rng.integers(0, canvas_size - fragment + 1, size=2)
            canvas[i, 0, top : top + fragment, left : left + fragment] += piece
        top, left = rng.integers(0, canvas_size - digit + 1, size=2)
        canvas[i, 0, top : top + digit, left : left + digit] += magnified(images[i, 0])
        box[i] = top, left, digit, digit
    canvas += rng.normal(0.0, noise, size=canvas.shape).astype(np.float32)
    canvas = np.clip(canvas, 0.0, 1.0)
    train, val, test = _split_indices(labels, (0.2, 0.2), seed=0)
    parts = (replace(_as_split(canvas, labels, i), box=torch.as_tensor(box[i])) for i in (train, val, test))
    return Splits("cluttered digits", *parts, n_classes=DIGITS_CLASSES)


@lru_cache(maxsize=1)
def _mnist1d_arrays() -> dict:
    from mnist1d.data import get_dataset_args, make_dataset

    state = np.random.get_state()  # make_dataset reseeds NumPy's global generator
    try:
        return make_dataset(get_dataset_args())
    finally:
        np.random.set_state(state)


def mnist1d(n_val: int = 500) -> Splits:
    """The MNIST-1D sequences (Greydanus, 2020), generated offline with the default arguments.

    4,000 training and 1,000 test sequences of length 40; `n_val` training sequences
    (fixed) form the validation split. Inputs have shape (1, 40), standardised with the
    training mean and standard deviation; the generated data must match `MNIST1D_SHAPE` and
    `MNIST1D_CLASSES`, else `RuntimeError`. Taught in chapter 2.
    """
    data = _mnist1d_arrays()
    x, y = data["x"].astype(np.float32), data["y"].astype(np.int64)
    if not 0 < n_val < len(x):
        raise ValueError(f"n_val must be between 1 and {len(x) - 1}, got {n_val}")
    order = np.random.default_rng(0).permutation(len(x))
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    mean, std = x[train_idx].mean(), x[train_idx].std()
    x = ((x - mean) / std)[:, None]
    x_test = ((data["x_test"].astype(np.float32) - mean) / std)[:, None]
    y_test = data["y_test"].astype(np.int64)
    _check_geometry("mnist1d (train)", x, y, MNIST1D_SHAPE, MNIST1D_CLASSES)
    _check_geometry("mnist1d (test)", x_test, y_test, MNIST1D_SHAPE, MNIST1D_CLASSES)
    return Splits(
        "mnist1d",
        _as_split(x, y, train_idx),
        _as_split(x, y, val_idx),
        _as_split(x_test, y_test, np.arange(len(x_test))),
        n_classes=MNIST1D_CLASSES,
    )


def with_noise_difficulty(splits: Splits, mean: float, spread: float, seed: int = 0) -> Splits:
    """A difficulty-controlled copy of `splits`: per-sample Gaussian noise of known strength.

    Each sample gets noise of standard deviation sigma drawn uniformly from
    [mean - spread/2, mean + spread/2]; sigma is stored as the sample's `difficulty`.
    `spread=0` gives every sample the same difficulty, for the same average noise.
    """
    if mean < 0:
        raise ValueError(f"mean must be non-negative, got {mean}")
    if not 0 <= spread <= 2 * mean:
        raise ValueError(f"spread must lie in [0, 2 * mean] = [0, {2 * mean}], got {spread}")
    generator = torch.Generator().manual_seed(seed)

    def noisy(part: Split) -> Split:
        sigma = mean + spread * (torch.rand(len(part), generator=generator) - 0.5)
        shape = (-1,) + (1,) * (part.x.dim() - 1)
        noise = torch.randn(part.x.shape, generator=generator) * sigma.view(shape)
        return replace(part, x=part.x + noise, difficulty=sigma)

    name = f"{splits.name}, noise {mean:g} ± {spread / 2:g}"
    return replace(
        splits, name=name, train=noisy(splits.train), val=noisy(splits.val), test=noisy(splits.test)
    )


def transformed_digits(
    canvas_size: int = 16,
    scale: tuple[float, float] = (1.0, 1.75),
    max_rotation: float = 45.0,
    copies: int = 1,
    seed: int = 0,
) -> Splits:
    """Digits randomly scaled and rotated on a larger canvas, for kernel-shape adaptation.

    Each 8x8 digit is drawn `copies` times at the centre of a `canvas_size` square, magnified
    by a factor drawn uniformly from `scale` and rotated by an angle drawn uniformly from
    [-max_rotation, max_rotation] degrees (bilinear interpolation). The absolute angle is stored
    as each sample's `difficulty`. Splits follow `digits`, so copies of one digit share a split.
    Taught in chapter 2 (weight_prediction.ipynb).
    """
    if canvas_size < 8:
        raise ValueError(f"canvas_size must be at least 8 (the digit's size), got {canvas_size}")
    if len(scale) != 2 or not 0 < scale[0] <= scale[1]:
        raise ValueError(f"scale must be a (low, high) pair with 0 < low <= high, got {scale}")
    if not 0 <= max_rotation <= 180:
        raise ValueError(f"max_rotation must be in [0, 180] degrees, got {max_rotation}")
    check_positive_ints(copies=copies)
    images, labels = _digits_arrays()
    rng = np.random.default_rng(seed)

    def transformed(idx: np.ndarray) -> Split:
        idx = np.tile(idx, copies)
        magnification = rng.uniform(scale[0], scale[1], size=len(idx))
        angle = rng.uniform(-max_rotation, max_rotation, size=len(idx))
        radians = np.deg2rad(angle)
        # affine_grid maps canvas coordinates in [-1, 1] to the digit's; the digit spans 8 * m pixels
        zoom = canvas_size / (8.0 * magnification)
        cos, sin = np.cos(radians) * zoom, np.sin(radians) * zoom
        theta = np.zeros((len(idx), 2, 3), dtype=np.float32)
        theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
        source = torch.as_tensor(images[idx])
        grid = torch.nn.functional.affine_grid(
            torch.as_tensor(theta), [len(idx), 1, canvas_size, canvas_size], align_corners=False
        )
        x = torch.nn.functional.grid_sample(source, grid, mode="bilinear", align_corners=False).clamp(0, 1)
        difficulty = torch.as_tensor(np.abs(angle), dtype=torch.float32)
        return Split(x, torch.as_tensor(labels[idx], dtype=torch.long), difficulty)

    train, val, test = _split_indices(labels, (0.2, 0.2), seed=0)
    name = f"digits scaled {scale[0]:g}-{scale[1]:g}x, rotated up to {max_rotation:g} degrees"
    return Splits(name, transformed(train), transformed(val), transformed(test), n_classes=DIGITS_CLASSES)
