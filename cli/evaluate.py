"""`sketchkit eval`: score models on a labelled sketch set, both protocols of the field.

Examples:
    sketchkit eval --data ../shared/data/friss --split test --model oracle --metrics acc-s,acc-p,miou
    sketchkit eval --data friss/ --split test --model clip,clip-surgery --backbone tiny-random --limit 20
    sketchkit eval --data friss/ --split test --classes qd.txt --name-map friss_to_qd_mappings.json --json r.json
    sketchkit eval --data cbsc/ --model clip,clip-surgery,sketchkit --adapter runs/a.safetensors \\
        --protocol both --json results.json --csv results.csv --plots out/ --per-category
    sketchkit eval --data fscoco-seg/ --split test --allow-pickle --model clip-surgery
    sketchkit eval --data friss/ --split test --model clip --save-predictions preds.h5
    sketchkit eval --predictions preds.h5 --plots out/          # re-score without the model
    torchrun --nproc-per-node 8 -m sketchkit.cli eval --data fscoco-seg/ --split test --model clip-surgery

Saved predictions: one model -> the given file; several -> one file per model, the model name
before the suffix (preds.h5 -> preds.oracle.h5, preds.clip.h5). `--predictions` takes such files
(repeat it, or give the --save-predictions name to pick up every per-model file saved under it).

Under torchrun (WORLD_SIZE > 1, or --distributed) each process scores every WORLD_SIZE-th sketch; the
confusions and per-sketch sums are added over processes, so the numbers are one process's; rank 0
shows the progress bar, prints the tables and writes --json/--csv/--plots and the merged predictions.
Sketches are read as they are scored, and only sums and a short worst/best list are kept per model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text

from ._errors import print_error
from ._options import (AdapterOpt, BackboneOpt, BatchOpt, CompileOpt, DeviceOpt, JsonOutOpt, LimitOpt, ModelOpt,
                       OverwriteOpt, QuietOpt, ScoringOpt, StrictOpt, ThresholdOpt, WeightsOpt, announce_model, cell,
                       progress, stderr, stdout)

PROTOCOLS = {"per-sketch": ["per_sketch"], "dataset": ["dataset"], "reference": ["reference"],
             "both": ["per_sketch", "dataset"], "all": ["per_sketch", "dataset", "reference"]}
PROTOCOL_TITLES = {"per_sketch": "per-sketch mean (paper)", "dataset": "dataset confusion matrix (CAVT)",
                   "reference": "reference test.py geometry (per-sketch mean, 512 px Bresenham footprints)"}


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _tables(result: dict, keys: list[str], protocols: list[str], caption: str, quiet: bool = False) -> None:
    models = list(result["results"])
    if quiet:  # one "model protocol metric value" line per figure, for scripts
        for name, r in result["results"].items():
            for proto in protocols:
                for k in keys:
                    if k in r[proto]:
                        stdout.print(Text(f"{name}\t{proto}\t{k}\t{_fmt(r[proto][k])}"), highlight=False)
        return
    for proto in protocols:
        table = Table(title=PROTOCOL_TITLES[proto], caption=caption)
        table.add_column("model")
        available = [k for k in keys if any(k in r[proto] for r in result["results"].values())]
        for k in available:
            table.add_column(k.replace("_", "-"), justify="right")
        for name, r in result["results"].items():
            table.add_row(cell(name), *(_fmt(r[proto].get(k)) if k in r[proto] else "-" for k in available))
        stdout.print(table)
    if len(models) > 1:
        from sketchkit.evaluation import best_models

        table = Table(title="model comparison (best in bold)", caption=caption)
        table.add_column("protocol")
        table.add_column("metric")
        for name in models:
            table.add_column(cell(name), justify="right")
        for proto in protocols:
            for k in keys:
                if not any(k in r[proto] for r in result["results"].values()):
                    continue
                best = best_models(result, proto, k)
                cells = [Text(_fmt(r[proto].get(k)), style="bold" if name in best else "")
                         for name, r in result["results"].items()]
                table.add_row(proto.replace("_", "-"), k.replace("_", "-"), *cells)
        stdout.print(table)


def _per_category(result: dict, caption: str) -> None:
    for name, r in result["results"].items():
        table = Table(title=cell(f"{name}: per category (dataset confusion, sorted by IoU)"), caption=caption)
        for column in ("category", "IoU", "acc-p", "acc-s", "pixels", "strokes", "predicted px"):
            table.add_column(column, justify="left" if column == "category" else "right")
        for row in r["per_category"]:
            table.add_row(cell(row["name"]), _fmt(row["iou"]), _fmt(row["accuracy"]), _fmt(row["stroke_accuracy"]),
                          f"{row['support']:,}", str(row["strokes"]), f"{row['predicted']:,}")
        stdout.print(table)


def evaluate(
    data: Annotated[Optional[Path], typer.Option("--data", "-d", help="A labelled sketch file or folder (FrISS/CBSC JSON, sketchkit SVG, the FS-COCO segmentation layout, ...).")] = None,
    split: Annotated[Optional[str], typer.Option("--split", help="train | val | test from the folder's data_partitions.json (FS-COCO layout: a sub-folder).")] = None,
    model: ModelOpt = None,
    metrics: Annotated[str, typer.Option("--metrics", help="Comma list of acc-s, acc-p, miou, mean-class-acc, fw-iou.")] = "acc-s,acc-p,miou",
    protocol: Annotated[str, typer.Option("--protocol", help="per-sketch (paper) | dataset (CAVT, one confusion matrix) | reference (the reference code's test.py geometry) | both (per-sketch + dataset) | all (the three side by side)")] = "both",
    scoring: ScoringOpt = None,
    classes: Annotated[Optional[str], typer.Option("--classes", help="per-sketch (default: each sketch's own classes, the paper's protocol), or a file of class names (one per line) every sketch is scored in.")] = None,
    name_map: Annotated[Optional[Path], typer.Option("--name-map", help="JSON mapping dataset names to --classes names (e.g. friss_to_qd_mappings.json).")] = None,
    eval_size: Annotated[Optional[int], typer.Option("--eval-size", min=16, max=4096, help="Pixel metrics resolution (default 512, the reference's; 224 available).")] = None,
    limit: LimitOpt = None,
    backbone: BackboneOpt = None,
    weights: WeightsOpt = None,
    adapter: AdapterOpt = None,
    device: DeviceOpt = "auto",
    compile: CompileOpt = False,
    batch_size: BatchOpt = 16,
    threshold: ThresholdOpt = None,
    json_out: JsonOutOpt = None,
    csv_out: Annotated[Optional[Path], typer.Option("--csv", help="Also write the metrics as CSV (model, protocol, metric, value, ...).")] = None,
    plots: Annotated[Optional[Path], typer.Option("--plots", help="Write per-model PNGs here: confusion heat map, per-category IoU, worst/best gallery.")] = None,
    per_category: Annotated[bool, typer.Option("--per-category", help="Print per-category IoU / accuracy tables with support counts.")] = False,
    save_predictions: Annotated[Optional[Path], typer.Option("--save-predictions", help="Write every prediction to this HDF5 file (several models: NAME.<model>.h5 each).")] = None,
    predictions: Annotated[Optional[list[Path]], typer.Option("--predictions", help="Re-score saved predictions (HDF5 from --save-predictions) instead of running a model; repeatable.")] = None,
    distributed: Annotated[bool, typer.Option("--distributed", help="Run as one process of a torchrun job (needs its RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT); found by itself when WORLD_SIZE > 1.")] = False,
    allow_pickle: Annotated[bool, typer.Option("--allow-pickle", help="Allow FS-COCO .npy object arrays, which load by unpickling (runs code from the file): trusted data only.")] = False,
    overwrite: OverwriteOpt = False,
    strict: StrictOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Score models with Acc@S, Acc@P and mIoU under the per-sketch and dataset protocols.

    Example: sketchkit eval --data ../shared/data/friss --split test --model oracle,clip-surgery --backbone tiny-random
    """
    from sketchkit.errors import UsageError

    keys = _metric_keys(metrics)
    if protocol not in PROTOCOLS:
        raise UsageError(f"--protocol must be one of {', '.join(PROTOCOLS)}")
    if predictions and "reference" in PROTOCOLS[protocol]:
        raise UsageError("--protocol reference needs the model (the reference frame is drawn from the sketches): "
                         "give --data and --model")
    if predictions and (data is not None or split is not None or model is not None or save_predictions is not None):
        raise UsageError("--predictions re-scores saved predictions: leave out --data, --split, --model and --save-predictions")
    if not predictions and data is None:
        raise UsageError("give --data (a labelled sketch set) or --predictions (saved predictions)")
    names = None if predictions else [m.strip() for m in (model or "oracle").split(",") if m.strip()]
    _check_outputs([data] if data is not None else list(predictions), json_out, csv_out, plots, save_predictions, names,
                   overwrite)
    vocabulary = _vocabulary(classes, name_map)
    config = {"protocol": protocol, "scoring": scoring, "metrics": [m.strip() for m in metrics.split(",") if m.strip()],
              "classes": classes or "per-sketch", "name_map": str(name_map) if name_map else None, "limit": limit,
              "batch_size": batch_size, "backbone": backbone, "weights": str(weights) if weights else None,
              "adapter": str(adapter) if adapter else None, "device": device, "compile": compile,
              "threshold": threshold, "models": names, "predictions": None}
    if predictions:
        with progress(disable=quiet) as bar:
            report = _rescore(predictions, vocabulary, eval_size, limit, config, bar)
        _print_report(report, keys, protocol, per_category, quiet)
        _write_outputs(report, json_out, csv_out, plots, save_predictions, overwrite)
        return
    from sketchkit.inference import ModelSpec
    from sketchkit.inference.shard import join_job

    shard = join_job(device, require=distributed)
    try:
        spec = ModelSpec(names[0], backbone, str(weights) if weights else None, str(adapter) if adapter else None,
                         str(shard.device), compile, scoring)
        with progress(disable=quiet or not shard.is_main) as bar:
            report = _run(data, split, limit, allow_pickle, strict, names, spec, vocabulary, eval_size, batch_size,
                          threshold, save_predictions, overwrite, config, bar, quiet, PROTOCOLS[protocol], shard)
        if shard.is_main:
            _print_report(report, keys, protocol, per_category, quiet)
            _write_outputs(report, json_out, csv_out, plots, save_predictions, overwrite)
    finally:
        shard.close()


