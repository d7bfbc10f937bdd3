"""`sketchkit serve`: the HTTP API through an in-process client (schemas, 400/404/413/415/503, batching,
loopback, no path traversal), folder mode (annotations read back; a killed server loses nothing and resumes)."""

from __future__ import annotations

import base64
import inspect
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from sketchkit.cli.app import main
from sketchkit.inference import segmenter_on
from sketchkit.io import read_sketch
from sketchkit.labels import labels_from_caption
from sketchkit.serve import AnnotationFolder, ServeSettings, create_app, host_warning, stroke3_document
from sketchkit.serve import payload
from sketchkit.serve.server import DEFAULT_HOST, allowed_hosts
from sketchkit.types import Sketch

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "house_tree_sun.svg"
LABELS = ["house", "tree", "sun"]


@pytest.fixture(scope="module")
def segmenter(tiny_encoder):
    return segmenter_on("clip-surgery", tiny_encoder, "cpu")


@pytest.fixture()
def client(segmenter):
    with TestClient(create_app(segmenter, ServeSettings(warmup=False))) as client:
        yield client


class Gated:
    """A segmenter whose encode waits for `gate` and records each batch size."""

    def __init__(self, inner):
        self.inner, self.gate, self.entered, self.batches = inner, threading.Event(), threading.Event(), []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def encode(self, rasters, sketches=None):
        self.batches.append(len(rasters))
        self.entered.set()
        assert self.gate.wait(60), "the test never opened the gate"
        return self.inner.encode(rasters, sketches)


