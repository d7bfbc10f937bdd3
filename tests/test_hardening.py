"""Hostile, broken and odd inputs through the CLI (issue #8), and crash-safe training.

Every bad input below is made here, run through `convert`, `raster`, `segment` and `eval` in
process via `main()`, and must give exit code 2, one line naming the file and the problem, and no
traceback; with several inputs the bad ones are reported and skipped. Valid-but-odd inputs exit 0.
Inputs are never modified, outputs never replace inputs, and no byte of a file outside the input
(the "secret") ever reaches an output. docs/limits.md lists the outcomes and limits tested here.
"""

from __future__ import annotations

import io
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from test_cli import EXAMPLES, run

SECRET = "sketchkit-secret-4f1d9a-never-in-an-output"
SVG_NS = 'xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"'
GOOD_SVG = (f'<svg {SVG_NS} viewBox="0 0 100 100"><path d="M 10 10 L 90 90" stroke="black"/>'
            '<path d="M 10 90 L 90 10" stroke="black"/></svg>')
SEGMENT = ["--backbone", "tiny-random", "--device", "cpu", "--labels", "tree,house"]


# ------------------------------------------------------------------------------------- the corpus


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height grey pixels over a few KiB of compressed zeros."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 2**20, 9))
            + chunk(b"IEND", b""))


def _line_png() -> bytes:
    image = Image.new("L", (64, 48), 255)
    ImageDraw.Draw(image).line([(5, 5), (58, 40)], fill=0, width=3)
    return _png(image)


def _billion_laughs() -> bytes:
    entities = '<!ENTITY a "lollollollollol">' + "".join(
        f'<!ENTITY {chr(98 + i)} "{f"&{chr(97 + i)};" * 10}">' for i in range(9))
    return (f'<?xml version="1.0"?><!DOCTYPE svg [{entities}]><svg {SVG_NS}><desc>&j;</desc>'
            '<path d="M 0 0 L 1 1"/></svg>').encode()


def _external_entity(secret: Path) -> bytes:
    return (f'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY xxe SYSTEM "file://{secret}">]>'
            f'<svg {SVG_NS}><desc>&xxe;</desc><path d="M 0 0 L 1 1"/></svg>').encode()


def _stroke3(rows, **extra) -> bytes:
    return json.dumps({"scene_strokes": rows, **extra}).encode()


