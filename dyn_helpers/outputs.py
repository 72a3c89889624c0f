"""One protocol for every model: what `forward` returns.

A dynamic model's `forward` returns a `ModelOutput`: the logits it answers with, the decisions
it took for each input, and what it ran. A static model returns its logits, a tensor, and
conforms as it is: `as_output` reads either. Training (`dyn_helpers.train`), the FLOPs counter
and the latency timer (`dyn_helpers.measure`) and the plots take any model without adapters.
Taught in chapter 2, where the first dynamic models appear.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class ModelOutput:
    """What a dynamic model's `forward` returns.

    - `logits`, shape (N, M): the answer, used for accuracy and for the default loss.
    - `decisions`: the decisions taken for each input, by name (for example `"gates"` of shape
      (N, L), `"exit"` of shape (N,)); each tensor's first dimension is N.
    - `executed`, shape (N, U): 1 where a unit (a block, a channel, an expert, an exit) ran for
      the input, 0 where it was skipped; None when everything ran.
    - `extras`: what a training loss needs besides the logits, by name (for example every exit's
      logits, gate probabilities, log-probabilities of decisions, a ponder cost): tensors whose
      first dimension is N, lists of such tensors, or scalars (0-dimensional tensors).
    """

    logits: torch.Tensor
    decisions: dict[str, torch.Tensor] = field(default_factory=dict)
    executed: torch.Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.logits, torch.Tensor) or self.logits.dim() < 1:
            raise TypeError(
                f"logits must be a tensor with a batch dimension, got {type(self.logits).__name__}"
            )
        n = len(self.logits)
        for name, value in self.decisions.items():
            if not isinstance(value, torch.Tensor) or value.dim() < 1 or len(value) != n:
                raise ValueError(f"decision {name!r} must be a tensor with first dimension {n}")
        if self.executed is not None and (self.executed.dim() < 1 or len(self.executed) != n):
            raise ValueError(f"executed must have first dimension {n}, got {tuple(self.executed.shape)}")

    def detach(self) -> "ModelOutput":
        """The same output, cut from the autograd graph and moved to the CPU."""
        return ModelOutput(
            self.logits.detach().cpu(),
            {name: value.detach().cpu() for name, value in self.decisions.items()},
            None if self.executed is None else self.executed.detach().cpu(),
            {name: _map(value, lambda t: t.detach().cpu()) for name, value in self.extras.items()},
        )


def _map(value: Any, fn) -> Any:
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, list | tuple):
        return type(value)(_map(v, fn) for v in value)
    return value


def as_output(output: torch.Tensor | ModelOutput) -> ModelOutput:
    """Read any model's output as a `ModelOutput`: a static model's logits become one."""
    if isinstance(output, ModelOutput):
        return output
    if isinstance(output, torch.Tensor):
        return ModelOutput(output)
    raise TypeError(
        f"a model must return its logits (a tensor) or a ModelOutput, got {type(output).__name__}"
    )


def logits_of(output: torch.Tensor | ModelOutput) -> torch.Tensor:
    """The logits of any model's output."""
    return as_output(output).logits


def _concat_extra(name: str, values: Sequence[Any], sizes: Sequence[int]) -> Any:
    first = values[0]
    if isinstance(first, torch.Tensor) and first.dim() == 0:
        weights = torch.tensor(sizes, dtype=first.dtype, device=first.device)
        return (torch.stack(list(values)) * weights).sum() / weights.sum()
    if isinstance(first, torch.Tensor):
        return torch.cat(list(values))
    if isinstance(first, list | tuple):
        return type(first)(_concat_extra(name, parts, sizes) for parts in zip(*values, strict=True))
    raise TypeError(f"extra {name!r} must be a tensor or a list of tensors, got {type(first).__name__}")


def concat(outputs: Sequence[torch.Tensor | ModelOutput]) -> torch.Tensor | ModelOutput:
    """Outputs of consecutive batches as one: tensors are concatenated along the batch, scalars
    in `extras` are averaged with the batch sizes as weights. Logits in, logits out."""
    if not outputs:
        raise ValueError("concat needs at least one output")
    if all(isinstance(o, torch.Tensor) for o in outputs):
        return torch.cat(list(outputs))
    parts = [as_output(o) for o in outputs]
    sizes = [len(p.logits) for p in parts]
    executed = [p.executed for p in parts]
    if any(e is None for e in executed) and not all(e is None for e in executed):
        raise ValueError("either every batch reports what it executed or none does")
    return ModelOutput(
        torch.cat([p.logits for p in parts]),
        {name: torch.cat([p.decisions[name] for p in parts]) for name in parts[0].decisions},
        None if executed[0] is None else torch.cat(executed),
        {name: _concat_extra(name, [p.extras[name] for p in parts], sizes) for name in parts[0].extras},
    )


class Mode:
    """A model's mode: the same model run by another rule (real sparse execution, another way to
    compute), chosen by a plain attribute that is checked against its choices when set.

    Declared on the class, as in `execution = Mode("sparse", "masked")`, then set in `__init__`
    and changed at will: `model.execution = "masked"`.
    """

    def __init__(self, *choices: str) -> None:
        if not choices or not all(isinstance(c, str) for c in choices):
            raise ValueError(f"a mode needs one or more choices given as strings, got {choices!r}")
        self.choices = choices

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: object, objtype: type | None = None) -> "str | Mode":
        if obj is None:
            return self
        try:
            return obj.__dict__[f"_mode_{self.name}"]
        except KeyError:
            raise AttributeError(f"the mode {self.name!r} was never set") from None

    def __set__(self, obj: object, value: str) -> None:
        if not isinstance(value, str) or value not in self.choices:
            raise ValueError(f"{self.name} must be one of {self.choices}, got {value!r}")
        obj.__dict__[f"_mode_{self.name}"] = value
