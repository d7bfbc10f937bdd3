"""`sketchkit labels "caption"`: the categories sketchkit extracts from a caption."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._options import QuietOpt, cell, stdout


def labels(
    caption: Annotated[str, typer.Argument(help="Caption text, e.g. 'a girl flies a kite near a tree'.")],
    vocab: Annotated[Optional[Path], typer.Option("--vocab", help="Vocabulary file (one name per line); default: bundled list.")] = None,
    max_labels: Annotated[Optional[int], typer.Option("--max", min=1, help="Keep at most N categories.")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Print the categories found in a caption, one per line (exit 2 with one line when none is found).

    Example: sketchkit labels "a girl flies a kite near a tree"
    """
    from sketchkit.errors import UsageError
    from sketchkit.labels import labels_from_caption, load_vocabulary
    from sketchkit.text import check_text

    if not caption.strip():
        raise UsageError("no caption given: pass the caption text, e.g. 'a cat on a mat'")
    check_text(caption, "the caption", UsageError)
    names = labels_from_caption(caption, load_vocabulary(vocab) if vocab else None, max_labels=max_labels)
    for name in names:
        stdout.print(cell(name), highlight=False)
    if not names:
        raise UsageError(f"no known category in the caption {caption!r} (pass --vocab with a list that names it)")
