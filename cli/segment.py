"""`sketchkit segment`: label every stroke of one or many sketches.

Examples:
    sketchkit segment scene.svg --labels "tree,house,sun"
    sketchkit segment drawings/*.png --caption "a girl flies a kite near a tree" --out labelled/
    sketchkit segment scene.svg --labels @classes.txt --model clip-surgery --format svg,h5,png
    sketchkit segment quickdraw/cat.ndjson --caption "a cat" --format h5 --out-h5 cats.h5 --skip-existing
    torchrun --nproc-per-node 8 -m sketchkit.cli segment fscoco/ --out seg/ --out-h5 seg/all.h5

Under torchrun (WORLD_SIZE > 1, or --distributed) each process takes every WORLD_SIZE-th input and
writes its own outputs; rank 0 shows one progress bar for the whole job and merges the --out-h5 parts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer
from rich.table import Table
from rich.text import Text

from ._errors import print_error
from ._options import (AdapterOpt, BackboneOpt, BatchOpt, CompileOpt, DeviceOpt, ModelOpt, OverwriteOpt, QuietOpt,
                       ScoringOpt, StrictOpt, ThresholdOpt, WeightsOpt, announce_model, cell, progress, stderr,
                       stdout)


def segment(
    inputs: Annotated[List[Path], typer.Argument(help="Sketch files (SVG, PNG/JPG, FrISS JSON, QuickDraw ndjson, FS-COCO .npy) or folders.")],
    labels: Annotated[Optional[str], typer.Option("--labels", "-l", help='Comma list "tree,house" or @file with one name per line (used verbatim).')] = None,
    caption: Annotated[Optional[str], typer.Option("--caption", "-c", help="Take the labels from this caption (else from a caption .txt beside each input).")] = None,
    vocab: Annotated[Optional[Path], typer.Option("--vocab", help="Category names a caption is matched against (default: bundled list).")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (relative paths kept), or a file name for one input.")] = Path("segmented"),
    formats: Annotated[str, typer.Option("--format", "-f", help="Comma list of svg (with one Inkscape layer per label), json, png (overlay), h5, masks (a folder of per-label PNGs per input), csv (one summary for the run), coco (one COCO JSON with RLE masks for the run).")] = "svg,json",
    palette: Annotated[Optional[str], typer.Option("--palette", help="Label colours: a matplotlib colormap name (tab20, viridis, ...) or a JSON file {label: colour}.")] = None,
    top_k: Annotated[int, typer.Option("--top-k", min=1, max=100, help="Ranked labels kept per stroke (JSON, HDF5, CSV).")] = 3,
    csv_per: Annotated[str, typer.Option("--csv-per", help="Rows of the csv summary: stroke | sketch.")] = "stroke",
    model: ModelOpt = None,
    backbone: BackboneOpt = None,
    weights: WeightsOpt = None,
    adapter: AdapterOpt = None,
    device: DeviceOpt = "auto",
    compile: CompileOpt = False,
    batch_size: BatchOpt = 8,
    threshold: ThresholdOpt = None,
    scoring: ScoringOpt = None,
    skip_existing: Annotated[bool, typer.Option("--skip-existing", help="Skip inputs whose outputs all exist (resume a batch); partial output sets are redone.")] = False,
    out_h5: Annotated[Optional[Path], typer.Option("--out-h5", help="Also write every result into this one HDF5 file (compact columnar layout; resumable with --skip-existing).")] = None,
    h5_part_size: Annotated[int, typer.Option("--h5-part-size", min=1, help="--out-h5 is written in parts of this many sketches (or a minute's work), each kept whole: what a killed run redoes.")] = 1000,
    scores: Annotated[str, typer.Option("--scores", help="What HDF5 outputs keep of the per-pixel class scores: none (labels only, smallest) | fp16 (every class, float16) | top1 (best class and its score).")] = "none",
    distributed: Annotated[bool, typer.Option("--distributed", help="Run as one process of a torchrun job (needs its RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT); found by itself when WORLD_SIZE > 1.")] = False,
    overwrite: OverwriteOpt = False,
    strict: StrictOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Label the strokes of sketches with open-vocabulary categories.

    Example: sketchkit segment scene.svg --labels "tree,house,sun" --out labelled/
    """
    from sketchkit.errors import UsageError
    from sketchkit.inference import LabelPolicy, ModelSpec, build_segmenter, default_method
    from sketchkit.inference.shard import join_job
    from sketchkit.io.hdf5_columnar import check_score_mode
    from sketchkit.labels import load_vocabulary, parse_labels
    from sketchkit.pipeline import InputWalk, SegmentJob, parse_formats
    from sketchkit.render import Palette

    policy = LabelPolicy.for_segment(parse_labels(labels) if labels is not None else None, caption,
                                     load_vocabulary(vocab) if vocab else None)
    job = SegmentJob(inputs=list(inputs), out=out, formats=parse_formats(formats), labels=policy, threshold=threshold,
                     batch_size=batch_size, top_k=top_k, palette=Palette.from_spec(palette), csv_per=csv_per,
                     overwrite=overwrite, skip_existing=skip_existing, strict=strict, out_h5=out_h5,
                     scores=check_score_mode(scores), h5_part_rows=h5_part_size)
    walk = InputWalk(job.inputs, job.out)
    files = walk.count()
    if not files:
        raise UsageError("no sketch files found in the given inputs")
    shard = join_job(device, require=distributed)
    try:
        _run(job, shard, files, quiet, ModelSpec(model or default_method(str(adapter) if adapter else None), backbone,
                                                 str(weights) if weights else None, str(adapter) if adapter else None,
                                                 str(shard.device), compile, scoring), build_segmenter)
    finally:
        shard.close()


