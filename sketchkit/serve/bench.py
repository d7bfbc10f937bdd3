"""Warm `POST /segment` latency through the real ASGI app with an in-process client (httpx's ASGI transport).

    rows = measure("../shared/data/friss/test/sceneid-0-userid-2.json", backbones=["tiny-random", "ViT-B-16"])
    rows[0].median_s, rows[0].goal_s, rows[0].met

Each backbone is built with random weights (speed does not depend on weight values; the rows say
so), served by `create_app` with its warm-up, and sent the same scene with its own label set a few
times untimed (the prompt ensemble's text features are then cached, as in a served session), then
`repeats` times timed. The feature cache is off while timing, so every request pays the encoder:
this is the latency of a new drawing. `median_cached_s` is the same request with the cache on
(the page re-asking a drawing with other labels or another threshold). Client and server run in
one process: the figures include JSON encoding, routing and the worker hand-off, not the network.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..errors import UsageError
from ..model import DEFAULT_BACKBONE

GOALS_S = {"tiny-random": 0.050, DEFAULT_BACKBONE: 0.300}
"""Issue 15's targets for a warm /segment of a FrISS scene on 2 CPU cores."""


@dataclass
class ServeLatency:
    backbone: str
    weights: str
    scene: str
    strokes: int
    labels: list[str]
    device: str
    threads: int
    repeats: int
    median_s: float
    p90_s: float
    min_s: float
    median_cached_s: float
    goal_s: float | None
    met: bool | None
    load_before: float | None
    load_after: float | None

    def as_dict(self) -> dict:
        return asdict(self)


def _load() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def default_scene(data: str | os.PathLike | None = None) -> Path:
    """The scene to time: `data` (a file, or the first .json of a folder in sorted order), else the
    first scene of FrISS test in ../shared/data (from here or the repository), else examples/house_tree_sun.svg."""
    repo = Path(__file__).resolve().parents[2]
    folders = [Path(data)] if data is not None else [Path("../shared/data/friss/test"),
                                                      repo.parent / "shared" / "data" / "friss" / "test"]
    for folder in folders:
        if folder.is_file():
            return folder
        scenes = sorted(folder.glob("*.json")) if folder.is_dir() else []
        if scenes:
            return scenes[0]
    if data is not None:
        raise UsageError(f"no .json scene in {data}")
    example = repo / "examples" / "house_tree_sun.svg"
    if example.is_file():
        return example
    raise UsageError("no scene to time: pass a FrISS scene file or folder")


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def measure(scene: str | os.PathLike, *, backbones: Sequence[str] = ("tiny-random", DEFAULT_BACKBONE), repeats: int = 20,
            warmup: int = 3, device: str = "auto", on_progress: Callable[[str], None] | None = None,
            encoders: dict | None = None) -> list[ServeLatency]:
    """One row per backbone (random weights): warm /segment latency of `scene` (see the module docstring).
    `encoders`: backbone -> an encoder already built (`sketchkit bench` passes its own), else built here."""
    import torch

    from ..inference import LabelPolicy, resolve_device, segmenter_on
    from ..io import read_sketch
    from ..model.factory import create_encoder
    from .app import ServeSettings, create_app

    if repeats < 1 or warmup < 0:
        raise UsageError("repeats must be at least 1 and warmup at least 0")
    scene = Path(scene)
    sketch = read_sketch(scene)
    labels = LabelPolicy(("ground-truth", "caption")).labels_for(sketch)
    body = {"sketch": scene.read_text(encoding="utf-8"), "filename": scene.name, "labels": labels}
    torch_device = resolve_device(device)
    rows = []
    for backbone in backbones:
        encoder = (encoders or {}).get(backbone)
        if encoder is None:
            if on_progress:
                on_progress(f"serve: building {backbone} (random weights)")
            encoder = create_encoder(backbone, device=torch_device, random_init=True)
        segmenter = segmenter_on("clip-surgery", encoder, torch_device)
        timings: dict[int, list[float]] = {}
        load_before = _load()
        for cache_size in (0, 16):
            app = create_app(segmenter, ServeSettings(labels=LabelPolicy.fixed(labels), cache_size=cache_size))
            if on_progress:
                on_progress(f"serve: timing {backbone} ({'new drawing' if not cache_size else 'cached features'})")
            timings[cache_size] = asyncio.run(_time_requests(app, body, warmup, repeats))
        uncached = timings[0]
        goal = GOALS_S.get(backbone)
        median = statistics.median(uncached)
        rows.append(ServeLatency(
            backbone=backbone, weights=encoder.weights_source, scene=scene.name, strokes=sketch.num_strokes,
            labels=list(labels), device=torch_device.type, threads=torch.get_num_threads(), repeats=repeats,
            median_s=median, p90_s=_percentile(uncached, 0.9), min_s=min(uncached),
            median_cached_s=statistics.median(timings[16]), goal_s=goal, met=None if goal is None else median <= goal,
            load_before=load_before, load_after=_load(),
        ))
    return rows


async def _time_requests(app, body: dict, warmup: int, repeats: int) -> list[float]:
    """Seconds per POST /segment (after `warmup` untimed ones), the app's lifespan (model worker) running."""
    import httpx

    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
            times = []
            for k in range(warmup + repeats):
                start = time.perf_counter()
                response = await client.post("/segment", json=body)
                if response.status_code != 200:
                    raise UsageError(f"/segment answered {response.status_code}: {response.text[:200]}")
                if k >= warmup:
                    times.append(time.perf_counter() - start)
            return times
