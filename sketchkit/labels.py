"""Category names from a list, a file or a caption; captions from instance names; prompt text.

Names the user gives are used verbatim ("bus", "stairs", "eyeglasses" are never singularised).

Captions are matched against a vocabulary (the bundled `data/vocab.txt` or the caller's list)
without any downloaded NLP model:

1. Tokens: the caption lower-cased, possessive "'s" cut off, hyphens read as spaces ("teddy-bear"
   and "teddy bear" are the same key); punctuation is kept as tokens so nothing matches across it.
2. At each position the longest vocabulary name wins ("traffic light" before "light"). A window of
   tokens matches a name written with spaces or hyphens, or written as one word ("street light"
   -> "streetlight"); failing that, the same with its last word singularised ("palm trees" ->
   "palm tree"). Singularising (inflect, plus IRREGULAR_SINGULARS such as "people" -> "person")
   happens only when the singular is in the vocabulary and the word itself is not, so "bus"
   stays "bus" and "glasses" stays "glasses" when the vocabulary has "glasses".
3. Two filters, both about words that are in the vocabulary but are not objects in the sentence:
   - a match directly followed by another match modifies it and is dropped: the head noun of a
     compound is its last one ("an orange cat" -> cat, "a stone bench" -> bench);
   - a word of AMBIGUOUS_NOUNS, which captions mostly use as a verb or adjective ("saw",
     "stands", "present"), counts only right after a determiner or a number ("a saw", "the
     stand", "two matches").
4. Names are returned in the vocabulary's spelling, in order of first appearance, once each.
"""

from __future__ import annotations

import bisect
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

from .errors import InputError, UsageError
from .io.limits import read_list_file

PROMPT_ENSEMBLE = (
    "A sketch of a {}.",  # the paper's prompt; the single template when no ensemble is used
    "A drawing of a {}.",
    "A line drawing of the {}.",
    "A black and white sketch of a {}.",
    "A freehand sketch of a {}.",
    "A simple doodle of a {}.",
    "A pencil sketch of the {}.",
    "A hand-drawn outline of a {}.",
)
"""Sketch-specific prompt templates, averaged like CLIP Surgery's ensemble; "{}" is the label."""

DEFAULT_TEMPLATE = PROMPT_ENSEMBLE[0]

SCENE_WORDS = (
    "person", "man", "woman", "boy", "girl", "child", "kid", "baby", "player", "skier", "surfer",
    "sky", "cloud", "grass", "road", "tree", "building", "hill", "ground", "sea", "sand", "snow",
    "rock", "boat", "ship", "plane", "motorcycle", "pole", "sign", "kite", "frisbee", "street",
    "sidewalk", "wall", "window", "plant",
)
"""Common FS-COCO caption nouns added to the bundled vocabulary (the class lists lack most)."""

IRREGULAR_SINGULARS = {"people": "person", "persons": "person", "cacti": "cactus", "octopi": "octopus"}
"""Plurals mapped before inflect is asked (same rule: only into the vocabulary)."""

AMBIGUOUS_NOUNS = frozenset({
    "saw", "stand", "present", "slide", "face", "stick", "board", "matches", "line", "paddle",
})
"""Vocabulary names that captions mostly use as verbs or adjectives: kept only after a determiner."""

DETERMINERS = frozenset({
    "a", "an", "the", "this", "that", "these", "those", "my", "your", "his", "her", "its", "our",
    "their", "some", "any", "each", "every", "another", "no", "both", "several", "many", "few",
    "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
})

MASS_NOUNS = frozenset({
    "air", "bread", "cheese", "dirt", "dust", "fire", "foam", "fog", "foliage", "grass", "gravel",
    "hair", "hay", "ice", "lava", "lightning", "mist", "moss", "mud", "paper", "rain",
    "rice", "sand", "smoke", "snow", "soil", "steam", "traffic", "wall paper", "water", "wind",
    "wood", "yoga",
})
"""Names taking no article and no count in a caption ("smoke", not "a smoke"); a multi-word name
counts when its last word does ("curly hair"). Same list as sketchkit.io.strokes_json."""

