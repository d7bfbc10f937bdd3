"""Evaluation plots (`sketchkit eval --plots DIR`) and the training curves (`sketchkit train`).

Evaluation: PNG files written directly into DIR.

Per model (`<model>` is the --model name):
- `<model>-confusion.png`: the dataset-level pixel confusion of the `top_n` most frequent true
  classes as a heat map, rows normalised to 100 % of their pixels; extra columns "other" (predicted
  a class outside the top N) and "none" (no prediction) keep every row summing to 100.
- `<model>-iou.png`: per-category pixel IoU as horizontal bars, best first, labelled with the
  class's true pixels and strokes; at most `max_bars` classes (the most frequent ones).
- `<model>-gallery.png`: the `gallery` worst and best sketches by per-sketch mIoU, one row each:
  predicted stroke labels | ground truth, drawn with the same colour per class (grey: no label,
  or outside the vocabulary), with the sketch's Acc@S and mIoU.

Training: `write_plot(history, path)` draws a run's metrics.jsonl records (curves.png in the run
folder): losses and threshold per step, the validation metric per validation.

matplotlib's object API on the Agg canvas (no pyplot, no global state); each file is written
atomically. A few seconds per model at most.
"""

from __future__ import annotations

import io
import math
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from .files import atomic_write_bytes
from .metrics import ConfusionMatrix
from .raster import render_rgb
from .render import GREY, PALETTE, overlay_crop_box
from .text import printable

TOP_N = 20
MAX_BARS = 30
GALLERY = 4
GALLERY_SIZE = 256  # px of each drawing
DPI = 100


def _figure(width_in: float, height_in: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _rgb(color: str) -> tuple[float, float, float]:
    return tuple(int(color[i:i + 2], 16) / 255.0 for i in (1, 3, 5))


def file_stem(model_name: str) -> str:
    """A file-name-safe form of a model name."""
    return re.sub(r"[^\w.-]+", "_", model_name).strip("_") or "model"


# ------------------------------------------------------------------------------------- confusion


def confusion_png(matrix: ConfusionMatrix, names: Sequence[str], title: str, *, top_n: int = TOP_N) -> bytes:
    """Heat map of the row-normalised pixel confusion of the `top_n` classes with most true pixels."""
    support = matrix.support()
    order = [c for c in np.argsort(-support, kind="stable") if support[c] > 0][:top_n]
    fig = _figure(8, 7)
    ax = fig.add_subplot()
    if not order:
        ax.text(0.5, 0.5, "no evaluated pixels", ha="center", va="center")
        ax.set_axis_off()
        fig.suptitle(title)
        return _png(fig)
    square = matrix.pixels[:, : matrix.num_classes]
    rows = square[order]
    shown = rows[:, order]
    other = rows.sum(1) - shown.sum(1)
    none = matrix.pixels[order, matrix.num_classes]
    columns = [shown, other[:, None]] + ([none[:, None]] if none.any() else [])
    counts = np.concatenate(columns, axis=1).astype(np.float64)
    percent = 100.0 * counts / np.maximum(counts.sum(1, keepdims=True), 1)
    labels = [names[c] for c in order]
    image = ax.imshow(percent, cmap="Blues", vmin=0, vmax=100, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(percent.shape[1]), labels + ["other"] + (["none"] if none.any() else []),
                  rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(labels)), [f"{n} ({support[c]:,})" for n, c in zip(labels, order)], fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (pixels)")
    if len(labels) <= 25:
        for (i, j), value in np.ndenumerate(percent):
            if value >= 1:
                ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=6,
                        color="white" if value > 60 else "black")
    fig.colorbar(image, ax=ax, label="% of the true class's pixels", fraction=0.04)
    total = int((support > 0).sum())
    ax.set_title(f"{title}\n{len(labels)} most frequent of {total} classes", fontsize=9)
    return _png(fig)


# ------------------------------------------------------------------------------------------- IoU


