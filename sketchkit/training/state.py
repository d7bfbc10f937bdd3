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
import math
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
    """(tensors, metadata) of a training state, checked whole (`check_train_state`): InputError naming the
    file for anything damaged, before any of it is used."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            text = (f.metadata() or {}).get(STATE_KEY)
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # a truncated or foreign file
        raise InputError(f"cannot read training state ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})",
                         path) from None
    if text is None:
        raise InputError("not a sketchkit training state (no metadata)", path)
    meta = _parse_json(text, path, "its metadata")
    if not isinstance(meta, dict):
        raise InputError("its metadata is not a JSON object", path)
    if meta.get("version") != STATE_VERSION:
        raise InputError(f"training state version {meta.get('version')} is not {STATE_VERSION}", path)
    check_train_state(tensors, meta, path)
    return tensors, meta


def _parse_json(text: str, path: Path, what: str):
    from ..io.jsontext import load_json

    return load_json(text, path, where=f"{what} is ")


MAX_COUNT = 2**53
"""Counters (epochs, steps) past this are no count a run reaches (and lose precision as floats)."""

_META_TYPES = {"config": dict, "epoch": int, "step_in_epoch": int, "global_step": int, "best": dict,
               "param_names": list, "optimizer": dict, "scheduler": dict, "rng": dict, "model": dict}


def check_train_state(tensors: dict[str, torch.Tensor], meta: dict, path: Path) -> None:
    """Everything resuming uses, checked before any of it is applied: keys and types of the metadata,
    counters >= 0, one finite tensor per trainable parameter, finite optimizer moments, RNG states that
    torch, numpy and Python accept. Shapes against the model: `check_param_shapes`."""
    for key, kind in _META_TYPES.items():
        value = meta.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise InputError(f"its metadata lacks a valid {key!r} ({kind.__name__} expected, found {value!r:.60})", path)
    for key in ("epoch", "step_in_epoch", "global_step"):
        if not 0 <= meta[key] < MAX_COUNT:
            raise InputError(f"its metadata has {key} = {meta[key]}, not a count", path)
    if not isinstance(meta.get("validated_step", -1), int) or not all(isinstance(n, str) for n in meta["param_names"]):
        raise InputError("its metadata lists parameters or steps that are not names and numbers", path)
    if not isinstance(meta["optimizer"].get("param_groups"), list) or not isinstance(meta["optimizer"].get("scalars"), dict):
        raise InputError("its optimizer state lacks param_groups or scalars", path)
    best = meta["best"].get("value")
    if not isinstance(meta["model"].get("fingerprint"), (str, type(None))) or "metric" not in meta["best"] \
            or not (best is None or isinstance(best, (int, float)) and math.isfinite(best)):
        raise InputError("its metadata lacks the model fingerprint or a valid record of the best checkpoint", path)
    missing = [n for n in meta["param_names"] if f"param.{n}" not in tensors]
    if missing:
        raise InputError(f"the parameter {missing[0]} is missing", path)
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise InputError(f"{name} holds non-finite values (NaN or infinity): the run diverged before this "
                             "checkpoint; start over", path)
    _check_rng(meta["rng"], path)


def check_param_shapes(tensors: dict[str, torch.Tensor], meta: dict, params: dict[str, torch.Tensor], optimizer,
                       path: Path) -> None:
    """Each saved parameter (`params`: name -> the model's), and its AdamW moments, has its model parameter's
    shape; the saved optimizer has the model's parameter groups."""
    saved_groups = meta["optimizer"]["param_groups"]
    if len(saved_groups) != len(optimizer.param_groups):
        raise InputError(f"its optimizer has {len(saved_groups)} parameter groups, the model's {len(optimizer.param_groups)}",
                         path)
    expected = {f"param.{name}": param for name, param in params.items()}
    for saved, group in zip(saved_groups, optimizer.param_groups):
        pids = saved.get("params") if isinstance(saved, dict) else None
        if not isinstance(pids, list) or len(pids) != len(group["params"]):
            raise InputError("its optimizer's parameter groups do not match the model's", path)
        expected.update({f"optim.{pid}.{key}": param for pid, param in zip(pids, group["params"])
                         for key in ("exp_avg", "exp_avg_sq")})
    for key, param in expected.items():
        if key in tensors and tuple(tensors[key].shape) != tuple(param.shape):
            raise InputError(f"{key} has shape {tuple(tensors[key].shape)}, the model's is {tuple(param.shape)}", path)


def check_like(saved, fresh, path: Path, where: str) -> None:
    """`saved` (JSON read from a state file) has the structure and kinds of `fresh` (what this run saves in
    its place: an optimizer's parameter groups, a scheduler's state): the same keys and list lengths, whole
    numbers for ints, finite numbers for floats, text for text; where `fresh` is None, any plain value."""
    def bad(why: str) -> InputError:
        return InputError(f"its {where} is damaged ({why})", path)

    if isinstance(fresh, dict):
        if not isinstance(saved, dict):
            raise bad(f"{saved!r:.40} where an object belongs")
        for key, value in fresh.items():
            if key not in saved:
                raise bad(f"{key!r} is missing")
            check_like(saved[key], value, path, where)
    elif isinstance(fresh, (list, tuple)):
        if not isinstance(saved, list) or len(saved) != len(fresh):
            raise bad(f"{saved!r:.40} where a list of {len(fresh)} belongs")
        for item, value in zip(saved, fresh):
            check_like(item, value, path, where)
    elif fresh is None:
        if isinstance(saved, (dict, list)):
            raise bad(f"{saved!r:.40} where a plain value belongs")
    elif isinstance(fresh, (bool, str)):
        if type(saved) is not type(fresh):
            raise bad(f"{saved!r:.40} where {type(fresh).__name__} belongs")
    elif isinstance(fresh, (int, float)):
        whole = isinstance(fresh, int)
        if isinstance(saved, bool) or not isinstance(saved, int if whole else (int, float)) \
                or not (math.isfinite(saved) and abs(saved) < MAX_COUNT):
            raise bad(f"{saved!r:.40} where {'a whole' if whole else 'a finite'} number belongs")


def _check_rng(states: dict, path: Path) -> None:
    """Set the saved RNG states once (torch, numpy and Python check them), then put the current ones back."""
    current = rng_states()
    try:
        set_rng_states(states)
    except Exception as exc:
        raise InputError(f"its RNG states are damaged ({type(exc).__name__})", path) from None
    finally:
        set_rng_states(current)


def read_run_config(out: str | Path) -> dict:
    """The config a run in `out` was started with (to resume it without repeating every setting)."""
    path = Path(out) / CONFIG_FILE
    if not path.is_file():
        raise UsageError(f"nothing to resume: {path} does not exist")
    config = _parse_json(_read_text(path), path, "the run config")
    if not isinstance(config, dict):
        raise InputError("the run config is not a JSON object", path)
    return config


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte {exc.start})", path) from None


def read_metrics(path: Path) -> list[dict]:
    """Records of a metrics.jsonl file (a torn last line from a killed run is dropped); InputError for a file
    that is not text, a damaged line before the last, or a record that is not an object with a numeric step."""
    if not path.is_file():
        return []
    from ..io.jsontext import load_json

    lines = _read_text(path).splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        try:
            record = load_json(line)
        except InputError:
            if number == len(lines):
                break  # torn by a kill
            raise InputError(f"line {number} is not valid JSON", path) from None
        if not isinstance(record, dict) or not isinstance(record.get("step", 0), (int, float)):
            raise InputError(f"line {number} is not a metrics record (a JSON object with a numeric step)", path)
        records.append(record)
    return records
