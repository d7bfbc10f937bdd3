"""Results HDF5 format 3 (columnar): round trips for each score storage, the size target on FrISS, streamed
reading, and merging the parts of a run (or format 2 files) into one file that reads back every sketch."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from sketchkit.cli.app import main
from sketchkit.errors import InputError, UsageError
from sketchkit.io.hdf5 import read_results_h5, write_results_h5
from sketchkit.io.hdf5_columnar import ResultsWriter, iter_results_h5, write_columnar_h5
from sketchkit.io.hdf5_merge import merge_results_h5


@pytest.fixture(scope="module")
def results(friss_test_files, tiny_encoder):
    from sketchkit.inference import LabelPolicy, segmenter_on
    from sketchkit.inference.engine import Engine
    from sketchkit.io import read_sketch

    engine = Engine(segmenter_on("clip-surgery", tiny_encoder, "cpu"), labels=LabelPolicy(("ground-truth",)))
    return engine.segment([read_sketch(f) for f in friss_test_files[:12]])


def _same(stored, result, *, scores: bool) -> None:
    sketch = result.sketch
    assert stored.labels == result.labels and stored.gt_labels == sketch.labels and stored.caption == sketch.caption
    assert stored.source == sketch.source and stored.model == result.model and stored.scoring == result.scoring
    assert stored.canvas == (sketch.width, sketch.height) and stored.transform == result.raster.transform
    assert len(stored.strokes) == sketch.num_strokes
    for a, b in zip(stored.strokes, sketch.strokes):
        np.testing.assert_array_equal(a, b.astype(np.float32))
    np.testing.assert_array_equal(stored.stroke_labels, result.votes.labels)
    np.testing.assert_array_equal(stored.stroke_confidence, result.votes.confidence)
    np.testing.assert_array_equal(stored.stroke_top, result.votes.top)
    np.testing.assert_array_equal(stored.instance_ids, sketch.instance_ids)
    np.testing.assert_array_equal(stored.pixel_labels, result.pixel_labels)
    np.testing.assert_array_equal(stored.stroke_ids, result.raster.stroke_ids)
    assert stored.scores.shape == result.scores.shape
    ink = result.raster.stroke_ids >= 0
    if scores:
        np.testing.assert_allclose(stored.scores, result.scores, rtol=1e-3, atol=1e-3)
    else:  # what is kept still gives the predicted class at the ink
        np.testing.assert_array_equal(stored.scores.argmax(0)[ink], result.pixel_labels[ink])


@pytest.mark.parametrize("scores", ["none", "top1", "fp16"])
def test_columnar_round_trip(tmp_path, results, scores):
    path = write_columnar_h5(results, tmp_path / "r.h5", scores=scores, attrs={"split": "test"})
    stored = read_results_h5(path)
    assert [s.name for s in stored] == [r.sketch.source.rsplit("/", 1)[-1][:-5] for r in results]
    for item, result in zip(stored, results):
        _same(item, result, scores=scores == "fp16")
    with h5py.File(path) as h5:
        assert (h5.attrs["format_version"], h5.attrs["layout"], h5.attrs["scores"]) == (3, "columnar", scores)
        assert h5.attrs["split"] == "test" and h5.attrs["num_sketches"] == len(results)
        maps = h5["sketches/pixel_labels"]
        assert maps.chunks == (1, *maps.shape[1:]) and maps.compression == "gzip", "one chunk per sketch"
    if scores == "top1":  # the best class, its score and each class's range: what a threshold cut needs
        with h5py.File(path) as h5:
            ranges = h5["sketches/score_range"][()]
        start = 0
        for item, result in zip(stored, results):
            flat = result.scores.reshape(len(result.labels), -1)
            np.testing.assert_array_equal(item.scores.argmax(0), result.scores.argmax(0))
            np.testing.assert_allclose(item.scores.max(0), result.scores.max(0), rtol=1e-3, atol=1e-4)
            np.testing.assert_allclose(ranges[start:start + len(flat)], np.stack([flat.min(1), flat.max(1)], 1),
                                       rtol=1e-6)
            start += len(flat)


def test_friss_sketches_take_under_20_kb_without_scores(tmp_path, results):
    path = write_columnar_h5(results, tmp_path / "r.h5", scores="none")
    per_sketch = path.stat().st_size / len(results)
    assert per_sketch <= 20 * 1024, per_sketch
    legacy = write_results_h5(results, tmp_path / "v2.h5")
    assert legacy.stat().st_size / len(results) > 10 * per_sketch, "format 2 kept float16 score maps"


def test_reading_streams_a_block_at_a_time(tmp_path, results):
    path = write_columnar_h5(results * 3, tmp_path / "r.h5")
    items = iter_results_h5(path)
    first = next(items)
    assert first.source == results[0].sketch.source
    assert len(list(items)) == 3 * len(results) - 1
    legacy = write_results_h5(results[:2], tmp_path / "v2.h5")
    assert [s.name for s in iter_results_h5(legacy)] == [s.name for s in read_results_h5(legacy)], "format 2 too"


def test_merged_parts_read_back_every_sketch_in_run_order(tmp_path, results):
    single = write_columnar_h5(results, tmp_path / "one.h5", names=[f"s{i}" for i in range(len(results))])
    parts = []
    for rank in range(3):  # what 3 processes write: every third sketch, in parts
        for part in range(2):
            path = tmp_path / "parts" / f"r{rank}-{part}.h5"
            path.parent.mkdir(exist_ok=True)
            with ResultsWriter(path, attrs={"job": "one run"}) as writer:
                mine = [u for u in range(len(results)) if u % 3 == rank]
                half = mine[: len(mine) // 2] if part == 0 else mine[len(mine) // 2:]
                for unit in half:
                    writer.add(results[unit], name=f"s{unit}", order=(unit, 0))
            parts.append(path)
    merged = merge_results_h5(parts[::-1], tmp_path / "merged.h5")
    back, kept = read_results_h5(merged), read_results_h5(single)
    assert [s.name for s in back] == [f"s{i}" for i in range(len(results))]
    for a, b in zip(back, kept):
        assert a.labels == b.labels and a.gt_labels == b.gt_labels and a.source == b.source
        np.testing.assert_array_equal(a.stroke_labels, b.stroke_labels)
        np.testing.assert_array_equal(a.pixel_labels, b.pixel_labels)
        assert all(np.array_equal(x, y) for x, y in zip(a.strokes, b.strokes))
    # files of different runs are joined in the order given
    joined = merge_results_h5([single, parts[0]], tmp_path / "joined.h5")
    assert [s.name for s in read_results_h5(joined)][-2:] == ["s0", "s3"][: len(read_results_h5(parts[0]))]


def test_merge_refuses_what_it_cannot_join(tmp_path, results):
    columnar = write_columnar_h5(results[:2], tmp_path / "c.h5")
    fp16 = write_columnar_h5(results[:2], tmp_path / "f.h5", scores="fp16")
    legacy = write_results_h5(results[:2], tmp_path / "v2.h5")
    with pytest.raises(UsageError, match="format 3.*format 2|columnar"):
        merge_results_h5([columnar, legacy], tmp_path / "x.h5")
    with pytest.raises(UsageError, match="keep scores differently"):
        merge_results_h5([columnar, fp16], tmp_path / "x.h5")
    with pytest.raises(UsageError, match="refusing to overwrite input"):
        merge_results_h5([columnar, fp16], columnar, overwrite=True)
    with pytest.raises(InputError, match="not an HDF5 file"):
        (tmp_path / "junk.h5").write_text("junk")
        merge_results_h5([columnar, tmp_path / "junk.h5"], tmp_path / "x.h5")
    assert not (tmp_path / "x.h5").exists()
    both = merge_results_h5([legacy, legacy], tmp_path / "v2x2.h5")
    assert len(read_results_h5(both)) == 4, "format 2 files merge group by group"


def test_h5_merge_command(tmp_path, results, capsys):
    folder = tmp_path / "all.h5.parts"
    folder.mkdir()
    for i in range(2):
        write_columnar_h5(results[i::2], folder / f"part-{i}.h5")
    code = main(["h5", "merge", str(tmp_path / "all.h5"), str(folder)])
    err = capsys.readouterr().err
    assert code == 0 and f"{len(results)} sketches from 2 file(s) merged" in err
    assert len(read_results_h5(tmp_path / "all.h5")) == len(results)
    code = main(["h5", "merge", str(tmp_path / "all.h5"), str(folder)])
    assert code == 2 and "exists" in capsys.readouterr().err
