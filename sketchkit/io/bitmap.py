"""PNG / JPEG sketches: a grey image plus pseudo-strokes traced from its ink.

Steps (all vectorised; no per-pixel Python loops):
1. Decode with Pillow (PNG and JPEG decoders only). The pixel count from the header is checked
   against MAX_BITMAP_PIXELS before anything is decoded, and Pillow's own decompression-bomb
   warning is an error. EXIF orientation is applied. Alpha is composited onto a paper colour that
   contrasts with the opaque ink (white under dark ink, black under light ink).
2. Binarise: the paper colour is the dominant grey of the image border (any paper colour, dark ink
   on light paper or light on dark; white for images one or two pixels thin, which are all border,
   so a one-pixel black PNG is a dot); a pixel's contrast is its grey distance from the paper; ink is
   contrast above an Otsu threshold (scikit-image's threshold_otsu) between paper and the ink level,
   capped at INK_FRACTION of the ink level (so anti-aliased grey counts as ink) and floored at
   MIN_CONTRAST.
3. `Sketch.image` is the contrast mapped to grey: paper (and anything within MIN_CONTRAST / 2 of
   it) = 1, the ink level -> 0, anti-aliased grey in between (float32).
4. Pseudo-strokes: skeletonise the ink (skimage), link skeleton pixels with m-adjacency (a diagonal
   link only where no 4-neighbour already joins the two pixels, so one-pixel lines have exactly
   two links per pixel), cut at junctions (pixels with three or more links), order each branch by
   a depth-first walk from one of its ends, extend both ends onto the junction pixels they touch,
   and simplify with Ramer-Douglas-Peucker (SIMPLIFY_TOLERANCE px; `_simplify`, all branches at
   once in numpy: scikit-image's approximate_polygon gives the same points but takes one Python
   call per branch, 15x slower on a 512 px scene). Closed loops stay closed, lone pixels become
   one-point strokes (dots): no ink component is dropped.
   Points are pixel centres: x = col + 0.5, y = row + 0.5 (canvas units are image pixels).
5. `stroke_widths`: one estimated line width for all strokes, ink area / skeleton length, >= 1 px.
"""

from __future__ import annotations

import io
import warnings

import numpy as np

from sketchkit.errors import InputError
from sketchkit.io.limits import MAX_BITMAP_PIXELS, check_bitmap_strokes, check_skeleton_pixels
from sketchkit.types import Sketch

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"

MIN_CONTRAST = 0.1
"""Grey distance from the paper (in [0, 1]) below which a pixel is never ink."""

INK_FRACTION = 0.4
"""The ink threshold never exceeds this fraction of the ink level: anti-aliased edges are ink."""

SIMPLIFY_TOLERANCE = 0.5
"""Ramer-Douglas-Peucker tolerance for pseudo-strokes, in pixels."""

_BORDER_BAND = 0.1  # border greys within this distance of the border's mode define the paper


# ------------------------------------------------------------------------------------------ decoding


