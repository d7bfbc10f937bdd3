"""Reading a labelled sketch set for evaluation, in a deterministic order."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterator

from ..errors import InputError
from ..types import Sketch


def load_eval_sketches(
    data: str | os.PathLike,
    *,
    split: str | None = None,
    limit: int | None = None,
    allow_pickle: bool = False,
    strict: bool = False,
    on_error: Callable[[InputError], None] | None = None,
) -> tuple[list[Sketch], list[Path], str]:
    """Read a labelled set: (sketches, files, layout name), in a deterministic order.

    Layouts: the FS-COCO segmentation test folder (`sketchkit.io.fscoco_seg`: vector_sketches/,
    classes/, captions/; `split` picks a sub-folder; object arrays need `allow_pickle`), else any
    file or folder `sketchkit.data.find_sketches` reads (FrISS/CBSC JSON with data_partitions.json
    splits, sketchkit SVG, ...). Unreadable files go to `on_error` (or raise with `strict`).
    Every sketch is in memory: `iter_eval_sketches` streams them.
    """
    files, layout, items = iter_eval_sketches(data, split=split, limit=limit, allow_pickle=allow_pickle,
                                              strict=strict, on_error=on_error)
    return [sketch for _, sketch in items], files, layout


def iter_eval_sketches(
    data: str | os.PathLike,
    *,
    split: str | None = None,
    limit: int | None = None,
    allow_pickle: bool = False,
    strict: bool = False,
    on_error: Callable[[InputError], None] | None = None,
    owns: Callable[[int], bool] | None = None,
) -> tuple[list[Path], str, Iterator[tuple[int, Sketch]]]:
    """(files, layout name, (position, Sketch) read lazily), as `load_eval_sketches` orders them; only the
    paths are listed up front. `owns(position)`: read only the files it accepts (a process's share)."""
    from ..data import find_sketches, iter_sketches
    from ..io.fscoco_seg import find_fscoco_seg, is_fscoco_seg_layout, iter_fscoco_seg

    data = Path(data)
    seg_split = split if split is not None and is_fscoco_seg_layout(data / split) else None
    if seg_split is not None or is_fscoco_seg_layout(data):
        files = find_fscoco_seg(data, split=seg_split, limit=limit)
        layout = "fscoco-seg"
    else:
        files = find_sketches(data, split=split, limit=limit)
        layout = "sketch files"
    positions = [i for i in range(len(files)) if owns is None or owns(i)]

    def read() -> Iterator[tuple[int, Sketch]]:
        mine = [files[i] for i in positions]
        items = iter_fscoco_seg(mine, allow_pickle=allow_pickle) if layout == "fscoco-seg" else iter_sketches(mine, sidecar=False)
        for position, (_, item) in zip(positions, items):
            if isinstance(item, Exception):
                if strict:
                    raise item
                if on_error:
                    on_error(item)
            else:
                yield position, item

    return files, layout, read()
