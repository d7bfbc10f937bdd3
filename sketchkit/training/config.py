"""Training configuration: one typed dataclass, read from JSON or TOML, overridden by CLI flags.

    config = load_train_config("exp.toml", overrides={"epochs": 5})   # file, then flags
    config = TrainConfig(data="fscoco/", out="runs/exp1")              # or directly

A config file holds the field names below at top level (or inside a `[train]` table / "train"
object); a key that has a `sketchkit train` flag is named after it, underscores for dashes
(`global_batch` is `--global-batch`). Unknown keys and values of the wrong type raise UsageError naming the key,
before any work starts. Defaults are the paper's (method.md): AdamW lr 1e-6 (threshold 1e-4),
16 sketches per step, 20 epochs, margin 0.3, categories at taps 7/10/12; where the paper is
silent, the reference code's (docs/training.md "Fidelity defaults").
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from ..model import DEFAULT_BACKBONE
from ..errors import UsageError

DISTANCES = ("cosine", "l1")
AMP_MODES = ("auto", "bf16", "off")
SCHEDULERS = ("constant", "cosine")
ISOLATIONS = ("binary", "scaled")
TAP_REDUCTIONS = ("sum", "mean")

# Keys renamed so that each key is its flag and each flag means what it means in segment / eval.
RENAMED = {"vocabulary": "vocab", "val_eval_size": "eval_size", "batch_size": "global_batch", "dual": "vv",
           "category": "category_level"}

# Fields a resumed run may change; every other field must equal the interrupted run's value.
RESUME_MAY_CHANGE = frozenset(
    {"out", "epochs", "max_steps", "save_every", "resume", "overwrite", "device", "val_limit", "eval_size", "val_batch_size",
     "log_every"}
)


@dataclass(frozen=True)
class TrainConfig:
    # ---- data ----------------------------------------------------------------------------
    data: str | None = None  # training sketches: FS-COCO root, FrISS root, or any sketchkit-readable folder/file
    out: str = "runs/train"  # run folder: adapters, training state, metrics.jsonl, curves.png
    captions_from_labels: bool = False  # FrISS: use the caption the reader builds from instance names
    limit: int | None = None  # use only the first N training sketches (after the split)
    vocab: str | None = None  # category names a caption is matched against (default: sketchkit's bundled list)
    max_categories: int = 3  # categories kept per caption (reference code: 3)
    # ---- validation ----------------------------------------------------------------------
    val_data: str | None = None  # labelled sketches; else the data's own `val` split, else a held-out fraction
    val_fraction: float = 0.1  # held out from --data when it has no partitions file and no --val-data
    val_limit: int | None = None  # cap the validation sketches
    eval_size: int = 512  # pixel-metric resolution of validation, as `eval --eval-size` (reference scripts: 512)
    val_batch_size: int = 16  # validation sketches encoded per batch, as `eval --batch-size`
    # ---- model ---------------------------------------------------------------------------
    backbone: str = DEFAULT_BACKBONE
    weights: str | None = None  # backbone weights file; else $SKETCHKIT_WEIGHTS, else open_clip's tag
    device: str = "auto"  # auto | cpu | cuda (torchrun: cuda:LOCAL_RANK)
    num_prompts: int | None = None  # visual prompt tokens; None = the backbone config's count (3)
    theta_init: float | None = None  # threshold parameter at the start; None = the backbone's (0.4: threshold 0.699)
    # ---- ablations (method.md "Published figures") ------------------------------------------
    vv: bool = True  # v-v dual path (False: "no v-v")
    holistic: bool = True  # Level I loss (False: "no holistic loss")
    category_level: bool = True  # Level II loss (False: "no category level")
    learn_threshold: bool = True  # soft cut with a learnable theta (False: "no threshold": hard cut, theta frozen)
    cross_attention: bool = True  # VCT anchors (False: projected scene token of the isolated sketch)
    taps: tuple[int, ...] = (7, 10, 12)  # blocks with a Level II loss; (12,) = "last layer only"
    # ---- fidelity to the reference (docs/training.md) ----------------------------------------
    isolation: str = "binary"  # binary: ink (grey <= 0.5) x soft cut, the reference's; scaled: ink x map x soft cut
    tap_reduction: str = "sum"  # category loss over the taps: sum (the reference's) | mean
    # ---- losses --------------------------------------------------------------------------
    margin: float = 0.3  # triplet margin (paper 0.3; reference code 0.5)
    distance: str = "cosine"  # cosine (1 - cos) | l1 (reference code), on L2-normalised embeddings
    holistic_weight: float = 1.0
    category_weight: float = 1.0
    sharpness: float = 50.0  # slope of the soft threshold cut (model.isolate)
    detach_maps: bool = False  # True: no gradient from Level II back into the first pass's similarity maps
    # ---- optimisation --------------------------------------------------------------------
    epochs: int = 20
    global_batch: int = 16  # sketches per optimizer step over all processes and accumulation steps
    accumulate: int = 1  # micro-batches per optimizer step (each process)
    lr: float = 1e-6  # LayerNorms, prompts, cross-attention
    theta_lr: float = 1e-4  # the threshold, own parameter group
    weight_decay: float = 0.01  # AdamW decay of the lr group (theta: none)
    scheduler: str = "constant"  # constant | cosine (over epochs x steps per epoch, after warmup)
    warmup_steps: int = 0
    amp: str = "auto"  # auto (bf16 autocast on CUDA only) | bf16 | off
    seed: int = 0  # torch, numpy, python random, data order, held-out split
    max_steps: int | None = None  # stop after N optimizer steps (still validates and saves)
    save_every: int | None = None  # also checkpoint every N steps (always: each epoch end and at the end)
    log_every: int = 1  # metrics.jsonl record every N steps
    resume: bool = False  # continue the run in `out` from its training state
    overwrite: bool = False  # start over in an `out` that already holds a run

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["taps"] = list(self.taps)
        return data

    def validated(self) -> "TrainConfig":
        """Return self after checking values that do not need the model or the data."""
        if self.data is None:
            raise UsageError("no training data given", hint="data")
        checks = [
            (self.epochs >= 1, "epochs must be at least 1"),
            (self.global_batch >= 1, "global_batch must be at least 1"),
            (self.accumulate >= 1, "accumulate must be at least 1"),
            (self.max_categories >= 1, "max_categories must be at least 1"),
            (0.0 <= self.val_fraction < 1.0, "val_fraction must be in [0, 1)"),
            (self.margin >= 0, "margin must be >= 0"),
            (self.lr > 0 and self.theta_lr > 0, "learning rates must be > 0"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (self.sharpness > 0, "sharpness must be > 0"),
            (self.distance in DISTANCES, f"distance must be one of {', '.join(DISTANCES)}"),
            (self.amp in AMP_MODES, f"amp must be one of {', '.join(AMP_MODES)}"),
            (self.scheduler in SCHEDULERS, f"scheduler must be one of {', '.join(SCHEDULERS)}"),
            (self.isolation in ISOLATIONS, f"isolation must be one of {', '.join(ISOLATIONS)}"),
            (self.tap_reduction in TAP_REDUCTIONS, f"tap_reduction must be one of {', '.join(TAP_REDUCTIONS)}"),
            (self.warmup_steps >= 0, "warmup_steps must be >= 0"),
            (self.max_steps is None or self.max_steps >= 1, "max_steps must be at least 1"),
            (self.save_every is None or self.save_every >= 1, "save_every must be at least 1"),
            (self.log_every >= 1, "log_every must be at least 1"),
            (self.limit is None or self.limit >= 1, "limit must be at least 1"),
            (self.val_limit is None or self.val_limit >= 1, "val_limit must be at least 1"),
            (self.eval_size >= 16, "eval_size must be at least 16"),
            (self.val_batch_size >= 1, "val_batch_size must be at least 1"),
            (self.num_prompts is None or self.num_prompts >= 0, "num_prompts must be >= 0"),
            (len(self.taps) >= 1 and len(set(self.taps)) == len(self.taps), "taps must list distinct block numbers"),
            (self.holistic or self.category_level, "both losses are switched off: nothing to train"),
            (not (self.resume and self.overwrite), "resume and overwrite exclude each other"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)
        return self


def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Check one config value against its annotation; ints are accepted for floats, lists for tuples."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return None if value is None else _coerce(key, value, options[0])
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise UsageError(f"config key {key!r} must be a list, not {value!r}")
        return tuple(_coerce(key, v, typing.get_args(hint)[0]) for v in value)
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint in (bool, str) and isinstance(value, hint):
        return value
    raise UsageError(f"config key {key!r} must be of type {getattr(hint, '__name__', hint)}, not {value!r}")


def config_from_dict(values: dict[str, Any], base: TrainConfig | None = None, *, source: str = "config") -> TrainConfig:
    """Apply `values` (field name -> value; None values are skipped) onto `base` (default: defaults)."""
    hints = _field_types()
    unknown = sorted(set(values) - set(hints))
    renamed = [f"{k} is now {RENAMED[k]}" for k in unknown if k in RENAMED]
    if unknown:
        raise UsageError(f"{source}: unknown key(s) {', '.join(unknown)}; " + (f"{'; '.join(renamed)}" if renamed else
                         f"known keys: {', '.join(f.name for f in fields(TrainConfig))}"))
    checked = {k: _coerce(k, v, hints[k]) for k, v in values.items() if v is not None}
    return replace(base or TrainConfig(), **checked)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A JSON (.json) or TOML (.toml) file -> dict of config keys (a `train` table is unwrapped)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"config file not found: {path}")
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        elif path.suffix.lower() == ".json":
            raw = json.loads(path.read_text(encoding="utf-8"))
        else:
            raise UsageError(f"config file {path} must end in .json or .toml")
    except (ValueError, OSError, UnicodeDecodeError) as exc:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        raise UsageError(f"cannot read config file {path}: {str(exc).splitlines()[0]}") from None
    if isinstance(raw, dict) and set(raw) == {"train"} and isinstance(raw["train"], dict):
        raw = raw["train"]
    if not isinstance(raw, dict):
        raise UsageError(f"config file {path} must hold a table/object of settings")
    return raw


def load_train_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults <- config file (if any) <- overrides (None values mean "not given")."""
    config = TrainConfig()
    if path is not None:
        config = config_from_dict(read_config_file(path), config, source=str(path))
    return config_from_dict(overrides or {}, config, source="options")


def resume_conflicts(saved: dict[str, Any], config: TrainConfig) -> list[str]:
    """Keys whose value differs from the interrupted run's and may not change on resume."""
    current = config.to_dict()
    return sorted(k for k, v in saved.items() if k in current and k not in RESUME_MAY_CHANGE and current[k] != v)
