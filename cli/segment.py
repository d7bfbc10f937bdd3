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

from ._options import (
    AdapterOpt,
    BackboneOpt,
    BatchOpt,
    CompileOpt,
    DeviceOpt,
    ModelOpt,
    OverwriteOpt,
    QuietOpt,
    StrictOpt,
    WeightsOpt,
    progress,
    stderr,
    stdout,
    announce_model,
)


def segment(
    inputs: Annotated[List[Path], typer.Argument(help="Sketch files (SVG, PNG/JPG, FrISS JSON, QuickDraw ndjson, FS-COCO .npy) or folders.")],
    labels: Annotated[Optional[str], typer.Option("--labels", "-l", help='Comma list "tree,house" or @file with one name per line (used verbatim).')] = None,
    caption: Annotated[Optional[str], typer.Option("--caption", "-c", help="Take the labels from this caption (else from a caption .txt beside each input).")] = None,
    vocab: Annotated[Optional[Path], typer.Option("--vocab", help="Vocabulary for caption matching (default: bundled list).")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (relative paths kept), or a file name for one input.")] = Path("segmented"),
    formats: Annotated[str, typer.Option("--format", "-f", help="Comma list of svg, h5, png, json.")] = "svg,json",
    model: ModelOpt = None,
    backbone: BackboneOpt = "ViT-B-16",
    weights: WeightsOpt = None,
    adapter: AdapterOpt = None,
    device: DeviceOpt = "auto",
    compile: CompileOpt = False,
    batch_size: BatchOpt = 8,
    threshold: Annotated[Optional[float], typer.Option("--threshold", help="Keep only pixels whose min-max normalised score reaches T (paper: 0.71); others become 'background'.")] = None,
    skip_existing: Annotated[bool, typer.Option("--skip-existing", help="Skip inputs whose outputs all exist (resume a batch).")] = False,
    overwrite: OverwriteOpt = False,
    strict: StrictOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Label the strokes of sketches with open-vocabulary categories."""
    from sketchkit.data import find_sketches
    from sketchkit.errors import UsageError
    from sketchkit.labels import load_vocabulary, parse_labels
    from sketchkit.model.zoo import ModelSpec, build_model, default_model_name
    from sketchkit.pipeline import SegmentJob, parse_formats, run_segment
    from sketchkit.predictor import Timings

    files = [f for path in inputs for f in find_sketches(path)]
    if not files:
        raise UsageError("no sketch files found in the given inputs")
    job = SegmentJob(
        inputs=files,
        out=out,
        formats=parse_formats(formats),
        labels=parse_labels(labels) if labels else None,
        caption=caption,
        vocabulary=load_vocabulary(vocab) if vocab else None,
        threshold=threshold,
        batch_size=batch_size,
        overwrite=overwrite,
        skip_existing=skip_existing,
        strict=strict,
    )
    name = model or default_model_name(str(adapter) if adapter else None)
    seg_model = build_model(ModelSpec(name, backbone, str(weights) if weights else None, str(adapter) if adapter else None, device, compile=compile))
    announce_model(seg_model.description, quiet)

    table = Table(title="sketchkit segment", show_lines=False)
    for column in ("file", "strokes", "labels found", "outputs"):
        table.add_column(column, overflow="fold")
    failures = 0
    timings = Timings()
    with progress(disable=quiet or len(files) < 2) as bar:
        task = bar.add_task("segmenting", total=len(files))
        for outcome in run_segment(job, seg_model, timings=timings):
            bar.advance(task)
            if outcome.error:
                failures += 1
                stderr.print(f"[red]Error:[/red] {outcome.error}", highlight=False, soft_wrap=True)
                continue
            if quiet:
                for p in outcome.outputs:
                    stdout.print(str(p), highlight=False, soft_wrap=True)
                continue
            if outcome.skipped:
                table.add_row(str(outcome.path), "-", "(skipped: outputs exist)", "")
                continue
            names = outcome.result.stroke_label_names
            counts = {n: names.count(n) for n in dict.fromkeys(names)}
            found = ", ".join(f"{n} ({c})" for n, c in counts.items())
            table.add_row(str(outcome.path), str(len(names)), found, "\n".join(str(p) for p in outcome.outputs))
    if not quiet:
        stdout.print(table)
    if failures:
        stderr.print(f"{failures} of {len(files)} input(s) could not be segmented")
        raise typer.Exit(2)
