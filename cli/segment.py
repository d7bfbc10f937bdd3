"""`sketchkit segment`: label every stroke of one or many sketches.

Examples:
    sketchkit segment scene.svg --labels "tree,house,sun"
    sketchkit segment drawings/*.png --caption "a girl flies a kite near a tree" --out labelled/
    sketchkit segment scene.svg --labels @classes.txt --model clip-surgery --format svg,h5,png
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer
from rich.table import Table

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
    skip_existing: Annotated[bool, typer.Option("--skip-existing", help="Skip inputs whose outputs all exist (resume a batch).")] = False,
    overwrite: OverwriteOpt = False,
    strict: StrictOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Label the strokes of sketches with open-vocabulary categories.

    Example: sketchkit segment scene.svg --labels "tree,house,sun" --out labelled/
    """
    from sketchkit.data import find_sketches
    from sketchkit.errors import UsageError
    from sketchkit.inference import LabelPolicy, ModelSpec, build_segmenter, default_method
    from sketchkit.labels import load_vocabulary, parse_labels
    from sketchkit.pipeline import SegmentJob, parse_formats, run_segment

    files = [f for path in inputs for f in find_sketches(path)]
    if not files:
        raise UsageError("no sketch files found in the given inputs")
    policy = LabelPolicy.for_segment(parse_labels(labels) if labels else None, caption,
                                     load_vocabulary(vocab) if vocab else None)
    from sketchkit.render import Palette

    job = SegmentJob(inputs=files, out=out, formats=parse_formats(formats), labels=policy, threshold=threshold,
                     batch_size=batch_size, top_k=top_k, palette=Palette.from_spec(palette), csv_per=csv_per,
                     overwrite=overwrite, skip_existing=skip_existing, strict=strict)
    segmenter = build_segmenter(ModelSpec(model or default_method(str(adapter) if adapter else None), backbone,
                                          str(weights) if weights else None, str(adapter) if adapter else None, device,
                                          compile, scoring))
    announce_model(segmenter, quiet)
    table = Table(title="sketchkit segment")
    for column in ("file", "strokes", "labels found", "outputs"):
        table.add_column(column, overflow="fold")
    failures, last = 0, None
    with progress(disable=quiet or len(files) < 2) as bar:
        task = bar.add_task("segmenting", total=len(files))
        for outcome in run_segment(job, segmenter):
            bar.advance(task, int(outcome.path != last))  # per file, also for files of several drawings
            last = outcome.path
            label = f"{outcome.path}#{outcome.name}" if outcome.name else str(outcome.path)
            if outcome.error is not None:
                failures += 1
                print_error(outcome.error)
            elif quiet:
                for p in outcome.outputs:
                    stdout.print(cell(p), highlight=False, soft_wrap=True)
            elif outcome.skipped:
                table.add_row(cell(label), "-", "(skipped: outputs exist)", "")
            else:
                names = outcome.result.stroke_label_names
                found = ", ".join(f"{n} ({names.count(n)})" for n in dict.fromkeys(names))
                table.add_row(cell(label), str(len(names)), cell(found), cell("\n".join(map(str, outcome.outputs))))
    if not quiet:
        stdout.print(table)
    if failures:
        stderr.print(f"{failures} of {len(files)} input(s) could not be segmented")
        raise typer.Exit(2)
