"""The GPU timing path, checked on a CPU with a fake CUDA layer.

No GPU is needed: `torch.cuda.Event`, `torch.cuda.synchronize` and the device queries are
replaced by fakes that keep a clock of their own, so the tests pin down what the suite does on a
GPU: warm up, synchronise before reading a clock, time with events, convert milliseconds to
seconds, and stamp the record with the GPU's name and CUDA version.
"""

import pytest
import torch

from dyn_helpers import devices, measure


class FakeCuda:
    """A CUDA layer whose kernels take `kernel_ms` each and run only when synchronised."""

    def __init__(self, kernel_ms: float) -> None:
        self.kernel_ms = kernel_ms
        self.clock_ms = 0.0
        self.queued = 0
        self.log: list[str] = []
        fake = self

        class Event:
            def __init__(self, enable_timing: bool = False) -> None:
                assert enable_timing, "events must be created with enable_timing=True"
                self.at_ms: float | None = None

            def record(self) -> None:
                fake.log.append("record")
                fake._drain()
                self.at_ms = fake.clock_ms

            def elapsed_time(self, end: "Event") -> float:
                assert self.at_ms is not None and end.at_ms is not None, "read an event not recorded"
                return end.at_ms - self.at_ms

        self.Event = Event

    def _drain(self) -> None:
        self.clock_ms += self.queued * self.kernel_ms
        self.queued = 0

    def synchronize(self) -> None:
        self.log.append("synchronize")
        self._drain()

    def launch(self) -> None:
        self.log.append("run")
        self.queued += 1


@pytest.fixture
def fake_cuda(monkeypatch):
    fake = FakeCuda(kernel_ms=2.0)
    monkeypatch.setattr(torch.cuda, "Event", fake.Event)
    monkeypatch.setattr(torch.cuda, "synchronize", fake.synchronize)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake H200")
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    return fake


def test_cuda_timing_warms_up_then_synchronises_before_the_first_event(fake_cuda):
    measure._cuda_times(fake_cuda.launch, warmup=3, min_run_time=0.01)
    assert fake_cuda.log[:5] == ["run", "run", "run", "synchronize", "record"]


def test_cuda_timing_waits_for_each_run_before_reading_its_events(fake_cuda):
    measure._cuda_times(fake_cuda.launch, warmup=0, min_run_time=0.01)
    timed = fake_cuda.log[1:]  # after the synchronisation that ends the warm-up
    assert timed[:4] == ["record", "run", "record", "synchronize"]
    assert timed.count("record") == 2 * timed.count("run")


def test_cuda_times_are_seconds_per_call_from_event_milliseconds(fake_cuda):
    times = measure._cuda_times(fake_cuda.launch, warmup=2, min_run_time=0.01)
    assert times == pytest.approx([0.002] * len(times))


def test_cuda_timing_runs_for_min_run_time_and_at_least_ten_times(fake_cuda):
    short = measure._cuda_times(fake_cuda.launch, warmup=0, min_run_time=0.001)
    assert len(short) == 10
    long = measure._cuda_times(fake_cuda.launch, warmup=0, min_run_time=0.1)
    assert len(long) == 50 and long.sum() == pytest.approx(0.1)


def test_a_cuda_device_is_timed_with_events_and_a_cpu_device_with_benchmark(fake_cuda):
    on_gpu = measure._timed_runs(fake_cuda.launch, torch.device("cuda:0"), min_run_time=0.01, warmup=1)
    assert "record" in fake_cuda.log and on_gpu == pytest.approx([0.002] * len(on_gpu))
    fake_cuda.log.clear()
    measure._timed_runs(lambda: None, torch.device("cpu"), min_run_time=0.01, warmup=1)
    assert fake_cuda.log == []


def test_a_gpu_record_is_stamped_with_the_gpu_name_and_cuda_version(fake_cuda):
    stamp = devices.provenance("cuda:0")
    assert stamp["device"] == "cuda:0" and stamp["device_name"] == "Fake H200"
    assert stamp["cuda"] == "12.8" and stamp["cpu"] == devices.cpu_model_name()


def test_a_gpu_index_beyond_the_fake_single_gpu_is_rejected(fake_cuda):
    with pytest.raises(ValueError, match="1 CUDA devices"):
        devices.resolve_device("cuda:1")
