"""Expert parallelism: the experts of a `MoELayer` spread over processes, tokens exchanged by all-to-all.

Taught in chapter 2 (mixture of experts, scale-out). Every process keeps a copy of the router
and `n_experts / world_size` experts, and routes its own tokens. One all-to-all sends each
token to the process that holds its expert, the experts run there, and a second all-to-all
brings the outputs back. Runs with `gloo` on CPU and `nccl` on GPUs. The demo and check:

    python -m torch.distributed.run --standalone --nproc-per-node 2 -m dyn_helpers.sample_wise.moe_distributed
"""

import copy
import os
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from dyn_helpers.sample_wise.moe import MoELayer, Routing, combine_expert_outputs, route


def expert_shard(n_experts: int, rank: int, world_size: int) -> range:
    """The experts that process `rank` of `world_size` holds: a contiguous block of n_experts / world_size."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank must lie in [0, world_size) with world_size >= 1, got {rank} of {world_size}")
    if n_experts < 1 or n_experts % world_size:
        raise ValueError(
            f"n_experts ({n_experts}) must be a positive multiple of the number of processes ({world_size})"
        )
    per_rank = n_experts // world_size
    return range(rank * per_rank, (rank + 1) * per_rank)


def _all_to_all(x: torch.Tensor, send_counts: list[int], recv_counts: list[int], group) -> torch.Tensor:
    out = x.new_empty((sum(recv_counts), *x.shape[1:]))
    dist.all_to_all_single(out, x.contiguous(), recv_counts, send_counts, group=group)
    return out


class AllToAll(torch.autograd.Function):
    """All-to-all with uneven splits whose backward is the reverse all-to-all.

    Process r sends rows `send_counts[s]` of its input to process s and receives
    `recv_counts[s]` rows from s; the gradient travels the same routes backwards.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, send_counts: list[int], recv_counts: list[int], group) -> torch.Tensor:
        ctx.counts, ctx.group = (send_counts, recv_counts), group
        return _all_to_all(x, send_counts, recv_counts, group)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple:
        send_counts, recv_counts = ctx.counts
        return _all_to_all(grad, recv_counts, send_counts, ctx.group), None, None, None


class ExpertParallelMoE(nn.Module):
    """This process's part of `layer`: a copy of its router and its shard of experts.

    forward(x) takes this process's tokens and returns (y, routing) exactly as `layer` would
    on them; every process of `group` must call it at the same time (it communicates).
    """

    def __init__(self, layer: MoELayer, group: dist.ProcessGroup | None = None) -> None:
        super().__init__()
        if not isinstance(layer, MoELayer):
            raise TypeError(
                f"layer must be a dyn_helpers.sample_wise.moe.MoELayer, got {type(layer).__name__}"
            )
        if not dist.is_initialized():
            raise RuntimeError("torch.distributed is not initialised: call dist.init_process_group first")
        self.group, self.k = group, layer.k
        self.world_size, rank = dist.get_world_size(group), dist.get_rank(group)
        self.shard = expert_shard(len(layer.experts), rank, self.world_size)
        self.router = copy.deepcopy(layer.router)
        self.experts = layer.experts.shard(self.shard)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Routing]:
        """Route locally, send tokens to their experts' processes, run the local experts, send back, combine."""
        routing = route(self.router(x), self.k)
        token = torch.arange(len(x), device=x.device).repeat_interleave(self.k)
        expert_ids = routing.experts.flatten()
        order = expert_ids.argsort(stable=True)  # group the (token, slot) rows by expert, hence by process
        token, expert_ids = token[order], expert_ids[order]
        owner = expert_ids // len(self.shard)
        send_counts = torch.bincount(owner, minlength=self.world_size)
        recv_counts = torch.empty_like(send_counts)
        dist.all_to_all_single(recv_counts, send_counts, group=self.group)  # how many rows each process sends
        send, recv = send_counts.tolist(), recv_counts.tolist()
        x_here = AllToAll.apply(x[token], send, recv, self.group)
        ids_here = _all_to_all(expert_ids, send, recv, self.group)
        y_here = combine_expert_outputs(self.experts, x_here, ids_here, first=self.shard.start)
        y_back = AllToAll.apply(y_here, recv, send, self.group)  # rows come back in the order they left
        gates = routing.gates.flatten()[order]
        y = torch.zeros_like(x).index_add(0, token, gates[:, None] * y_back)
        return y, routing