def _decode(data: bytes, path):
    """A fully decoded Pillow image, or InputError."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=["PNG", "JPEG"])
            width, height = image.size
            if width * height > MAX_BITMAP_PIXELS:
                raise InputError(f"the image is {width}x{height} = {width * height:,} pixels, more than the "
                                 f"{MAX_BITMAP_PIXELS:,} sketchkit decodes", path)
            if width == 0 or height == 0:
                raise InputError(f"the image is {width}x{height} pixels", path)
            image.load()
            return ImageOps.exif_transpose(image)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise InputError(f"the image declares too many pixels (decompression bomb guard, limit "
                             f"{MAX_BITMAP_PIXELS:,})", path) from None
        except UnidentifiedImageError:
            raise InputError("not a readable PNG or JPEG image", path) from None
        except InputError:
            raise
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, MemoryError) as exc:
            # Pillow reports truncated or corrupt data with any of these
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(f"cannot decode the image ({message})", path) from None


def _to_grey(image) -> np.ndarray:
    """(H, W) float32 grey in [0, 1] (1 = white), alpha composited onto a contrasting paper colour."""
    mode = image.mode
    if mode.startswith("I;16"):
        return (np.asarray(image, dtype=np.float32) / 65535.0).clip(0.0, 1.0)
    if mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        scale = 65535.0 if mode == "I" and values.max(initial=0) > 255 else (255.0 if mode == "I" else 1.0)
        return (values / scale).clip(0.0, 1.0).astype(np.float32)
    has_alpha = "A" in image.getbands() or "transparency" in image.info
    if not has_alpha:
        return np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    grey_alpha = np.asarray(image.convert("LA"), dtype=np.float32) / 255.0
    grey, alpha = grey_alpha[..., 0], grey_alpha[..., 1]
    weight = alpha.sum()
    ink_grey = float((grey * alpha).sum() / weight) if weight > 0 else 0.0
    paper = 1.0 if ink_grey < 0.5 else 0.0
    return (grey * alpha + paper * (1.0 - alpha)).astype(np.float32)


# ---------------------------------------------------------------------------------------- binarising


def _otsu(values: np.ndarray, high: float, bins: int = 256) -> float:
    """Otsu's threshold (scikit-image) of `values` clipped to [0, high], from a histogram of
    `bins` bins over exactly [0, high]; the threshold is a bin centre."""
    from skimage.filters import threshold_otsu

    hist, edges = np.histogram(np.clip(values, 0.0, high), bins=bins, range=(0.0, high))
    if np.count_nonzero(hist) < 2:  # one grey level: nothing to split (the caller's MIN_CONTRAST floor applies)
        return 0.0
    return float(threshold_otsu(hist=(hist, (edges[:-1] + edges[1:]) / 2.0)))


def binarize(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Grey (H, W) float32 in [0, 1] -> (image, ink): image (H, W) float32 with paper = 1 and the ink
    level 0, ink (H, W) bool. None when no pixel differs from the paper by MIN_CONTRAST."""
    border = np.concatenate([grey[0], grey[-1], grey[1:-1, 0], grey[1:-1, -1]])
    mode = np.argmax(np.bincount(np.rint(border * 255).astype(np.int64), minlength=256)) / 255.0
    paper = float(np.median(border[np.abs(border - mode) <= _BORDER_BAND]))
    if min(grey.shape) <= 2:  # no interior: the border is the whole image and cannot tell paper from ink
        paper = 1.0
    contrast = np.abs(grey - np.float32(paper))
    candidates = contrast[contrast > MIN_CONTRAST]
    if candidates.size == 0:
        return None
    ink_level = float(np.percentile(candidates, 90))
    threshold = max(MIN_CONTRAST, min(_otsu(contrast, ink_level), INK_FRACTION * ink_level))
    ink = contrast > threshold
    if not ink.any():
        return None
    low = MIN_CONTRAST / 2.0  # closer to the paper than this: pure paper (noise floor)
    image = 1.0 - np.clip((contrast - low) / (ink_level - low), 0.0, 1.0)
    return image.astype(np.float32), ink


# ------------------------------------------------------------------------------------------ tracing


def _links(skeleton: np.ndarray, rows: np.ndarray, cols: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """m-adjacency links of skeleton pixels as (E,) node-id pairs (each link once).

    `ids` is the (H + 2, W + 2) node-id image padded with -1; rows/cols are unpadded coordinates."""
    padded = np.pad(skeleton, 1)
    r, c = rows + 1, cols + 1
    heads, tails = [], []
    for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
        linked = padded[r + dr, c + dc]
        if dr and dc:  # a diagonal link only where no shared 4-neighbour joins the pair already
            linked &= ~padded[r + dr, c] & ~padded[r, c + dc]
        heads.append(ids[r[linked], c[linked]])
        tails.append(ids[r[linked] + dr, c[linked] + dc])
    return np.concatenate(heads), np.concatenate(tails)


def _walk_branches(num_nodes: int, heads: np.ndarray, tails: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Order the nodes of a graph whose nodes have at most two links into branches.

    Returns (walk, starts, closed): `walk` lists every node once, branch after branch, each in
    walking order from an end node when it has one; branch k is walk[starts[k]:starts[k + 1]];
    closed[k] is True for a loop. One depth-first walk lists the components one after another:
    it starts at a chain of virtual nodes, one per component, each linked to the next and to its
    component's start node. (A single virtual root linked to every start node would make
    scipy's walk quadratic in the number of components: it rescans the root's links.)
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components, depth_first_order

    degree = np.bincount(np.concatenate([heads, tails]), minlength=num_nodes)
    graph = coo_matrix((np.ones(len(heads), np.int8), (heads, tails)), shape=(num_nodes, num_nodes)).tocsr()
    num_parts, part = connected_components(graph, directed=False)
    # start: the lowest-id end node (degree <= 1) of each component, else its lowest id (a loop)
    key = np.where(degree <= 1, 0, 1) * num_nodes + np.arange(num_nodes)
    order = np.lexsort((key, part))
    entry = order[np.r_[True, part[order][1:] != part[order][:-1]]]

    chain = num_nodes + np.arange(num_parts)  # virtual node k: linked to entry[k] and chain[k + 1]
    rows = np.r_[heads, chain, chain[:-1]]
    cols = np.r_[tails, entry, chain[1:]]
    full = coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(num_nodes + num_parts,) * 2).tocsr()
    walk, predecessors = depth_first_order(full, num_nodes, directed=False, return_predecessors=True)
    branch_starts = predecessors[walk] >= num_nodes  # entered from a virtual node
    real = walk < num_nodes
    walk, branch_starts = walk[real], branch_starts[real]
    # components in the order of their virtual nodes (the walk may reach them in another order)
    starts = np.flatnonzero(branch_starts)
    parts_in_walk = part[walk[starts]]
    lengths = np.diff(np.r_[starts, len(walk)])
    rank = np.argsort(parts_in_walk, kind="stable")
    new_starts = np.cumsum(lengths[rank]) - lengths[rank]
    walk = walk[np.repeat(starts[rank] - new_starts, lengths[rank]) + np.arange(len(walk))]
    starts = new_starts
    return walk, starts, degree[walk[starts]] == 2