METRICS = {"acc-p": "acc_p", "acc-s": "acc_s", "miou": "miou", "mean-class-acc": "mean_class_acc", "fw-iou": "fw_iou"}


def _metric_keys(spec: str) -> list[str]:
    from sketchkit.errors import UsageError

    wanted = [m.strip().lower() for m in spec.split(",") if m.strip()]
    unknown = [m for m in wanted if m not in METRICS]
    if unknown or not wanted:
        raise UsageError(f"unknown metric(s) {', '.join(unknown) or spec!r}; choose from {', '.join(METRICS)}")
    return [METRICS[m] for m in wanted]


def _check_outputs(inputs, json_out, csv_out, plots, save_predictions, model_names, overwrite) -> None:
    """Every output before any work: not an input, not inside an input folder, existing only with --overwrite."""
    from sketchkit.errors import UsageError
    from sketchkit.files import check_outside_inputs, check_output_path

    for out in (json_out, csv_out, save_predictions, plots):
        if out is not None:
            check_outside_inputs(out, inputs)
    for out in (json_out, csv_out):
        if out is not None:
            check_output_path(out, inputs, overwrite)
    if plots is not None and plots.exists() and not plots.is_dir():
        raise UsageError(f"--plots {plots} is a file; give a folder")
    if plots is not None and plots.is_dir() and model_names:
        from sketchkit.plots import check_plot_paths

        check_plot_paths(plots, model_names, overwrite)


