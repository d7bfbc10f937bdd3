"""Several processes (torchrun): the process layout and the one gradient all_reduce per step.

Negatives are text embeddings (frozen), so every process encodes the texts of the whole global
batch and mines the hardest negative among all of them; each micro-batch adds its hinge terms
divided by the global counts, and gradients are summed over micro-batches and processes (one
all_reduce per step over the small trainable set, like DDP's bucketed all_reduce with no_sync
during accumulation). One process, accumulation and torchrun therefore compute the same step, up
to float summation order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Sequence

import torch

from ..errors import UsageError


@dataclass
class Distributed:
    """Process layout from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK); 1 process otherwise."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    created_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.created_group:
            import torch.distributed as dist

            dist.destroy_process_group()
            self.created_group = False


def init_distributed(device: str) -> Distributed:
    """Join the torchrun process group when WORLD_SIZE > 1 (nccl on CUDA, gloo on CPU)."""
    from ..inference.methods import resolve_device

    resolved = resolve_device(device)
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise UsageError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (set by torchrun)") from None
    if world <= 1:
        return Distributed(device=resolved)
    import torch.distributed as dist

    if resolved.type == "cuda":
        resolved = torch.device("cuda", local_rank)
        torch.cuda.set_device(resolved)
    created = False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if resolved.type == "cuda" else "gloo", timeout=timedelta(hours=1))
        created = True
    return Distributed(rank, world, local_rank, resolved, created)


def reduce_gradients(params: Sequence[torch.nn.Parameter], loss_sums: torch.Tensor, dist_info: Distributed) -> torch.Tensor:
    """Sum gradients (and the (2,) loss sums) over processes with one all_reduce.

    A parameter without a gradient on every process keeps grad None (AdamW then skips it, as in
    a single process). Returns the summed loss sums.
    """
    if dist_info.world == 1:
        return loss_sums
    import torch.distributed as dist

    device = loss_sums.device
    flags = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=device)
    parts = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float() for p in params]
    flat = torch.cat(parts + [flags, loss_sums.float()])
    dist.all_reduce(flat)
    offset = 0
    used = flat[sum(p.numel() for p in params) : -loss_sums.numel()].tolist()  # processes that had a gradient
    for param, flag in zip(params, used):
        chunk = flat[offset : offset + param.numel()]
        offset += param.numel()
        param.grad = chunk.view_as(param).to(param.dtype).clone() if flag > 0 else None
    return flat[-loss_sums.numel() :]