def _junction_neighbour(junction: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                        last: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For pixels (rows, cols): whether an 8-neighbour is a junction pixel, and its (row, col).

    `junction` is the padded (H + 2, W + 2) mask. `last` picks the last matching offset instead
    of the first, so that a one-pixel branch between two junctions reaches both."""
    offsets = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]
    if last:
        offsets.reverse()
    found = np.zeros(len(rows), dtype=bool)
    out_r, out_c = rows.copy(), cols.copy()
    for dr, dc in offsets:
        hit = ~found & junction[rows + 1 + dr, cols + 1 + dc]
        out_r[hit], out_c[hit] = rows[hit] + dr, cols[hit] + dc
        found |= hit
    return found, out_r, out_c


def _simplify(points: np.ndarray, starts: np.ndarray, ends: np.ndarray, tolerance: float) -> np.ndarray:
    """Ramer-Douglas-Peucker on many polylines at once: (N,) bool mask of points to keep.

    Polyline k is points[starts[k]:ends[k]]; its first and last points are always kept. Each round
    keeps, in every chord whose points stray more than `tolerance`, the farthest point; points of
    chords that already fit drop out of later rounds."""
    keep = np.zeros(len(points), dtype=bool)
    keep[starts] = True
    keep[ends - 1] = True
    pending = np.flatnonzero(~keep)  # points whose chord is not settled yet
    while pending.size:
        kept = np.flatnonzero(keep)
        chord_of = np.searchsorted(kept, pending, side="right") - 1
        a, b = points[kept[chord_of]], points[kept[chord_of + 1]]
        chord, offset = b - a, points[pending] - a
        length = np.hypot(chord[:, 0], chord[:, 1])
        cross = np.abs(chord[:, 0] * offset[:, 1] - chord[:, 1] * offset[:, 0])
        distance = np.where(length > 0, cross / np.maximum(length, 1e-12), np.hypot(offset[:, 0], offset[:, 1]))
        over = distance > tolerance
        if not over.any():
            break
        candidates = np.flatnonzero(over)
        candidates = candidates[np.lexsort((-distance[candidates], chord_of[candidates]))]
        farthest = candidates[np.r_[True, chord_of[candidates][1:] != chord_of[candidates][:-1]]]
        keep[pending[farthest]] = True
        unsettled = np.zeros(len(kept), dtype=bool)
        unsettled[chord_of[candidates]] = True
        still = unsettled[chord_of]
        still[farthest] = False
        pending = pending[still]
    return keep


def trace_strokes(ink: np.ndarray, skeleton: np.ndarray | None = None, path=None) -> tuple[list[np.ndarray], float]:
    """Pseudo-strokes of a bool ink mask (H, W): (strokes, line width).

    strokes: (P_i, 2) float64 (x, y) at pixel centres, in walking order; loops end where they
    start; isolated skeleton pixels are one-point strokes. line width: ink area / skeleton pixel
    count, at least 1 px. The method is in the module docstring. InputError (naming `path`) when
    the image would give more than MAX_BITMAP_STROKES pseudo-strokes."""
    from scipy import ndimage
    from skimage.morphology import skeletonize

    if skeleton is None:
        skeleton = skeletonize(ink)
    check_skeleton_pixels(int(np.count_nonzero(skeleton)), path)
    rows, cols = np.nonzero(skeleton)
    num_nodes = len(rows)
    if num_nodes == 0:
        return [], 1.0
    ids = np.full((skeleton.shape[0] + 2, skeleton.shape[1] + 2), -1, dtype=np.int64)
    ids[rows + 1, cols + 1] = np.arange(num_nodes)
    heads, tails = _links(skeleton, rows, cols, ids)
    degree = np.bincount(np.concatenate([heads, tails]), minlength=num_nodes)
    is_junction = degree >= 3

    # branches: the skeleton without its junction pixels
    branch_nodes = np.flatnonzero(~is_junction)
    local = np.full(num_nodes, -1, dtype=np.int64)
    local[branch_nodes] = np.arange(len(branch_nodes))
    inner = ~is_junction[heads] & ~is_junction[tails]
    walk, starts, closed = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, dtype=bool)
    if len(branch_nodes):
        walk, starts, closed = _walk_branches(len(branch_nodes), local[heads[inner]], local[tails[inner]])
        walk = branch_nodes[walk]
    check_bitmap_strokes(len(starts), path)
    lengths = np.diff(np.r_[starts, len(walk)])
    closed &= lengths > 2

    # each branch reaches onto the junction pixels beside its two ends (loops have no ends)
    junction_mask = np.zeros_like(ids, dtype=bool)
    junction_mask[rows[is_junction] + 1, cols[is_junction] + 1] = True
    first, last = walk[starts], walk[starts + lengths - 1]
    head_hit, head_r, head_c = _junction_neighbour(junction_mask, rows[first], cols[first], last=False)
    tail_hit, tail_r, tail_c = _junction_neighbour(junction_mask, rows[last], cols[last], last=True)
    head_hit &= ~closed
    tail_hit &= ~closed

    # assemble [head junction] + branch + [first node again, for a loop] + [tail junction]
    sizes = lengths + head_hit + closed + tail_hit
    offsets = np.r_[0, np.cumsum(sizes)[:-1]]
    out_r = np.empty(int(sizes.sum()), dtype=np.int64)
    out_c = np.empty_like(out_r)
    node_at = np.repeat(offsets + head_hit - starts, lengths) + np.arange(len(walk))
    out_r[node_at], out_c[node_at] = rows[walk], cols[walk]
    at = offsets[head_hit]
    out_r[at], out_c[at] = head_r[head_hit], head_c[head_hit]
    at = (offsets + head_hit + lengths)[closed]
    out_r[at], out_c[at] = rows[first[closed]], cols[first[closed]]
    at = (offsets + sizes - 1)[tail_hit]
    out_r[at], out_c[at] = tail_r[tail_hit], tail_c[tail_hit]
    piece_rows, piece_cols, piece_sizes = [out_r], [out_c], [sizes]

    # junction clusters that no branch reaches (e.g. a skeleton made only of junction pixels): dots
    labels, num_clusters = ndimage.label(junction_mask, structure=np.ones((3, 3), dtype=bool))
    if num_clusters:
        reached = np.zeros(num_clusters + 1, dtype=bool)
        reached[labels[head_r[head_hit] + 1, head_c[head_hit] + 1]] = True
        reached[labels[tail_r[tail_hit] + 1, tail_c[tail_hit] + 1]] = True
        flat = labels.ravel()
        where = np.flatnonzero(flat)
        cluster_ids, first_pixel = np.unique(flat[where], return_index=True)
        lonely = where[first_pixel[~reached[cluster_ids]]]
        check_bitmap_strokes(len(starts) + len(lonely), path)
        lone_r, lone_c = np.unravel_index(lonely, labels.shape)
        piece_rows.append(lone_r - 1)
        piece_cols.append(lone_c - 1)
        piece_sizes.append(np.ones(len(lonely), dtype=np.int64))

    counts = np.concatenate(piece_sizes).astype(np.int64)
    points = np.stack([np.concatenate(piece_cols), np.concatenate(piece_rows)], axis=1).astype(np.float64) + 0.5
    ends = np.cumsum(counts)
    keep = _simplify(points, ends - counts, ends, SIMPLIFY_TOLERANCE)
    kept_counts = np.add.reduceat(keep.astype(np.int64), ends - counts)
    strokes = [np.ascontiguousarray(s) for s in np.split(points[keep], np.cumsum(kept_counts)[:-1])]
    width = max(float(ink.sum()) / num_nodes, 1.0)
    return strokes, width


# ------------------------------------------------------------------------------------------- reader


def read_bitmap(data: bytes, path) -> Sketch:
    """PNG/JPEG bytes -> Sketch with `image` (H, W) float32 (paper 1, ink 0) and pseudo-strokes in
    pixel units (canvas = image size). InputError for undecodable images or images without ink."""
    grey = _to_grey(_decode(data, path))
    found = binarize(grey)
    if found is None:
        raise InputError("no ink found: the image is blank (every pixel is the paper colour)", path)
    image, ink = found
    strokes, width = trace_strokes(ink, path=path)
    height_px, width_px = image.shape
    return Sketch(strokes=tuple(strokes), width=float(width_px), height=float(height_px),
                  stroke_widths=np.full(len(strokes), width), source=str(path) if path is not None else None,
                  image=image)
