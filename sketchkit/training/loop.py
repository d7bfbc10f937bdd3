"""The run: weakly supervised two-level training of SketchCLIP (method.md "Level I" and "Level II").

    report = train(TrainConfig(data="fscoco/", out="runs/exp1"), progress=None)

Per optimizer step, on a global batch of `global_batch` sketch + caption pairs:
total = holistic_weight * mean over sketches + category_weight * mean over (sketch, category)
pairs of the triplet hinges of `losses.py`. Only LayerNorms, prompts, cross-attention and theta
train. The batch's sketches are split into world_size x accumulate contiguous micro-batches
(`data.micro_batches`) whose gradients are summed over micro-batches and processes
(`distributed.py`): one process, accumulation and torchrun compute the same step.

The run folder is described in `state.py`; only rank 0 writes, validates and reports events
(`events.py`); the folder must be visible to every process. A checkpoint is written at every
epoch end, every `save_every` steps and at the end, so a killed run resumes (`resume=True`) to
the parameters an uninterrupted run reaches.
"""

from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..errors import InputError, TrainingError, UsageError, WeightsError
from ..files import atomic_write_text, check_outside_inputs
from .config import TrainConfig, resume_conflicts
from .data import TrainItem, epoch_batches, load_data, load_images, micro_batches
from .distributed import Distributed, init_distributed, reduce_gradients
from .events import (EpochEnd, EpochStart, Note, Saved, Setup, Step, TrainEvent, TrainProgress, Validation,
                     ValidationProgress, ValidationStart)
from .losses import TextBank, batch_targets, micro_batch_losses
from .state import (BEST_FILE, CONFIG_FILE, LAST_FILE, METRICS_FILE, PLOT_FILE, RUN_FILES, STATE_FILE, STATE_VERSION,
                    check_like, check_param_shapes, flatten_optimizer_state, read_metrics, read_train_state, rng_states,
                    save_train_state, seed_everything, set_rng_states, unflatten_optimizer_state)


@dataclass
class TrainReport:
    """What a finished (or max_steps-stopped) run produced; paths are in the run folder."""

    out: Path
    steps: int
    epochs_completed: int
    best_metric: str | None
    best_value: float | None
    best_path: Path
    last_path: Path
    state_path: Path
    metrics_path: Path
    plot_path: Path
    threshold: list[float]
    validations: list[dict]
    seconds: float
    steps_per_second: float
    train_count: int
    val_count: int
    notes: list[str] = field(default_factory=list)
    model: Any = field(default=None, repr=False)  # the trained SketchCLIP (this process's copy)


def train(config: TrainConfig, progress: TrainProgress | None = None) -> TrainReport:
    """Train an adapter as configured; see the module docstring. Under torchrun every process calls
    this; only rank 0 validates, writes files and calls `progress.on_event(event)`."""
    config = config.validated()
    dist_info = init_distributed(config.device)
    try:
        return _Run(config, dist_info, progress).run()
    finally:
        dist_info.close()


