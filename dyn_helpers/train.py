"""Training and evaluation loops, deterministic for a seed, with plain `tqdm` progress bars.

Plain `tqdm` (not `tqdm.auto`): the widget version needs JavaScript from a CDN in the
built book and warns when ipywidgets is absent.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from dyn_helpers.data import Split
from dyn_helpers.devices import resolve_device
from dyn_helpers.outputs import ModelOutput, concat, logits_of

LossFn = Callable[[object, torch.Tensor], torch.Tensor]


def _check_split(split: Split, name: str) -> None:
    if not isinstance(split, Split):
        raise TypeError(f"{name} must be a dyn_helpers.data.Split, got {type(split).__name__}")


def cross_entropy(output: torch.Tensor | ModelOutput, y: torch.Tensor) -> torch.Tensor:
    """The default training loss: cross-entropy of any model's logits."""
    return F.cross_entropy(logits_of(output), y)


def fit(
    model: nn.Module,
    train: Split,
    *,
    epochs: int,
    lr: float = 1e-2,
    batch_size: int = 128,
    weight_decay: float = 0.0,
    loss_fn: LossFn | None = None,
    seed: int = 0,
    desc: str = "train",
    device: str | torch.device = "cpu",
) -> list[float]:
    """Train `model` with Adam and a one-cycle learning-rate schedule peaking at `lr`; return each epoch's mean loss.

    `loss_fn(output, y)` receives the model's output as it is (logits or a `ModelOutput`) and
    defaults to the cross-entropy of its logits; a dynamic model's loss adds its own terms
    (the summed loss over exits, a cost penalty). The data order and any
    randomness inside the model follow `seed`.
    """
    _check_split(train, "train")
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if lr <= 0:
        raise ValueError(f"lr must be positive, got {lr}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    loss_fn = loss_fn or cross_entropy
    dev = resolve_device(device)
    model.to(dev).train()
    torch.manual_seed(seed)
    loader = DataLoader(
        train.dataset(), batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * len(loader))
    history: list[float] = []
    bar = tqdm(range(epochs), desc=desc, unit="epoch")
    for _ in bar:
        total, count = 0.0, 0
        for x, y in loader:
            x, y = x.to(dev), y.to(dev)
            loss = loss_fn(model(x), y)
            if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
                raise TypeError("loss_fn must return a scalar tensor")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(y)
            count += len(y)
        history.append(total / count)
        bar.set_postfix(loss=f"{history[-1]:.4f}", refresh=False)
    model.eval()
    return history


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor | ModelOutput:
    """The model's output on `x` in evaluation mode, computed in batches, joined, on the CPU.

    Logits for a static model, a `ModelOutput` for a dynamic one (`dyn_helpers.outputs`).
    """
    if not isinstance(x, torch.Tensor) or len(x) == 0:
        raise ValueError("x must be a non-empty tensor of inputs")
    model.eval()
    device = next(model.parameters()).device
    outputs = [model(batch.to(device)) for batch in torch.split(x, batch_size)]
    joined = concat(outputs)
    return joined.cpu() if isinstance(joined, torch.Tensor) else joined.detach()


def evaluate(model: nn.Module, split: Split) -> tuple[float, float]:
    """Mean cross-entropy and accuracy (a fraction in [0, 1]) of any model's logits on `split`."""
    _check_split(split, "split")
    return loss_and_accuracy(logits_of(predict(model, split.x)), split.y)


def loss_and_accuracy(logits: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy and accuracy (a fraction in [0, 1]) of `logits` against labels `y`."""
    if logits.dim() != 2 or len(logits) != len(y):
        raise ValueError(
            f"logits must have shape (N, classes) with N = len(y) = {len(y)}, got {tuple(logits.shape)}"
        )
    loss = F.cross_entropy(logits, y).item()
    accuracy = (logits.argmax(dim=1) == y).float().mean().item()
    return loss, accuracy