# name -> (content: bytes, or a function of the secret file's path, message fragment)
BAD = {
    "empty.svg": (b"", "the file is empty"),
    "empty.png": (b"", "the file is empty"),
    "truncated.svg": (GOOD_SVG[:60].encode(), "not well-formed XML"),
    "truncated.json": (_stroke3([[0, 0, 0], [5, 5, 1]])[:25], "not valid JSON"),
    "truncated.png": (_line_png()[:60], "cannot decode the image"),
    "garbage.svg": (bytes(range(256)) * 8, "not valid utf-8"),
    "garbage.json": (b"\x00\x01\x02\xfe\xff" * 50, "not utf-8"),
    "garbage.npy": (b"\x93NUMPY" + bytes(range(256)), ".npy"),
    "text-named.png": (b"this is not a png at all", "not a readable PNG or JPEG image"),
    "gif-named.png": (b"GIF89a" + bytes(100), "not a readable PNG or JPEG image"),
    "text-named.npy": (b"hello, I am no numpy array", "not a valid .npy file"),
    "zip-named.svg": (b"PK\x03\x04" + bytes(range(200)), "not valid utf-8"),
    "garbage.dat": (bytes(range(7, 250)), "unsupported file type"),
    "wrong-schema.json": (json.dumps({"hello": "world", "strokes": "nope"}).encode(), "unrecognised JSON"),
    "wrong-rows.json": (_stroke3([[1, 2], [3, 4]]), "rows of 2"),
    "deep.json": (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    "nan.json": (b'{"scene_strokes": [[0, 0, 0], [NaN, 5, 1]]}', "non-finite"),
    "inf.json": (b'{"scene_strokes": [[0, 0, 0], [Infinity, 5, 1]]}', "non-finite"),
    "huge.json": (_stroke3([[0, 0, 0], [1e300, 5, 1]]), "beyond the"),
    "huge.svg": (f'<svg {SVG_NS} viewBox="0 0 100 100"><path d="M 0 0 L 1e300 1e300"/></svg>'.encode(), "beyond the"),
    "huge-transform.svg": (f'<svg {SVG_NS} viewBox="0 0 9 9"><path d="M 0 0 L 1 1" transform="scale(1e300)"/></svg>'.encode(),
                           "beyond the"),
    "overflow.ndjson": (b'{"word": "cat", "drawing": [[[0, 1e400], [0, 1]]]}\n{"word": "cat", "drawing": [[[0], [1]]]}\n',
                        "non-finite"),
    "nan-viewbox.svg": (f'<svg {SVG_NS} viewBox="0 0 nan 100"><path d="M 0 0 L 1 1"/></svg>'.encode(), "viewBox"),
    "no-strokes.json": (_stroke3([]), "no strokes"),
    "no-strokes.svg": (f'<svg {SVG_NS} viewBox="0 0 100 100"><text>hi</text></svg>'.encode(), "no strokes found"),
    "hidden-strokes.svg": (f'<svg {SVG_NS} viewBox="0 0 9 9"><path d="M 0 0 L 5 5" display="none"/></svg>'.encode(),
                           "no strokes found"),
    "no-ink.png": (_png(Image.new("L", (64, 64), 255)), "no ink found"),
    "no-ink-colour.png": (_png(Image.new("RGB", (30, 20), (200, 180, 10))), "no ink found"),
    "billion-laughs.svg": (_billion_laughs(), "DTD"),
    "external-entity.svg": (_external_entity, "DTD"),
    "bomb.png": (_png_declaring(100_000, 100_000), "decompression bomb"),
    "big.png": (_png_declaring(7000, 7000), "more than the 40,000,000"),
    "undecodable.json": (b'{"scene_strokes": [[0, 0, 0], [1, 1, 1]], "img_id": "\xff\xfe\xfa"}', "not utf-8 text"),
    "undecodable.svg": (f'<?xml version="1.0" encoding="utf-8"?><svg {SVG_NS}><desc>\xff\xfe</desc>'
                        '<path d="M0 0 L 1 1"/></svg>'.encode("latin-1"), "not valid utf-8"),
    "bad-utf16.svg": (b"\xff\xfe<\x00s\x00v\x00g\x00" + b"\x00\xd8" * 3, "not valid utf-16-le text"),
}

# Valid but odd: name -> content; each must exit 0 everywhere.
ODD = {
    "dot.json": _stroke3([[5, 5, 1]]),
    "dot.svg": f'<svg {SVG_NS} viewBox="0 0 10 10"><path d="M 5 5 L 5 5" stroke="black"/></svg>'.encode(),
    "tiny-circle.svg": f'<svg {SVG_NS} viewBox="0 0 10 10"><circle cx="5" cy="5" r="0.01"/></svg>'.encode(),
    "one-pixel.png": _png(Image.new("L", (1, 1), 0)),
    "one-point-strokes.json": _stroke3([[1, 1, 1], [10, 0, 1], [0, 10, 1], [5, 5, 1]]),
    "one-point-lists.json": json.dumps([[[1, 1]], [[5, 9]], [[3, 3]]]).encode(),
    "utf16le.svg": ('<?xml version="1.0" encoding="UTF-16"?>' + GOOD_SVG).encode("utf-16"),
    "utf16be.svg": ('<?xml version="1.0" encoding="UTF-16"?>' + GOOD_SVG).encode("utf-16-be"),
    "utf8-bom.svg": b"\xef\xbb\xbf" + GOOD_SVG.encode(),
    "png-named.svg": _line_png(),
    "svg-named.json": GOOD_SVG.encode(),
    "plain-doctype.svg": ('<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" '
                          '"http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">' + GOOD_SVG).encode(),
}


def _hostile_refs(secret: Path) -> dict[str, bytes]:
    """SVGs that point at the secret file every way SVG allows; they read fine (the references are ignored)."""
    body = '<path d="M 10 10 L 90 90" stroke="black"/>'
    return {
        "image-href.svg": (f'<svg {SVG_NS} viewBox="0 0 100 100"><image href="file://{secret}" width="50" height="50"/>'
                           f'<image xlink:href="{secret}" width="9" height="9"/>{body}</svg>').encode(),
        "use-href.svg": (f'<svg {SVG_NS} viewBox="0 0 100 100"><use xlink:href="file://{secret}#a"/><use href="{secret}#b"/>'
                         f'{body}</svg>').encode(),
        "xinclude.svg": (f'<svg {SVG_NS} xmlns:xi="http://www.w3.org/2001/XInclude" viewBox="0 0 100 100">'
                         f'<xi:include href="{secret}" parse="text"/><text><tref xlink:href="file://{secret}"/></text>'
                         f'{body}</svg>').encode(),
        "style-import.svg": (f'<svg {SVG_NS} viewBox="0 0 100 100"><style>@import url("file://{secret}");</style>'
                             f'<path d="M 10 10 L 90 90" style="stroke: url(file://{secret})"/></svg>').encode(),
        "doctype-system.svg": (f'<?xml version="1.0"?><!DOCTYPE svg SYSTEM "file://{secret}">' + GOOD_SVG).encode(),
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Folders bad/, odd/ and refs/ of generated files, and a secret file beside them."""
    root = tmp_path_factory.mktemp("corpus")
    secret = root / "secret.txt"
    secret.write_text(SECRET)
    for folder, files in (("bad", BAD), ("odd", ODD)):
        (root / folder).mkdir()
        for name, item in files.items():
            content = item[0] if folder == "bad" else item
            (root / folder / name).write_bytes(content(secret) if callable(content) else content)
    (root / "refs").mkdir()
    for name, content in _hostile_refs(secret).items():
        (root / "refs" / name).write_bytes(content)
    return root


def _snapshot(folder: Path) -> dict[Path, tuple[bytes, int]]:
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def untouched(corpus):
    """Fails the test when any corpus file changed (content or mtime) or a file appeared among them."""
    before = _snapshot(corpus)
    yield
    assert _snapshot(corpus) == before, "an input file was modified"


def _lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


def _error_lines(err: str) -> list[str]:
    return [line for line in _lines(err) if line.startswith("Error:")]


def assert_single_error(code: int, err: str, path: Path, fragment: str) -> None:
    """Exit 2 and stderr exactly one line: 'Error: <path>: ...fragment...'; no traceback."""
    assert code == 2, err
    assert "Traceback" not in err
    lines = _lines(err)
    assert len(lines) == 1 and lines[0].startswith(f"Error: {path}: "), err
    assert fragment in lines[0], err


# ---------------------------------------------------------------------------- bad inputs, one at a time


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_convert_and_raster_one_line_exit_2(corpus, untouched, tmp_path, capsys, name):
    path, fragment = corpus / "bad" / name, BAD[name][1]
    started = time.perf_counter()
    for command, target in (("convert", tmp_path / "out.json"), ("convert", tmp_path / "out.svg"),
                            ("raster", tmp_path / "out.png")):
        code, out, err = run(capsys, command, path, target)
        assert_single_error(code, err, path, fragment)
        assert not target.exists() and out == ""
    assert list(tmp_path.iterdir()) == [], "no output, not even a temp file"
    assert time.perf_counter() - started < 30, "bad input must fail fast"


def test_missing_file_and_folder_as_file(tmp_path, capsys):
    code, _, err = run(capsys, "convert", tmp_path / "missing.svg", tmp_path / "out.json")
    assert_single_error(code, err, tmp_path / "missing.svg", "file not found")
    (tmp_path / "folder.svg").mkdir()
    code, _, err = run(capsys, "raster", tmp_path / "folder.svg", tmp_path / "out.png")
    assert_single_error(code, err, tmp_path / "folder.svg", "is a folder")


def test_undecodable_caption_beside_a_good_sketch(tmp_path, capsys):
    (tmp_path / "scene.svg").write_text(GOOD_SVG)
    (tmp_path / "scene.txt").write_bytes(b"a tree \xff\xfe\xfa")
    code, _, err = run(capsys, "convert", tmp_path / "scene.svg", tmp_path / "out.json")
    assert_single_error(code, err, tmp_path / "scene.txt", "not UTF-8 text")


def test_debug_shows_the_traceback(corpus, capsys, monkeypatch, tmp_path):
    path = corpus / "bad" / "nan.json"
    monkeypatch.setenv("SKETCHKIT_DEBUG", "0")  # --debug sets it to 1 for the process: undone after the test
    code, _, err = run(capsys, "--debug", "convert", path, tmp_path / "out.json")
    assert code == 2 and "Traceback" in err and "non-finite" in err
    monkeypatch.setenv("SKETCHKIT_DEBUG", "1")
    code, _, err = run(capsys, "raster", path, tmp_path / "out.png")
    assert code == 2 and "Traceback" in err and "non-finite" in err


def test_limits_give_one_line_through_the_cli(tmp_path, capsys, monkeypatch):
    """The limits of sketchkit.io.limits, lowered so the test stays small, reach the CLI as one line."""
    from sketchkit.io import limits, svg

    scene = tmp_path / "scene.svg"
    scene.write_text(GOOD_SVG)
    monkeypatch.setattr(limits, "MAX_FILE_BYTES", 100)
    code, _, err = run(capsys, "convert", scene, tmp_path / "a.json")
    assert_single_error(code, err, scene, "sketchkit reads")
    monkeypatch.undo()
    many = tmp_path / "many.svg"
    many.write_text(f'<svg {SVG_NS}>' + '<path d="M 0 0 L 1 1"/>' * 50 + "</svg>")
    monkeypatch.setattr(svg, "MAX_SVG_ELEMENTS", 20)
    code, _, err = run(capsys, "raster", many, tmp_path / "b.png")
    assert_single_error(code, err, many, "more than 20 elements")
    monkeypatch.undo()
    monkeypatch.setattr(limits, "MAX_POINTS_TOTAL", 10)
    points = tmp_path / "points.json"
    points.write_bytes(_stroke3([[i, i, 0] for i in range(20)]))
    code, _, err = run(capsys, "convert", points, tmp_path / "c.json")
    assert_single_error(code, err, points, "more than 10 points")


# --------------------------------------------------------------------- several inputs: report and skip


def test_segment_reports_each_bad_file_and_segments_the_rest(corpus, untouched, tmp_path, capsys):
    good = [EXAMPLES[0], corpus / "odd" / "dot.json"]
    bad = sorted((corpus / "bad").iterdir())
    out = tmp_path / "out"
    code, _, err = run(capsys, "segment", good[0], *bad, good[1], *SEGMENT, "--out", out, "--format", "json,svg")
    assert code == 2, err
    assert "Traceback" not in err
    errors = _error_lines(err)
    assert len(errors) == len(bad), err
    for path in bad:
        mine = [line for line in errors if line.startswith(f"Error: {path}: ")]
        assert len(mine) == 1 and BAD[path.name][1] in mine[0], (path, err)
    assert f"{len(bad)} of {len(bad) + 2} input(s) could not be segmented" in err
    written = sorted(p.name for p in out.rglob("*") if p.is_file())
    assert written == sorted(f"{stem}.{fmt}" for stem in (good[0].stem, "dot") for fmt in ("json", "svg")), written
    assert not any(p.name.startswith(".") for p in out.rglob("*")), "no temp file left"


def test_segment_single_bad_file_and_strict(corpus, untouched, tmp_path, capsys):
    bad = corpus / "bad" / "external-entity.svg"
    code, _, err = run(capsys, "segment", bad, *SEGMENT, "--out", tmp_path / "one")
    assert code == 2 and "Traceback" not in err
    errors = _error_lines(err)
    assert len(errors) == 1 and errors[0].startswith(f"Error: {bad}: ") and "DTD" in errors[0], err
    assert _lines(err) == errors, "one bad input: its Error line only"
    # --strict: the first bad file stops the run with its own line as the last one
    code, _, err = run(capsys, "segment", EXAMPLES[0], bad, EXAMPLES[1], *SEGMENT, "--out", tmp_path / "strict", "--strict")
    assert code == 2 and "Traceback" not in err
    assert _lines(err)[-1].startswith(f"Error: {bad}: ") and "DTD" in _lines(err)[-1]


def test_eval_skips_bad_files_and_strict_stops(corpus, untouched, tmp_path, capsys):
    folder = tmp_path / "set"
    folder.mkdir()
    (folder / EXAMPLES[0].name).write_bytes(EXAMPLES[0].read_bytes())
    for path in (corpus / "bad").iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    from sketchkit.io import SUPPORTED_SUFFIXES

    readable = sorted(p for p in folder.iterdir() if p.suffix in SUPPORTED_SUFFIXES and p.name != EXAMPLES[0].name)
    code, _, err = run(capsys, "eval", "--data", folder, "--model", "oracle", "--json", tmp_path / "r.json")
    assert code == 0, err
    assert "Traceback" not in err
    for path in readable:
        mine = [line for line in _error_lines(err) if line.startswith(f"Error: {path}: ")]
        assert len(mine) == 1 and mine[0].endswith("(skipped)") and BAD[path.name][1] in mine[0], (path, err)
    assert json.loads((tmp_path / "r.json").read_text())["data"]["count"] == 1

    code, _, err = run(capsys, "eval", "--data", folder, "--model", "oracle", "--strict")
    assert code == 2 and "Traceback" not in err
    first = sorted(readable + [folder / EXAMPLES[0].name])[0]
    assert _lines(err)[-1].startswith(f"Error: {first}: ") and "(skipped)" not in err, err

    only_bad = tmp_path / "only-bad"
    only_bad.mkdir()
    (only_bad / "a.svg").write_bytes(BAD["truncated.svg"][0])
    code, _, err = run(capsys, "eval", "--data", only_bad, "--model", "oracle")
    assert code == 2 and "Traceback" not in err and _lines(err)[-1].startswith("Error:")


# ------------------------------------------------------------------------- nothing from outside leaks


def test_external_references_are_never_followed(corpus, untouched, tmp_path, capsys):
    refs = sorted((corpus / "refs").iterdir())
    streams = []
    for path in refs:
        for suffix in (".svg", ".json", ".png", ".h5"):
            code, out, err = run(capsys, "convert", path, tmp_path / f"{path.stem}{suffix}")
            assert code == 0, err
            streams += [out, err]
        code, out, err = run(capsys, "raster", path, tmp_path / f"{path.stem}.raster.png", "--ids", tmp_path / f"{path.stem}.npy")
        assert code == 0, err
        streams += [out, err]
    code, out, err = run(capsys, "segment", *refs, *SEGMENT, "--out", tmp_path / "seg", "--format", "svg,json,png,h5")
    assert code == 0, err
    streams += [out, err]
    for name in ("billion-laughs.svg", "external-entity.svg"):  # refused before anything is expanded
        code, out, err = run(capsys, "convert", corpus / "bad" / name, tmp_path / f"{name}.json")
        assert code == 2
        streams += [out, err]
    outputs = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(outputs) >= 6 * len(refs)
    for path in outputs:
        assert SECRET.encode() not in path.read_bytes(), f"{path} holds the secret"
    assert not any(SECRET in s for s in streams)


# --------------------------------------------------------------------------------- valid but odd


@pytest.mark.parametrize("name", sorted(ODD))
def test_odd_inputs_convert_and_raster(corpus, untouched, tmp_path, capsys, name):
    path = corpus / "odd" / name
    code, out, err = run(capsys, "convert", path, tmp_path / "out.json")
    assert code == 0, err
    assert json.loads((tmp_path / "out.json").read_text())["strokes"]
    code, out, err = run(capsys, "raster", path, tmp_path / "out.png", "--ids", tmp_path / "ids.npy")
    assert code == 0, err
    ids = np.load(tmp_path / "ids.npy")
    assert ids.shape == (224, 224) and ids.max() >= 0, "an odd sketch still has ink"
    assert Image.open(tmp_path / "out.png").size == (224, 224)


def test_odd_inputs_segment_together(corpus, untouched, tmp_path, capsys):
    files = sorted((corpus / "odd").iterdir())
    code, _, err = run(capsys, "segment", *files, *SEGMENT, "--out", tmp_path, "--format", "json")
    assert code == 0, err
    results = sorted(tmp_path.rglob("*.json"))
    assert len(results) == len(files)  # dot.json and dot.svg keep their suffixes: no output overwritten
    for result in results:
        strokes = json.loads(result.read_text())["strokes"]
        assert strokes and all(s["label"] in {"tree", "house"} for s in strokes)


def _many_strokes(path: Path, count: int = 200_000, seed: int = 0) -> None:
    """A FrISS-style scene of `count` short two-point strokes over a 1000 x 1000 canvas."""
    rng = np.random.default_rng(seed)
    starts = rng.uniform(0, 1000, size=(count, 2)).round(2)
    deltas = rng.uniform(-5, 5, size=(count, 2)).round(2)
    rows = np.zeros((2 * count, 3))
    rows[0::2, :2] = starts
    rows[2::2, :2] = starts[1:] - (starts[:-1] + deltas[:-1])
    rows[1::2, :2] = deltas
    rows[1::2, 2] = 1
    path.write_text(json.dumps({"img_w": 1000, "img_h": 1000, "scene_strokes": rows.tolist()}))


def test_scene_of_200000_strokes_rasterizes_in_seconds(tmp_path, capsys):
    scene = tmp_path / "many.json"
    _many_strokes(scene)
    started = time.perf_counter()
    code, out, err = run(capsys, "raster", scene, tmp_path / "many.png", "--ids", tmp_path / "ids.npy")
    elapsed = time.perf_counter() - started
    assert code == 0, err
    assert elapsed < 60, f"200,000 strokes took {elapsed:.1f} s"
    ids = np.load(tmp_path / "ids.npy")
    assert ids.max() < 200_000 and len(np.unique(ids[ids >= 0])) > 10_000


def test_piled_up_hidden_strokes_vote_in_bounded_time():
    """20,000 strokes on one spot: most are hidden at every resolution; each still gets a label, fast."""
    from sketchkit.raster import rasterize
    from sketchkit.types import Sketch
    from sketchkit.vote import vote_labels

    rng = np.random.default_rng(1)
    strokes = tuple(rng.uniform(0, 3, size=(2, 2)) for _ in range(20_000)) + (np.array([[0.0, 0.0], [100.0, 100.0]]),)
    sketch = Sketch(strokes=strokes, width=100.0, height=100.0)
    raster = rasterize(sketch)
    labels = np.where(raster.ink, (np.arange(224)[None, :] > 112).astype(np.int32) + np.zeros((224, 1), np.int32), -1)
    started = time.perf_counter()
    votes = vote_labels(labels, raster, 2, sketch)
    assert time.perf_counter() - started < 30
    assert votes.labels.shape == (len(strokes),) and (votes.labels >= 0).all()


# -------------------------------------------------------------------------------- outputs vs inputs


def test_output_equal_to_input_is_refused(tmp_path, capsys):
    scene = tmp_path / "scene.svg"
    scene.write_text(GOOD_SVG)
    os.symlink(scene, tmp_path / "link.svg")
    os.link(scene, tmp_path / "hard.svg")
    before = _snapshot(tmp_path)
    attempts = [
        ("convert", scene, scene, "--overwrite"),
        ("convert", scene, tmp_path / "link.svg", "--overwrite"),
        ("convert", scene, tmp_path / "hard.svg", "--overwrite"),
        ("raster", scene, scene, "--overwrite"),
        ("raster", scene, tmp_path / "r.png", "--ids", scene, "--overwrite"),
        ("segment", scene, *SEGMENT, "--out", scene, "--overwrite"),
        ("eval", "--data", scene, "--json", scene, "--overwrite"),
    ]
    for args in attempts:
        code, _, err = run(capsys, *args)
        assert code == 2 and "Traceback" not in err, (args, err)
        assert _lines(err)[-1].startswith("Error: refusing to overwrite input"), (args, err)
    assert _snapshot(tmp_path) == before
    assert scene.read_text() == GOOD_SVG


def test_existing_output_needs_overwrite(tmp_path, capsys):
    scene = tmp_path / "scene.svg"
    scene.write_text(GOOD_SVG)
    for command, target in (("convert", tmp_path / "x.json"), ("raster", tmp_path / "x.png")):
        target.write_text("keep")
        code, _, err = run(capsys, command, scene, target)
        assert code == 2 and "--overwrite" in _lines(err)[-1]
        assert target.read_text() == "keep"
        code, _, err = run(capsys, command, scene, target, "--overwrite")
        assert code == 0, err
        assert target.read_bytes() != b"keep"


# ------------------------------------------------------------------------ training: kill -9, SIGTERM

TRAIN = {"captions_from_labels": True, "backbone": "tiny-random", "device": "cpu", "global_batch": 2, "limit": 16,
         "epochs": 1, "max_steps": 8, "val_limit": 1, "eval_size": 64, "lr": 3e-5, "scheduler": "cosine",
         "save_every": 1}


@pytest.fixture(scope="module")
def train_config(friss_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("train") / "config.json"
    path.write_text(json.dumps({"data": str(friss_dir), **TRAIN}))
    return path


@pytest.fixture(scope="module")
def uninterrupted(train_config, tmp_path_factory):
    """The reference: the same config trained in one go (in this process)."""
    from sketchkit.training import load_train_config, train

    out = tmp_path_factory.mktemp("uninterrupted")
    report = train(load_train_config(train_config, {"out": str(out)}))
    assert report.steps == TRAIN["max_steps"]
    return out


def _train_process(config: Path, out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "sketchkit.cli", "train", "--config", str(config), "--out", str(out), "--quiet", *extra]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_checkpoint(process: subprocess.Popen, state: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not state.exists():
        if process.poll() is not None:
            raise AssertionError(f"training ended before its first checkpoint: {process.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("no checkpoint within the timeout")
        time.sleep(0.01)


def _assert_same_adapter(a: Path, b: Path) -> None:
    from safetensors.torch import load_file
    import torch

    ta, tb = load_file(str(a)), load_file(str(b))
    assert ta.keys() == tb.keys() and ta
    for key in ta:
        torch.testing.assert_close(tb[key], ta[key], rtol=0, atol=1e-6, msg=lambda m: f"{key}: {m}")


def test_kill_9_during_training_then_resume_matches_uninterrupted(train_config, uninterrupted, tmp_path):
    from sketchkit.training import LAST_FILE, STATE_FILE, read_train_state

    out = tmp_path / "run"
    process = _train_process(train_config, out)
    _wait_for_checkpoint(process, out / STATE_FILE)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    _, meta = read_train_state(out / STATE_FILE)  # the checkpoint on disk is whole
    assert 1 <= meta["global_step"] < TRAIN["max_steps"], "the kill must land mid-run"

    resumed = _train_process(train_config, out, "--resume")
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-3000:]
    _, meta = read_train_state(out / STATE_FILE)
    assert meta["global_step"] == TRAIN["max_steps"]
    _assert_same_adapter(uninterrupted / LAST_FILE, out / LAST_FILE)
    state_a, _ = read_train_state(uninterrupted / STATE_FILE)
    state_b, _ = read_train_state(out / STATE_FILE)
    for key in (k for k in state_a if k.startswith("param.")):
        assert np.allclose(state_a[key].numpy(), state_b[key].numpy(), rtol=0, atol=1e-6), key


def test_sigterm_stops_training_cleanly_and_resume_continues(train_config, uninterrupted, tmp_path):
    from sketchkit.training import LAST_FILE, STATE_FILE, read_train_state

    out = tmp_path / "run"
    process = _train_process(train_config, out)
    _wait_for_checkpoint(process, out / STATE_FILE)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    if process.returncode == 0:
        pytest.skip("training finished before SIGTERM arrived")
    assert process.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "interrupted" in err and "--resume" in err
    _, meta = read_train_state(out / STATE_FILE)
    assert meta["global_step"] < TRAIN["max_steps"]
    assert not [p.name for p in out.iterdir() if ".tmp-" in p.name], "an abandoned checkpoint is removed"

    resumed = _train_process(train_config, out, "--resume")
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-3000:]
    _assert_same_adapter(uninterrupted / LAST_FILE, out / LAST_FILE)
