"""Reproducibility: one seed for Python, NumPy and torch, overridable from the environment."""

import os
import random

import numpy as np
import torch

SEED_ENV_VAR = "DYN_HELPERS_SEED"
DEFAULT_SEED = 0


def default_seed() -> int:
    """The seed the notebooks use: `DYN_HELPERS_SEED` if set, else `DEFAULT_SEED`."""
    raw = os.environ.get(SEED_ENV_VAR, "").strip()
    if not raw:
        return DEFAULT_SEED
    try:
        seed = int(raw)
    except ValueError:
        raise ValueError(f"{SEED_ENV_VAR} must be a non-negative integer, got {raw!r}") from None
    if seed < 0:
        raise ValueError(f"{SEED_ENV_VAR} must be a non-negative integer, got {seed}")
    return seed


def seed_everything(seed: int | None = None) -> int:
    """Seed Python, NumPy and torch, make torch deterministic and single-threaded.

    One thread matters: the thread count and the CPU's instruction set change
    floating-point results near the 7th significant digit. Returns the seed used.
    """
    if seed is None:
        seed = default_seed()
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    return seed
