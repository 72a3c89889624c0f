import os
import subprocess
import sys

import pytest
import torch

from dyn_helpers.sample_wise.moe import MoELayer
from dyn_helpers.sample_wise.moe_distributed import ExpertParallelMoE, expert_shard


def test_two_processes_give_the_outputs_and_gradients_of_one_process():
    # torchrun starts 2 gloo processes on CPU; each compares its slice of the batch with the
    # single-process layer (outputs, input, expert and router gradients; top-1 and top-2; a router
    # that sends every token to one process), and the run fails unless all are equal.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    result = subprocess.run(
        [*command, "-m", "dyn_helpers.sample_wise.moe_distributed"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 processes (gloo) and one process give equal outputs and gradients" in result.stdout
    assert result.stdout.count("largest |difference|") == 4


def test_experts_are_split_into_contiguous_equal_shards():
    assert [expert_shard(8, r, 2) for r in range(2)] == [range(0, 4), range(4, 8)]
    assert [expert_shard(8, r, 4) for r in range(4)] == [range(2 * r, 2 * r + 2) for r in range(4)]
    assert expert_shard(3, 0, 1) == range(0, 3)


@pytest.mark.parametrize(("n_experts", "rank", "world_size"), [(6, 0, 4), (0, 0, 1), (4, 2, 2), (4, -1, 2)])
def test_an_impossible_shard_is_reported(n_experts, rank, world_size):
    with pytest.raises(ValueError, match="n_experts|rank"):
        expert_shard(n_experts, rank, world_size)


def test_the_expert_parallel_layer_needs_an_initialised_process_group_and_a_moe_layer():
    with pytest.raises(TypeError, match="MoELayer"):
        ExpertParallelMoE(torch.nn.Linear(4, 4))
    with pytest.raises(RuntimeError, match="init_process_group"):
        ExpertParallelMoE(MoELayer(4, 8, 2))
