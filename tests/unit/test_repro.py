import random

import numpy as np
import pytest
import torch

from dyn_helpers.repro import DEFAULT_SEED, SEED_ENV_VAR, default_seed, seed_everything


def test_default_seed_is_used_without_the_environment_variable(monkeypatch):
    monkeypatch.delenv(SEED_ENV_VAR, raising=False)
    assert default_seed() == DEFAULT_SEED


def test_environment_variable_overrides_the_default_seed(monkeypatch):
    monkeypatch.setenv(SEED_ENV_VAR, "7")
    assert seed_everything() == 7


@pytest.mark.parametrize("raw", ["abc", "-1", "1.5"])
def test_malformed_environment_seed_is_rejected(monkeypatch, raw):
    monkeypatch.setenv(SEED_ENV_VAR, raw)
    with pytest.raises(ValueError, match=SEED_ENV_VAR):
        default_seed()


def test_same_seed_gives_the_same_random_numbers_everywhere():
    draws = []
    for _ in range(2):
        seed_everything(3)
        draws.append((random.random(), np.random.rand(), torch.rand(1).item()))
    assert draws[0] == draws[1]


def test_seeding_makes_torch_deterministic_and_single_threaded():
    seed_everything(0)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize(("seed", "error"), [(-1, ValueError), (1.0, TypeError), (True, TypeError)])
def test_bad_seed_is_rejected(seed, error):
    with pytest.raises(error, match="seed"):
        seed_everything(seed)
