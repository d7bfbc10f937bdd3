"""`sketchkit train` and `sketchkit import-checkpoint`: fine-tune an adapter from sketch + caption pairs.

Examples:
    sketchkit train --data fscoco/ --epochs 20 --out runs/exp1
    sketchkit train --data ../shared/data/friss --captions-from-labels --epochs 1 --out runs/smoke
    sketchkit train --config exp.toml --no-cross-attention --out runs/ablation-no-ca
    sketchkit train --out runs/exp1 --resume                       # continue an interrupted run
    torchrun --nproc-per-node 8 -m sketchkit.cli train --data fscoco/ --out runs/exp1
    sketchkit import-checkpoint reference.pt ref-adapter.safetensors --backbone ViT-B-16

Settings come from the defaults, then --config (JSON or TOML with the same names as the flags,
underscores for dashes), then the flags given on the command line.
"""

from __future__ import annotations

import signal
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._options import OverwriteOpt, QuietOpt, WeightsOpt, progress, stderr, stdout

BackboneFlag = Annotated[Optional[str], typer.Option("--backbone", help="Backbone config: ViT-B-16 (default) or tiny-random (random weights, tests/demos).")]


def train(
    data: Annotated[Optional[Path], typer.Option("--data", "-d", help="Training sketches with captions: FS-COCO root, a folder with caption .txt files, or FrISS (with --captions-from-labels).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run folder (adapters, training state, metrics.jsonl, curves.png).")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="Settings file (.json or .toml); flags override it.")] = None,
    captions_from_labels: Annotated[Optional[bool], typer.Option("--captions-from-labels", help="Build captions from stroke labels (FrISS instance names).")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Use only the first N training sketches.")] = None,
    vocab: Annotated[Optional[Path], typer.Option("--vocab", help="Category list for caption matching (default: bundled list).")] = None,
    max_categories: Annotated[Optional[int], typer.Option("--max-categories", min=1, help="Categories per caption (default 3).")] = None,
    val_data: Annotated[Optional[Path], typer.Option("--val-data", help="Labelled validation sketches (default: the data's 'val' split, else a held-out fraction).")] = None,
    val_fraction: Annotated[Optional[float], typer.Option("--val-fraction", min=0.0, max=0.99, help="Held-out share without partitions or --val-data (default 0.1).")] = None,
    val_limit: Annotated[Optional[int], typer.Option("--val-limit", min=1, help="Validate on at most N sketches.")] = None,
    val_eval_size: Annotated[Optional[int], typer.Option("--val-eval-size", min=16, help="Validation pixel resolution (default 512).")] = None,
    backbone: BackboneFlag = None,
    weights: WeightsOpt = None,
    device: Annotated[Optional[str], typer.Option("--device", help="auto | cpu | cuda")] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", min=1, help="Epochs (default 20).")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Global batch per optimizer step (default 16).")] = None,
    accumulate: Annotated[Optional[int], typer.Option("--accumulate", min=1, help="Micro-batches per step (gradient accumulation).")] = None,
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
    category: Annotated[Optional[bool], typer.Option("--category-level/--no-category-level", help="Level II loss.")] = None,
    learn_threshold: Annotated[Optional[bool], typer.Option("--learn-threshold/--no-threshold", help="Learnable soft threshold (ablation: hard cut, theta frozen).")] = None,
    cross_attention: Annotated[Optional[bool], typer.Option("--cross-attention/--no-cross-attention", help="VCT anchors (ablation: scene token of the isolated sketch).")] = None,
    last_layer_only: Annotated[bool, typer.Option("--last-layer-only", help="Level II loss at block 12 only (same as --taps 12).")] = False,
    taps: Annotated[Optional[str], typer.Option("--taps", help="Comma list of blocks with a Level II loss (default 7,10,12).")] = None,
    num_prompts: Annotated[Optional[int], typer.Option("--num-prompts", min=0, help="Visual prompt tokens (default 3; 0 allowed).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its training state.")] = False,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Fine-tune LayerNorms, prompts, cross-attention and the threshold with the two-level triplet losses."""
    from sketchkit.errors import UsageError
    from sketchkit.train import read_run_config, train as run_training
    from sketchkit.trainconfig import config_from_dict, load_train_config

    tap_list = None
    if taps is not None:
        try:
            tap_list = [int(t) for t in taps.split(",") if t.strip()]
        except ValueError:
            raise UsageError(f"--taps must be a comma list of block numbers, not {taps!r}") from None
    if last_layer_only:
        tap_list = [12]
    flags = {
        "data": data, "out": out, "captions_from_labels": captions_from_labels, "limit": limit, "vocabulary": vocab,
        "max_categories": max_categories, "val_data": val_data, "val_fraction": val_fraction, "val_limit": val_limit,
        "val_eval_size": val_eval_size, "backbone": backbone, "weights": weights, "device": device, "epochs": epochs,
        "batch_size": batch_size, "accumulate": accumulate, "lr": lr, "theta_lr": theta_lr, "margin": margin,
        "distance": distance, "seed": seed, "max_steps": max_steps, "save_every": save_every, "amp": amp, "dual": vv,
        "holistic": holistic, "category": category, "learn_threshold": learn_threshold, "cross_attention": cross_attention,
        "taps": tap_list, "num_prompts": num_prompts, "resume": resume or None, "overwrite": overwrite or None,
    }
    flags = {k: (str(v) if isinstance(v, Path) else v) for k, v in flags.items()}
    if resume and config is None and data is None:
        if out is None:
            raise UsageError("--resume needs --out (the run folder to continue)")
        saved = read_run_config(out)
        saved.pop("out", None)
        settings = config_from_dict(flags, config_from_dict(saved, source=f"{out}/config.json"), source="options")
    else:
        settings = load_train_config(config, flags)

    handler = None if quiet else _ProgressHandler()
    try:
        with _sigterm_as_interrupt():
            report = run_training(settings, on_event=handler)
    except KeyboardInterrupt:
        stderr.print(f"[yellow]Training interrupted;[/yellow] the last checkpoint in {settings.out} is kept: continue with "
                     f"`sketchkit train --out {settings.out} --resume`", highlight=False, soft_wrap=True)
        raise
    finally:
        if handler is not None:
            handler.close()
    if quiet:
        stdout.print(str(report.best_path), highlight=False, soft_wrap=True)
        return
    best = f"{report.best_metric} {report.best_value:.4f}" if report.best_value is not None else "no validation"
    moved = f"{report.threshold[0]:.6f} -> {report.threshold[-1]:.6f}" if report.threshold else "n/a"
    stdout.print(f"trained {report.steps} steps ({report.epochs_completed} epochs done) on {report.train_count} sketches, "
                 f"{report.steps_per_second:.2f} steps/s; threshold {moved}; best {best}", highlight=False)
    stdout.print(f"best adapter: {report.best_path}\nlast adapter: {report.last_path}\nresume state: {report.state_path}\n"
                 f"metrics: {report.metrics_path}  plot: {report.plot_path}", highlight=False, soft_wrap=True)


@contextmanager
def _sigterm_as_interrupt():
    """Turn SIGTERM (kill, a scheduler's pre-emption, torchrun stopping its workers) into KeyboardInterrupt
    while training, so an interrupted run unwinds like Ctrl-C: a checkpoint being written is abandoned (its
    temp file removed, the previous one kept), and the command exits 130 with one line."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _ProgressHandler:
    """Turns training events into rich epoch / step / validation bars on stderr."""

    def __init__(self):
        self.bar = progress()
        self.bar.start()
        self.epoch_task = self.step_task = self.val_task = None

    def __call__(self, kind: str, info: dict) -> None:
        bar = self.bar
        if kind == "setup":
            stderr.print(
                f"model {info['model']} on {info['device']} x{info['world']} (bf16 autocast: {info['amp']}); "
                f"{info['trainable']:,} trainable values; {info['train']} training sketches ({info['with_categories']} with categories); "
                f"{info['val']} validation sketches from {info['val_source']}" + ("; resumed at step %d" % info["start_step"] if info["resumed"] else ""),
                highlight=False, soft_wrap=True,
            )
            self.epoch_task = bar.add_task("epochs", total=info["epochs"], completed=info["start_epoch"])
        elif kind == "epoch_start":
            if self.step_task is not None:
                bar.remove_task(self.step_task)
            self.step_task = bar.add_task(f"epoch {info['epoch'] + 1}", total=info["steps"], completed=info["done"])
        elif kind == "step" and self.step_task is not None:
            category = f" cat {info['category']:.4f}" if info.get("category") is not None else ""
            holistic = f" hol {info['holistic']:.4f}" if info.get("holistic") is not None else ""
            bar.update(self.step_task, advance=1, description=(
                f"epoch {info['epoch'] + 1} loss {info['loss']:.4f}{holistic}{category} thr {info['threshold']:.6f} "
                f"{info['sketches_per_s']:.1f} sk/s"))
        elif kind == "epoch_end" and self.epoch_task is not None:
            bar.update(self.epoch_task, advance=1)
        elif kind == "validation_start":
            self.val_task = bar.add_task("validation", total=info["count"])
        elif kind == "validation_step" and self.val_task is not None:
            bar.advance(self.val_task, info["advance"])
        elif kind == "validation":
            if self.val_task is not None:
                bar.remove_task(self.val_task)
                self.val_task = None
            value = "n/a" if info["value"] is None else f"{info['value']:.4f}"
            bar.console.print(f"step {info['step']}: {info['metric']} {value} (threshold {info['threshold']:.6f})"
                              + (" [green]best[/green]" if info["best"] else ""), highlight=False)
        elif kind == "note":
            bar.console.print(f"[yellow]Note:[/yellow] {info['message']}", highlight=False, soft_wrap=True)

    def close(self) -> None:
        self.bar.stop()


def import_checkpoint(
    reference: Annotated[Path, typer.Argument(help="The reference code's checkpoint (.pt state dict, read with weights_only=True).")],
    out: Annotated[Path, typer.Argument(help="Adapter to write (.safetensors).")],
    backbone: Annotated[str, typer.Option("--backbone", help="Backbone the checkpoint was trained from (default ViT-B-16).")] = "ViT-B-16",
    weights: WeightsOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Convert the reference code's visual-encoder checkpoint into a sketchkit adapter (LayerNorms only)."""
    from sketchkit.train import import_checkpoint as run_import

    report = run_import(reference, out, backbone=backbone, weights=str(weights) if weights else None, overwrite=overwrite)
    stderr.print(report.summary(), highlight=False, soft_wrap=True)
    stdout.print(str(report.out), highlight=False, soft_wrap=True)