VOCAB_RESOURCE = "data/vocab.txt"
_ARTICLE_SLOT = re.compile(r"\b(?:a|an|the) \{\}", re.IGNORECASE)
_LEADING_ARTICLE = re.compile(r"(?:a|an|the)\s", re.IGNORECASE)
_TOKEN = re.compile(r"[^\W_]+|[^\w\s]")
_POSSESSIVE = re.compile(r"['\u2019]s\b")
_INNER_HYPHEN = re.compile(r"(?<=\w)-(?=\w)")


# ---------------------------------------------------------------------------------- label lists


def read_names(path: str | Path, what: str = "label file") -> list[str]:
    """Names from a text file, one per line; '#' starts a comment; blank lines are skipped.

    Names are stripped (inner whitespace collapsed) and deduplicated in order, otherwise
    verbatim. InputError when the file cannot be read, holds no name, or is over the list-file
    caps (`limits.read_list_file`).
    """
    path = Path(path).expanduser()
    text = read_list_file(path, what)
    names = _clean(line.split("#", 1)[0] for line in text.splitlines())
    if not names:
        raise InputError("no labels in the file (one name per line, '#' starts a comment)", path)
    return names


def _clean(names: Iterable[str]) -> list[str]:
    """Strip, collapse inner whitespace, drop empties, dedupe keeping the first occurrence."""
    return list(dict.fromkeys(n for n in (" ".join(name.split()) for name in names) if n))


def parse_labels(spec: str) -> list[str]:
    """'tree, house,sun' -> ['tree', 'house', 'sun']; '@path' reads one name per line.

    Names are kept verbatim apart from surrounding whitespace; repeats are dropped keeping the
    first. '@path' takes everything after '@' as the path (see `read_names`). UsageError when
    the spec names nothing; InputError for a file that is missing or empty.
    """
    if not isinstance(spec, str):
        raise UsageError(f"labels must be a string such as 'tree, house, sun', got {type(spec).__name__}")
    spec = spec.strip()
    if spec.startswith("@"):
        if not spec[1:].strip():
            raise UsageError("'@' must be followed by the path of a label file")
        return read_names(spec[1:].strip())
    names = _clean(spec.split(","))
    if not names:
        raise UsageError("no labels given: pass comma-separated names (e.g. 'tree, house, sun') or @FILE")
    return names


def load_vocabulary(path: str | Path | None = None) -> list[str]:
    """The caption vocabulary: the bundled list (sketchkit/data/vocab.txt) when `path` is None,
    else a user file read like an '@' label file."""
    if path is None:
        return list(_bundled_vocabulary())
    return read_names(path, "vocabulary file")


def load_mapping(path: Path) -> dict[str, str]:
    """A JSON object name->name, or one nested one level (FrISS's {"friss_to_qd": {...}})."""
    from .io.jsontext import load_json

    data = load_json(read_list_file(path, "name mapping"), path)
    if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), dict):
        data = next(iter(data.values()))
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise InputError("name mapping must be a JSON object of name -> name", path)
    return data


@lru_cache(maxsize=1)
def _bundled_vocabulary() -> tuple[str, ...]:
    resource = resources.files("sketchkit").joinpath(VOCAB_RESOURCE)
    return tuple(_clean(line.split("#", 1)[0] for line in resource.read_text(encoding="utf-8").splitlines()))


def build_vocabulary(class_list_paths: Iterable[str | Path], mapping_paths: Iterable[str | Path] = (),
                     extra: Iterable[str] = SCENE_WORDS) -> list[str]:
    """How data/vocab.txt is made: the sorted union of the names in the class lists (one per
    line), of the keys and values of name-mapping JSON files (an object, or one nested object as
    in FrISS's friss_to_qd_mappings.json) and of `extra`, lower-cased with whitespace collapsed."""
    names = list(extra)
    for path in class_list_paths:
        names += read_names(path)
    for path in mapping_paths:
        mapping = load_mapping(path)
        names += [*mapping.keys(), *mapping.values()]
    return sorted(set(_clean(n.lower() for n in names)))


# ------------------------------------------------------------------------------ caption -> names


