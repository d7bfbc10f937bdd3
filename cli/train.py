"""`sketchkit train` and `sketchkit import-checkpoint`: fine-tune an adapter from sketch + caption pairs.

Examples:
    sketchkit train --data fscoco/ --epochs 20 --out runs/exp1
    sketchkit train --data ../shared/data/friss --captions-from-labels --epochs 1 --out runs/smoke
    sketchkit train --config exp.toml --no-cross-attention --out runs/ablation-no-ca
    sketchkit train --out runs/exp1 --resume                       # continue an interrupted run
    torchrun --nproc-per-node 8 -m sketchkit.cli train --data fscoco/ --out runs/exp1
    sketchkit import-checkpoint reference.pt ref-adapter.safetensors --backbone ViT-B-16

Settings come from the defaults, then --config (JSON or TOML), then the flags given on the command
line. A config key is named after its flag, underscores for dashes (`global_batch` = `--global-batch`).
Flags shared with `segment` and `eval` mean the same here: --vocab (the names a caption is matched
against), --eval-size (pixel-metric resolution, of validation here), --limit, --backbone, --weights,
--device. `train` has no --batch-size, because there it would mean something else: --global-batch
is the number of sketches per optimizer step (over all processes and accumulation steps), and
--val-batch-size is what `eval --batch-size` is, the sketches encoded per validation batch.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.text import Text

from ._errors import Interrupted, hinted
from ._options import OverwriteOpt, QuietOpt, WeightsOpt, progress, stderr, stdout

BackboneFlag = Annotated[Optional[str], typer.Option("--backbone", help="Backbone config: ViT-B-16 (default) or tiny-random (random weights, tests/demos).")]


def train(
    data: Annotated[Optional[Path], typer.Option("--data", "-d", help="Training sketches with captions: FS-COCO root, a folder with caption .txt files, or FrISS (with --captions-from-labels).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run folder (adapters, training state, metrics.jsonl, curves.png).")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="Settings file (.json or .toml, keys = flag names with underscores); flags override it.")] = None,
    captions_from_labels: Annotated[Optional[bool], typer.Option("--captions-from-labels", help="Build captions from stroke labels (FrISS instance names).")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Use only the first N training sketches.")] = None,
    vocab: Annotated[Optional[Path], typer.Option("--vocab", help="Category names a caption is matched against (default: bundled list), as in segment.")] = None,
    max_categories: Annotated[Optional[int], typer.Option("--max-categories", min=1, help="Categories per caption (default 3).")] = None,
    val_data: Annotated[Optional[Path], typer.Option("--val-data", help="Labelled validation sketches (default: the data's 'val' split, else a held-out fraction).")] = None,
    val_fraction: Annotated[Optional[float], typer.Option("--val-fraction", min=0.0, max=0.99, help="Held-out share without partitions or --val-data (default 0.1).")] = None,
    val_limit: Annotated[Optional[int], typer.Option("--val-limit", min=1, help="Validate on at most N sketches.")] = None,
    eval_size: Annotated[Optional[int], typer.Option("--eval-size", min=16, help="Validation pixel-metric resolution, as in eval (default 512).")] = None,
    val_batch_size: Annotated[Optional[int], typer.Option("--val-batch-size", min=1, help="Sketches encoded per validation batch, as eval's --batch-size (default 16).")] = None,
    backbone: BackboneFlag = None,
    weights: WeightsOpt = None,
    device: Annotated[Optional[str], typer.Option("--device", help="auto | cpu | cuda")] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", min=1, help="Epochs (default 20).")] = None,
    global_batch: Annotated[Optional[int], typer.Option("--global-batch", min=1, help="Sketches per optimizer step, over all processes and accumulation steps (default 16).")] = None,
    accumulate: Annotated[Optional[int], typer.Option("--accumulate", min=1, help="Micro-batches per step and process (gradient accumulation).")] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", help="AdamW learning rate of LayerNorms, prompts, cross-attention (default 1e-6).")] = None,
    theta_lr: Annotated[Optional[float], typer.Option("--theta-lr", help="Learning rate of the threshold (default 1e-4).")] = None,
    margin: Annotated[Optional[float], typer.Option("--margin", help="Triplet margin (default 0.3).")] = None,
    distance: Annotated[Optional[str], typer.Option("--distance", help="cosine (default) | l1 (reference code).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed of torch, numpy, random and the data order.")] = None,
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", min=1, help="Stop after N optimizer steps (still validates and saves).")] = None,
    save_every: Annotated[Optional[int], typer.Option("--save-every", min=1, help="Also checkpoint every N steps (always at each epoch end).")] = None,
    amp: Annotated[Optional[str], typer.Option("--amp", help="auto (bf16 on CUDA) | bf16 | off")] = None,
    vv: Annotated[Optional[bool], typer.Option("--vv/--no-vv", help="v-v dual path (ablation: --no-vv).")] = None,
    holistic: Annotated[Optional[bool], typer.Option("--holistic/--no-holistic", help="Level I loss.")] = None,
    category_level: Annotated[Optional[bool], typer.Option("--category-level/--no-category-level", help="Level II loss.")] = None,
    learn_threshold: Annotated[Optional[bool], typer.Option("--learn-threshold/--no-threshold", help="Learnable soft threshold (ablation: hard cut, theta frozen).")] = None,
    cross_attention: Annotated[Optional[bool], typer.Option("--cross-attention/--no-cross-attention", help="VCT anchors (ablation: scene token of the isolated sketch).")] = None,
    last_layer_only: Annotated[bool, typer.Option("--last-layer-only", help="Level II loss at block 12 only (same as --taps 12).")] = False,
    taps: Annotated[Optional[str], typer.Option("--taps", help="Comma list of blocks with a Level II loss (default 7,10,12).")] = None,
    num_prompts: Annotated[Optional[int], typer.Option("--num-prompts", min=0, help="Visual prompt tokens (default 3; 0 = no prompts).")] = None,
    isolation: Annotated[Optional[str], typer.Option("--isolation", help="binary (default, the reference's: binary ink x soft cut) | scaled (ink x map x soft cut).")] = None,
    tap_reduction: Annotated[Optional[str], typer.Option("--tap-reduction", help="Category loss over the taps: sum (default, the reference's) | mean.")] = None,
    theta_init: Annotated[Optional[float], typer.Option("--theta-init", help="Threshold parameter at the start (default 0.4: threshold 0.4 + 0.5 sigmoid(0.4) = 0.699, the reference's).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its training state.")] = False,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Fine-tune LayerNorms, prompts, cross-attention and the threshold with the two-level triplet losses.

    Example: sketchkit train --data ../shared/data/friss --captions-from-labels --backbone tiny-random --max-steps 2 --out runs/smoke
    """
    given = dict(locals())  # every option that sets a config key is named after it
    from sketchkit.training import TrainConfig, train as run_training

    settings = _settings(config, {f.name: given[f.name] for f in fields(TrainConfig) if f.name in given}, last_layer_only)
    bars = _Bars(quiet)
    with bars:
        try:
            report = run_training(settings, bars)
        except KeyboardInterrupt:
            raise Interrupted(_interrupted_line(Path(settings.out))) from None
    stdout.print(Text(str(report.best_path) if quiet else _summary(report)), highlight=False, soft_wrap=True)


