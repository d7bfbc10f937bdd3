"""One job over several processes (torchrun): which process takes which input, one count of the work
done for the whole job, and the sums and lists the processes bring together at the end.

    shard = join_job("auto")                # torchrun's environment (WORLD_SIZE > 1), else one process
    for unit, item in enumerate(stream):
        if shard.owns(unit): ...            # unit % world == rank: a stable split, no list needed
    counter = shard.counter()
    totals = counter.tick(done=1)           # every process's counts, summed (refreshed every ~second)
    totals = counter.finish()               # waits for every process; then the collectives below
    shard.sum_int64(matrix), shard.gather(objects)

The process group is the one `train` runs on (`sketchkit.training.distributed.init_distributed`:
nccl with one process per GPU, gloo on CPU); nothing here starts processes. Collectives are matched
by call order across processes, so the counter's ticks never meet another collective: every process
calls `finish()` (which keeps answering the others' ticks until all are done) before any other one.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import UsageError

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass
class Shard:
    """This process's place in the job: rank of world (rank 0 reports), its torch device, and the
    process group's handle (`sketchkit.training.distributed.Distributed`, None for one process)."""

    rank: int = 0
    world: int = 1
    device: object = None
    group: object = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def owns(self, unit: int) -> bool:
        """The stable split: input position `unit` (0, 1, 2, ... over the job's stream) belongs to rank
        unit % world."""
        return unit % self.world == self.rank

    def counter(self, interval: float = 1.0) -> "JobCounter":
        return JobCounter(self, interval)

    def sum_int64(self, values) -> np.ndarray:
        """Element-wise sum over processes of an int64 array (the same shape on every process)."""
        array = np.ascontiguousarray(values, dtype=np.int64)
        if not self.distributed:
            return array.copy()
        import torch
        import torch.distributed as dist

        tensor = torch.from_numpy(array.copy()).to(self._tensor_device())
        dist.all_reduce(tensor)
        return tensor.cpu().numpy()

    def gather(self, value) -> list:
        """Every process's `value` (picklable), in rank order, on every process."""
        if not self.distributed:
            return [value]
        import torch.distributed as dist

        out = [None] * self.world
        dist.all_gather_object(out, value)
        return out

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.group is not None:
            self.group.close()
            self.group = None

    def _tensor_device(self):
        import torch

        device = self.device if self.device is not None else torch.device("cpu")
        return device if getattr(device, "type", "cpu") == "cuda" else torch.device("cpu")


def launched_by_torchrun() -> bool:
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


def join_job(device: str = "auto", *, require: bool = False) -> Shard:
    """The job's process layout: join the torchrun process group when WORLD_SIZE > 1 (one process per
    GPU on CUDA: cuda:LOCAL_RANK, nccl; gloo on CPU), else one process on `device`. `require`: refuse to
    run as one process when the torchrun environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) is
    absent, so a mistaken launch never makes N processes each do the whole job."""
    from ..training.distributed import init_distributed

    if require and not launched_by_torchrun():
        missing = ", ".join(n for n in TORCHRUN_VARIABLES if n not in os.environ)
        raise UsageError(f"a distributed run needs the process layout torchrun sets ({missing} not set); start it "
                         "as: torchrun --nproc-per-node N -m sketchkit.cli ...")
    layout = init_distributed(device)
    if layout.world <= 1:
        return Shard(0, 1, layout.device, None)
    return Shard(layout.rank, layout.world, layout.device, layout)


def total_counts(counts: Sequence[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in counts:
        for key, value in c.items():
            out[key] = out.get(key, 0) + value
    return out


class JobCounter:
    """Counts (done, failed, skipped, ...) summed over the job's processes, for one progress bar.

    `tick(**increments)` adds to this process's counts and returns the job's totals as last summed;
    at most every `interval` seconds it sums them again over processes (one small all_reduce, which
    waits for every process's next tick). `finish()` marks this process done and keeps summing until
    every process is, so all processes leave it together with the final totals.
    """

    KEYS = ("done", "failed", "skipped", "finished")

    def __init__(self, shard: Shard, interval: float = 1.0):
        self.shard = shard
        self.interval = interval
        self.local = dict.fromkeys(self.KEYS, 0)
        self.totals = dict.fromkeys(self.KEYS, 0)
        self._last = time.monotonic()
        self.on_sync = None  # called with the totals after each sum over processes (rank 0's progress bar)

    def tick(self, **increments: int) -> dict[str, int]:
        for key, value in increments.items():
            if key not in self.local:
                raise ValueError(f"unknown count {key!r}")
            self.local[key] += value
        if not self.shard.distributed:
            self.totals = dict(self.local)
            if self.on_sync is not None:
                self.on_sync(self.totals)
        elif time.monotonic() - self._last >= self.interval:
            self._sync()
        return self.totals

    def finish(self) -> dict[str, int]:
        self.local["finished"] = 1
        if not self.shard.distributed:
            self.totals = dict(self.local)
            if self.on_sync is not None:
                self.on_sync(self.totals)
            return self.totals
        while True:
            self._sync()
            if self.totals["finished"] >= self.shard.world:
                return self.totals
            time.sleep(0.05)

    def _sync(self) -> None:
        summed = self.shard.sum_int64([self.local[k] for k in self.KEYS])
        self.totals = {k: int(v) for k, v in zip(self.KEYS, summed)}
        self._last = time.monotonic()
        if self.on_sync is not None:
            self.on_sync(self.totals)