MAX_TABLE_ROWS = 200
"""Rows of the results table; a longer run prints the first ones and a count (its outputs say the rest)."""


def _run(job, shard, files: int, quiet: bool, spec, build_segmenter) -> None:
    from sketchkit.pipeline import STREAMED_SUFFIXES, run_segment

    segmenter = build_segmenter(spec)
    announced = quiet or not shard.is_main  # said before the first result: a lone bad input prints one line
    table = Table(title="sketchkit segment" + (f" (rank {shard.rank} of {shard.world})" if shard.distributed else ""))
    for column in ("file", "strokes", "labels found", "outputs"):
        table.add_column(column, overflow="fold")
    rows = 0
    streamed = any(Path(p).suffix.lower() in STREAMED_SUFFIXES for p in job.inputs)
    show_bar = shard.is_main and not quiet and (files > 1 or streamed)
    with progress(disable=not show_bar) as bar:
        task = bar.add_task("segmenting", total=None if streamed else files)
        counter = shard.counter()
        counter.on_sync = lambda totals: bar.update(task, completed=sum(totals[k] for k in ("done", "failed", "skipped")))
        for outcome in run_segment(job, segmenter, shard=shard, counter=counter):
            label = f"{outcome.path}#{outcome.name}" if outcome.name else str(outcome.path)
            if outcome.error is not None:
                print_error(outcome.error)
                continue
            if not announced:
                announce_model(segmenter)
                announced = True
            if quiet:
                for p in outcome.outputs:
                    stdout.print(cell(p), highlight=False, soft_wrap=True)
            elif rows < MAX_TABLE_ROWS and not shard.distributed:
                rows += 1
                if outcome.skipped:
                    table.add_row(cell(label), "-", cell(f"(skipped: {outcome.skipped_because})"), "")
                else:
                    names = outcome.result.stroke_label_names
                    found = ", ".join(f"{n} ({names.count(n)})" for n in dict.fromkeys(names))
                    table.add_row(cell(label), str(len(names)), cell(found),
                                  cell("\n".join(map(str, outcome.outputs))))
        totals = counter.totals
        bar.update(task, completed=sum(totals[k] for k in ("done", "failed", "skipped")),
                   total=sum(totals[k] for k in ("done", "failed", "skipped")))
    if not quiet and not shard.distributed:  # several processes: each one's rows would be a fraction of the job
        stdout.print(table)
    shown = sum(totals[k] for k in ("done", "failed", "skipped"))
    if shard.is_main and not quiet and (shown - totals["failed"] > rows or shard.distributed):
        stderr.print(Text(f"{totals['done']} segmented, {totals['skipped']} skipped, {totals['failed']} failed"
                          + (f" ({shard.world} processes)" if shard.distributed else "")), highlight=False)
    if shard.is_main and job.out_h5 is not None and not quiet:
        stderr.print(Text(f"results file: {job.out_h5}"), highlight=False)
    if totals["failed"] and shard.is_main and shown > 1:  # one input: its Error line says it all
        stderr.print(Text(f"{totals['failed']} of {shown} input(s) could not be segmented"), highlight=False)
    if totals["failed"]:
        raise typer.Exit(2)
