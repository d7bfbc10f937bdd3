"""Where each sketch's label set comes from: one `LabelPolicy` for every command.

    LabelPolicy.fixed(["tree", "house"])            # the same list for every sketch (segment --labels)
    LabelPolicy.from_caption()                      # each sketch's caption (segment without --labels)
    LabelPolicy.from_caption("a cat on a mat")      # one caption for every sketch (segment --caption)
    LabelPolicy.ground_truth(mapping)               # the sketch's own stroke labels (eval, per-sketch vocabulary)
    LabelPolicy(("ground-truth", "caption"))        # the first source that yields labels wins (bench)

Caption matching uses `sketchkit.labels.labels_from_caption` with the policy's vocabulary (None: the
bundled one) and `max_labels`. A sketch for which no source yields a label raises InputError.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from ..errors import InputError, UsageError
from ..io.limits import check_label_count, check_label_length
from ..text import check_text
from ..types import Sketch

SOURCES = ("fixed", "ground-truth", "caption")


@dataclass(frozen=True)
class LabelPolicy:
    """sources: tried in order; names: the fixed list; caption: text used instead of each sketch's own
    caption; vocabulary: caption-matching names (None: bundled); mapping: renames ground-truth names
    (names mapped to None-like "" are dropped); max_labels: most labels taken from one caption."""

    sources: tuple[str, ...] = ("caption",)
    names: tuple[str, ...] = ()
    caption: str | None = None
    vocabulary: tuple[str, ...] | None = None
    mapping: Mapping[str, str] = field(default_factory=dict)
    max_labels: int | None = None
    sort: bool = False  # ground-truth names sorted (the reference code's class order) instead of first seen

    def __post_init__(self):
        unknown = [s for s in self.sources if s not in SOURCES]
        if unknown or not self.sources:
            raise ValueError(f"unknown label source(s) {unknown or '(none)'}; choose from {SOURCES}")
        if "fixed" in self.sources and not self.names:
            raise UsageError("the label list is empty", hint="labels")
        for name in self.names:
            check_text(name, "the label", UsageError)
        check_text(self.caption, "the caption", UsageError)

    @classmethod
    def fixed(cls, names: Sequence[str]) -> "LabelPolicy":
        return cls(("fixed",), names=tuple(check_labels(names)))

    @classmethod
    def from_caption(cls, caption: str | None = None, vocabulary: Sequence[str] | None = None,
                     max_labels: int | None = None) -> "LabelPolicy":
        return cls(("caption",), caption=caption, vocabulary=None if vocabulary is None else tuple(vocabulary),
                   max_labels=max_labels)

    @classmethod
    def ground_truth(cls, mapping: Mapping[str, str] | None = None, *, sort: bool = False) -> "LabelPolicy":
        return cls(("ground-truth",), mapping=dict(mapping or {}), sort=sort)

    @classmethod
    def for_segment(cls, labels: Sequence[str] | None = None, caption: str | None = None,
                    vocabulary: Sequence[str] | None = None) -> "LabelPolicy":
        """What `segment` does: the fixed labels when given, else the caption (given, or each sketch's)."""
        return cls.fixed(labels) if labels else cls.from_caption(caption, vocabulary)

    def labels_for(self, sketch: Sketch) -> list[str]:
        """The label set for `sketch`; InputError (naming the sketch) when no source yields one."""
        for source in self.sources:
            found = self._from(source, sketch)
            if found:
                return check_labels(found, sketch.source)
        text = self.caption or sketch.caption
        if "caption" in self.sources and text:
            raise InputError(f"no known category in the caption {text!r}", sketch.source, hint="vocabulary")
        wanted = " or ".join(s.replace("-", " ") + (" labels" if s == "ground-truth" else "") for s in self.sources)
        raise InputError(f"no labels for this sketch (looked for: {wanted})", sketch.source, hint="labels")

    def labels_for_caption(self, text: str) -> list[str]:
        """Categories of a caption under this policy's vocabulary and `max_labels` (empty when none match)."""
        from ..labels import labels_from_caption

        return labels_from_caption(text, self.vocabulary, max_labels=self.max_labels)

    def _from(self, source: str, sketch: Sketch) -> list[str]:
        if source == "fixed":
            return list(self.names)
        if source == "ground-truth":
            mapped = [n for n in dict.fromkeys(self.mapping.get(n, n) for n in sketch.label_names()) if n]
            return sorted(mapped) if self.sort else mapped
        text = self.caption or sketch.caption
        return self.labels_for_caption(text) if text else []


def check_labels(labels: Sequence[str], source=None) -> list[str]:
    """Distinct non-blank labels in order; UsageError when none is left, InputError (naming
    `source`) for more than MAX_LABELS labels or one longer than MAX_LABEL_CHARS."""
    labels = list(dict.fromkeys(name for name in labels if name and name.strip()))
    if not labels:
        raise UsageError("no labels given", hint="labels")
    check_label_count(len(labels), source)
    for name in labels:
        check_label_length(name, source)
    return labels
