"""The 1-D board (noisy MNIST-1D) and its static networks: the front every 1-D method must beat.

The task adds Gaussian noise to every sequence with a strength drawn per sequence, uniformly from
0 to `NOISE_MAX` training standard deviations (`data.with_noise_difficulty`): the inputs differ in
how hard they are, which is what sample-wise dynamic networks need to save anything. Clean
MNIST-1D leaves no headroom: the static networks of chapter 2 reach 98 to 99%.
"""

from __future__ import annotations

from dyn_helpers import data
from dyn_helpers.layers import StaticCNN
from dyn_helpers.leaderboard.board import Task, entry, point, register_board

MNIST1D = "mnist1d"
NOISE_MAX = 1.0
EPOCHS = 10
DEPTHS = (1, 2, 3, 4)
WIDTHS = (8, 16, 32, 48)


@register_board(MNIST1D)
def noisy_mnist1d() -> Task:
    """MNIST-1D with per-sequence noise of strength uniform in [0, NOISE_MAX]; `EPOCHS` epochs of Adam."""
    splits = data.with_noise_difficulty(data.mnist1d(), mean=NOISE_MAX / 2, spread=NOISE_MAX)
    return Task(MNIST1D, f"MNIST-1D, noise strength uniform in [0, {NOISE_MAX:g}]", splits, epochs=EPOCHS)


def _static(depth: int, width: int) -> None:
    @entry(
        f"static_d{depth}_w{width}",
        label=f"static CNN, {depth} block{'s' if depth > 1 else ''} of width {width}",
        family="static",
        board=MNIST1D,
        notebook="early_exiting",
    )
    def train_static(task: Task, seed: int) -> list:
        model = StaticCNN(depth, widths=(width,) * max(DEPTHS))
        task.fit(model, seed, desc=f"static d{depth} w{width}")
        return [point(task, f"depth {depth}, width {width}", model)]


for _depth in DEPTHS:
    for _width in WIDTHS:
        _static(_depth, _width)