@lru_cache(maxsize=1)
def _inflect():
    """inflect's engine, imported on first use.

    inflect decorates its methods with typeguard's @typechecked, which re-parses and recompiles
    inflect's whole source once per method at import: about 2 s of every cold `sketchkit` run that
    reads a FrISS scene (its caption is written from the instance names). We call inflect only with
    str/int arguments, so its import runs with @typechecked as the identity (the methods are the
    same, minus the argument type checks); typeguard is restored right after.
    """
    import sys

    try:
        import typeguard
    except ImportError:  # a future inflect without typeguard
        typeguard = None
    original = getattr(typeguard, "typechecked", None)
    if original is not None and "inflect" not in sys.modules:
        typeguard.typechecked = lambda target=None, **_: target if target is not None else (lambda t: t)
    try:
        import inflect
    finally:
        if original is not None:
            typeguard.typechecked = original
    return inflect.engine()


@lru_cache(maxsize=4096)
def _singulars(word: str) -> tuple[str, ...]:
    """Singular candidates for `word`, in order: IRREGULAR_SINGULARS, inflect, then the word less
    a final -s / -es. () for a word that cannot be a plural. Callers keep the first candidate
    that is in the vocabulary."""
    candidates = [IRREGULAR_SINGULARS[word]] if word in IRREGULAR_SINGULARS else []
    if word.isalpha() and len(word) > 2:
        candidates.append(_inflect().singular_noun(word) or word)
        if word.endswith("s"):  # what inflect gets wrong ("bowties" -> "bowty"): plain -s, -es
            candidates += [word[:-1], word[:-2] if word.endswith("es") else word]
    return tuple(dict.fromkeys(c for c in candidates if c != word))


def _tokens(text: str) -> list[str]:
    """Lower-case word and punctuation tokens; hyphens inside words split them; a possessive
    "'s" becomes a lone "'" (a boundary: "the man's kite" names a man and a kite)."""
    text = _INNER_HYPHEN.sub(" ", _POSSESSIVE.sub(" ' ", text.lower()))
    return _TOKEN.findall(text)


@dataclass(frozen=True)
class _Index:
    """Vocabulary lookup: token keys ('teddy bear') and one-word keys ('teddybear') -> name, and both key
    lists sorted, to tell whether a span of a caption can still grow into a key (`_extends`)."""

    spaced: dict[str, str]
    compact: dict[str, str]
    longest: int
    spaced_sorted: tuple[str, ...]
    compact_sorted: tuple[str, ...]

    @classmethod
    def build(cls, vocabulary: Sequence[str]) -> "_Index":
        spaced: dict[str, str] = {}
        compact: dict[str, str] = {}
        longest = 1
        for name in vocabulary:
            tokens = _tokens(name)
            if not tokens:
                continue
            spaced.setdefault(" ".join(tokens), name)
            compact.setdefault("".join(tokens), name)
            longest = max(longest, len(tokens))
        return cls(spaced, compact, longest, tuple(sorted(spaced)), tuple(sorted(compact)))

    def lookup(self, head: tuple[str, str], word: str, size: int) -> str | None:
        """The name of the span `head` (its words before the last, spaced and compact) + `word`."""
        spaced = f"{head[0]} {word}" if size > 1 else word
        return self.spaced.get(spaced) or (self.compact.get(head[1] + word) if size > 1 else None)

    def match(self, tokens: Sequence[str], start: int) -> tuple[int, str] | None:
        """(token count, name) of the longest match at `start`, as written, then singularised. The span grows
        only while some key starts with it, so a caption costs time linear in its length, whatever the
        vocabulary (a name of 300 tokens, thousands of odd words)."""
        found, head = None, ("", "")
        for size in range(1, min(self.longest, len(tokens) - start) + 1):
            word = tokens[start + size - 1]
            name = self.lookup(head, word, size)
            for singular in () if name is not None else _singulars(word):
                name = self.lookup(head, singular, size)
                if name is not None:
                    break
            if name is not None:
                found = size, name
            head = (f"{head[0]} {word}" if size > 1 else word, head[1] + word)
            if not (_extends(self.spaced_sorted, head[0] + " ") or _extends(self.compact_sorted, head[1])):
                break
        return found


def _extends(keys: tuple[str, ...], prefix: str) -> bool:
    """Whether a key of the sorted `keys` starts with `prefix` (and is longer)."""
    at = bisect.bisect_right(keys, prefix)
    return at < len(keys) and keys[at].startswith(prefix)


@lru_cache(maxsize=8)
def _index(vocabulary: tuple[str, ...] | None) -> _Index:
    return _Index.build(_bundled_vocabulary() if vocabulary is None else vocabulary)