def wait_for(condition, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


# ---- schemas -----------------------------------------------------------------------------------------------------


def test_health_says_model_weights_device_and_warm_state(segmenter):
    with TestClient(create_app(segmenter)) as client:  # with the warm-up
        wait_for(lambda: client.get("/health").json()["warm"], what="the warm-up")
        health = client.get("/health").json()
    assert health["status"] == "ok" and health["random_weights"] is True
    assert "RANDOM WEIGHTS" in health["model"] and health["backbone"] == "tiny-random"
    assert health["weights"] == "random weights" and health["device"] == "cpu" and health["method"] == "clip-surgery"
    assert health["queue"] == {"waiting": 0, "max": 32, "max_batch": 8}
    assert health["stats"]["jobs"] == 0  # the warm-up is not counted
    assert health["limits"]["max_request_bytes"] == payload.MAX_REQUEST_BYTES and health["annotate"] is None


def test_segment_answers_the_schema_of_segment_format_json(client, tmp_path, capsys):
    response = client.post("/segment", json={"sketch": EXAMPLE.read_text(), "filename": EXAMPLE.name, "labels": LABELS})
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    served = response.json()
    code, _, err = cli(capsys, "segment", EXAMPLE, "--labels", ",".join(LABELS), "--backbone", "tiny-random",
                       "--format", "json", "--out", tmp_path, "--quiet")
    assert code == 0, err
    written = json.loads((tmp_path / "house_tree_sun.json").read_text())
    assert served.keys() == written.keys()
    assert served["strokes"][0].keys() == written["strokes"][0].keys()
    served["source"] = written["source"]  # the CLI names the path, the server the upload's name
    assert served == written  # same model (tiny-random, fixed seed), same numbers
    assert len(served["strokes"]) == read_sketch(EXAMPLE).num_strokes


def test_segment_takes_stroke3_png_caption_threshold_and_comma_labels(client, tmp_path):
    scene = {"img_w": 200, "img_h": 100, "scene_strokes": [[10, 10, 0], [50, 0, 1], [0, 40, 0], [60, 30, 1]]}
    result = client.post("/segment", json={"sketch": scene, "labels": "cat , dog,cat"}).json()
    assert result["labels"] == ["cat", "dog"] and len(result["strokes"]) == 2 and result["canvas"] == [200, 100]
    png = tmp_path / "d.png"
    image = np.full((64, 64), 255, np.uint8)
    image[10:50, 30:33] = 0
    Image.fromarray(image).save(png)
    encoded = base64.b64encode(png.read_bytes()).decode()
    for body in ({"sketch_base64": encoded}, {"sketch_base64": "data:image/png;base64," + encoded}):
        response = client.post("/segment", json={**body, "caption": "a tree by a house"})
        assert response.status_code == 200, response.text
        assert response.json()["labels"] == labels_from_caption("a tree by a house")
    thresholded = client.post("/segment", json={"sketch": scene, "labels": ["cat"], "threshold": 0.99}).json()
    assert thresholded["labels"] == ["cat", "background"] and thresholded["threshold"] == 0.99


def test_convert_writes_svg_png_json_and_friss_with_corrected_labels(client):
    geometry = client.post("/parse", json={"sketch": EXAMPLE.read_text(), "filename": EXAMPLE.name}).json()
    count = len(geometry["strokes"])
    assert geometry["canvas"] == [640.0, 420.0] and geometry["stroke_labels"][0] == "house"
    corrected = ["sun"] * 3 + ["house"] * (count - 3)
    body = {"sketch": EXAMPLE.read_text(), "filename": EXAMPLE.name, "stroke_labels": corrected, "labels": LABELS}
    svg = client.post("/convert", json={**body, "format": "svg"})
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert 'filename="house_tree_sun.svg"' in svg.headers["content-disposition"]
    png = client.post("/convert", json={**body, "format": "png"})
    assert png.content.startswith(b"\x89PNG")
    friss = client.post("/convert", json={**body, "format": "friss"}).json()
    assert friss["gt_class_names"] == ["sun", "house"] and friss["object_divisions"] == [0, 3, count]
    as_json = client.post("/convert", json={**body, "format": "json"}).json()
    assert [s["label"] for s in as_json["strokes"]] == corrected and as_json["model"].startswith("annotated")
    segmented = client.post("/convert", json={"sketch": EXAMPLE.read_text(), "labels": LABELS})
    assert segmented.status_code == 200 and b"<svg" in segmented.content  # no stroke_labels: the model's


def test_written_files_read_back_with_the_corrected_labels(client, tmp_path):
    text = EXAMPLE.read_text()
    count = len(client.post("/parse", json={"sketch": text}).json()["strokes"])
    corrected = [LABELS[i % 3] for i in range(count)]
    for fmt, name in (("svg", "a.svg"), ("friss", "a.labels.json")):
        content = client.post("/convert", json={"sketch": text, "stroke_labels": corrected, "format": fmt}).content
        (tmp_path / name).write_bytes(content)
        assert list(read_sketch(tmp_path / name).labels) == corrected, fmt


def test_labels_route_is_sketchkit_labels(client):
    caption = "a girl flies a kite near two palm trees"
    assert client.post("/labels", json={"caption": caption}).json()["labels"] == labels_from_caption(caption)
    assert client.post("/labels", json={"caption": caption, "max": 1}).json()["labels"] == labels_from_caption(caption)[:1]
    assert client.post("/labels", json={"caption": 3}).status_code == 400


def test_stroke3_document_round_trip_and_unlabelled_strokes(tmp_path):
    strokes = (np.array([[1.5, 2.25], [3.0, 4.0]]), np.array([[10.0, 10.0]]), np.array([[0.1, 0.2], [5.5, 6.6]]),
               np.array([[7.0, 8.0], [9.0, 1.0], [2.0, 3.0]]))
    sketch = Sketch(strokes=strokes, width=20.0, height=15.0, source="x/scene.svg")
    doc = stroke3_document(sketch, ["a", "background", "b", None])  # unlabelled inside the labelled range move last
    assert doc["source_strokes"] == [0, 2, 1, 3] and doc["gt_class_names"] == ["a", "b"]
    assert doc["object_divisions"] == [0, 1, 2] and doc["img_id"] == "scene" and (doc["img_w"], doc["img_h"]) == (20, 15)
    path = tmp_path / "scene.labels.json"
    path.write_text(json.dumps(doc))
    back = read_sketch(path)
    assert back.labels == ("a", "b", None, None)
    for written, source in zip(back.strokes, doc["source_strokes"]):
        np.testing.assert_allclose(written, strokes[source], atol=1e-9)
    kept = stroke3_document(sketch, [None, "a", "a", "b"])  # leading unlabelled strokes keep their place
    assert kept["source_strokes"] == [0, 1, 2, 3] and kept["object_divisions"] == [1, 3, 4]
    ends = stroke3_document(sketch, [None, "a", "b", "background"])  # and trailing ones
    assert ends["source_strokes"] == [0, 1, 2, 3] and ends["object_divisions"] == [1, 2, 3]


# ---- errors ------------------------------------------------------------------------------------------------------

BAD_FILES = {
    "truncated.svg": b'<svg xmlns="http://www.w3.org/2000/svg"><path d="M 0 0 L',
    "schema.json": b'{"hello": 1}',
    "rows.json": b'{"scene_strokes": [[1, 2], [3, 4]]}',
    "garbage.png": b"not a png at all",
    "nan.json": b'{"scene_strokes": [[NaN, 1, 1]]}',
    "empty.json": b'{"scene_strokes": []}',
    "bomb.svg": b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aaaa">]><svg>&a;</svg>',
}


def test_bad_sketches_give_400_with_the_line_the_cli_prints(client, tmp_path, capsys):
    for name, data in BAD_FILES.items():
        (tmp_path / name).write_bytes(data)
    code, _, err = cli(capsys, "segment", *sorted(tmp_path.iterdir()), "--labels", "a", "--backbone", "tiny-random",
                       "--out", tmp_path / "out", "--quiet")
    assert code == 2
    lines = {line for line in err.splitlines() if line.startswith("Error:")}
    for name, data in BAD_FILES.items():
        response = client.post("/segment", json={"sketch_base64": base64.b64encode(data).decode(), "filename": name,
                                                 "labels": ["a"]})
        assert response.status_code == 400, (name, response.text)
        error = response.json()["error"]
        assert "\n" not in error and "Traceback" not in error
        assert f"Error: {tmp_path / name}{error[len(name):]}" in lines, (error, lines)


@pytest.mark.parametrize("body, status, fragment", [
    (b"not json", 400, "not valid JSON"),
    (b"[1, 2]", 400, "must be a JSON object"),
    (b"[" * 100_000, 400, "nested too deeply"),
    (b"{}", 400, 'exactly one of "sketch"'),
    (json.dumps({"sketch": "<svg/>", "sketch_base64": "AA=="}).encode(), 400, "got both"),
    (json.dumps({"sketch_base64": "%%%"}).encode(), 400, "not valid base64"),
    (json.dumps({"sketch": 5}).encode(), 400, '"sketch" must be text'),
    (json.dumps({"sketch": EXAMPLE.read_text(), "labels": 7}).encode(), 400, '"labels" must be'),
    (json.dumps({"sketch": EXAMPLE.read_text(), "labels": " , "}).encode(), 400, "no labels given"),
    (json.dumps({"sketch": EXAMPLE.read_text(), "labels": ["a"], "threshold": 2}).encode(), 400, "within [0, 1]"),
    (json.dumps({"sketch": EXAMPLE.read_text(), "labels": ["a"], "threshold": "high"}).encode(), 400, "threshold"),
    (json.dumps({"sketch": EXAMPLE.read_text(), "caption": "zzz qqq"}).encode(), 400, "no known category"),
    (json.dumps({"sketch": EXAMPLE.read_text(), "labels": ["a"], "index": 0}).encode(), 400, 'either "index"'),
    (json.dumps({"index": 0}).encode(), 404, "not in folder mode"),
])
def test_malformed_requests_give_one_line_errors(client, body, status, fragment):
    response = client.post("/segment", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"] and "\n" not in response.json()["error"]


def test_error_hints_name_request_fields(client):
    sketch = {"scene_strokes": [[1, 1, 0], [5, 5, 1]]}  # no caption, no labels, none by default
    response = client.post("/segment", json={"sketch": sketch})
    assert response.status_code == 400 and '"labels" or "caption"' in response.json()["hint"]


def test_only_json_bodies_and_unknown_routes(client):
    assert client.post("/segment", content=b"<svg/>", headers={"Content-Type": "text/plain"}).status_code == 415
    assert client.post("/segment", data={"sketch": "x"}).status_code == 415  # a form, as a cross-site page could send
    assert client.get("/segment").status_code == 405
    assert client.get("/nothing").json()["error"] == "Not Found"
    assert client.post("/convert", json={"sketch": EXAMPLE.read_text(), "format": "gif"}).status_code == 400


def test_bodies_over_the_limit_give_413(segmenter, monkeypatch):
    with TestClient(create_app(segmenter, ServeSettings(warmup=False, max_body=10_000))) as client:
        big = {"sketch": "<svg>" + " " * 20_000 + "</svg>", "labels": ["a"]}
        response = client.post("/segment", json=big)
        assert response.status_code == 413 and "more than the 0.0 MiB" in response.json()["error"]

        def chunks():  # no Content-Length: counted while streaming
            for _ in range(30):
                yield b" " * 1000

        streamed = client.post("/segment", content=chunks(), headers={"Content-Type": "application/json"})
        assert streamed.status_code == 413
        assert client.post("/segment", json={"sketch": EXAMPLE.read_text(), "labels": ["a"]}).status_code == 200
    monkeypatch.setattr(payload, "MAX_FILE_BYTES", 1000)  # a sketch file over the readers' limit inside a body
    with TestClient(create_app(segmenter, ServeSettings(warmup=False))) as client:
        response = client.post("/segment", json={"sketch": EXAMPLE.read_text(), "filename": "x.svg", "labels": ["a"]})
        assert response.status_code == 413 and response.json()["error"].startswith("x.svg: the file is")


def test_documented_limits():
    limits = (REPO / "docs" / "limits.md").read_text()
    assert f"{payload.MAX_REQUEST_BYTES / 2**20:.1f} MiB" in limits and "413" in limits
    serve_doc = (REPO / "docs" / "serve.md").read_text()
    for route in ("GET /health", "POST /segment", "POST /convert", "POST /parse", "POST /labels", "GET /annotate",
                  "PUT /annotate/{index}", "503", "413", "Retry-After"):
        assert route in serve_doc, route


# ---- queue, batching, overload -------------------------------------------------------------------------------------


def test_a_flood_gets_503_with_retry_after(segmenter):
    gated = Gated(segmenter)
    settings = ServeSettings(warmup=False, max_queue=2, max_batch=1, cache_size=0)
    body = {"sketch": EXAMPLE.read_text(), "labels": LABELS}
    with TestClient(create_app(gated, settings)) as client, ThreadPoolExecutor(12) as pool:
        futures = [pool.submit(client.post, "/segment", json=body) for _ in range(12)]  # a bounded flood
        wait_for(lambda: sum(f.done() for f in futures) >= 9, what="the refusals")
        gated.gate.set()
        responses = [f.result(timeout=60) for f in futures]
    codes = sorted(r.status_code for r in responses)
    assert codes.count(503) >= 9 and set(codes) == {200, 503} and codes.count(200) <= 3, codes
    for refused in (r for r in responses if r.status_code == 503):
        assert int(refused.headers["Retry-After"]) >= 1 and "busy" in refused.json()["error"]


def test_requests_arriving_together_are_encoded_in_one_batch(segmenter):
    gated = Gated(segmenter)
    scenes = [{"img_w": 100, "img_h": 100, "scene_strokes": [[10 + k, 10, 0], [30, 40, 1]]} for k in range(5)]
    with TestClient(create_app(gated, ServeSettings(warmup=False))) as client, ThreadPoolExecutor(5) as pool:
        first = pool.submit(client.post, "/segment", json={"sketch": scenes[0], "labels": ["a"]})
        assert gated.entered.wait(30)  # the worker holds the first request
        rest = [pool.submit(client.post, "/segment", json={"sketch": s, "labels": [f"l{k}"]}) for k, s in enumerate(scenes[1:])]
        wait_for(lambda: client.app.state.service.batcher.pending == 4, what="4 queued requests")
        gated.gate.set()
        answers = [f.result(timeout=60) for f in [first, *rest]]
    assert [a.status_code for a in answers] == [200] * 5
    assert [a.json()["labels"] for a in answers[1:]] == [[f"l{k}"] for k in range(4)]  # each job keeps its labels
    assert gated.batches == [1, 4]


def test_the_same_drawing_again_is_decoded_from_cached_features(segmenter):
    gated = Gated(segmenter)
    gated.gate.set()
    with TestClient(create_app(gated, ServeSettings(warmup=False))) as client:
        for threshold in (None, 0.5, 0.8):
            assert client.post("/segment", json={"sketch": EXAMPLE.read_text(), "labels": LABELS,
                                                 "threshold": threshold}).status_code == 200
        stats = client.get("/health").json()["stats"]
    assert gated.batches == [1] and stats["cache_hits"] == 2 and stats["jobs"] == 3


# ---- binding and path traversal ------------------------------------------------------------------------------------


def test_loopback_by_default_and_a_warning_for_any_other_host(segmenter, capsys):
    from cli.serve import serve as serve_command

    assert inspect.signature(serve_command).parameters["host"].default == DEFAULT_HOST == "127.0.0.1"
    for host in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"):
        assert host_warning(host) is None and {"127.0.0.1", "localhost", "[::1]"} <= set(allowed_hosts(host))
    assert "127.0.0.2" in allowed_hosts("127.0.0.2")
    for host in ("0.0.0.0", "::", "192.0.2.7", "example.org"):
        assert "no authentication" in host_warning(host) and allowed_hosts(host) is None
    code, _, err = cli(capsys, "serve", "--host", "256.1.1.1", "--backbone", "tiny-random")  # warns, then cannot bind
    assert code == 2 and "Warning: listening on 256.1.1.1" in err and "cannot listen on 256.1.1.1" in err
    settings = ServeSettings(warmup=False, allowed_hosts=allowed_hosts("127.0.0.1"))
    with TestClient(create_app(segmenter, settings), base_url="http://127.0.0.1:8765") as client:
        assert client.get("/health").status_code == 200
        assert client.get("/health", headers={"Host": "attacker.example"}).status_code == 400  # DNS rebinding


def test_no_path_traversal_through_any_parameter(client, tmp_path):
    secret = tmp_path / "secret.svg"
    secret.write_text(EXAMPLE.read_text().replace("house", "SECRET"))
    for name in (str(secret), "../" * 8 + str(secret).lstrip("/"), "..\\..\\secret.svg", "..", "/"):
        response = client.post("/segment", json={"sketch": "<svg", "filename": name, "labels": ["a"]})
        assert response.status_code == 400 and str(tmp_path) not in response.json()["error"]
        ok = client.post("/segment", json={"sketch": EXAMPLE.read_text(), "filename": name, "labels": ["a"]}).json()
        assert "SECRET" not in json.dumps(ok) and (ok["source"] or "").count("/") == 0
    # labels are names, never "@file" lists read from the server's disk
    response = client.post("/segment", json={"sketch": EXAMPLE.read_text(), "labels": f"@{secret}"})
    assert response.json()["labels"] == [f"@{secret}"]
    for path in ("/static/../app.py", "/static/%2e%2e/app.py", "/static/..%2fapp.py", "/static/%2e%2e%2f%2e%2e%2fpyproject.toml",
                 "/static//etc/passwd", "/annotate/..%2f..%2fsecret.svg", "/annotate/-1", "/annotate/1.0"):
        response = client.get(path)
        assert response.status_code == 404 and b"import" not in response.content and b"root:" not in response.content
    assert client.get("/static/app.js").status_code == 200


def folder_with_sketches(root: Path, scenes: int = 2, strokes: int = 30) -> Path:
    folder = root / "drawings"
    (folder / "sub").mkdir(parents=True)
    for example in sorted((REPO / "examples").glob("*.svg")):
        shutil.copy(example, folder / example.name)
    rng = np.random.default_rng(0)
    for k in range(scenes):
        rows = np.c_[rng.integers(-20, 20, (strokes * 8, 2)), np.tile([0] * 7 + [1], strokes)]
        rows[0, :2] = [500, 380]
        scene = {"img_w": 1100, "img_h": 770, "scene_strokes": rows.tolist(), "object_divisions": [0, strokes],
                 "gt_class_names": ["tree"]}
        (folder / "sub" / f"scene{k}.json").write_text(json.dumps(scene))
    (folder / "car_road.png").write_bytes(b"")  # same stem as car_road.svg: both use full names
    return folder


def test_folder_mode_lists_segments_saves_and_resumes(segmenter, tmp_path):
    folder = folder_with_sketches(tmp_path)
    (folder / "car_road.png").unlink()
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    settings = ServeSettings(warmup=False, annotate=AnnotationFolder(folder))
    with TestClient(create_app(segmenter, settings)) as client:
        listing = client.get("/annotate").json()
        names = [item["name"] for item in listing["items"]]
        assert names == ["car_road.svg", "house_tree_sun.svg", "sailboat.svg", "sub/scene0.json", "sub/scene1.json"]
        assert (listing["done"], listing["total"], listing["next"]) == (0, 5, 0)
        item = client.get("/annotate/1").json()
        assert item["name"] == "house_tree_sun.svg" and item["saved_labels"] is None and not item["done"]
        count = len(item["sketch"]["strokes"])
        result = client.post("/segment", json={"index": 1, "labels": LABELS}).json()
        assert result["source"] == "house_tree_sun.svg" and len(result["strokes"]) == count
        corrected = [s["label"] for s in result["strokes"]]
        corrected[0], corrected[3] = "sun", "background"
        saved = client.put("/annotate/1", json={"stroke_labels": corrected, "labels": LABELS,
                                                "path": "../evil.json", "name": "../../x"}).json()
        assert saved["saved"] == "house_tree_sun.labels.json" and saved["done"] == 1 and saved["next"] == 2
        written = folder / "house_tree_sun.labels.json"
        assert read_sketch(written).has_labels and not (tmp_path / "evil.json").exists()
        again = client.get("/annotate/1").json()
        assert again["done"] and again["saved_labels"] == [None if n == "background" else n for n in corrected]
        assert client.get("/annotate").json()["next"] == 0
        svg = client.post("/convert", json={"index": 1, "stroke_labels": corrected, "format": "svg"})
        assert svg.status_code == 200 and b"house_tree_sun" in svg.content
        for bad in ("/annotate/5", "/annotate/99999999999999999999"):
            assert client.get(bad).status_code == 404 and client.put(bad, json={"stroke_labels": []}).status_code == 404
        assert client.post("/segment", json={"index": 7, "labels": ["a"]}).status_code == 404
        assert client.post("/segment", json={"index": "../../etc/passwd", "labels": ["a"]}).status_code == 400
        assert client.put("/annotate/0", json={"stroke_labels": ["a"]}).status_code == 400  # wrong count
    after = {p: p.read_bytes() for p in before}
    assert after == before  # inputs untouched
    reopened = AnnotationFolder(folder)
    assert reopened.progress() == (1, 5) and reopened.next_index() == 0
    assert all(not item.name.endswith(".labels.json") for item in reopened.items)


def test_annotations_of_same_stem_inputs_use_full_names(tmp_path):
    folder = folder_with_sketches(tmp_path)
    items = {item.name: item.labels_path.name for item in AnnotationFolder(folder).items}
    assert items["car_road.svg"] == "car_road.svg.labels.json" and items["car_road.png"] == "car_road.png.labels.json"
    assert items["sailboat.svg"] == "sailboat.labels.json"


# ---- a real server process: kill it while it saves, restart it -----------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_server(folder: Path, port: int) -> subprocess.Popen:
    args = [sys.executable, "-m", "sketchkit.cli", "serve", "--annotate", str(folder), "--port", str(port),
            "--backbone", "tiny-random", "--labels", ",".join(LABELS), "--quiet"]
    return subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})


