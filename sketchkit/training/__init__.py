"""Weakly supervised two-level training of SketchCLIP (method.md "Level I" and "Level II").

    from sketchkit.training import TrainConfig, train
    report = train(TrainConfig(data="fscoco/", out="runs/exp1"))

Modules, one job each:
- `config`: `TrainConfig`, read from JSON/TOML and flags (a key is named after its `sketchkit train` flag);
- `data`: which sketches train and validate, their captions and categories, the batch order;
- `losses`: the holistic and category triplet losses and the text side they compare against;
- `state`: the run folder: resumable training state, run config, metrics log;
- `distributed`: torchrun process layout and the one gradient all_reduce per step;
- `events`: typed events and the `TrainProgress` interface that receives them;
- `loop`: the run, `train(config, progress=None) -> TrainReport`.
Defaults and the reasons for them: docs/training.md.
"""

from .config import TrainConfig, config_from_dict, load_train_config, read_config_file, resume_conflicts
from .data import DataSplit, TrainItem, caption_for_training, load_data
from .events import (EpochEnd, EpochStart, Note, Saved, Setup, Step, TrainEvent, TrainProgress, Validation,
                     ValidationProgress, ValidationStart)
from .loop import TrainReport, train
from .state import BEST_FILE, CONFIG_FILE, LAST_FILE, METRICS_FILE, PLOT_FILE, STATE_FILE, read_metrics, read_run_config, read_train_state

__all__ = [
    "BEST_FILE", "CONFIG_FILE", "DataSplit", "EpochEnd", "EpochStart", "LAST_FILE", "METRICS_FILE", "Note", "PLOT_FILE",
    "STATE_FILE", "Saved", "Setup", "Step", "TrainConfig", "TrainEvent", "TrainItem", "TrainProgress", "TrainReport",
    "Validation", "ValidationProgress", "ValidationStart", "caption_for_training", "config_from_dict", "load_data",
    "load_train_config", "read_config_file", "read_metrics", "read_run_config", "read_train_state", "resume_conflicts",
    "train",
]
