"""`sketchkit eval`: score models on a labelled sketch set, both protocols of the field.

Examples:
    sketchkit eval --data ../shared/data/friss --split test --model oracle --metrics acc-s,acc-p,miou
    sketchkit eval --data friss/ --split test --model clip,clip-surgery --backbone tiny-random --limit 20
    sketchkit eval --data friss/ --split test --vocab qd.txt --name-map friss_to_qd_mappings.json --json r.json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from ._options import AdapterOpt, BackboneOpt, BatchOpt, DeviceOpt, JsonOutOpt, LimitOpt, ModelOpt, OverwriteOpt, StrictOpt, WeightsOpt, progress, stderr, stdout, announce_model

METRICS = {"acc-p": "acc_p", "acc-s": "acc_s", "miou": "miou", "mean-class-acc": "mean_class_acc", "fw-iou": "fw_iou"}
PROTOCOLS = ("per-sketch", "dataset", "both")


def evaluate(
    data: Annotated[Path, typer.Option("--data", "-d", help="A labelled sketch file or folder (FrISS/CBSC JSON, sketchkit SVG, ...).")],
    split: Annotated[Optional[str], typer.Option("--split", help="train | val | test from the folder's data_partitions.json.")] = None,
    model: ModelOpt = "oracle",
    metrics: Annotated[str, typer.Option("--metrics", help="Comma list of acc-s, acc-p, miou, mean-class-acc, fw-iou.")] = "acc-s,acc-p,miou",
    protocol: Annotated[str, typer.Option("--protocol", help="per-sketch (paper) | dataset (CAVT, one confusion matrix) | both")] = "both",
    vocab: Annotated[str, typer.Option("--vocab", help="per-sketch, or a file of class names (one per line) used for every sketch.")] = "per-sketch",
    name_map: Annotated[Optional[Path], typer.Option("--name-map", help="JSON mapping dataset names to --vocab names (e.g. friss_to_qd_mappings.json).")] = None,
    eval_size: Annotated[int, typer.Option("--eval-size", min=16, max=4096, help="Pixel metrics resolution (reference: 512).")] = 512,
    limit: LimitOpt = None,
    backbone: BackboneOpt = "ViT-B-16",
    weights: WeightsOpt = None,
    adapter: AdapterOpt = None,
    device: DeviceOpt = "auto",
    batch_size: BatchOpt = 16,
    json_out: JsonOutOpt = None,
    overwrite: OverwriteOpt = True,
    strict: StrictOpt = False,
) -> None:
    """Score models with Acc@S, Acc@P and mIoU under the per-sketch and dataset protocols."""
    from sketchkit.data import find_sketches, iter_sketches
    from sketchkit.errors import UsageError
    from sketchkit.evaluate import Vocabulary, dataset_fingerprint, evaluate as run_eval, load_mapping
    from sketchkit.files import atomic_write_text, check_output_path
    from sketchkit.labels import parse_labels
    from sketchkit.model.zoo import ModelSpec, build_model

    wanted = [m.strip().lower() for m in metrics.split(",") if m.strip()]
    unknown = [m for m in wanted if m not in METRICS]
    if unknown or not wanted:
        raise UsageError(f"unknown metric(s) {', '.join(unknown) or metrics!r}; choose from {', '.join(METRICS)}")
    if protocol not in PROTOCOLS:
        raise UsageError(f"--protocol must be one of {', '.join(PROTOCOLS)}")
    if json_out is not None:
        check_output_path(json_out, [data], overwrite)
    files = find_sketches(data, split=split, limit=limit)
    sketches = []
    for path, item in iter_sketches(files):
        if isinstance(item, Exception):
            if strict:
                raise item
            stderr.print(f"[red]Error:[/red] {item} (skipped)", highlight=False, soft_wrap=True)
        else:
            sketches.append(item)
    if vocab == "per-sketch":
        vocabulary = Vocabulary(mapping=load_mapping(name_map) if name_map else {})
    else:
        vocabulary = Vocabulary(parse_labels("@" + vocab), load_mapping(name_map) if name_map else {})

    names = [m.strip() for m in (model or "oracle").split(",") if m.strip()]
    models, shared = [], None
    for name in names:
        built = build_model(ModelSpec(name, backbone, str(weights) if weights else None, str(adapter) if adapter else None, device), encoder=shared)
        shared = getattr(built, "encoder", shared)
        announce_model(built.description)
        models.append(built)

    with progress() as bar:
        tasks = {m.name: bar.add_task(f"eval {m.name}", total=len(sketches)) for m in models}
        report = run_eval(
            sketches, models, vocab=vocabulary, eval_size=eval_size, batch_size=batch_size,
            data_info={"path": str(data), "split": split, "fingerprint": dataset_fingerprint(files)},
            on_step=lambda name, n: bar.advance(tasks[name], n),
        )
    result = report.to_dict()
    keys = [METRICS[m] for m in wanted]
    protocols = ["per_sketch", "dataset"] if protocol == "both" else [protocol.replace("-", "_")]
    for proto in protocols:
        table = Table(
            title="per-sketch mean (paper)" if proto == "per_sketch" else "dataset confusion matrix (CAVT)",
            caption=f"{len(sketches)} sketches · pixels at {eval_size} px · strokes voted at 224 px",
        )
        table.add_column("model")
        available = [k for k in keys if any(k in r[proto] for r in result["results"].values())]
        for k in available:
            table.add_column(k.replace("_", "-"), justify="right")
        for name, r in result["results"].items():
            table.add_row(name, *(f"{r[proto][k]:.2f}" if r[proto].get(k) is not None else "n/a" for k in available))
        stdout.print(table)
    excluded = {n: r["excluded_strokes"] for n, r in result["results"].items() if r["excluded_strokes"]}
    if excluded:
        stderr.print(f"strokes outside the vocabulary, excluded from scoring: {excluded}")
    if json_out is not None:
        atomic_write_text(json_out, json.dumps(result, indent=2) + "\n")
        stderr.print(f"results written to {json_out}")
