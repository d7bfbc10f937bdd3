"""`sketchkit serve`: a warm model behind a local HTTP API, and a page to draw, segment and correct.

    from sketchkit.serve import ServeSettings, create_app
    app = create_app(build_segmenter(ModelSpec(backbone="tiny-random")), ServeSettings())
    serve(app, bind("127.0.0.1", 8765))              # uvicorn; loopback unless told otherwise

Modules: `app` (routes, errors; the API is documented in docs/serve.md), `batcher` (the model's worker
thread, bounded queue, batching), `payload` (request bodies -> sketches and label sets, limits),
`annotate` (folder mode and the stroke-3 annotation document), `server` (uvicorn, host checks),
`bench` (warm /segment latency), `static/` (the page: HTML, JS, CSS; no build step).
"""

from .annotate import AnnotationFolder, stroke3_document
from .app import ServeSettings, create_app
from .batcher import Batcher, Overloaded
from .server import DEFAULT_HOST, DEFAULT_PORT, bind, host_warning, serve

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "AnnotationFolder", "Batcher", "Overloaded", "ServeSettings", "bind",
           "create_app", "host_warning", "serve", "stroke3_document"]
