"""Shared fixtures. Real sketches come from ../shared/data beside the repository."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

# Without a CUDA GPU the Triton kernels run in the interpreter; triton reads this when a kernel is defined (import).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not available: {path} is absent (expects ../shared/data beside the repo)")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return _need(SHARED_DATA)


@pytest.fixture(scope="session")
def friss_dir() -> Path:
    return _need(SHARED_DATA / "friss")


@pytest.fixture(scope="session")
def friss_test_files(friss_dir) -> list[Path]:
    """The FrISS test split, in data_partitions.json order."""
    parts = json.loads((friss_dir / "data_partitions.json").read_text())
    files = [friss_dir / "test" / f"{name}.json" for name in parts["test"]]
    return [f for f in files if f.exists()] or sorted((friss_dir / "test").glob("*.json"))


@pytest.fixture(scope="session")
def fscoco_bitmaps(shared_data) -> list[Path]:
    return sorted(_need(shared_data / "bitmaps").glob("fscoco_demo_*.png"))


@pytest.fixture(scope="session")
def tiny_encoder():
    """The tiny open_clip-compatible backbone with random weights from a fixed seed (built once)."""
    from sketchkit.model.factory import create_encoder

    return create_encoder("tiny-random", device="cpu")


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory, tiny_encoder):
    """The tiny backbone saved as a safetensors state dict, as a user's --weights file would be."""
    from sketchkit.model.factory import save_backbone_weights

    return save_backbone_weights(tiny_encoder, tmp_path_factory.mktemp("weights") / "tiny.safetensors")