def check_against_single_process(
    n_tokens: int = 48,
    d_model: int = 8,
    d_hidden: int = 16,
    n_experts: int = 4,
    k: int = 1,
    collapsed: bool = False,
) -> dict[str, float]:
    """Largest absolute differences between the expert-parallel layer and the single-process layer.

    Every process builds the same `MoELayer` and the same tokens from seed 0, runs the full batch
    through the layer alone, and its own slice of the batch through `ExpertParallelMoE`; outputs,
    gradients of the inputs, of its experts' weights and of the router (summed over processes,
    as data parallelism would) are compared. `collapsed` zeroes the router, so every token picks
    the first experts and some processes receive no tokens at all. Call on every process.
    """
    rank, world_size = dist.get_rank(), dist.get_world_size()
    if n_tokens % world_size:
        raise ValueError(
            f"n_tokens ({n_tokens}) must be a multiple of the number of processes ({world_size})"
        )
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    torch.manual_seed(0)
    layer = MoELayer(d_model, d_hidden, n_experts, k).to(device)
    if collapsed:
        nn.init.zeros_(layer.router.weight)
    x = torch.randn(n_tokens, d_model, device=device, requires_grad=True)
    weights = torch.randn(n_tokens, d_model, device=device)  # a loss that weighs every output differently
    parallel = ExpertParallelMoE(layer)
    (layer(x)[0] * weights).sum().backward()

    rows = slice(rank * n_tokens // world_size, (rank + 1) * n_tokens // world_size)
    x_local = x.detach()[rows].clone().requires_grad_()
    y_local = parallel(x_local)[0]
    (y_local * weights[rows]).sum().backward()
    router_grad = parallel.router.weight.grad.clone()
    dist.all_reduce(router_grad)
    expert_diff = max(
        (local.grad - full.grad[parallel.shard.start : parallel.shard.stop]).abs().max().item()
        for local, full in zip(parallel.experts.parameters(), layer.experts.parameters(), strict=True)
    )
    diffs = torch.tensor(
        [
            (y_local - layer(x.detach()[rows])[0]).abs().max().item(),
            (x_local.grad - x.grad[rows]).abs().max().item(),
            expert_diff,
            (router_grad - layer.router.weight.grad).abs().max().item(),
        ],
        device=device,
    )
    dist.all_reduce(diffs, op=dist.ReduceOp.MAX)
    return dict(
        zip(("output", "input gradient", "expert gradients", "router gradient"), diffs.tolist(), strict=True)
    )


def main() -> None:
    """Check the expert-parallel layer against the single-process layer on every process; rank 0 reports."""
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, timeout=timedelta(seconds=30))
    try:
        worst = 0.0
        for k, collapsed in [(1, False), (2, False), (1, True), (2, True)]:
            diffs = check_against_single_process(k=k, collapsed=collapsed)
            worst = max(worst, *diffs.values())
            if dist.get_rank() == 0:
                shown = ", ".join(f"{name} {d:.1e}" for name, d in diffs.items())
                case = "collapsed router" if collapsed else "random router"
                print(f"top-{k}, {case}: largest |difference| {shown}", flush=True)
        if dist.get_rank() == 0:
            world_size = dist.get_world_size()
            verdict = "equal" if worst < 1e-5 else "DIFFERENT"
            print(f"{world_size} processes ({backend}) and one process give {verdict} outputs and gradients")
    finally:
        dist.destroy_process_group()
    if worst >= 1e-5:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
