"""The HTTP API and the page: a Starlette app around one warm Segmenter (routes: docs/serve.md).

    app = create_app(segmenter, ServeSettings(labels=LabelPolicy.fixed(["tree", "house"])))
    with TestClient(app) as client:                               # starts (and warms) the model worker
        client.post("/segment", json={"sketch": svg_text, "labels": ["tree"]}).json()

Every model call runs on the `Batcher`'s worker thread; request handlers read bodies (bounded by
`max_body`), parse sketches in Starlette's thread pool and wait for their job. Errors are JSON
`{"error": one line, "hint": what to send instead}` with 400 (bad input: the message the CLI prints for the
same file), 404, 413 (too large), 415 (not JSON), 503 + Retry-After (queue full), 500 (a bug).
POST and PUT take `application/json` only, which a page of another site cannot send here without
the server's consent (it gives none): no cross-site request writes an annotation.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

import sketchkit
from ..errors import InputError, SketchkitError, UsageError
from ..inference import LabelPolicy, Segmenter, ground_truth_result
from ..types import SegmentResult, Sketch
from . import payload
from .annotate import AnnotationFolder, UnknownSketch, stroke3_document
from .batcher import DEFAULT_BATCH, DEFAULT_CACHE, DEFAULT_QUEUE, Batcher, Overloaded

STATIC = Path(str(resources.files("sketchkit.serve") / "static"))

HINTS = {
    "labels": 'send "labels" or "caption" (or start the server with --labels or --caption)',
    "threshold": '"threshold" takes a number in [0, 1] or null',
    "vocabulary": 'send "labels" instead, or see POST /labels for the categories a caption yields',
}
"""The API's words for the library's error hints (the CLI's are flags)."""

CONVERT_FORMATS = {"svg": "image/svg+xml", "png": "image/png", "json": "application/json",
                   "friss": "application/json"}


@dataclass
class ServeSettings:
    """labels: the label policy of requests that send neither labels nor caption (default: the
    sketch's own caption); annotate: folder mode; max_body: largest request body in bytes;
    max_queue / max_batch: the model queue (503 beyond it) and the largest batch; cache_size:
    sketches whose encoded features are kept (0: none); warmup: segment a
    small built-in sketch at start so that the first request finds the model warm."""

    labels: LabelPolicy = field(default_factory=LabelPolicy.from_caption)
    annotate: AnnotationFolder | None = None
    max_body: int = payload.MAX_REQUEST_BYTES
    max_queue: int = DEFAULT_QUEUE
    max_batch: int = DEFAULT_BATCH
    cache_size: int = DEFAULT_CACHE
    warmup: bool = True
    allowed_hosts: tuple[str, ...] | None = None  # Host header names accepted (None: any), against DNS rebinding


def warmup_sketch() -> Sketch:
    """Three short strokes: enough to run every stage once."""
    strokes = (np.array([[10.0, 10.0], [90.0, 10.0], [90.0, 60.0]]), np.array([[20.0, 80.0], [80.0, 90.0]]),
               np.array([[50.0, 30.0], [55.0, 50.0], [45.0, 70.0]]))
    return Sketch(strokes=strokes, width=100.0, height=100.0)


def status_of(exc: BaseException) -> int:
    if isinstance(exc, payload.TooLarge):
        return 413
    if isinstance(exc, Overloaded):
        return 503
    if isinstance(exc, UnknownSketch):
        return 404
    if isinstance(exc, (InputError, UsageError)):
        return 400
    return 500


def error_body(exc: BaseException) -> dict:
    """{"error": the one-line message, "hint": what to change} (hint only when the error has one)."""
    body = {"error": " ".join(str(exc).split()) or type(exc).__name__}
    hint = getattr(exc, "hint", None)
    if hint in HINTS:
        body["hint"] = HINTS[hint]
    return body


def sketch_geometry(sketch: Sketch, name: str | None = None) -> dict:
    """What the page draws: canvas, strokes as [[x, y], ...] in canvas units (4 decimals), widths,
    the file's own labels and caption."""
    return {
        "source": name if name is not None else sketch.source,
        "canvas": [float(sketch.width), float(sketch.height)],
        "strokes": [np.round(np.asarray(s, dtype=np.float64), 4).tolist() for s in sketch.strokes],
        "stroke_widths": None if sketch.stroke_widths is None else np.round(sketch.stroke_widths, 4).tolist(),
        "stroke_labels": None if sketch.labels is None else list(sketch.labels),
        "caption": sketch.caption,
    }


def labelled_result(sketch: Sketch, stroke_labels: list[str | None], labels=(), model: str | None = None
                    ) -> SegmentResult:
    """The sketch with `stroke_labels` as its labels, as a result every writer draws (label order:
    `labels` first, then other names as they appear)."""
    names = [n for n in dict.fromkeys([*labels, *(n for n in stroke_labels if n is not None)]) if n]
    result = ground_truth_result(replace(sketch, labels=tuple(stroke_labels)), names=names)
    described = f"annotated ({'corrections of ' + model if model else 'by hand'})"
    return replace(result, model=described, scoring="annotation")


class Service:
    """The app's state: the segmenter, its batcher, the settings, and folder mode."""

    def __init__(self, segmenter: Segmenter, settings: ServeSettings):
        self.segmenter, self.settings = segmenter, settings
        self.batcher = Batcher(segmenter, max_queue=settings.max_queue, max_batch=settings.max_batch,
                               cache_size=settings.cache_size)
        self.folder = settings.annotate

    # ---- requests ----------------------------------------------------------------------------------
    async def body(self, request: Request) -> dict:
        """The JSON object a POST/PUT carries, read up to `max_body` bytes (413 beyond)."""
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            raise HTTPException(415, "send the request as application/json (see docs/serve.md)")
        limit = self.settings.max_body
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise payload.body_too_large(int(declared), limit)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise payload.body_too_large(None, limit)
            chunks.append(chunk)
        return payload.parse_json_body(b"".join(chunks))

    def sketch(self, body: dict) -> Sketch:
        """The request's sketch: from "index" in folder mode, else from "sketch" / "sketch_base64"."""
        index = payload.request_index(body)
        if index is not None:
            if body.get("sketch") is not None or body.get("sketch_base64") is not None:
                raise InputError('send either "index" or a sketch, not both')
            folder = self.require_folder()
            return replace(folder.read(index), source=folder.item(index).name)
        data, name = payload.sketch_bytes(body)
        return payload.read_sketch_bytes(data, name)

    def require_folder(self) -> AnnotationFolder:
        if self.folder is None:
            raise UnknownSketch("the server is not in folder mode (start it with --annotate DIR)")
        return self.folder

    async def segment(self, sketch: Sketch, labels, threshold) -> SegmentResult:
        """The job's result from the model worker (Overloaded at once when its queue is full)."""
        return await asyncio.wrap_future(self.batcher.submit(sketch, labels, threshold))

    def admit(self) -> None:
        """Refuse at once (503) when the queue is full, before reading a body."""
        if self.batcher.full():
            raise self.batcher.overloaded()

    # ---- routes ------------------------------------------------------------------------------------
    async def index(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def health(self, request: Request) -> Response:
        seg, weights = self.segmenter, self.segmenter.weights or {}
        annotate = None
        if self.folder is not None:
            done, total = self.folder.progress()
            annotate = {"folder": self.folder.folder.name, "done": done, "total": total}
        return JSONResponse({
            "status": "ok",
            "sketchkit_version": sketchkit.__version__,
            "model": seg.description,
            "method": seg.name,
            "backbone": weights.get("backbone"),
            "weights": weights.get("weights"),
            "adapter": weights.get("adapter"),
            "random_weights": bool(seg.random_weights),
            "device": str(getattr(seg, "device", "cpu")),
            "warm": self.batcher.warm,
            "queue": {"waiting": self.batcher.pending, "max": self.batcher.max_queue,
                      "max_batch": self.batcher.max_batch},
            "stats": self.batcher.stats.as_dict(),
            "default_labels": list(self.settings.labels.names) or None,
            "limits": {"max_request_bytes": self.settings.max_body, "max_file_bytes": payload.MAX_FILE_BYTES},
            "annotate": annotate,
        })

    async def segment_route(self, request: Request) -> Response:
        self.admit()
        body = await self.body(request)
        sketch = await run_in_threadpool(self.sketch, body)
        labels = await run_in_threadpool(payload.request_labels, body, sketch, self.settings.labels)
        result = await self.segment(sketch, labels, payload.request_threshold(body))
        return JSONResponse(await run_in_threadpool(_result_dict, result))

    async def convert_route(self, request: Request) -> Response:
        body = await self.body(request)
        fmt = body.get("format", "svg")
        if fmt not in CONVERT_FORMATS:
            raise InputError(f"unknown format {fmt!r:.40}; choose one of {', '.join(CONVERT_FORMATS)}")
        sketch = await run_in_threadpool(self.sketch, body)
        if body.get("stroke_labels") is not None:
            labels = payload.parse_label_list(body["labels"]) if body.get("labels") else []
            result = await run_in_threadpool(labelled_result, sketch, payload.stroke_labels(body, sketch.num_strokes),
                                             labels, self.segmenter.description)
        else:
            self.admit()
            labels = await run_in_threadpool(payload.request_labels, body, sketch, self.settings.labels)
            result = await self.segment(sketch, labels, payload.request_threshold(body))
        content = await run_in_threadpool(_render, result, fmt)
        stem = Path(sketch.source).stem if sketch.source else "sketch"
        suffix = {"friss": ".labels.json", "json": ".json"}.get(fmt, f".{fmt}")
        return Response(content, media_type=CONVERT_FORMATS[fmt],
                        headers={"Content-Disposition": f'attachment; filename="{_ascii_name(stem)}{suffix}"'})

    async def parse_route(self, request: Request) -> Response:
        body = await self.body(request)
        sketch = await run_in_threadpool(self.sketch, body)
        return JSONResponse(sketch_geometry(sketch))

    async def labels_route(self, request: Request) -> Response:
        from ..labels import labels_from_caption

        body = await self.body(request)
        caption, limit = body.get("caption"), body.get("max")
        if not isinstance(caption, str):
            raise InputError('send {"caption": "a sentence"}')
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise InputError(f'"max" must be a whole number of at least 1, got {limit!r:.40}')
        names = await run_in_threadpool(labels_from_caption, caption, self.settings.labels.vocabulary,
                                        max_labels=limit)
        return JSONResponse({"caption": caption, "labels": names})

    async def annotate_list(self, request: Request) -> Response:
        folder = self.require_folder()
        done, total = folder.progress()
        return JSONResponse({
            "folder": folder.folder.name, "done": done, "total": total, "next": folder.next_index(),
            "items": [{"index": item.index, "name": item.name, "done": item.labels_path.is_file()}
                      for item in folder.items],
        })

    async def annotate_item(self, request: Request) -> Response:
        folder = self.require_folder()
        index = request.path_params["index"]
        item = folder.item(index)
        if request.method == "PUT":
            body = await self.body(request)
            sketch = await run_in_threadpool(folder.read, index)
            labels = payload.parse_label_list(body["labels"]) if body.get("labels") else []
            stroke_labels = payload.stroke_labels(body, sketch.num_strokes)
            path = await run_in_threadpool(lambda: folder.save(index, sketch, stroke_labels, labels=labels,
                                                               model=self.segmenter.description))
            done, total = folder.progress()
            return JSONResponse({"index": index, "saved": path.relative_to(folder.folder).as_posix(), "done": done,
                                 "total": total, "next": folder.next_index(index)})
        sketch = await run_in_threadpool(folder.read, index)
        saved, problem = None, None
        try:
            saved = await run_in_threadpool(folder.saved_labels, index, sketch.num_strokes)
        except InputError as exc:
            problem = error_body(exc)["error"]
        done, total = folder.progress()
        return JSONResponse({
            "index": index, "name": item.name, "total": total, "done_count": done,
            "done": saved is not None, "saved_labels": saved, "saved_error": problem,
            "sketch": sketch_geometry(sketch, item.name),
        })


def _result_dict(result: SegmentResult) -> dict:
    from ..io.result_json import result_to_dict

    return result_to_dict(result)


def _render(result: SegmentResult, fmt: str) -> bytes:
    import json

    if fmt == "svg":
        from ..io.svg_writer import result_to_svg

        return result_to_svg(result).encode("utf-8")
    if fmt == "png":
        from ..render import png_bytes, render_overlay

        return png_bytes(render_overlay(result))
    if fmt == "json":
        from ..io.result_json import result_to_json

        return result_to_json(result).encode("utf-8")
    labels = [result.labels[c] if c >= 0 else None for c in np.asarray(result.votes.labels)]
    doc = stroke3_document(result.sketch, labels, labels=result.labels)
    return (json.dumps(doc, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")


def _ascii_name(stem: str) -> str:
    return "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in stem)[:100] or "sketch"


def _json_error(request: Request, exc: BaseException) -> Response:
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Overloaded) else None
    return JSONResponse(error_body(exc), status_code=status_of(exc), headers=headers)


def _http_error(request: Request, exc: HTTPException) -> Response:
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def _unexpected(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": f"unexpected {type(exc).__name__}: {' '.join(str(exc).split())}"},
                        status_code=500)


def create_app(segmenter: Segmenter, settings: ServeSettings | None = None) -> Starlette:
    """The Starlette app: routes, JSON errors, the model worker started (and warmed) with the app."""
    settings = settings or ServeSettings()
    service = Service(segmenter, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        service.batcher.start(warmup_sketch() if settings.warmup else None,
                              tuple(settings.labels.names) or ("tree",))
        try:
            yield
        finally:
            await run_in_threadpool(service.batcher.stop)

    routes = [
        Route("/", service.index),
        Route("/health", service.health),
        Route("/segment", service.segment_route, methods=["POST"]),
        Route("/convert", service.convert_route, methods=["POST"]),
        Route("/parse", service.parse_route, methods=["POST"]),
        Route("/labels", service.labels_route, methods=["POST"]),
        Route("/annotate", service.annotate_list),
        Route("/annotate/{index:int}", service.annotate_item, methods=["GET", "PUT"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=list(settings.allowed_hosts))] \
        if settings.allowed_hosts else []
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan, exception_handlers={
        SketchkitError: _json_error, HTTPException: _http_error, Exception: _unexpected})
    app.state.service = service
    return app