def _wait_healthy(process: subprocess.Popen, base: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited: {process.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(base + "/health", timeout=2).json()["warm"]:
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.2)
    raise AssertionError("the server did not answer /health in time")


def _listening_addresses(port: int) -> set[str]:
    """Local addresses listening on `port`, from /proc/net/tcp and tcp6 (hex, as the kernel writes them)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if int(hex_port, 16) == port and state == "0A":  # LISTEN
                found.add(address)
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux's /proc/net/tcp to see the bound address")
def test_kill_while_saving_loses_nothing_and_the_next_server_resumes(tmp_path):
    folder = folder_with_sketches(tmp_path, scenes=3, strokes=3000)  # big scenes: saves take a while
    (folder / "car_road.png").unlink()
    inputs = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    index_of = {item.labels_path: item.index for item in AnnotationFolder(folder).items}
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = _start_server(folder, port)
    try:
        _wait_healthy(server, base)
        assert _listening_addresses(port) == {"0100007F"}  # 127.0.0.1 only: loopback is the default
        counts = [len(httpx.get(f"{base}/annotate/{i}", timeout=30).json()["sketch"]["strokes"]) for i in range(6)]
        sent: dict[int, list[list[str]]] = {i: [] for i in range(6)}
        saved = []

        def save_loop():  # bounded: at most 300 saves or 60 s; ends when the server dies
            deadline = time.monotonic() + 60
            for k in range(300):
                index = [3, 4, 5, 0][k % 4]
                labels = [LABELS[(k + j) % 3] for j in range(counts[index])]
                sent[index].append(labels)
                try:
                    response = httpx.put(f"{base}/annotate/{index}", json={"stroke_labels": labels}, timeout=30)
                except httpx.HTTPError:
                    return
                if response.status_code == 200:
                    saved.append(index)
                if time.monotonic() > deadline:
                    return

        saver = threading.Thread(target=save_loop)
        saver.start()
        wait_for(lambda: len(saved) >= 6, timeout=120, what="six saves")
        server.send_signal(signal.SIGKILL)  # while the loop is still saving
        server.wait(30)
        saver.join(60)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(30)
    annotations = sorted(folder.rglob("*.labels.json"))
    assert annotations, "nothing was saved before the kill"
    for path in annotations:
        doc = json.loads(path.read_text())  # complete JSON: the old file or the new one, never half of one
        labels = list(read_sketch(path).labels)
        assert any(labels == [variant[s] for s in doc["source_strokes"]] for variant in sent[index_of[path]])
    assert {p: p.read_bytes() for p in inputs} == inputs  # inputs untouched

    restarted = _start_server(folder, port)
    try:
        _wait_healthy(restarted, base)
        listing = httpx.get(f"{base}/annotate", timeout=30).json()
        done = {item["index"] for item in listing["items"] if item["done"]}
        assert listing["done"] == len(annotations) == len(done)
        assert listing["next"] == min(set(range(6)) - done)  # resumes at the first sketch not done
        assert not list(folder.rglob(".*.labels.json.tmp-*"))  # a killed save's temporary file is gone
        for index in sorted(set(range(6)) - done):
            labels = [LABELS[0]] * counts[index]
            assert httpx.put(f"{base}/annotate/{index}", json={"stroke_labels": labels}, timeout=30).status_code == 200
        assert httpx.get(f"{base}/annotate", timeout=30).json()["done"] == 6
    finally:
        restarted.send_signal(signal.SIGTERM)
        try:
            restarted.wait(30)
        except subprocess.TimeoutExpired:
            restarted.kill()
            restarted.wait(30)


def test_an_annotated_folder_goes_into_eval(tmp_path, capsys):
    folder = tmp_path / "drawn"
    folder.mkdir()
    image = np.full((96, 96), 255, np.uint8)
    image[20:24, 10:80] = 0
    image[40:80, 40:44] = 0
    Image.fromarray(image).save(folder / "a.png")  # a bitmap: no labels of its own
    annotations = AnnotationFolder(folder)
    sketch = annotations.read(0)
    annotations.save(0, sketch, ["roof" if k % 2 else "wall" for k in range(sketch.num_strokes)], labels=["wall", "roof"])
    code, out, err = cli(capsys, "eval", "--data", folder, "--model", "oracle", "--json", tmp_path / "scores.json")
    assert code == 0, err
    data = json.loads((tmp_path / "scores.json").read_text())["data"]
    assert (data["count"], data["classes"], data["skipped"]) == (1, 2, 1)  # the annotation; the bare bitmap skipped