def _vocabulary(classes: str | None, name_map: Path | None):
    from sketchkit.evaluation import Vocabulary
    from sketchkit.labels import load_mapping, parse_labels

    mapping = load_mapping(name_map) if name_map else {}
    if classes is None or classes == "per-sketch":
        return Vocabulary(mapping=mapping)
    return Vocabulary(parse_labels("@" + classes), mapping, source=classes)


def _rescore(predictions, vocabulary, eval_size, limit, config, bar):
    from sketchkit.evaluation import find_prediction_files, rescore

    files = find_prediction_files(list(predictions))
    config.update(predictions=[str(p) for p in files])
    task = bar.add_task("re-score", total=None)
    return rescore(files, vocab=vocabulary if (vocabulary.names or vocabulary.mapping) else None, eval_size=eval_size,
                   limit=limit, config=config, on_step=lambda name, n: bar.advance(task, n))


def _run(data, split, limit, allow_pickle, strict, names, spec, vocabulary, eval_size, batch_size, threshold,
         save_predictions, overwrite, config, bar, quiet, protocols, shard):
    from sketchkit.evaluation import DEFAULT_EVAL_SIZE, dataset_fingerprint, evaluate
    from sketchkit.evaluation.data import iter_eval_sketches
    from sketchkit.inference import build_segmenters

    def skip(error) -> None:
        if len(files) == 1:  # one input: its Error line says it all
            raise error
        print_error(error, suffix=" (skipped)")

    files, layout, sketches = iter_eval_sketches(data, split=split, limit=limit, allow_pickle=allow_pickle,
                                                 strict=strict, on_error=skip, owns=shard.owns)
    segmenters = build_segmenters(names, spec)
    sketches = _announcing(sketches, segmenters, quiet or not shard.is_main)
    config.update(save_predictions=str(save_predictions) if save_predictions else None)
    if shard.distributed:
        config.update(processes=shard.world)
    task = bar.add_task(f"eval {', '.join(names)}", total=len(files))
    counter = shard.counter()
    counter.on_sync = lambda totals: bar.update(task, completed=totals["done"])
    return evaluate(sketches, segmenters, vocab=vocabulary, eval_size=eval_size or DEFAULT_EVAL_SIZE,
                    batch_size=batch_size, threshold=threshold,
                    data_info={"path": str(data), "split": split, "layout": layout,
                               "fingerprint": dataset_fingerprint(files)},
                    save_predictions=save_predictions, overwrite=overwrite, config=config, protocols=protocols,
                    keep_scores=False, shard=shard, counter=counter)


