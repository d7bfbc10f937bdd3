"""Category names: from a list, a file, or a caption; and the text prompts made from them.

Names given by the user are used verbatim ("bus", "stairs", "eyeglasses" are names, never
singularised). Captions are matched against a vocabulary without any downloaded NLP model:
multi-word phrases first (longest wins), then single words; a plural is singularised with
inflect only when its singular is in the vocabulary and the word itself is not.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

from .errors import InputError, UsageError

TEMPLATE = "A sketch of a {}."
# sketch-specific prompt ensemble in the spirit of CLIP Surgery's (the first one is the paper's)
PROMPT_ENSEMBLE = (
    "A sketch of a {}.",
    "A drawing of a {}.",
    "A line drawing of the {}.",
    "A black and white sketch of a {}.",
    "A freehand sketch of a {}.",
    "A simple doodle of a {}.",
    "A pencil sketch of the {}.",
)
# irregular plurals inflect does not map to the vocabulary's word
IRREGULAR = {"people": "person", "men": "man", "women": "woman", "children": "child", "mice": "mouse", "geese": "goose", "teeth": "tooth", "feet": "foot"}
WORD = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")


def prompt_for(label: str, template: str = TEMPLATE) -> str:
    return template.format(label)


def parse_labels(spec: str) -> list[str]:
    """'tree, house,sun' -> ['tree', 'house', 'sun']; '@file' reads one name per line (# comments)."""
    if spec.startswith("@"):
        path = Path(spec[1:])
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read labels file: {exc.strerror if isinstance(exc, OSError) else exc}", path) from None
        names = [line.split("#", 1)[0].strip() for line in lines]
    else:
        names = [part.strip() for part in spec.split(",")]
    names = list(dict.fromkeys(n for n in names if n))
    if not names:
        raise UsageError(f"no labels in {spec!r}")
    return names


def load_vocabulary(path: str | Path | None = None) -> list[str]:
    """The bundled vocabulary (sketchkit/data/vocab.txt) or a user file, one name per line."""
    if path is not None:
        return parse_labels(f"@{path}")
    return list(_bundled_vocabulary())


@lru_cache(maxsize=1)
def _bundled_vocabulary() -> tuple[str, ...]:
    text = resources.files("sketchkit").joinpath("data/vocab.txt").read_text(encoding="utf-8")
    return tuple(n for n in (line.split("#", 1)[0].strip() for line in text.splitlines()) if n)


def build_vocabulary(name_lists: Iterable[Iterable[str]]) -> list[str]:
    """Sorted union of names, lower-cased and stripped (how data/vocab.txt was made)."""
    return sorted({n.strip().lower() for names in name_lists for n in names if n.strip()})


@lru_cache(maxsize=1)
def _inflect():
    import inflect

    return inflect.engine()


def _singular(word: str, vocab: set[str]) -> str | None:
    if word in vocab:
        return word
    if word in IRREGULAR and IRREGULAR[word] in vocab:
        return IRREGULAR[word]
    singular = _inflect().singular_noun(word)
    return singular if singular and singular in vocab else None


def labels_from_caption(caption: str, vocabulary: Sequence[str] | None = None, *, max_labels: int | None = None) -> list[str]:
    """Categories named in a caption, in order of first appearance, deduplicated."""
    names = [n.lower() for n in (vocabulary if vocabulary is not None else _bundled_vocabulary())]
    vocab = set(names)
    phrases = {tuple(n.split()) for n in names if " " in n}
    longest = max((len(p) for p in phrases), default=1)
    words = WORD.findall(caption.lower())
    found: list[str] = []
    i = 0
    while i < len(words):
        for size in range(min(longest, len(words) - i), 1, -1):  # multi-word phrases, longest first
            head, last = words[i : i + size - 1], words[i + size - 1]
            tail = _singular(last, {p[-1] for p in phrases if len(p) == size and list(p[:-1]) == head} or set())
            if tail is not None:
                found.append(" ".join([*head, tail]))
                i += size
                break
        else:
            name = _singular(words[i], vocab)
            if name is not None:
                found.append(name)
            i += 1
    found = list(dict.fromkeys(found))
    return found[:max_labels] if max_labels else found


def caption_from_names(names: Sequence[str]) -> str:
    """['airplane', 'smoke', 'seagull' x5] -> 'an airplane, smoke and five seagulls'."""
    engine = _inflect()
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    parts = []
    for name, count in counts.items():
        if count == 1:
            parts.append(name if _uncountable(name) else engine.a(name))
        else:
            parts.append(f"{engine.number_to_words(count)} {engine.plural_noun(name)}")
    if len(parts) <= 1:
        return parts[0] if parts else ""
    return ", ".join(parts[:-1]) + " and " + parts[-1]


UNCOUNTABLE = {"grass", "smoke", "sand", "water", "snow", "rain", "sky", "sea", "fog", "fire", "hair", "sun", "moon", "ground"}


def _uncountable(name: str) -> bool:
    return name in UNCOUNTABLE
