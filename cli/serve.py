"""`sketchkit serve`: a warm model behind a local HTTP API and a page to draw, segment and correct.

Examples:
    sketchkit serve                                     # http://127.0.0.1:8765/
    sketchkit serve --annotate drawings/ --labels "house,tree,sun"
    sketchkit serve --backbone tiny-random --port 9000  # random weights: for trying the page out
    sketchkit serve --host 0.0.0.0                      # other machines too (warns: no authentication)

The HTTP API: docs/serve.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.text import Text

from ._options import (AdapterOpt, BackboneOpt, BatchOpt, DeviceOpt, ModelOpt, QuietOpt, WeightsOpt, announce_model,
                       cell, stderr, stdout)


def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on. Default: loopback only; any other address is served with a warning.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535, help="TCP port (0: any free one).")] = 8765,
    annotate: Annotated[Optional[Path], typer.Option("--annotate", help="Folder mode: walk this folder's sketches and save corrections beside each as NAME.labels.json.")] = None,
    labels: Annotated[Optional[str], typer.Option("--labels", "-l", help='Default labels of requests that send none, "tree,house" or @file (else the caption, else each sketch\'s caption).')] = None,
    caption: Annotated[Optional[str], typer.Option("--caption", "-c", help="Default caption whose categories label requests that send none.")] = None,
    vocab: Annotated[Optional[Path], typer.Option("--vocab", help="Category names captions are matched against (default: bundled list).")] = None,
    model: ModelOpt = None,
    backbone: BackboneOpt = None,
    weights: WeightsOpt = None,
    adapter: AdapterOpt = None,
    device: DeviceOpt = "auto",
    batch_size: BatchOpt = 8,
    queue: Annotated[int, typer.Option("--queue", min=1, help="Requests that may wait for the model; more get 503 with Retry-After.")] = 32,
    quiet: QuietOpt = False,
) -> None:
    """Serve the model and the annotation page until Ctrl-C.

    Example: sketchkit serve --annotate drawings/ --labels "house,tree,sun"
    """
    from sketchkit.inference import LabelPolicy, ModelSpec, build_segmenter, default_method
    from sketchkit.labels import load_vocabulary, parse_labels
    from sketchkit.serve import AnnotationFolder, ServeSettings, bind, create_app, host_warning, serve as run_server
    from sketchkit.serve.server import allowed_hosts, url_of

    warning = host_warning(host)
    if warning:
        stderr.print(Text.assemble(("Warning:", "yellow"), " ", warning), highlight=False, soft_wrap=True)
    policy = LabelPolicy.for_segment(parse_labels(labels) if labels is not None else None, caption,
                                     load_vocabulary(vocab) if vocab else None)
    folder = AnnotationFolder(annotate) if annotate is not None else None
    sock = bind(host, port)  # before the model loads: a busy port fails at once
    try:
        segmenter = build_segmenter(ModelSpec(model or default_method(str(adapter) if adapter else None), backbone,
                                              str(weights) if weights else None, str(adapter) if adapter else None,
                                              device))
        announce_model(segmenter, quiet)
        settings = ServeSettings(labels=policy, annotate=folder, max_queue=queue, max_batch=batch_size,
                                 allowed_hosts=allowed_hosts(host))
        app = create_app(segmenter, settings)
        if folder is not None and not quiet:
            done, total = folder.progress()
            stderr.print(cell(f"annotating {folder.folder}: {done} / {total} done"), highlight=False)
        stdout.print(cell(f"Serving {url_of(sock)} (Ctrl-C stops)" if not quiet else url_of(sock)), highlight=False,
                     soft_wrap=True)
        run_server(app, sock)
    finally:
        sock.close()

