"""What a run folder holds and how it is read back: resumable training state, run config, metrics log.

Run folder (`TrainConfig.out`): last.safetensors / best.safetensors adapters (+ .json sidecars),
train_state.safetensors (trainable parameters, AdamW moments, scheduler, RNG states, epoch / step
counters: tensors plus JSON metadata, no pickle), config.json, metrics.jsonl, curves.png.

    tensors, meta = read_train_state(out / STATE_FILE)
    records = read_metrics(out / METRICS_FILE)        # a torn last line from a killed run is dropped
"""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError, UsageError
from ..files import atomic_path

STATE_KEY = "sketchkit_train_state"
STATE_VERSION = 2  # 2: renamed config keys, binary-ink isolation and summed taps by default
STATE_FILE = "train_state.safetensors"
LAST_FILE = "last.safetensors"
BEST_FILE = "best.safetensors"
METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "curves.png"
CONFIG_FILE = "config.json"
RUN_FILES = (STATE_FILE, METRICS_FILE, PLOT_FILE, LAST_FILE, BEST_FILE, "last.json", "best.json")
"""The files a fresh start (overwrite) removes from a run folder."""


# ================================================================================ RNG states


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def rng_states() -> dict:
    """torch (CPU, CUDA), numpy and python RNG states as JSON-able values."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "torch": _b64(torch.get_rng_state().numpy().tobytes()),
        "cuda": [_b64(s.numpy().tobytes()) for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }


def set_rng_states(states: dict) -> None:
    def tensor(text: str) -> torch.Tensor:
        return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)

    torch.set_rng_state(tensor(states["torch"]))
    if states.get("cuda") and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([tensor(s) for s in states["cuda"]])
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ================================================================================ optimizer


def flatten_optimizer_state(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """AdamW state_dict -> (tensors "optim.<param id>.<key>", JSON part: param groups + scalar state)."""
    tensors, scalars = {}, {}
    for pid, entries in state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{pid}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    for pid, entries in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(entries)
    groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


# ============================================================================ files of a run


def save_train_state(path: Path, tensors: dict[str, torch.Tensor], meta: dict) -> Path:
    """One safetensors file: tensors + JSON metadata (no pickle); written new, fsynced, renamed."""
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata={STATE_KEY: json.dumps(meta)})
    return path


def read_train_state(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = json.loads((f.metadata() or {})[STATE_KEY])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (KeyError, json.JSONDecodeError):
        raise InputError("not a sketchkit training state (no metadata)", path) from None
    except Exception as exc:  # a truncated or foreign file
        raise InputError(f"cannot read training state ({type(exc).__name__}: {exc})", path) from None
    if meta.get("version") != STATE_VERSION:
        raise InputError(f"training state version {meta.get('version')} is not {STATE_VERSION}", path)
    return tensors, meta


def read_run_config(out: str | Path) -> dict:
    """The config a run in `out` was started with (to resume it without repeating every setting)."""
    path = Path(out) / CONFIG_FILE
    if not path.is_file():
        raise UsageError(f"nothing to resume: {path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise InputError("run config is not valid JSON", path) from None


def read_metrics(path: Path) -> list[dict]:
    """Records of a metrics.jsonl file (a torn last line from a killed run is dropped)."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
