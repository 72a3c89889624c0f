"""Measurement: FLOPs that actually ran for each input, and latency on CPU or GPU.

FLOPs come from `torch.utils.flop_counter.FlopCounterMode`, which counts the matrix
multiplications and convolutions that executed (elementwise work is not counted). Latency
comes from `torch.utils.benchmark.Timer` on CPU and from CUDA events after a warm-up on GPU;
every `Latency` carries the device, torch version, batch size and dtype that produced it.
"""

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.utils import benchmark
from torch.utils.flop_counter import FlopCounterMode

from dyn_helpers.devices import device_name, resolve_device
from dyn_helpers.outputs import ModelOutput


def _check_output(output: object) -> None:
    first = output[0] if isinstance(output, tuple | list) and output else output
    if not isinstance(first, torch.Tensor | ModelOutput):
        raise TypeError(
            f"the model must return its logits or a ModelOutput (dyn_helpers.outputs), got {type(output).__name__}"
        )


def count_flops(fn: Callable[[torch.Tensor], object], x: torch.Tensor) -> int:
    """FLOPs of one call `fn(x)` (a model, or any function of a batch), under `torch.no_grad`."""
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a tensor, got {type(x).__name__}")
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        output = fn(x)
    _check_output(output)
    return int(counter.get_total_flops())


def flops_per_sample(fn: Callable[[torch.Tensor], object], x: torch.Tensor) -> torch.Tensor:
    """FLOPs spent on each sample of `x`, each run alone at batch size 1.

    A dynamic model is charged only for what ran for that input: an early-exit model that
    stops at its first exit costs the first exit's FLOPs. Returns an int64 tensor of length len(x).
    """
    if not isinstance(x, torch.Tensor) or x.dim() < 1 or len(x) == 0:
        raise ValueError("x must be a non-empty batch of inputs (a tensor with a batch dimension)")
    return torch.tensor([count_flops(fn, x[i : i + 1]) for i in range(len(x))], dtype=torch.int64)


def flops_per_input(
    fn: Callable[[torch.Tensor], object], x: torch.Tensor, *, batch_size: int = 1, n_inputs: int = 16
) -> float:
    """Mean FLOPs per input of `fn` run on batches of `batch_size` samples of `x`.

    The batches cover the first `n_inputs` inputs, or one batch if that is more. At batch size 1
    this is what each input's decisions let run; at a larger one, a model that must run for a
    whole batch what one of its inputs needs is charged for it.
    """
    if not isinstance(x, torch.Tensor) or x.dim() < 1:
        raise ValueError("x must be a batch of inputs (a tensor with a batch dimension)")
    if batch_size < 1 or n_inputs < 1:
        raise ValueError(f"batch_size and n_inputs must be positive, got {batch_size} and {n_inputs}")
    if batch_size > len(x):
        raise ValueError(f"x holds {len(x)} inputs, fewer than one batch of {batch_size}")
    n = min(len(x), max(n_inputs, batch_size))
    batches = [b for b in torch.split(x[:n], batch_size) if len(b) == batch_size]
    return sum(count_flops(fn, b) for b in batches) / (len(batches) * batch_size)


@dataclass(frozen=True)
class Latency:
    """Seconds per batch: the median and interquartile range over repeated timings."""

    label: str
    median_s: float
    iqr_s: float
    repeats: int
    batch_size: int
    n_batches: int
    device: str
    device_name: str
    dtype: str
    torch_version: str
    threads: int

    def as_dict(self) -> dict:
        """The measurement as a JSON-ready dict."""
        return asdict(self)


def latency(
    fn: Callable[[torch.Tensor], object],
    x: torch.Tensor,
    *,
    batch_size: int = 1,
    label: str = "",
    device: str | torch.device | None = "cpu",
    min_run_time: float = 0.5,
    warmup: int = 3,
) -> Latency:
    """Time `fn` on the batches of `x` and report the seconds per batch.

    One timed run passes every batch of `x` (of `batch_size` samples) through `fn`, so a
    dynamic model is timed over the mix of inputs it meets; the run is repeated and the
    median and interquartile range of (run time / number of batches) are reported.
    """
    return compare_latency(
        {label: fn},
        x,
        batch_size=batch_size,
        device=device,
        min_run_time=min_run_time,
        rounds=1,
        warmup=warmup,
    )[label]


