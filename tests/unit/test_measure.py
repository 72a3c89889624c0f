import pytest
import torch
from torch import nn

from dyn_helpers.measure import Latency, compare_latency, count_flops, flops_per_sample, latency


def test_linear_flops_match_the_closed_form():
    batch, n_in, n_out = 4, 16, 8
    assert count_flops(nn.Linear(n_in, n_out), torch.randn(batch, n_in)) == 2 * batch * n_in * n_out


def test_conv2d_flops_match_the_closed_form():
    conv = nn.Conv2d(3, 5, kernel_size=3, padding=1)
    h = w = 6
    expected = 2 * (3 * 3 * 3) * 5 * h * w
    assert count_flops(conv, torch.randn(1, 3, h, w)) == expected


class CostDependsOnInput(nn.Module):
    """Runs a second layer only for inputs whose first feature is positive."""

    def __init__(self):
        super().__init__()
        self.first, self.second = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x):
        h = self.first(x)
        return self.second(h) if x[0, 0] > 0 else h


def test_per_sample_flops_count_only_what_ran_for_each_input():
    x = torch.tensor([[1.0, 0, 0, 0], [-1.0, 0, 0, 0], [2.0, 0, 0, 0]])
    assert flops_per_sample(CostDependsOnInput(), x).tolist() == [64, 32, 64]


def test_a_model_that_returns_neither_logits_nor_a_model_output_is_rejected():
    with pytest.raises(TypeError, match="logits or a ModelOutput"):
        count_flops(lambda x: "not a tensor", torch.randn(1, 2))


def test_an_empty_batch_is_rejected():
    with pytest.raises(ValueError, match="non-empty"):
        flops_per_sample(nn.Linear(2, 2), torch.empty(0, 2))


def test_latency_reports_median_spread_and_provenance():
    result = latency(nn.Linear(8, 8), torch.randn(32, 8), batch_size=4, label="linear", min_run_time=0.05)
    assert isinstance(result, Latency)
    assert result.median_s > 0 and result.iqr_s >= 0 and result.repeats >= 1
    assert (result.batch_size, result.n_batches, result.device, result.dtype) == (4, 8, "cpu", "float32")
    assert result.torch_version == torch.__version__
    assert result.as_dict()["label"] == "linear"


def test_latency_grows_with_the_work_done():
    x = torch.randn(8, 256)
    small = latency(nn.Linear(256, 16), x, min_run_time=0.1)
    large = latency(nn.Sequential(*[nn.Linear(256, 256) for _ in range(16)]), x, min_run_time=0.1)
    assert large.median_s > 2 * small.median_s


@pytest.mark.parametrize(
    ("kwargs", "error"), [({"batch_size": 0}, ValueError), ({"device": "nowhere"}, ValueError)]
)
def test_latency_rejects_bad_arguments(kwargs, error):
    with pytest.raises(error):
        latency(nn.Linear(2, 2), torch.randn(4, 2), **kwargs)


def test_compare_latency_times_every_function_on_the_same_inputs():
    x = torch.randn(16, 64)
    results = compare_latency(
        {"small": nn.Linear(64, 4), "large": nn.Sequential(*[nn.Linear(64, 64) for _ in range(8)])},
        x,
        rounds=2,
        min_run_time=0.05,
    )
    assert set(results) == {"small", "large"}
    assert results["large"].median_s > results["small"].median_s
    assert all(r.n_batches == 16 for r in results.values())


@pytest.mark.parametrize(("kwargs", "error"), [({"rounds": 0}, ValueError), ({"fns": {}}, ValueError)])
def test_compare_latency_rejects_bad_arguments(kwargs, error):
    arguments = {"fns": {"f": nn.Linear(2, 2)}, "x": torch.randn(4, 2), **kwargs}
    with pytest.raises(error):
        compare_latency(**arguments)
