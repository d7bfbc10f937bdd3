"""Output claims (`sketchkit.files.claim_outputs`): one writer per output set, stale claims taken over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from sketchkit.files import claim_outputs, claim_path


def test_a_claim_is_exclusive_until_released(tmp_path):
    base = tmp_path / "out" / "scene"
    first = claim_outputs(base)
    assert first is not None and not first.stale and first.held
    assert claim_path(base) == tmp_path / "out" / ".scene.claim" and claim_path(base).exists()
    assert claim_outputs(base) is None, "a second claim (even from this process) is refused while held"
    first.release()
    assert not claim_path(base).exists(), "a complete set leaves no claim file"
    again = claim_outputs(base)
    assert again is not None and not again.stale
    again.release()


def test_an_incomplete_release_keeps_the_claim_file_as_a_mark(tmp_path):
    base = tmp_path / "scene"
    claim = claim_outputs(base)
    claim.release(complete=False)  # e.g. the svg was written, the h5 failed
    assert claim_path(base).exists()
    taken = claim_outputs(base)
    assert taken is not None and taken.stale, "the next writer sees a partial set"
    try:
        with taken:
            raise OSError("the redo failed too")
    except OSError:
        pass
    assert claim_path(base).exists(), "a failed redo of a partial set keeps the mark"
    with claim_outputs(base):
        pass  # a redo that completes
    assert not claim_path(base).exists()


def test_a_killed_holder_leaves_a_stale_claim_that_is_taken_over(tmp_path):
    base = tmp_path / "scene"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from sketchkit.files import claim_outputs\n"
        f"claim = claim_outputs({str(base)!r})\n"
        "print('held', flush=True)\n"
        "time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert claim_outputs(base) is None, "held by a live process in another process"
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    deadline = time.monotonic() + 10
    claim = None
    while claim is None and time.monotonic() < deadline:
        claim = claim_outputs(base)
    assert claim is not None and claim.stale
    claim.release()
