"""`sketchkit h5`: work with sketchkit results files (HDF5, docs/hdf5.md).

Examples:
    sketchkit h5 merge all.h5 all.h5.parts/            # the parts a multi-node run left on each node
    sketchkit h5 merge test.h5 node1/seg.h5 node2/seg.h5 --overwrite
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List

import typer
from rich.text import Text

from ._options import OverwriteOpt, QuietOpt, cell, stderr, stdout

app = typer.Typer(help="Work with sketchkit results files (HDF5).", no_args_is_help=True)


@app.command("merge")
def merge(
    out: Annotated[Path, typer.Argument(help="The merged results file to write.")],
    inputs: Annotated[List[Path], typer.Argument(help="Results files, or folders of them (every *.h5 inside, sorted by name).")],
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Join results files (the parts or per-rank shards of one run, or any files of one layout) into one.

    Example: sketchkit h5 merge all.h5 all.h5.parts/
    """
    from sketchkit.errors import UsageError
    from sketchkit.io.hdf5_merge import merge_results_h5

    files = [f for path in inputs for f in (sorted(path.glob("*.h5")) if path.is_dir() else [path])]
    if not files:
        raise UsageError("no results files to merge in the given folders")
    merged = merge_results_h5(files, out, overwrite=overwrite)
    import h5py

    with h5py.File(merged, "r") as h5:
        count = int(h5.attrs.get("num_sketches", 0))
    if quiet:
        stdout.print(cell(merged), highlight=False, soft_wrap=True)
    else:
        stderr.print(Text(f"{count} sketches from {len(files)} file(s) merged into {merged}"), highlight=False)
