"""Words a shopper types, made safe to search by: the gateway checks them early, the similarity service searches,
and shoppers' votes are stored under them (`normalise_query`).

Text is cut into words the way SQLite FTS5's `unicode61 remove_diacritics 2` tokenizer cuts it:
case folded, accents dropped (`POÄNG` is `poang`), anything but letters and digits a separator.
So FTS5's own syntax (quotes, `NEAR`, `*`, `-`, `:`, parentheses) never survives as syntax; what
is left are plain words, which the text index quotes one by one.
"""

from __future__ import annotations

import re
import unicodedata

from lookalike.errors import BadTextQuery

MAX_QUERY_CHARS = 200
_WORD = re.compile(r"[^\W_]+")

# English words too common to mean anything in a product search. Kept inside synonym phrases
# ("chest of drawers"), dropped when they stand alone.
STOP_WORDS = frozenset("""
a about an and are as at be but by for from has have in into is it its of on or that the their this to was
were which with without
""".split())


def words(text: str) -> list[str]:
    """Case-folded words without diacritics, in order."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _WORD.findall(plain.casefold())


def normalise_query(text: str) -> str:
    """One string for the words, as votes are stored and looked up by: `POÄNG, chair!` is `poang chair`."""
    return " ".join(words(text))[:MAX_QUERY_CHARS]


def query_words(q: str | None) -> list[str]:
    """The words of a search, stop words included; BadTextQuery when nothing searchable is left."""
    if q is None or not q.strip():
        raise BadTextQuery("Type some words to search for, e.g. `oak table`.")
    if len(q) > MAX_QUERY_CHARS:
        raise BadTextQuery(f"The search words are {len(q)} characters long; at most {MAX_QUERY_CHARS} are allowed.")
    found = words(q)
    if not any(w not in STOP_WORDS for w in found):
        raise BadTextQuery("The search has no word to look for: only punctuation or words such as `the` and `with`. "
                           "Try a product name, a category or a material.")
    return found
