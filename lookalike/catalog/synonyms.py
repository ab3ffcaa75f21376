"""Synonyms in the Solr format, applied to a search's words when it runs (never to the index).

    sofa, couch, settee        any of these finds all of them
    couch => sofa              `couch` is searched as `sofa` only
    # a comment                blank lines and comments are ignored

Phrases work on both sides (`bed frame, bedstead`). A store puts its list in `synonyms.txt`
beside `products.csv`; the indexing job copies it into the index version, and a version
without one uses `default_synonyms.txt`, shipped here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lookalike.errors import SynonymsError
from lookalike.text_query import words

DEFAULT_SYNONYMS = Path(__file__).with_name("default_synonyms.txt")
Phrase = tuple[str, ...]


def _phrases(side: str, where: str) -> list[Phrase]:
    phrases = [tuple(words(part)) for part in side.split(",")]
    if not all(phrases):
        raise SynonymsError(f"{where}: every entry between commas must hold a word")
    return phrases


@dataclass(frozen=True)
class Synonyms:
    """Phrase -> the phrases to search instead (itself included, for an equivalence)."""

    rules: dict[Phrase, frozenset[Phrase]] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str, source: str = "synonyms.txt") -> Synonyms:
        rules: dict[Phrase, set[Phrase]] = {}
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            where = f"{source} line {number}"
            if "=>" in line:
                left, _, right = line.partition("=>")
                if "=>" in right:
                    raise SynonymsError(f"{where}: `=>` may appear once, as in `couch => sofa`")
                targets = _phrases(right, where)
                for phrase in _phrases(left, where):
                    rules.setdefault(phrase, set()).update(targets)
            else:
                group = _phrases(line, where)
                if len(group) < 2:
                    raise SynonymsError(f"{where}: write two or more words separated by commas, as in `sofa, couch`")
                for phrase in group:
                    rules.setdefault(phrase, set()).update(group)
        return cls({phrase: frozenset(targets) for phrase, targets in rules.items()})

    @classmethod
    def load(cls, path: Path | None) -> Synonyms:
        """The store's file when there is one, else the default list."""
        chosen = path if path is not None and path.is_file() else DEFAULT_SYNONYMS
        return cls.parse(chosen.read_text(encoding="utf-8-sig"), chosen.name)

    @property
    def longest(self) -> int:
        return max((len(p) for p in self.rules), default=1)

    def expand(self, tokens: Sequence[str]) -> list[tuple[Phrase, frozenset[Phrase]]]:
        """The words as groups, longest synonym phrase first: (what was typed, the phrases to search)."""
        groups = []
        at = 0
        while at < len(tokens):
            for size in range(min(self.longest, len(tokens) - at), 0, -1):
                typed = tuple(tokens[at:at + size])
                if typed in self.rules:
                    groups.append((typed, self.rules[typed]))
                    at += size
                    break
            else:
                groups.append(((tokens[at],), frozenset({(tokens[at],)})))
                at += 1
        return groups
