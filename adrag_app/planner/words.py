"""Words as the planner compares them: normalised text and a light stemmer."""

from __future__ import annotations

import re
import unicodedata


def normalise(text: str) -> str:
    """Lower-case ASCII words separated by single spaces (accents and punctuation dropped)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return " ".join(re.sub(r"[^a-z0-9]+", " ", ascii_text.lower()).split())


def stem(word: str) -> str:
    # Just enough morphology for segment names: "parents" ~ "parent", "families" ~ "family".
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word