def _summary(report) -> str:
    best = f"{report.best_metric} {report.best_value:.4f}" if report.best_value is not None else "no validation"
    moved = f"{report.threshold[0]:.6f} -> {report.threshold[-1]:.6f}" if report.threshold else "n/a"
    return (f"trained {report.steps} steps ({report.epochs_completed} epochs done) on {report.train_count} sketches, "
            f"{report.steps_per_second:.2f} steps/s; threshold {moved}; best {best}\n"
            f"best adapter: {report.best_path}\nlast adapter: {report.last_path}\nresume state: {report.state_path}\n"
            f"metrics: {report.metrics_path}  plot: {report.plot_path}")


def _taps(spec: str | None, last_layer_only: bool) -> list[int] | None:
    from sketchkit.errors import UsageError

    if last_layer_only:
        return [12]
    if spec is None:
        return None
    try:
        return [int(t) for t in spec.split(",") if t.strip()]
    except ValueError:
        raise UsageError(f"--taps must be a comma list of block numbers, not {spec!r}") from None


def _settings(config: Path | None, flags: dict, last_layer_only: bool):
    """Defaults <- config file (or, for a bare --resume, the run's own config.json) <- the flags given."""
    from sketchkit.errors import UsageError
    from sketchkit.training import config_from_dict, load_train_config, read_run_config

    flags = {k: (str(v) if isinstance(v, Path) else v) for k, v in flags.items()}
    flags.update(taps=_taps(flags["taps"], last_layer_only), resume=flags["resume"] or None, overwrite=flags["overwrite"] or None)
    if not (flags["resume"] and config is None and flags["data"] is None):
        return load_train_config(config, flags)
    if flags["out"] is None:
        raise UsageError("--resume needs --out (the run folder to continue)")
    saved = read_run_config(flags["out"])
    saved.pop("out", None)
    return config_from_dict(flags, config_from_dict(saved, source=f"{flags['out']}/config.json"), source="options")