def compare_latency(
    fns: Mapping[str, Callable[[torch.Tensor], object]],
    x: torch.Tensor,
    *,
    batch_size: int = 1,
    device: str | torch.device | None = "cpu",
    min_run_time: float = 0.2,
    rounds: int = 5,
    warmup: int = 3,
) -> dict[str, Latency]:
    """Time several functions on the same inputs, alternating between them for `rounds` rounds.

    Alternating spreads any slow spell of a busy machine over every function instead of one,
    which matters when the result is a ratio of two latencies. Each round times each function
    for `min_run_time` seconds as `latency` does; the rounds' repeats are pooled.
    """
    if not fns:
        raise ValueError("fns must name at least one function to time")
    for label, fn in fns.items():
        if not callable(fn):
            raise TypeError(f"fns[{label!r}] must be callable, got {type(fn).__name__}")
    if not isinstance(x, torch.Tensor) or len(x) == 0:
        raise ValueError("x must be a non-empty tensor of inputs")
    if batch_size < 1 or batch_size > len(x):
        raise ValueError(f"batch_size must be in [1, {len(x)}], got {batch_size}")
    if min_run_time <= 0:
        raise ValueError(f"min_run_time must be positive, got {min_run_time}")
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    dev = resolve_device(device)
    batches = [b.to(dev) for b in torch.split(x, batch_size) if len(b) == batch_size]
    runs = {label: _run_over(fn, batches) for label, fn in fns.items()}
    with torch.no_grad():
        for fn in fns.values():
            _check_output(fn(batches[0]))
    times: dict[str, list[np.ndarray]] = {label: [] for label in fns}
    for _ in range(rounds):
        for label, run in runs.items():
            times[label].append(_timed_runs(run, dev, min_run_time=min_run_time, warmup=warmup))
    return {
        label: _summarise(
            label, np.concatenate(times[label]) / len(batches), batch_size, len(batches), dev, x
        )
        for label in fns
    }


def _run_over(fn: Callable[[torch.Tensor], object], batches: list[torch.Tensor]) -> Callable[[], None]:
    def run() -> None:
        with torch.no_grad():
            for batch in batches:
                fn(batch)

    return run


def _timed_runs(
    run: Callable[[], None], dev: torch.device, *, min_run_time: float, warmup: int
) -> np.ndarray:
    """Seconds per call of `run`: torch.utils.benchmark on CPU, CUDA events on GPU."""
    if dev.type == "cuda":
        return _cuda_times(run, warmup=warmup, min_run_time=min_run_time)
    timer = benchmark.Timer(stmt="run()", globals={"run": run}, num_threads=torch.get_num_threads())
    return np.asarray(timer.blocked_autorange(min_run_time=min_run_time).times)


def _summarise(
    label: str, per_batch: np.ndarray, batch_size: int, n_batches: int, dev: torch.device, x: torch.Tensor
) -> Latency:
    q1, median, q3 = np.percentile(per_batch, [25, 50, 75])
    return Latency(
        label=label,
        median_s=float(median),
        iqr_s=float(q3 - q1),
        repeats=len(per_batch),
        batch_size=batch_size,
        n_batches=n_batches,
        device=str(dev),
        device_name=device_name(dev),
        dtype=str(x.dtype).removeprefix("torch."),
        torch_version=torch.__version__,
        threads=torch.get_num_threads(),
    )


def _cuda_times(run: Callable[[], None], *, warmup: int, min_run_time: float) -> np.ndarray:
    """Seconds per call of `run`, timed with CUDA events after `warmup` calls."""
    for _ in range(warmup):
        run()
    torch.cuda.synchronize()
    times: list[float] = []
    while sum(times) < min_run_time or len(times) < 10:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1000.0)
    return np.asarray(times)


