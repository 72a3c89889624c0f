"""Fixtures shared by the unit tests: a small multi-exit network (early exits and their objectives),
and leaderboard tasks cut small."""

import dataclasses

import pytest
import torch

from dyn_helpers.leaderboard.board import Task
from dyn_helpers.sample_wise.early_exit import MultiExitCNN


@pytest.fixture
def model():
    """A small multi-exit CNN whose exits are sure enough for inputs to leave at each of them."""
    torch.manual_seed(0)
    model = MultiExitCNN(widths=(8, 8, 8), length=12).eval()
    with torch.no_grad():
        for head in model.exits:
            head.weight.mul_(10)
    return model


@pytest.fixture(scope="session")
def small_task():
    """`small_task(task, n_train, n_val, n_test, epochs)`: a leaderboard task cut to the first inputs
    of each split (every per-sample field cut alike), with a budget of `epochs`; its batch size kept."""

    def head(split, n):
        cut = {
            f.name: getattr(split, f.name)[:n]
            for f in dataclasses.fields(split)
            if getattr(split, f.name) is not None
        }
        return dataclasses.replace(split, **cut)

    def make(task: Task, n_train: int, n_val: int, n_test: int, epochs: int) -> Task:
        splits = task.splits
        cut = dataclasses.replace(
            splits,
            train=head(splits.train, n_train),
            val=head(splits.val, n_val),
            test=head(splits.test, n_test),
        )
        return dataclasses.replace(task, name="tiny", title="tiny", splits=cut, epochs=epochs)

    return make