def _announcing(sketches, segmenters, quiet: bool):
    """`sketches`, the models announced before the first one read (a lone unreadable input prints one line)."""
    for number, item in enumerate(sketches):
        if number == 0:
            for segmenter in segmenters:
                announce_model(segmenter, quiet)
        yield item


def _print_report(report, keys, protocol, per_category, quiet) -> None:
    result = report.to_dict()
    count = report.data["count"]
    caption = (f"{count} sketches · vocabulary {report.data['vocab']} · pixels at {report.eval_size} px · "
               f"strokes voted at {', '.join(sorted({str(v) for v in report.stroke_resolution.values()}) or ['224'])} px")
    protocols = [p for p in PROTOCOLS[protocol] if all(p in r for r in result["results"].values())]
    _tables(result, keys, protocols, caption, quiet)
    if per_category and not quiet:
        _per_category(result, caption)
    if report.skipped:
        stderr.print(Text(f"{len(report.skipped)} sketches have no stroke in the vocabulary and were skipped "
                          f"(e.g. {report.skipped[0]})"), highlight=False, soft_wrap=True)
    first = next(iter(result["results"].values()))
    if first["excluded_strokes"]:
        listing = ", ".join(f"{n} ({k})" for n, k in first["excluded_classes"].items())
        stderr.print(Text(f"{first['excluded_strokes']} strokes of {len(first['excluded_classes'])} classes outside the "
                          f"vocabulary, excluded from scoring: {listing}"), highlight=False, soft_wrap=True)


def _write_outputs(report, json_out, csv_out, plots, save_predictions, overwrite) -> None:
    from sketchkit.evaluation import report_csv
    from sketchkit.files import atomic_write_text

    result = report.to_dict()
    if save_predictions is not None:
        from sketchkit.io.hdf5 import prediction_paths

        for path in prediction_paths(save_predictions, [m.name for m in report.models]).values():
            stderr.print(Text(f"predictions written to {path}"), highlight=False)
    if plots is not None:
        from sketchkit.plots import save_plots

        written = save_plots(report, plots, overwrite=overwrite)
        stderr.print(Text(f"{len(written)} plots written to {plots}"), highlight=False)
    if json_out is not None:
        atomic_write_text(json_out, json.dumps(result, indent=2) + "\n", overwrite=overwrite)
        stderr.print(Text(f"results written to {json_out}"), highlight=False)
    if csv_out is not None:
        atomic_write_text(csv_out, report_csv(result), overwrite=overwrite)
        stderr.print(Text(f"CSV written to {csv_out}"), highlight=False)