@dataclass(frozen=True)
class TimingCase:
    """One model timed by the timing suite: `fn` on the batches of `inputs`, at each batch size.

    A dynamic model's case names its `reference`: the case of the same chapter that runs the same
    network without its decisions (every block, step, position or expert, for every input).
    `counted_by` names the case whose FLOPs, each input run alone, are the FLOPs this case's
    decisions allow, as a paper counts them; None means the case itself, which is right for an
    execution that skips what its decisions skip. Chapter 7's theory-against-practice table
    (`dyn_helpers.open_problems.practice`) reads both.
    """

    fn: Callable[[torch.Tensor], object]
    inputs: torch.Tensor
    batch_sizes: tuple[int, ...] = (1, 256)
    reference: str | None = None
    counted_by: str | None = None

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise TypeError(f"fn must be callable, got {type(self.fn).__name__}")
        if not isinstance(self.inputs, torch.Tensor):
            raise TypeError(f"inputs must be a tensor, got {type(self.inputs).__name__}")
        if not self.batch_sizes or any(b < 1 or b > len(self.inputs) for b in self.batch_sizes):
            raise ValueError(f"batch sizes must lie in 1..{len(self.inputs)}, got {self.batch_sizes}")
        for name, value in (("reference", self.reference), ("counted_by", self.counted_by)):
            if value is not None and not (isinstance(value, str) and value.isidentifier()):
                raise ValueError(f"{name} must be the name of another case of the chapter, got {value!r}")
        if self.counted_by is not None and self.reference is None:
            raise ValueError("counted_by is read only for a dynamic case: give its reference too")


def check_references(chapter: str, cases: Mapping[str, TimingCase]) -> None:
    """Check that every `reference` and `counted_by` of a chapter's cases names a case of the chapter,
    and that a reference is a case without a reference of its own, taking inputs of the same shape."""
    for name, case in cases.items():
        for role, other in (("reference", case.reference), ("counted_by", case.counted_by)):
            if other is not None and other not in cases:
                raise ValueError(f"{chapter}/{name}: its {role} {other!r} is not a case of {chapter}")
        if case.reference is not None:
            reference = cases[case.reference]
            if reference.reference is not None:
                raise ValueError(f"{chapter}/{name}: its reference {case.reference!r} is itself dynamic")
            if reference.inputs.shape[1:] != case.inputs.shape[1:]:
                raise ValueError(f"{chapter}/{name}: its reference takes inputs of another shape")


TimingCases = Callable[[torch.device], Mapping[str, TimingCase]]
TIMING_CASES: dict[str, TimingCases] = {}


def timing_cases(chapter: str) -> Callable[[TimingCases], TimingCases]:
    """Register `build(device) -> {case name: TimingCase}` as the GPU-suite cases of a chapter.

    `chapter` is the notebook's file name without `.ipynb`; its GPU section lists the records of
    cases named `<chapter>/<case name>`. `python -m dyn_helpers.tools.bench` runs every registered
    case on the device at hand.
    """
    if not isinstance(chapter, str) or not chapter.isidentifier():
        raise ValueError(f"chapter must be a notebook's file name without .ipynb, got {chapter!r}")

    def register(build: TimingCases) -> TimingCases:
        if chapter in TIMING_CASES:
            raise ValueError(f"timing cases for {chapter!r} are already registered")
        TIMING_CASES[chapter] = build
        return build

    return register


def registered_timing_cases() -> dict[str, TimingCases]:
    """Every chapter's case builder, by chapter, after importing every module of the package.

    Registration happens when a module is imported; the tooling (`dyn_helpers.tools`) is left out.
    """
    import dyn_helpers

    for module in pkgutil.walk_packages(dyn_helpers.__path__, "dyn_helpers."):
        if not module.name.startswith("dyn_helpers.tools"):
            importlib.import_module(module.name)
    return dict(sorted(TIMING_CASES.items()))