def _is_determiner(token: str) -> bool:
    return token in DETERMINERS or token.isdigit()


def labels_from_caption(caption: str, vocabulary: Sequence[str] | None = None, *, max_labels: int | None = None) -> list[str]:
    """Vocabulary names that a caption mentions, in order of first appearance, once each.

    `vocabulary` defaults to the bundled list; names come back in its spelling. `max_labels`
    keeps the first N (training keeps 3). Rules: see the module docstring.
    """
    if not isinstance(caption, str):
        raise InputError(f"a caption must be text, got {type(caption).__name__}")
    if max_labels is not None and max_labels < 1:
        raise UsageError(f"max_labels must be at least 1, got {max_labels}")
    index = _index(None if vocabulary is None else tuple(vocabulary))
    tokens = _tokens(caption)
    matches: list[tuple[int, int, str]] = []  # (first token, end token, name)
    position = 0
    while position < len(tokens):
        found = index.match(tokens, position)
        if found is None:
            position += 1
            continue
        size, name = found
        ambiguous = size == 1 and name.lower() in AMBIGUOUS_NOUNS
        if not ambiguous or (position > 0 and _is_determiner(tokens[position - 1])):
            matches.append((position, position + size, name))
        position += size
    heads = [m for m, following in zip(matches, matches[1:] + [None]) if following is None or following[0] != m[1]]
    names = list(dict.fromkeys(name for _, _, name in heads))
    return names[:max_labels] if max_labels is not None else names


# ------------------------------------------------------------------------------ names -> caption


def _is_mass(name: str) -> bool:
    lowered = name.lower()
    return lowered in MASS_NOUNS or (lowered.split() or [""])[-1] in MASS_NOUNS


def _is_plural_only(name: str) -> bool:
    """True for names that are already plural ("grapes", "flip flops", "scissors", "peas").

    inflect takes any final "s" for a plural, so singular endings are ruled out first: -ss, -us,
    -is, -os, and -as except -eas ("gas", "canvas" are singular; "peas" is not)."""
    word = name.split()[-1] if name.split() else name
    if not word.endswith("s") or word.endswith(("ss", "us", "is", "os")) or (word.endswith("as") and not word.endswith("eas")):
        return False
    return bool(_inflect().singular_noun(word))


def noun_phrase(name: str, count: int) -> str:
    """One caption item for `count` instances: 'an airplane', 'smoke', 'five seagulls', 'grapes'.

    Mass nouns, names already plural and names with their own article ('the eiffel tower') are
    written as they are, whatever the count."""
    engine = _inflect()
    if _is_mass(name) or _is_plural_only(name) or _LEADING_ARTICLE.match(name):
        return name
    if count == 1:
        return engine.a(name)
    return f"{engine.number_to_words(count)} {engine.plural_noun(name)}"


def caption_from_names(names: Sequence[str]) -> str:
    """A caption listing instance names in order of first appearance, repeats counted:
    ['airplane', 'smoke', 'seagull' x5] -> 'an airplane, smoke and five seagulls'.

    Mass nouns (MASS_NOUNS), names already plural and names starting with an article take no
    article or count (`noun_phrase`). Empty names are skipped; '' when none is left.
    """
    counts = Counter(n.strip() for n in names if isinstance(n, str) and n.strip())
    if not counts:
        return ""
    return _inflect().join([noun_phrase(name, count) for name, count in counts.items()], final_sep="")


# ---------------------------------------------------------------------------------------- prompts


def prompt_for(label: str, template: str = DEFAULT_TEMPLATE) -> str:
    """The text prompt for one label: prompt_for('tree') -> 'A sketch of a tree.'.

    The label goes where the template's single '{}' is. A label that already starts with an
    article ('the Eiffel Tower') replaces the template's article before '{}' instead of
    following it. No other grammar: 'A sketch of a apple.' is the paper's prompt as written.
    """
    if template.count("{}") != 1:
        raise UsageError(f"a prompt template needs exactly one '{{}}' for the label, got {template!r}")
    label = " ".join(str(label).split())
    if not label:
        raise UsageError("cannot build a prompt for an empty label")
    if _LEADING_ARTICLE.match(label):
        template = _ARTICLE_SLOT.sub("{}", template, count=1)
    return template.replace("{}", label)
