"""What a run reports while it trains: typed events, and the one interface that receives them.

    class Printer:                                  # any object with on_event is a TrainProgress
        def on_event(self, event):
            if isinstance(event, Step):
                print(event.step, event.loss)

    train(config, progress=Printer())

Only rank 0 reports. Events arrive in this order: Note* Setup, then per epoch EpochStart, Step per
optimizer step (Saved after a periodic checkpoint), ValidationStart, ValidationProgress*,
Validation, Saved, EpochEnd; a run stopped by max_steps validates and saves once more at the end.
`Step.record()` and `Validation.record()` are the lines of metrics.jsonl.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol, Union


@dataclass(frozen=True)
class Note:
    """Something the user should know (skipped files, how the best checkpoint is chosen).

    hint: a key of sketchkit.errors.HINTS naming what the user can change, or None."""

    message: str
    hint: str | None = None


@dataclass(frozen=True)
class Setup:
    """The run is ready: model, data and schedule, before the first step."""

    model: str  # backbone name and where its weights came from
    device: str
    world: int  # processes
    amp: bool  # bf16 autocast
    trainable: int  # trainable values
    train: int  # training sketches
    with_categories: int  # training sketches whose caption yields a category
    val: int  # validation sketches
    val_source: str  # where they come from, in words
    steps_per_epoch: int
    total_steps: int
    epochs: int
    start_step: int
    start_epoch: int
    resumed: bool


@dataclass(frozen=True)
class EpochStart:
    epoch: int  # 0-based
    steps: int  # optimizer steps in this epoch
    done: int  # steps already done (a resumed epoch)


@dataclass(frozen=True)
class Step:
    """One optimizer step done. Losses are per anchor; holistic / category are None when switched off."""

    epoch: int
    step: int  # global step, 1-based
    loss: float
    holistic: float | None
    category: float | None
    pairs: int  # (sketch, category) pairs with a negative in the global batch
    threshold: float
    lr: float
    sketches_per_s: float

    def record(self) -> dict:
        return {"kind": "step", **asdict(self)}


@dataclass(frozen=True)
class EpochEnd:
    epoch: int  # epochs completed
    threshold: float


@dataclass(frozen=True)
class ValidationStart:
    count: int  # sketches to score


@dataclass(frozen=True)
class ValidationProgress:
    advance: int  # sketches scored since the last report


@dataclass(frozen=True)
class Validation:
    """A validation done: per-sketch mIoU ("val_miou") on labelled sketches, else the loss ("val_loss")."""

    epoch: int
    step: int
    metric: str
    value: float | None
    sketches: int
    threshold: float
    seconds: float
    best: bool  # the best so far: best.safetensors now holds this state
    acc_p: float | None = None
    acc_s: float | None = None
    eval_size: int | None = None

    def record(self) -> dict:
        optional = ("acc_p", "acc_s", "eval_size")
        return {"kind": "validation", **{k: v for k, v in asdict(self).items() if k not in optional or v is not None}}


@dataclass(frozen=True)
class Saved:
    """A checkpoint (last adapter + training state) is on disk; a resume continues from `step`."""

    step: int
    path: Path


TrainEvent = Union[Note, Setup, EpochStart, Step, EpochEnd, ValidationStart, ValidationProgress, Validation, Saved]


class TrainProgress(Protocol):
    """Receives a run's events (rank 0 only). An exception raised here stops the run, like a crash:
    the last checkpoint stays on disk."""

    def on_event(self, event: TrainEvent) -> None: ...