def iou_png(rows: Sequence[dict], title: str, *, max_bars: int = MAX_BARS) -> bytes:
    """Horizontal bars of per-category IoU (rows as `ConfusionMatrix.per_category` gives them)."""
    defined = [r for r in rows if r["iou"] is not None]
    if len(defined) > max_bars:
        keep = {id(r) for r in sorted(defined, key=lambda r: (-r["support"], r["name"]))[:max_bars]}
        defined = [r for r in defined if id(r) in keep]
    defined.sort(key=lambda r: (-r["iou"], r["name"]))
    fig = _figure(8, max(2.5, 0.25 * len(defined) + 1.2))
    ax = fig.add_subplot()
    if not defined:
        ax.text(0.5, 0.5, "no category with a defined IoU", ha="center", va="center")
        ax.set_axis_off()
    else:
        positions = np.arange(len(defined))
        values = [r["iou"] for r in defined]
        ax.barh(positions, values, color=_rgb(PALETTE[0]))
        ax.set_yticks(positions, [r["name"] for r in defined], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(0, 118)
        ax.set_xlabel("IoU (%)")
        for y, r in zip(positions, defined):
            ax.text(r["iou"] + 1, y, f"{r['iou']:.1f}  ({r['support']:,} px, {r['strokes']} strokes)",
                    va="center", fontsize=6)
    shown = f"{len(defined)} most frequent of {len([r for r in rows if r['iou'] is not None])} classes" \
        if len(defined) < len([r for r in rows if r["iou"] is not None]) else f"{len(defined)} classes"
    ax.set_title(f"{title}\n{shown}", fontsize=9)
    return _png(fig)


# --------------------------------------------------------------------------------------- gallery


def _row_colors(pred: np.ndarray, true: np.ndarray) -> dict[int, tuple[float, float, float]]:
    """Global class -> colour for one sketch: classes in order of first appearance in the truth,
    then in the prediction, take PALETTE colours in turn (distinct for up to 18 classes)."""
    order = list(dict.fromkeys([int(c) for c in true if c >= 0] + [int(c) for c in pred if c >= 0]))
    return {c: _rgb(PALETTE[i % len(PALETTE)]) for i, c in enumerate(order)}


def _draw(record, labels: np.ndarray, colors: dict, size: int) -> np.ndarray:
    grey = _rgb(GREY)
    stroke_colors = np.array([colors.get(int(c), grey) for c in labels], dtype=np.float64).reshape(-1, 3)
    transform = record.transform.resized(size)
    rgb = render_rgb(record.sketch, transform, stroke_colors)
    left, top, right, bottom = overlay_crop_box(transform, record.sketch)
    return rgb[top:bottom, left:right]


def gallery_png(gallery, names: Sequence[str], title: str, *, size: int = GALLERY_SIZE) -> bytes:
    """Worst and best sketches by per-sketch mIoU (`evaluation.report.Gallery`: ties in input order),
    prediction | truth."""
    from matplotlib.patches import Patch

    rows = gallery.rows()
    fig = _figure(7.5, max(2.0, 2.6 * len(rows)))
    if not rows:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no sketch with a defined mIoU", ha="center", va="center")
        ax.set_axis_off()
        fig.suptitle(title, fontsize=9)
        return _png(fig)
    axes = fig.subplots(len(rows), 2, squeeze=False)
    for (kind, score, record), (ax_pred, ax_true) in zip(rows, axes):
        colors = _row_colors(record.pred_strokes, record.true_strokes)
        ax_pred.imshow(_draw(record, record.pred_strokes, colors, size))
        ax_true.imshow(_draw(record, record.true_strokes, colors, size))
        name = printable(Path(score.name).stem) if score.name else "sketch"
        acc_s = "n/a" if math.isnan(score.acc_s) else f"{100 * score.acc_s:.1f}"
        ax_pred.set_title(f"{kind}: {name}\nprediction - mIoU {100 * score.miou:.1f}, Acc@S {acc_s}", fontsize=7)
        ax_true.set_title("ground truth", fontsize=7)
        for ax in (ax_pred, ax_true):
            ax.set_xticks([])
            ax.set_yticks([])
        handles = [Patch(color=color, label=names[c]) for c, color in colors.items()]
        ax_true.legend(handles=handles, loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=6, frameon=False)
    fig.suptitle(title, fontsize=9)
    return _png(fig)


# ------------------------------------------------------------------------------------- training


def write_plot(history: Sequence[dict], path: str | os.PathLike) -> Path:
    """PNG of losses per step, threshold per step and validation metric per validation (records of
    a run's metrics.jsonl: "kind" step or validation)."""
    steps = [r for r in history if r.get("kind") == "step"]
    vals = [r for r in history if r.get("kind") == "validation" and r.get("value") is not None]
    figure = _figure(12, 3.6)
    loss_ax, theta_ax, val_ax = figure.subplots(1, 3)
    x = [r["step"] for r in steps]
    for key in ("loss", "holistic", "category"):
        ys = [r.get(key) for r in steps]
        if any(y is not None for y in ys):
            loss_ax.plot(x, [np.nan if y is None else y for y in ys], label=key, linewidth=1)
    loss_ax.set(title="training loss", xlabel="step")
    loss_ax.legend(loc="upper right", fontsize=8)
    theta_ax.plot(x, [r["threshold"] for r in steps], color="tab:purple", linewidth=1)
    theta_ax.set(title="threshold 0.4 + 0.5 sigmoid(theta)", xlabel="step")
    if vals:
        val_ax.plot([r["step"] for r in vals], [r["value"] for r in vals], marker="o", color="tab:green")
    titles = {"val_miou": "validation mIoU (per-sketch mean)", "val_loss": "validation loss"}
    val_ax.set(title=titles.get(vals[-1]["metric"], vals[-1]["metric"]) if vals else "validation (none)", xlabel="step")
    figure.tight_layout()
    return atomic_write_bytes(path, _png(figure))


# ------------------------------------------------------------------------------------------ all


PLOT_KINDS = ("confusion", "iou", "gallery")


def _gallery(model, count: int):
    """The model's gallery with `count` rows of each kind (rebuilt from its kept scores when it holds them)."""
    from .evaluation.report import Gallery

    if count == model.gallery.count:
        return model.gallery
    gallery = Gallery(count)
    if model.records and len(model.records) == len(model.evaluator.sketch_scores):
        for order, (score, record) in enumerate(zip(model.evaluator.sketch_scores, model.records)):
            gallery.add(order, score, record)
    else:
        gallery.merge([model.gallery])
    return gallery


def plot_paths(folder: str | os.PathLike, model_names: Sequence[str]) -> list[Path]:
    """The PNG paths `save_plots` writes for these models, in write order."""
    return [Path(folder) / f"{file_stem(name)}-{kind}.png" for name in model_names for kind in PLOT_KINDS]


def check_plot_paths(folder: str | os.PathLike, model_names: Sequence[str], overwrite: bool = False) -> None:
    """UsageError when a PNG `save_plots` would write exists and `overwrite` is False."""
    from .files import check_output_path

    for path in plot_paths(folder, model_names):
        check_output_path(path, overwrite=overwrite)


def save_plots(report, folder: str | os.PathLike, *, top_n: int = TOP_N, max_bars: int = MAX_BARS,
               gallery: int = GALLERY, overwrite: bool = False) -> list[Path]:
    """Write the three PNGs of every model of an `EvalReport` into `folder` (created if needed);
    returns the paths in write order. Existing PNGs are replaced only with `overwrite`."""
    from matplotlib import rc_context

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    check_plot_paths(folder, [m.name for m in report.models], overwrite)
    where = f"pixels at {report.eval_size} px"
    written = []
    for model in report.models:
        evaluator = model.evaluator
        stem = file_stem(model.name)
        names = [printable(n) for n in evaluator.class_names]  # control characters escaped
        with rc_context({"text.parse_math": False}):  # a '$' in a label or file name is text, not mathtext
            pixels = {
                "confusion": confusion_png(evaluator.confusion, names, f"{model.name}: pixel confusion ({where})",
                                           top_n=top_n),
                "iou": iou_png([{**r, "name": printable(r["name"])} for r in evaluator.per_category()],
                               f"{model.name}: per-category IoU (dataset confusion, {where})", max_bars=max_bars),
                "gallery": gallery_png(_gallery(model, gallery), names,
                                       f"{model.name}: worst and best sketches by mIoU ({where})"),
            }
        for kind in PLOT_KINDS:
            written.append(atomic_write_bytes(folder / f"{stem}-{kind}.png", pixels[kind]))
    return written