def _interrupted_line(out: Path) -> Text:
    from sketchkit.training import STATE_FILE

    if (out / STATE_FILE).is_file():
        return Text.assemble(("Training interrupted;", "yellow"), f" the last checkpoint in {out} is kept: continue "
                             f"with `sketchkit train --out {out} --resume`")
    return Text.assemble(("Training interrupted", "yellow"), f" before its first checkpoint: `sketchkit train --out {out} "
                         "--resume` starts it over")


class _Bars:
    """The run's `TrainProgress`: rich epoch / step / validation bars and plain-text lines on stderr
    (nothing with --quiet)."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.bar = progress(disable=quiet)
        self.epoch_task = self.step_task = self.val_task = None

    def __enter__(self) -> "_Bars":
        self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.stop()

    def say(self, *parts) -> None:
        if not self.quiet:
            self.bar.console.print(Text.assemble(*parts), highlight=False, soft_wrap=True)

    def on_event(self, event) -> None:
        from sketchkit.training import (EpochEnd, EpochStart, Note, Saved, Setup, Step, Validation, ValidationProgress,
                                        ValidationStart)

        bar = self.bar
        match event:
            case Setup():
                self.say(_setup_line(event))
                self.epoch_task = bar.add_task("epochs", total=event.epochs, completed=event.start_epoch)
            case EpochStart():
                if self.step_task is not None:
                    bar.remove_task(self.step_task)
                self.step_task = bar.add_task(f"epoch {event.epoch + 1}", total=event.steps, completed=event.done)
            case Step() if self.step_task is not None:
                bar.update(self.step_task, advance=1, description=_step_line(event))
            case Saved() if self.epoch_task is not None:
                bar.update(self.epoch_task, description=f"epochs (checkpoint: step {event.step})")
            case EpochEnd() if self.epoch_task is not None:
                bar.update(self.epoch_task, advance=1)
            case ValidationStart():
                self.val_task = bar.add_task("validation", total=event.count)
            case ValidationProgress() if self.val_task is not None:
                bar.advance(self.val_task, event.advance)
            case Validation():
                if self.val_task is not None:
                    bar.remove_task(self.val_task)
                    self.val_task = None
                value = "n/a" if event.value is None else f"{event.value:.4f}"
                self.say(f"step {event.step}: {event.metric} {value} (threshold {event.threshold:.6f})",
                         (" best", "green") if event.best else "")
            case Note():
                self.say(("Note:", "yellow"), " ", hinted(event.message, event.hint))


def _setup_line(event) -> str:
    resumed = f"; resumed at step {event.start_step}" if event.resumed else ""
    return (f"model {event.model} on {event.device} x{event.world} (bf16 autocast: {event.amp}); {event.trainable:,} trainable "
            f"values; {event.train} training sketches ({event.with_categories} with categories); {event.val} validation "
            f"sketches from {event.val_source}{resumed}")


def _step_line(event) -> str:
    category = f" cat {event.category:.4f}" if event.category is not None else ""
    holistic = f" hol {event.holistic:.4f}" if event.holistic is not None else ""
    return f"epoch {event.epoch + 1} loss {event.loss:.4f}{holistic}{category} thr {event.threshold:.6f} {event.sketches_per_s:.1f} sk/s"


def import_checkpoint(
    reference: Annotated[Path, typer.Argument(help="The reference code's checkpoint (train.py's state dict, read with torch.load(weights_only=True)).")],
    out: Annotated[Path, typer.Argument(help="The imported model to write (.safetensors; a .json sidecar beside it).")],
    backbone: Annotated[Optional[str], typer.Option("--backbone", help="The CLIP it was fine-tuned from. Default: ViT-B-16 (OpenAI weights, resolved like segment's), or with --weights the sizes of that file.")] = None,
    weights: WeightsOpt = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Import the reference code's released checkpoint losslessly, to run it with --scoring reference.

    Example: sketchkit import-checkpoint checkpoint.pth reference.safetensors   (then: eval --adapter reference.safetensors)
    """
    from sketchkit.model.import_checkpoint import import_checkpoint as run_import

    from sketchkit.model import DEFAULT_BACKBONE

    report = run_import(reference, out, backbone=backbone or (None if weights else DEFAULT_BACKBONE),
                        weights=str(weights) if weights else None, overwrite=overwrite)
    if not quiet:
        stderr.print(Text(report.summary()), highlight=False, soft_wrap=True)
    stdout.print(Text(str(report.out)), highlight=False, soft_wrap=True)
