"""How the bench measures: timers, peak memory, the matmul ceiling and the machine's load.

CPU: `cpu_time` (warm-up, then at least `repeats` calls and MIN_CPU_SECONDS, median). CUDA: `gpu_time`
(triton.testing.do_bench, median). The Triton interpreter is never timed (`triton_timeable`).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from .report import Ceiling

MIN_CPU_SECONDS = 0.2  # CPU timer: keep calling until this much time was measured (short calls get more repeats)
MAX_CPU_CALLS = 1000
CEILING_SIZE = {"cuda": 8192, "cpu": 2048}  # square matmul side for the FLOP ceiling


def cpu_time(fn: Callable[[], object], *, repeats: int = 5, warmup: int = 1, min_seconds: float = MIN_CPU_SECONDS) -> float:
    """Median wall seconds of fn() on CPU: `warmup` untimed calls, then at least `repeats` timed calls, continuing
    (up to MAX_CPU_CALLS) until `min_seconds` were measured, so millisecond calls are not timed just five times."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    while len(times) < repeats or (sum(times) < min_seconds and len(times) < MAX_CPU_CALLS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def gpu_time(fn: Callable[[], object]) -> float:
    """Median seconds of fn() on CUDA via triton.testing.do_bench (which warms up and synchronises)."""
    from triton.testing import do_bench

    return do_bench(fn, return_mode="median") / 1e3


def timer_for(device: torch.device, repeats: int) -> Callable[[Callable[[], object]], float]:
    """The run's timer: seconds of one call of a function, the median of several."""
    return gpu_time if device.type == "cuda" else (lambda fn: cpu_time(fn, repeats=repeats))


def timer_description(device: torch.device, repeats: int) -> str:
    if device.type == "cuda":
        return "triton.testing.do_bench, median"
    return f"perf_counter, median of >= {repeats} calls (>= {MIN_CPU_SECONDS} s) after a warm-up call"


def triton_timeable(device: torch.device) -> bool:
    """The fused kernel can be timed: a CUDA device, triton installed, and not the interpreter."""
    from ..kernels.dual_attention import KERNEL_INTERPRETED, TRITON_AVAILABLE

    return device.type == "cuda" and TRITON_AVAILABLE and not KERNEL_INTERPRETED


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is not positive."""
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


class PeakMemory:
    """Peak memory of a stretch of work: `reset()` before, `megabytes()` after.

    CUDA: torch.cuda.max_memory_allocated. CPU: the process's RSS high-water mark from getrusage, reset before each
    row through /proc/self/clear_refs where Linux allows (else cumulative, and `description` says so).
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.per_row = device.type == "cuda" or self._clear_refs()
        if device.type == "cuda":
            self.description = "torch.cuda.max_memory_allocated per row"
        elif self.per_row:
            self.description = "RSS high-water mark (getrusage ru_maxrss), reset per row via /proc/self/clear_refs"
        else:
            self.description = "process RSS high-water mark (getrusage ru_maxrss), cumulative: cannot reset here"

    @staticmethod
    def _clear_refs() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")  # Linux: reset the peak RSS (VmHWM) to the current RSS
            return True
        except OSError:
            return False

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self.per_row:
            self._clear_refs()

    def megabytes(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        import resource  # POSIX only

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def matmul_ceiling(device: torch.device, dtype: torch.dtype, timer: Callable, size: int | None = None) -> Ceiling:
    """GFLOP/s of one large square matmul in `dtype`: the practical compute ceiling of this device."""
    size = size or CEILING_SIZE[device.type]
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    b = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    out = torch.empty(size, size, device=device, dtype=dtype)
    seconds = timer(lambda: torch.mm(a, b, out=out))
    return Ceiling(dtype=str(dtype).replace("torch.", ""), size=size, seconds=seconds, gflops=2 * size**3 / seconds / 1e9)


def load_average() -> float | None:
    """The 1-minute load average: other processes competing for the cores spoil timings."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name and core count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    import platform

    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