def _lr_factor(cfg: TrainConfig, total_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.scheduler == "cosine":
            span = max(total_steps - cfg.warmup_steps, 1)
            return 0.5 * (1.0 + math.cos(math.pi * min(step - cfg.warmup_steps, span) / span))
        return 1.0

    return factor


class _Run:
    """One training run; `train()` is its public face."""

    def __init__(self, cfg: TrainConfig, dist_info: Distributed, progress: TrainProgress | None):
        self.cfg = cfg
        self.dist = dist_info
        self.device = dist_info.device
        self.progress = progress if dist_info.is_main else None
        self.out = Path(cfg.out)
        self.notes: list[str] = []
        self.history: list[dict] = []
        self.validations: list[dict] = []
        self.best_value: float | None = None
        self.best_metric: str | None = None
        self.global_step = 0
        self.epoch = 0
        self.step_in_epoch = 0
        self.validated_step = -1
        self.timed = 0.0  # seconds spent in optimizer steps by this call
        self.segmenter = None  # validation model, built at the first validation
        self.amp = cfg.amp == "bf16" or (cfg.amp == "auto" and self.device.type == "cuda")

    # ---- reporting ------------------------------------------------------------------------
    def emit(self, event: TrainEvent) -> None:
        if self.progress is not None:
            self.progress.on_event(event)

    def note(self, message: str, hint: str | None = None) -> None:
        self.notes.append(message)
        self.emit(Note(message, hint))

    def log(self, record: dict) -> None:
        self.history.append(record)
        if self.dist.is_main:
            with open(self.out / METRICS_FILE, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

    def threshold(self) -> float:
        return float(self.model.threshold().detach())

    # ---- setup ----------------------------------------------------------------------------
    def autocast(self):
        if not self.amp:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def prepare_folder(self) -> dict | None:
        """Check the run folder; returns the saved state's metadata+tensors on resume."""
        state_path = self.out / STATE_FILE
        check_outside_inputs(self.out, [self.cfg.data, self.cfg.val_data], folder=True)
        if self.cfg.resume and state_path.is_file():
            tensors, meta = read_train_state(state_path)
            read_metrics(self.out / METRICS_FILE)  # a damaged log is refused before anything starts
            return {"tensors": tensors, "meta": meta}
        if self.cfg.resume and not (self.out / CONFIG_FILE).is_file():
            raise UsageError(f"nothing to resume: {state_path} does not exist")
        # --resume of a run stopped before its first checkpoint (config.json, no state): it starts over
        fresh = self.cfg.overwrite or self.cfg.resume
        if self.out.exists() and not self.out.is_dir():
            raise UsageError(f"the run folder {self.out} is a file; give a folder for the run")
        if state_path.exists() and not fresh:
            raise UsageError(f"{self.out} already holds a training run", hint="resume")
        taken = [name for name in (*RUN_FILES, CONFIG_FILE) if (self.out / name).exists() and not fresh]
        if taken:
            raise UsageError(f"output {self.out / taken[0]} exists", hint="overwrite")
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            if fresh:  # a fresh start must not mix with the old run's files
                for name in RUN_FILES:
                    (self.out / name).unlink(missing_ok=True)
        self.dist.barrier()
        return None

    def build_model(self) -> None:
        from ..model.factory import create_encoder

        cfg = self.cfg
        model = create_encoder(cfg.backbone, weights=cfg.weights, device=self.device)
        if cfg.num_prompts is not None:
            model.set_num_prompts(cfg.num_prompts)
            model.to(self.device)
        if cfg.theta_init is not None:
            with torch.no_grad():
                model.theta.fill_(cfg.theta_init)
        model.freeze_for_finetuning()
        if not cfg.learn_threshold:
            model.theta.requires_grad_(False)
        if cfg.category_level and cfg.cross_attention:
            unknown = sorted(set(cfg.taps) - set(model.config.taps))
            if unknown:
                raise UsageError(f"taps {unknown} have no cross-attention in backbone {cfg.backbone} (it has {list(model.config.taps)})")
        self.model = model.train()
        params = dict(model.named_parameters())
        self.param_names = [n for n, p in params.items() if p.requires_grad]
        self.params = [params[n] for n in self.param_names]
        weights = [params[n] for n in self.param_names if n != "theta"]
        groups = [{"params": weights, "lr": cfg.lr, "weight_decay": cfg.weight_decay, "name": "weights"}]
        if "theta" in self.param_names:
            groups.append({"params": [params["theta"]], "lr": cfg.theta_lr, "weight_decay": 0.0, "name": "threshold"})
        self.optimizer = torch.optim.AdamW(groups)
        self.bank = TextBank(model)
        texts = [item.caption for item in self.split.train]
        if cfg.category_level:
            from ..labels import prompt_for

            texts += [prompt_for(c) for item in self.split.train for c in item.categories]
        self.bank.precompute(texts)  # training texts only: the same on every process

    def build_schedule(self, steps_per_epoch: int) -> None:
        factor = _lr_factor(self.cfg, self.cfg.epochs * steps_per_epoch)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, [factor] * len(self.optimizer.param_groups))

    # ---- state ----------------------------------------------------------------------------
    def state_meta(self) -> tuple[dict[str, torch.Tensor], dict]:
        tensors = {f"param.{n}": p.detach().float().cpu() for n, p in zip(self.param_names, self.params)}
        optim_tensors, optim_meta = flatten_optimizer_state(self.optimizer.state_dict())
        tensors.update(optim_tensors)
        meta = {
            "version": STATE_VERSION,
            "config": self.cfg.to_dict(),
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "data_order_seed": self.cfg.seed,
            "best": {"metric": self.best_metric, "value": self.best_value},
            "validated_step": self.validated_step,
            "param_names": self.param_names,
            "optimizer": optim_meta,
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_states(),
            "model": {"backbone": self.model.config.name, "fingerprint": self.model.fingerprint, "num_prompts": int(self.model.prompts.shape[0])},
            "threshold": self.threshold(),
        }
        return tensors, meta

    def check_resumable(self, meta: dict) -> None:
        path = self.out / STATE_FILE
        conflicts = resume_conflicts(meta["config"], self.cfg)
        if conflicts:
            detail = ", ".join(f"{k}={meta['config'][k]!r}" for k in conflicts)
            raise UsageError(f"a resumed run must keep the interrupted run's settings; it had {detail}")
        if meta["model"]["fingerprint"] != self.model.fingerprint:
            raise WeightsError(f"{path} was trained on other backbone weights (fingerprint {meta['model']['fingerprint']}, these are {self.model.fingerprint})")
        if meta["param_names"] != self.param_names:
            raise InputError("training state holds another set of trainable parameters", path)

    def restore(self, saved: dict) -> None:
        """Apply a checked training state (state.check_train_state); the shapes are checked here, against the
        model, before anything is applied."""
        tensors, meta = saved["tensors"], saved["meta"]
        path = self.out / STATE_FILE
        self.check_resumable(meta)
        check_param_shapes(tensors, meta, dict(zip(self.param_names, self.params)), self.optimizer, path)
        fresh = flatten_optimizer_state(self.optimizer.state_dict())[1]["param_groups"]
        check_like(meta["optimizer"]["param_groups"], fresh, path, "optimizer state")
        check_like(meta["scheduler"], self.scheduler.state_dict(), path, "scheduler state")
        try:
            self.optimizer.load_state_dict(unflatten_optimizer_state(tensors, meta["optimizer"]))
            self.scheduler.load_state_dict(meta["scheduler"])
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise InputError(f"its optimizer or scheduler state is damaged ({type(exc).__name__}: "
                             f"{' '.join(str(exc).split())[:120]})", path) from None
        with torch.no_grad():
            for name, param in zip(self.param_names, self.params):
                param.copy_(tensors[f"param.{name}"].to(param.device, param.dtype))
        set_rng_states(meta["rng"])
        self.epoch, self.step_in_epoch, self.global_step = meta["epoch"], meta["step_in_epoch"], meta["global_step"]
        self.best_metric, self.best_value = meta["best"]["metric"], meta["best"]["value"]
        self.validated_step = meta.get("validated_step", -1)
        # records written after the checkpoint (by the interrupted process) are dropped: they will be made again
        self.history = [
            r for r in read_metrics(self.out / METRICS_FILE)
            if r.get("step", 0) <= (self.validated_step if r.get("kind") == "validation" else self.global_step)
        ]
        self.validations = [r for r in self.history if r.get("kind") == "validation"]
        if self.dist.is_main:
            atomic_write_text(self.out / METRICS_FILE, "".join(json.dumps(r) + "\n" for r in self.history))
        self.dist.barrier()

    def save(self, *, final: bool = False) -> None:
        """last adapter, training state (every call) and the plot; rank 0 only."""
        if not self.dist.is_main:
            return
        from ..model.adapter import save_adapter
        from ..plots import write_plot

        save_adapter(self.model, self.out / LAST_FILE, extra=self.adapter_extra())
        tensors, meta = self.state_meta()
        save_train_state(self.out / STATE_FILE, tensors, meta)
        if final or self.step_in_epoch == 0:
            write_plot(self.history, self.out / PLOT_FILE)
        self.emit(Saved(self.global_step, self.out / STATE_FILE))

    def save_best(self, selected_by: str) -> None:
        from ..model.adapter import save_adapter

        save_adapter(self.model, self.out / BEST_FILE, extra={**self.adapter_extra(), "selected_by": selected_by})

    def adapter_extra(self) -> dict:
        return {"training": self.cfg.to_dict(), "metrics": self.validations[-1] if self.validations else {}, "epoch": self.epoch,
                "step": self.global_step, "num_prompts": int(self.model.prompts.shape[0])}

    # ---- steps ----------------------------------------------------------------------------
    def losses(self, items: Sequence[TrainItem], targets):
        images = torch.from_numpy(load_images(items, self.model.input_size)).to(self.device)
        return micro_batch_losses(self.model, images, items, targets, self.cfg, self.autocast)

    def train_step(self, items: Sequence[TrainItem]) -> dict:
        """One optimizer step on a global batch -> the loss fields of its `Step` event."""
        cfg = self.cfg
        targets = batch_targets(items, self.bank, use_categories=cfg.category_level)
        self.optimizer.zero_grad(set_to_none=True)
        sums = torch.zeros(2, device=self.device)
        for share in micro_batches(len(items), self.dist.world, cfg.accumulate, self.dist.rank):
            if not len(share):
                continue
            losses = self.losses([items[i] for i in share], targets)
            loss = (
                cfg.holistic_weight * losses.holistic / max(targets.holistic_count, 1)
                + cfg.category_weight * losses.category / max(targets.category_count, 1)
            )
            if loss.requires_grad:
                loss.backward()
            sums += torch.stack([losses.holistic.detach(), losses.category.detach()]).float()
        sums = reduce_gradients(self.params, sums, self.dist)
        self.check_finite("loss", sums)
        try:
            self.optimizer.step()
        except RuntimeError as exc:  # a step too large for float32 ("cannot be converted ... without overflow")
            if "overflow" not in str(exc):
                raise
            raise self.diverged("optimizer step") from None
        self.scheduler.step()
        self.check_finite("parameters", *self.params)
        holistic = float(sums[0]) / max(targets.holistic_count, 1)
        category = float(sums[1]) / max(targets.category_count, 1)
        return {
            "loss": cfg.holistic_weight * holistic + cfg.category_weight * category,
            "holistic": holistic if cfg.holistic else None,
            "category": category if cfg.category_level else None,
            "pairs": targets.category_count,
        }

    def check_finite(self, what: str, *tensors: torch.Tensor) -> None:
        """Stop at the first NaN or infinity (every process sees the same reduced loss), before it is saved."""
        if not all(bool(torch.isfinite(t).all()) for t in tensors):
            raise self.diverged(what)

    def diverged(self, what: str) -> TrainingError:
        return TrainingError(f"training diverged: the {what} at step {self.global_step + 1} became non-finite (NaN or "
                             f"infinity); nothing of it was saved, {self.out} keeps its last checkpoint (lower the "
                             "learning rates)")

    def step(self, items: Sequence[TrainItem], index: int) -> None:
        """Train on one global batch (position `index` in the epoch), log, report and checkpoint."""
        tick, lr = time.perf_counter(), self.optimizer.param_groups[0]["lr"]
        stats = self.train_step(items)
        elapsed = time.perf_counter() - tick
        self.timed += elapsed
        self.global_step += 1
        self.step_in_epoch = index + 1
        event = Step(epoch=self.epoch, step=self.global_step, **stats, threshold=self.threshold(), lr=lr,
                     sketches_per_s=len(items) / max(elapsed, 1e-9))
        if self.global_step % self.cfg.log_every == 0:
            self.log(event.record())
        self.emit(event)
        if self.cfg.save_every and self.global_step % self.cfg.save_every == 0:
            self.save()

    # ---- validation -----------------------------------------------------------------------
    @torch.no_grad()
    def validation_loss(self, items: Sequence[TrainItem]) -> float:
        """Mean total loss over held-out captioned sketches (used when they have no stroke labels)."""
        total, batches = 0.0, 0
        for start in range(0, len(items), self.cfg.global_batch):
            batch = items[start : start + self.cfg.global_batch]
            targets = batch_targets(batch, self.bank, use_categories=self.cfg.category_level)
            losses = self.losses(batch, targets)
            total += float(self.cfg.holistic_weight * losses.holistic / max(targets.holistic_count, 1))
            total += float(self.cfg.category_weight * losses.category / max(targets.category_count, 1))
            batches += 1
        return total / max(batches, 1)

    def validation_miou(self) -> dict:
        """Per-sketch mIoU (and Acc@P, Acc@S) of the labelled validation sketches, by the inference engine."""
        from ..evaluation import evaluate
        from ..inference.methods import sketchkit_segmenter

        sketches = self.split.val_sketches
        self.emit(ValidationStart(len(sketches)))
        if self.segmenter is None:
            self.segmenter = sketchkit_segmenter(self.model, self.device, dual=self.cfg.vv)
        report = evaluate(sketches, [self.segmenter], eval_size=self.cfg.eval_size, batch_size=self.cfg.val_batch_size,
                          on_step=lambda name, n: self.emit(ValidationProgress(n)))
        per_sketch = report.to_dict()["results"][self.segmenter.name]["per_sketch"]
        return {"metric": "val_miou", "value": per_sketch["miou"], "acc_p": per_sketch.get("acc_p"),
                "acc_s": per_sketch.get("acc_s"), "sketches": len(sketches), "eval_size": self.cfg.eval_size}

    def validate(self) -> Validation | None:
        """Rank 0: per-sketch mIoU on labelled validation sketches (else validation loss); best.safetensors
        follows the best value."""
        self.validated_step = self.global_step
        if not self.dist.is_main or not (self.split.val_sketches or self.split.val_items):
            return None
        self.model.eval()
        started = time.perf_counter()
        if self.split.val_sketches:
            scores = self.validation_miou()
        else:
            scores = {"metric": "val_loss", "value": self.validation_loss(self.split.val_items), "sketches": len(self.split.val_items)}
        self.model.train()
        value, best = scores["value"], self.best_value
        better = best is None or (value is not None and (value > best if scores["metric"] == "val_miou" else value < best))
        event = Validation(epoch=self.epoch, step=self.global_step, **scores, threshold=self.threshold(),
                           seconds=round(time.perf_counter() - started, 3), best=bool(better))
        self.validations.append(event.record())
        if better:
            self.best_metric, self.best_value = event.metric, value
            self.save_best(event.metric)
        self.log(event.record())
        self.emit(event)
        return event

    # ---- main loop ------------------------------------------------------------------------
    def setup(self) -> Setup:
        """Folder, data, model, optimizer and schedule (restored on resume) -> the Setup event."""
        cfg = self.cfg
        saved = self.prepare_folder()
        seed_everything(cfg.seed)
        self.split = load_data(cfg, with_validation=self.dist.is_main)
        for note in self.split.skipped[:20]:
            self.emit(Note(note))
        self.build_model()
        if not self.split.val_sketches and self.split.val_items:
            self.note("the validation sketches have no stroke labels: the best checkpoint is chosen by validation loss, not mIoU",
                      hint="validation")
        items = self.split.train
        steps_per_epoch = math.ceil(len(items) / cfg.global_batch)
        self.build_schedule(steps_per_epoch)
        if saved is not None:
            self.restore(saved)
        elif self.dist.is_main:
            atomic_write_text(self.out / CONFIG_FILE, json.dumps(cfg.to_dict(), indent=2) + "\n")
        total = cfg.epochs * steps_per_epoch if cfg.max_steps is None else min(cfg.max_steps, cfg.epochs * steps_per_epoch)
        return Setup(
            model=f"{self.model.config.name} ({self.model.weights_source})", device=str(self.device), world=self.dist.world,
            amp=self.amp, trainable=sum(p.numel() for p in self.params), train=len(items),
            with_categories=sum(1 for item in items if item.categories), val=self.val_count(), val_source=self.split.description,
            steps_per_epoch=steps_per_epoch, total_steps=total, epochs=cfg.epochs, start_step=self.global_step,
            start_epoch=self.epoch, resumed=saved is not None,
        )

    def val_count(self) -> int:
        return len(self.split.val_sketches) or len(self.split.val_items)

    def train_epochs(self) -> None:
        """Epochs from the current position until `epochs` or `max_steps`; each finished epoch validates and saves."""
        cfg, items = self.cfg, self.split.train
        while self.epoch < cfg.epochs:
            batches = epoch_batches(len(items), cfg.global_batch, cfg.seed, self.epoch)
            self.emit(EpochStart(self.epoch, len(batches), self.step_in_epoch))
            for index in range(self.step_in_epoch, len(batches)):
                if cfg.max_steps is not None and self.global_step >= cfg.max_steps:
                    return
                self.step([items[i] for i in batches[index]], index)
            self.validate()
            self.epoch += 1
            self.step_in_epoch = 0
            self.save()
            self.emit(EpochEnd(self.epoch, self.threshold()))

    def finish(self, started: float, steps_done: int) -> TrainReport:
        """Validate and save the final state; best.safetensors is the last state when nothing validated."""
        if self.validated_step != self.global_step:
            self.validate()
        self.save(final=True)
        self.dist.barrier()
        if self.best_value is None and self.dist.is_main:
            self.save_best("last (no validation data)")
            self.note("no validation sketches: best.safetensors is the last state", hint="validation")
        return TrainReport(
            out=self.out, steps=self.global_step, epochs_completed=self.epoch, best_metric=self.best_metric,
            best_value=self.best_value, best_path=self.out / BEST_FILE, last_path=self.out / LAST_FILE,
            state_path=self.out / STATE_FILE, metrics_path=self.out / METRICS_FILE, plot_path=self.out / PLOT_FILE,
            threshold=[r["threshold"] for r in self.history if r.get("kind") == "step"], validations=list(self.validations),
            seconds=time.perf_counter() - started, steps_per_second=steps_done / self.timed if self.timed else 0.0,
            train_count=len(self.split.train), val_count=self.val_count(), notes=self.notes, model=self.model,
        )

    def run(self) -> TrainReport:
        started = time.perf_counter()
        self.emit(self.setup())
        first_step = self.global_step
        self.train_epochs()
        return self.finish(started, self.global_step - first_step)
