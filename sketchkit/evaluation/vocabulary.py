"""The vocabulary an evaluation scores in: each sketch's own classes (the paper's protocol) or a fixed list.

A mapping renames dataset names first (FrISS -> QuickDraw). With a fixed list, strokes whose mapped
class is outside it are excluded from scoring and reported; unlabelled strokes are never scored.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

from ..errors import InputError, UsageError
from ..inference.policy import LabelPolicy
from ..types import Sketch


@dataclass
class Vocabulary:
    """None names = per-sketch vocabulary; else a fixed list with a dataset->list name mapping.

    source: where the list came from (a file path), for reports only.
    """

    names: list[str] | None = None
    mapping: dict[str, str] = field(default_factory=dict)
    source: str | None = None

    def __post_init__(self):
        if self.names is not None:
            self.names = list(dict.fromkeys(self.names))
            if not self.names:
                raise UsageError("the vocabulary list is empty")
        self._index = {n: i for i, n in enumerate(self.names or [])}

    @property
    def per_sketch(self) -> bool:
        return self.names is None

    def describe(self) -> str:
        return "per-sketch" if self.per_sketch else f"fixed list of {len(self.names)} names"

    def map(self, name: str | None) -> str | None:
        """Dataset name -> vocabulary name, None when outside the vocabulary."""
        if name is None:
            return None
        mapped = self.mapping.get(name, name)
        return mapped if self.per_sketch or mapped in self._index else None

    def excluded(self, sketch: Sketch) -> Counter:
        """Dataset name -> strokes of the sketch whose class falls outside the vocabulary."""
        return Counter(n for n in (sketch.labels or ()) if n is not None and self.map(n) is None)

    def scorable(self, sketch: Sketch) -> bool:
        """True when some stroke has a class in the vocabulary."""
        return any(self.map(n) is not None for n in (sketch.labels or ()))

    def policy(self, *, sort: bool = False) -> LabelPolicy:
        """The label sets the models are asked for: each sketch's mapped names (per-sketch; `sort`: in sorted
        order, as the reference code orders its classes) or the list."""
        return LabelPolicy.ground_truth(self.mapping, sort=sort) if self.per_sketch else LabelPolicy.fixed(self.names)

    def true_names(self, sketch: Sketch) -> list[str | None]:
        """Per stroke, its mapped true class name (None: unlabelled or outside the vocabulary)."""
        return [self.map(n) for n in (sketch.labels or (None,) * sketch.num_strokes)]

    def stroke_classes(self, sketch: Sketch, names: Sequence[str]):
        """(S,) int64 index into `names` of each stroke's mapped true class, -1 for unlabelled/excluded."""
        return sketch.label_indices(names, self.mapping)

    def model_input(self, sketch: Sketch) -> Sketch:
        """The sketch with its labels mapped (outside the vocabulary: None), for models that read
        ground truth (the oracle); geometry unchanged."""
        if sketch.labels is None or (not self.mapping and self.per_sketch):
            return sketch
        return sketch.with_labels(self.map(n) for n in sketch.labels)

    def class_names(self, sketches: Sequence[Sketch]) -> list[str]:
        """The global class index space: the list, or the sorted mapped names of all sketches."""
        if not self.per_sketch:
            return list(self.names)
        return sorted({self.map(n) for s in sketches for n in s.label_names()} - {None})

    def to_attrs(self) -> dict[str, str]:
        """HDF5 file attributes recording this vocabulary (see the module docstring)."""
        return {"eval_vocab": json.dumps("per-sketch" if self.per_sketch else self.names),
                "eval_name_map": json.dumps(self.mapping, sort_keys=True)}

    @classmethod
    def from_attrs(cls, attrs, path=None) -> "Vocabulary | None":
        """The vocabulary recorded by `to_attrs`, or None when the attributes are absent."""
        if "eval_vocab" not in attrs:
            return None
        try:
            names = json.loads(_text(attrs["eval_vocab"]))
            mapping = json.loads(_text(attrs.get("eval_name_map", "{}")))
        except (json.JSONDecodeError, RecursionError):
            raise InputError("malformed eval_vocab / eval_name_map attribute", path) from None
        if not isinstance(mapping, dict) or not (names == "per-sketch" or isinstance(names, list)):
            raise InputError("malformed eval_vocab / eval_name_map attribute", path)
        return cls(None if names == "per-sketch" else [str(n) for n in names], {str(k): str(v) for k, v in mapping.items()})


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)

