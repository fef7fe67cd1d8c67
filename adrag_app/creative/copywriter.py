"""Ad copy: headline, primary text and call to action, written for the audience.

A segment ("retirees who love small dogs") says who the ad is *for*; it is targeting, never
copy, so no line ever repeats it. With an LLM endpoint the model writes the copy (JSON,
checked against the limits: too long is asked again once, then cut at a word boundary);
offline, or when the model fails, the templates in ``copy.yaml`` do. The marketer's own
headline always wins; words the brand kit bans are refused, saying which.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import asdict, dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from adrag_app.creative.brandkit import BrandKit

log = logging.getLogger(__name__)


class BannedWords(ValueError):
    """Copy using words the brand kit bans."""


@dataclass(frozen=True)
class Copy:
    headline: str
    primary_text: str
    cta: str
    source: str  # "marketer", "llm", "template"

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


class _LlmCopy(BaseModel):
    headline: str
    primary_text: str
    cta: str


@cache
def templates() -> dict[str, Any]:
    return yaml.safe_load(resources.files(__package__).joinpath("copy.yaml").read_text("utf-8"))


def cut_at_word(text: str, limit: int) -> str:
    """``text`` at most ``limit`` characters, cut at a word boundary (never mid-word)."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit + 1].rsplit(" ", 1)[0] if " " in text[: limit + 1] else text[:limit]
    return cut.rstrip(" ,;:-\u2013\u2014")


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w]+", " ", text.lower()).split())


def repeats_segment(text: str, segment: str) -> bool:
    """True if ``text`` quotes the segment (or a run of 4+ of its words)."""
    seg, t = _norm(segment).split(), f" {_norm(text)} "
    if not seg:
        return False
    run = min(4, len(seg))
    return any(f" {' '.join(seg[i : i + run])} " in t for i in range(len(seg) - run + 1))


def refuse_banned(kit: BrandKit, **texts: str) -> None:
    for what, text in texts.items():
        found = kit.banned_in(text or "")
        if found:
            raise BannedWords(
                f"The {what.replace('_', ' ')} uses words the brand kit bans: "
                + ", ".join(repr(w) for w in found)
                + f" ({kit.source}). Please reword it."
            )


def _species(labels: dict[str, Any]) -> str:
    species = str(labels.get("species", "")).lower()
    return species if species in ("dog", "cat") else "any"


def _pick(options: list[str], key: str, variant: int) -> str:
    start = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)
    return options[(start + variant) % len(options)]


def template_copy(kit: BrandKit, labels: dict[str, Any], variant: int, limit: int) -> Copy:
    data = templates()
    tone = next((t for t in kit.tone if t in data["headlines"]), "friendly")
    species = _species(labels)
    pet = {"dog": "dog", "cat": "cat"}.get(species, "pet")
    fill = {"pet": pet, "pets": pet + "s", "brand": kit.name or "it"}
    headlines = [
        h
        for h in data["headlines"][tone].get(species, data["headlines"][tone]["any"])
        if not kit.banned_in(h)
    ] or ["Made with care"]
    texts = [t.format(**fill) for t in data["primary_text"][tone] if not kit.banned_in(t)]
    headline = cut_at_word(_pick(headlines, f"{tone}/{species}", variant), limit)
    primary = _pick(texts or ["Everyday care, made simple."], f"{tone}/text", variant)
    if not kit.name:
        primary = (
            primary.replace(", with us", "")
            .replace("Try us", "Try it")
            .replace("Meet us", "Meet it")
        )
    return Copy(headline, cut_at_word(primary, 125), kit.cta, "template")


def _llm_copy(
    chat: Any, kit: BrandKit, labels: dict[str, Any], segment: str, limit: int, variant: int
) -> Copy | None:
    facts = {k: v for k, v in labels.items() if isinstance(v, (str, int, float))}
    system = (
        "You write ad copy for social and display ads. Answer with one JSON object with keys "
        f"headline (at most {limit} characters), primary_text (at most 125 characters) and cta "
        "(2-3 words). Write FOR the audience; never quote or restate the audience description, "
        f"and never use these words: {', '.join(kit.banned) or 'none'}."
    )
    user = json.dumps(
        {
            "brand": kit.name,
            "tone": list(kit.tone),
            "photo": facts,
            "audience": segment,
            "default_cta": kit.cta,
            "variant": variant + 1,
        }
    )
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    for _attempt in range(2):
        try:
            content = chat.complete(messages, temperature=0.7)["content"] or ""
            match = re.search(r"\{.*\}", content, re.S)
            copy = _LlmCopy.model_validate_json(match.group(0) if match else content)
        except (ValidationError, ValueError, KeyError, OSError) as e:
            log.warning("copy model answer unusable: %s", type(e).__name__)
            return None
        except Exception as e:  # noqa: BLE001 - an unreachable model falls back to templates
            from adrag_app.llm import short_error

            log.warning("copy model failed: %s", short_error(e))
            return None
        problems = []
        if len(copy.headline) > limit:
            problems.append(f"the headline is {len(copy.headline)} characters; at most {limit}")
        if repeats_segment(copy.headline, segment) or repeats_segment(copy.primary_text, segment):
            problems.append("the copy repeats the audience description; write for them instead")
        if kit.banned_in(f"{copy.headline} {copy.primary_text} {copy.cta}"):
            problems.append("the copy uses banned words")
        if not problems:
            break
        messages += [
            {"role": "assistant", "content": content},
            {"role": "user", "content": "Please fix: " + "; ".join(problems) + ". Same JSON."},
        ]
    if repeats_segment(copy.headline, segment) or kit.banned_in(
        f"{copy.headline} {copy.primary_text} {copy.cta}"
    ):
        return None
    return Copy(
        cut_at_word(copy.headline, limit),
        cut_at_word(copy.primary_text, 125),
        cut_at_word(copy.cta, 25) or kit.cta,
        "llm",
    )


def write_copy(
    kit: BrandKit,
    labels: dict[str, Any],
    *,
    segment: str = "",
    headline: str | None = None,
    limit: int = 30,
    variant: int = 0,
    chat: Any = None,
) -> Copy:
    """The copy of one variant. ``limit``: the headline's length limit (the strictest of the
    chosen placements); ``chat``: an :class:`adrag_app.llm.ChatClient`, or None for templates."""
    if headline is not None and headline.strip():
        headline = " ".join(headline.split())
        refuse_banned(kit, headline=headline)
    written = _llm_copy(chat, kit, labels, segment, limit, variant) if chat else None
    written = written or template_copy(kit, labels, variant, limit)
    if headline:
        return Copy(headline, written.primary_text, written.cta, "marketer")
    return written
