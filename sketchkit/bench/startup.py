"""Section 4, startup: a cold `python -m sketchkit.cli segment FILE` in a fresh process (the benchmarked backbone
reading a local weights file, else tiny-random), the CLI's import time, and the build time of the benchmarked
backbone in this process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from ..model import DEFAULT_BACKBONE
from .report import Startup


def timed_subprocess(args: list[str], timeout: float = 600) -> tuple[float | None, str]:
    """Wall seconds of a subprocess, or None and why (exit code and last line, or the timeout)."""
    start = time.perf_counter()
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f} s"
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout).strip().splitlines() if line.strip()]
        return None, f"exit {done.returncode}: {lines[-1] if lines else 'no output'}"
    return elapsed, ""


def bench_startup(sample: Path, labels: Sequence[str], model_build_s: float, model: str,
                  weights: str | None = None, backbone: str = DEFAULT_BACKBONE) -> Startup:
    """Cold start in fresh processes: CLI import, and one `segment` of one file. With a local weights
    file that is the benchmarked backbone reading it (the "cached weights" case); without one, the
    tiny backbone (the same code path; a download is not a start-up cost)."""
    python = sys.executable
    import_s, import_error = timed_subprocess([python, "-c", "import sketchkit.cli.app"])
    model_args = ["--backbone", backbone, "--weights", str(weights)] if weights else ["--backbone", "tiny-random"]
    with tempfile.TemporaryDirectory(prefix="sketchkit-bench-") as tmp:
        args = [python, "-m", "sketchkit.cli", "segment", str(sample), *model_args, "--labels",
                ",".join(labels), "--out", str(Path(tmp) / "cold.svg"), "--format", "svg", "--quiet"]
        segment_s, segment_error = timed_subprocess(args)
    shown = f"--backbone {backbone} --weights {Path(weights).name}" if weights else "--backbone tiny-random"
    command = f"python -m sketchkit.cli segment {sample.name} {shown} --labels ..."
    note = "; ".join(e for e in (import_error and f"import: {import_error}", segment_error and f"segment: {segment_error}") if e)
    return Startup(import_s, segment_s, command, model_build_s, model, note, backbone if weights else "tiny-random")
