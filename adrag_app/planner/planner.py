"""Who proposes the pet: a planner turns an audience segment into a photo description.

Two planners behind one interface (:class:`Planner`):

* :class:`BuiltinPlanner` works offline: a curated table of segments, each with a few pet
  descriptions that name breeds present in the photo library (so hybrid search can find
  them), matched robustly (normalised words, synonyms, typo-tolerant via difflib) and with
  sensible fallbacks for segments it has never seen.
* :class:`LlmPlanner` asks any OpenAI-compatible ``/v1/chat/completions`` endpoint, configured
  by ``ADRAG_LLM_BASE_URL``, ``ADRAG_LLM_MODEL`` and ``ADRAG_LLM_API_KEY`` (optional
  ``ADRAG_LLM_TIMEOUT``). Any error falls back to the built-in planner, and the proposal
  carries a ``note`` saying so, so the marketer sees it.

Asking again for the same segment (passing the descriptions already proposed as
``exclude``) gives a different proposal.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from adrag_app.llm import ChatClient, short_error
from adrag_app.planner.facts import (
    Constraints,
    FactsBook,
    Ranked,
    default_facts,
    fit_reason,
    named_breed,
    rank_breeds,
    read_constraints,
)
from adrag_app.planner.segments import Catalog, Idea, Segment, default_catalog
from adrag_app.planner.words import normalise
from adrag_app.planner.words import stem as _stem
from adrag_assets.settings import LlmSettings, load_settings

log = logging.getLogger(__name__)

MAX_PROPOSAL_CHARS = 200


@dataclass(frozen=True)
class Proposal:
    """A photo description to search for, why it fits the segment, and label filters."""

    description: str
    reason: str
    filters: dict[str, str] = field(default_factory=dict)
    source: str = "builtin"  # "builtin", "llm", "fallback" (unknown segment) or "marketer"
    note: str = ""  # shown to the marketer as is, e.g. why the LLM planner was not used
    # What the segment asked of the pet (Constraints.as_dict()), for the marketer and traces.
    constraints: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Proposal:
        return cls(
            description=str(data["description"]),
            reason=str(data.get("reason") or ""),
            filters={str(k): str(v) for k, v in dict(data.get("filters") or {}).items()},
            source=str(data.get("source") or "builtin"),
            note=str(data.get("note") or ""),
            constraints=dict(data.get("constraints") or {}),
        )


@runtime_checkable
class Planner(Protocol):
    name: str

    def propose(self, segment: str, exclude: Sequence[str] = ()) -> Proposal:
        """A description for ``segment`` that is not in ``exclude`` (when one is left)."""
        ...


# -- words -----------------------------------------------------------------------------------

# Breeds in the photo library (labels.csv of the sample), by species. Descriptions name them so
# that lexical search on the labels finds matching photos even with a non-semantic encoder.
DOG_BREEDS = (
    "american bulldog",
    "american pit bull terrier",
    "basset hound",
    "beagle",
    "boxer",
    "chihuahua",
    "english cocker spaniel",
    "english setter",
    "german shorthaired",
    "great pyrenees",
    "havanese",
    "japanese chin",
    "keeshond",
    "leonberger",
    "miniature pinscher",
    "newfoundland",
    "pomeranian",
    "pug",
    "saint bernard",
    "samoyed",
    "scottish terrier",
    "shiba inu",
    "staffordshire bull terrier",
    "wheaten terrier",
    "yorkshire terrier",
)
CAT_BREEDS = (
    "abyssinian",
    "bengal",
    "birman",
    "bombay",
    "british shorthair",
    "egyptian mau",
    "maine coon",
    "persian",
    "ragdoll",
    "russian blue",
    "siamese",
    "sphynx",
)
DOG_WORDS = {"dog", "dogs", "puppy", "puppies", "pup", "doggy", "hound", "terrier", "canine"}
CAT_WORDS = {"cat", "cats", "kitten", "kittens", "kitty", "feline"}
PET_WORDS = DOG_WORDS | CAT_WORDS | {"pet", "pets", "animal", "animals"}

_STOP = {
    "a", "an", "the", "of", "for", "and", "or", "in", "on", "with", "who", "that", "to", "at",
    "our", "my", "their", "people", "customers", "customer", "audience", "segment", "target",
    "consumers", "buyers", "users", "folks", "group", "market",
}  # fmt: skip


def tokens(text: str) -> list[str]:
    return [_stem(w) for w in normalise(text).split() if w not in _STOP]


def species_in(text: str) -> set[str]:
    """The species a description mentions, by species word or breed name."""
    norm = f" {normalise(text)} "
    found = set()
    words = set(norm.split())
    if words & DOG_WORDS or any(f" {b} " in norm for b in DOG_BREEDS):
        found.add("dog")
    if words & CAT_WORDS or any(f" {b} " in norm for b in CAT_BREEDS):
        found.add("cat")
    return found


def infer_filters(description: str) -> dict[str, str]:
    """``{"species": ...}`` when the description names exactly one species, else no filter."""
    found = species_in(description)
    return {"species": found.pop()} if len(found) == 1 else {}


def mentions_pet(text: str) -> bool:
    return bool(species_in(text) or set(normalise(text).split()) & PET_WORDS)


# -- the curated table -----------------------------------------------------------------------


# The curated segments live in a data file (segments.yaml, or campaigns/segments.yaml in the
# volume); these are the packaged defaults.
SEGMENTS: tuple[Segment, ...] = default_catalog().segments

# What the library holds: {label column: {value: number of photos}}, or a callable giving it.
Vocabulary = Mapping[str, Mapping[str, int]]
BREED_LABEL = "breed"
SPECIES_LABEL = "species"


def _phrases(segment: Segment) -> list[str]:
    return [segment.name, *segment.keywords]


def _word_match(word: str, vocab: set[str]) -> float:
    """1 for an exact match, ~0.8-0.9 for a typo (difflib), else 0."""
    if word in vocab:
        return 1.0
    if len(word) < 4:
        return 0.0
    close = difflib.get_close_matches(word, vocab, n=1, cutoff=0.8)
    return 0.85 if close else 0.0


def segment_score(text: str, segment: Segment) -> float:
    """How well ``text`` names ``segment``, 0..1."""
    words = tokens(text)
    if not words:
        return 0.0
    norm = " ".join(words)
    best_phrase = 0.0
    for phrase in _phrases(segment):
        p = " ".join(tokens(phrase))
        if not p:
            continue
        if f" {p} " in f" {norm} ":
            # A whole keyword phrase inside the text: strong, more so for longer phrases.
            best_phrase = max(best_phrase, min(1.0, 0.7 + 0.1 * len(p.split())))
        # The whole text against the phrase: only a near-miss (a typo) counts, since short
        # unrelated words ("nurses", "outdoors") can share many letters.
        ratio = difflib.SequenceMatcher(None, norm, p).ratio()
        if ratio >= 0.85:
            best_phrase = max(best_phrase, ratio * 0.95)
    vocab = {w for phrase in _phrases(segment) for w in tokens(phrase)}
    overlap = sum(_word_match(w, vocab) for w in words) / len(words)
    return max(best_phrase, overlap * 0.9)


def match_segment(
    text: str, threshold: float = 0.6, segments: Sequence[Segment] | None = None
) -> tuple[Segment | None, float]:
    """The curated segment ``text`` names best, and its score (None below ``threshold``)."""
    segments = SEGMENTS if segments is None else segments
    scored = sorted(((segment_score(text, s), i) for i, s in enumerate(segments)), reverse=True)
    score, i = scored[0]
    return (segments[i], score) if score >= threshold else (None, score)


def looks_like_segment(text: str) -> bool:
    """True when ``text`` clearly names a curated audience (and mentions no pet)."""
    return not mentions_pet(text) and match_segment(text, threshold=0.7)[0] is not None


def _stable_offset(text: str, n: int) -> int:
    return int.from_bytes(hashlib.sha256(normalise(text).encode()).digest()[:4], "big") % n


def library_breeds(vocabulary: Vocabulary | None) -> dict[str, list[str]] | None:
    """The library's breeds by species, most photos first; None when the library does not
    say (no vocabulary, or no breed label): then the curated breeds are used as they are.

    A breed's species comes from the curated lists, or from the library when it holds one
    species only; breeds of unknown species are left out of substitutions.
    """
    if not vocabulary or not vocabulary.get(BREED_LABEL):
        return None
    species_values = [s for s in (vocabulary.get(SPECIES_LABEL) or {}) if s]
    only = species_values[0].lower() if len(species_values) == 1 else ""
    known = {**{b: "dog" for b in DOG_BREEDS}, **{b: "cat" for b in CAT_BREEDS}}
    counts = vocabulary[BREED_LABEL]
    out: dict[str, list[str]] = {}
    for breed in sorted(counts, key=lambda b: (-int(counts[b]), b)):
        name = " ".join(str(breed).lower().replace("_", " ").split())
        species = known.get(name) or only
        if name and species:
            out.setdefault(species, []).append(name)
    return out


class BuiltinPlanner:
    """The curated table: offline, deterministic, always available.

    ``catalog``: the curated segments (default: the packaged ``segments.yaml``).
    ``vocabulary``: the labels in the photo library (or a callable returning them, asked on
    each proposal); ideas then name only breeds the library has.
    """

    name = "builtin"

    def __init__(
        self,
        catalog: Catalog | None = None,
        vocabulary: Vocabulary | Callable[[], Vocabulary | None] | None = None,
        facts: FactsBook | None = None,
    ) -> None:
        self.catalog = catalog or default_catalog()
        self._vocabulary = vocabulary
        self.facts = facts or default_facts()

    def vocabulary(self) -> Vocabulary | None:
        source = self._vocabulary
        if callable(source):
            try:
                return source()
            except Exception as e:  # no index yet, Milvus down: the curated breeds then
                log.warning("the library's labels are unavailable (%s)", short_error(e))
                return None
        return source

    def ranked(self, segment: str, vocabulary: Vocabulary | None) -> tuple[Constraints, Ranked]:
        """What ``segment`` asks of the pet, and the library's breeds that give it, best
        first (the curated breeds when the library does not say which it has)."""
        constraints = read_constraints(segment, self.facts)
        breeds = library_breeds(vocabulary) or {"dog": list(DOG_BREEDS), "cat": list(CAT_BREEDS)}
        counts = {
            " ".join(str(k).lower().replace("_", " ").split()): int(v)
            for k, v in ((vocabulary or {}).get(BREED_LABEL) or {}).items()
        }
        return constraints, rank_breeds(breeds, constraints, self.facts, counts=counts)

    def propose(self, segment: str, exclude: Sequence[str] = ()) -> Proposal:
        vocabulary = self.vocabulary()
        constraints, ranked = self.ranked(segment, vocabulary)
        if constraints and ranked.breeds:
            return self._propose_for(segment, exclude, vocabulary, constraints, ranked)
        return self._propose_curated(segment, exclude, vocabulary)

    def _ideas(self, segment: str) -> tuple[Segment | None, list[tuple[Idea, str]]]:
        """The ideas to offer, in order: the matched segment's, the fallbacks (starting at a
        place that depends on the segment), then the other segments' (so asking again always
        gives something new)."""
        matched, _ = match_segment(segment, segments=self.catalog.segments)
        ideas: list[tuple[Idea, str]] = []
        if matched is not None:
            ideas += [(idea, "builtin") for idea in matched.ideas]
        fallback = self.catalog.fallback_ideas
        start = _stable_offset(segment, len(fallback))
        ideas += [(idea, "fallback") for idea in fallback[start:] + fallback[:start]]
        ideas += [
            (idea, "fallback")
            for s in self.catalog.segments
            if s is not matched
            for idea in s.ideas
        ]
        return matched, ideas

    def _propose_for(
        self,
        segment: str,
        exclude: Sequence[str],
        vocabulary: Vocabulary | None,
        constraints: Constraints,
        ranked: Ranked,
    ) -> Proposal:
        """A proposal whose breed keeps what the segment asks (species, size, coat...).

        Each curated idea keeps its breed when that breed is among the best fits of its
        species, else takes the best fit not proposed yet; ideas of a species the segment
        rules out are skipped, and ideas are tried best fit first. The library's fitting
        breeds in their own typical settings come after the curated ideas.
        """
        used = {normalise(e) for e in exclude}
        used_breeds = {b for b in ranked.breeds if named_breed(" ".join(used), [b])}
        matched, ideas = self._ideas(segment)
        curated_here = {idea.breed for idea in (matched.ideas if matched else ())}
        kept = ranked.constraints
        # The curator weighed the matched segment's own keywords when choosing its breeds:
        # only what the segment says beyond them (and the hard constraints) can overrule one.
        beyond = read_constraints(_beyond_keywords(segment, matched), self.facts)
        options: list[tuple[float, str, str, str, str]] = []  # score, description, ...
        for idea, source in ideas:
            fitting = ranked.of_species(idea.species)
            if not fitting:
                continue  # a species the segment rules out
            top = ranked.scores[fitting[0]]
            if self._keeps_curated(idea, source, fitting, ranked, beyond):
                options.append(
                    (top, with_articles(idea.description), idea.reason, source, idea.breed)
                )
                continue
            best = [b for b in fitting if ranked.scores[b] >= top - 0.5]
            fresh = [b for b in best if b not in used_breeds] or best
            # Among equals, a breed curated for this segment, then the library's order.
            breed = sorted(fresh, key=lambda b: (b not in curated_here, fitting.index(b)))[0]
            facts = self.facts.breeds.get(breed)
            reason = fit_reason(facts, kept) if facts else idea.reason
            options.append(
                (ranked.scores[breed], with_articles(idea.fill(breed)), reason, source, breed)
            )
        for breed in ranked.breeds:
            facts = self.facts.breeds.get(breed)
            if facts is not None:
                description = with_articles(f"a {breed} {facts.setting}")
                options.append(
                    (ranked.scores[breed], description, fit_reason(facts, kept), "builtin", breed)
                )
        # Best fit first; among equals, the order above (stable sort).
        options.sort(key=lambda o: -o[0])
        fresh_options = [o for o in options if normalise(o[1]) not in used]
        unseen = [o for o in fresh_options if o[4] not in used_breeds]
        _, description, reason, source, breed = (unseen or fresh_options or options)[0]
        if source == "fallback" and matched is None:
            source = "builtin"  # the segment's own words chose it: not a blind fallback
        filters = _label_filters(kept, ranked.species.get(breed, ""), vocabulary)
        return Proposal(description, reason, filters, source, constraints=constraints.as_dict())

    def _keeps_curated(
        self, idea: Idea, source: str, fitting: list[str], ranked: Ranked, beyond: Constraints
    ) -> bool:
        """Whether ``idea`` keeps its own breed: it keeps the hard constraints, and it is
        among the best fits, by what the segment says beyond the curated segment's keywords
        for an idea of that segment, by everything it says otherwise."""
        if idea.breed not in fitting:
            return False
        facts = self.facts.breeds.get(idea.breed)
        if source != "builtin" or facts is None:
            return ranked.scores[idea.breed] >= ranked.scores[fitting[0]] - 0.5
        known = [self.facts.breeds[b] for b in fitting if b in self.facts.breeds]
        return beyond.score(facts) >= max(beyond.score(f) for f in known) - 0.5

    def _propose_curated(
        self, segment: str, exclude: Sequence[str], vocabulary: Vocabulary | None
    ) -> Proposal:
        """The curated table as is: the segment's words ask nothing of the pet."""
        used = {normalise(e) for e in exclude}
        breeds = library_breeds(vocabulary)
        matched, ideas = self._ideas(segment)
        options = []
        for position, (idea, source) in enumerate(ideas):
            description = _fill(idea, breeds, position)
            if description is not None:
                options.append((description, idea, source))
        fresh = [o for o in options if normalise(o[0]) not in used]
        if not options:
            return self._from_library(breeds, used)
        # Everything used up (a very long conversation): start the cycle again.
        description, idea, source = (fresh or options)[0]
        reason = idea.reason
        if source == "fallback" and matched is None:
            reason = f"{reason} (no curated idea for this segment yet)"
        species = (vocabulary or {}).get(SPECIES_LABEL)
        keep_filter = vocabulary is None or (species is not None and idea.species in species)
        filters = {SPECIES_LABEL: idea.species} if keep_filter else {}
        return Proposal(description, reason, filters, source)

    def _from_library(self, breeds: dict[str, list[str]] | None, used: set[str]) -> Proposal:
        """No curated idea fits the library (its pets are of no curated species)."""
        names = [b for found in (breeds or {}).values() for b in found] or ["pet"]
        fresh = [b for b in names if normalise(f"a {b}") not in used] or names
        return Proposal(f"a {fresh[0]}", "one of the pets in your photo library", {}, "fallback")


def _beyond_keywords(segment: str, matched: Segment | None) -> str:
    """``segment`` without the words of ``matched``'s name and keywords."""
    if matched is None:
        return segment
    known = {w for phrase in _phrases(matched) for w in tokens(phrase)}
    return " ".join(w for w in normalise(segment).split() if _stem(w) not in known)


def with_articles(text: str) -> str:
    """Fixes "a abyssinian" to "an abyssinian": templates say "a {breed}" for any breed."""
    return re.sub(r"\b([Aa]) (?=[aeiouAEIOU])", r"\1n ", text)


def _label_filters(
    constraints: Constraints, species: str, vocabulary: Vocabulary | None
) -> dict[str, str]:
    """Label filters for the search: the species, and any other hard constraint the library
    has a label for (a ``size`` or ``coat`` column, say), when the library holds that value.
    Without a vocabulary (the library does not say), the species only."""
    wanted = {
        SPECIES_LABEL: species,
        **{k: v for k, v in constraints.hard().items() if k not in ("species", "breed")},
    }
    out = {}
    for label, value in wanted.items():
        if not value:
            continue
        held = (vocabulary or {}).get(label)
        if (vocabulary is None and label == SPECIES_LABEL) or (held is not None and value in held):
            out[label] = value
    return out


def _fill(idea: Idea, breeds: dict[str, list[str]] | None, position: int) -> str | None:
    """The idea's description with a breed the library has, or None when it has none of its
    species. ``position`` spreads stand-in breeds over ideas rather than repeating one."""
    if breeds is None:
        return idea.description
    same_species = breeds.get(idea.species) or []
    if idea.breed in same_species:
        return idea.description
    if not same_species:
        return None
    return idea.fill(same_species[position % len(same_species)])


# -- the LLM planner -------------------------------------------------------------------------

_SYSTEM_PROMPT = """\
You help a marketer choose a pet photo for an ad. Given an audience segment, propose ONE pet \
scene that appeals to that audience, using one of the breeds in our photo library:
dogs: {dogs}
cats: {cats}
What each breed is like (species, size, coat, energy, good with):
{facts}
Honour what the segment says about the pet (species, size, coat, energy, home): choose a \
breed whose facts fit it.
Answer with a JSON object only, no prose: {{"description": "<a short scene with the breed, \
under 15 words>", "reason": "<one line: why it fits the segment>", "species": "dog" or "cat"}}"""


def _facts_line(facts: Any) -> str:
    good = ", ".join(sorted(facts.good_with)) or "-"
    return (
        f"- {facts.name}: {facts.species}, {facts.size}, {facts.coat} coat, "
        f"{facts.energy} energy, good with {good}"
    )


def _misfit(
    description: str, filters: Mapping[str, str], ranked: Ranked, breeds: Mapping[str, list[str]]
) -> str:
    """Why a model's description breaks what the segment asks, or '' when it keeps it."""
    kept = ranked.constraints
    if not kept.hard() and not kept.not_species:
        return ""
    library = [b for names in breeds.values() for b in names]
    breed = named_breed(description, library)
    if breed:
        if breed in ranked.breeds:
            return ""
        return f"the {breed} is not {kept.describe().split('; preferably')[0]}"
    species = filters.get(SPECIES_LABEL) or infer_filters(description).get(SPECIES_LABEL, "")
    if kept.species and species != kept.species:
        return f"the segment asks for a {kept.species}"
    if species in kept.not_species:
        return f"the segment rules out a {species}"
    if set(kept.hard()) - {"species"}:
        return "it names no breed of the library, so its size and coat cannot be checked"
    return ""


def parse_llm_answer(content: str) -> tuple[str, str, dict[str, str]]:
    """(description, reason, filters) from a chat answer that should be a JSON object.

    Tolerates code fences and prose around the object; refuses anything that is not a usable
    one-line description.
    """
    match = re.search(r"\{.*\}", content, flags=re.DOTALL)
    if not match:
        raise ValueError("the answer holds no JSON object")
    data = json.loads(match.group(0))
    if not isinstance(data, dict):
        raise ValueError("the answer is not a JSON object")
    description = " ".join(str(data.get("description") or "").split())
    reason = " ".join(str(data.get("reason") or "").split())
    if not description:
        raise ValueError("the answer has no description")
    if len(description) > MAX_PROPOSAL_CHARS:
        raise ValueError(f"the description is longer than {MAX_PROPOSAL_CHARS} characters")
    species = str(data.get("species") or "").strip().lower()
    filters = {"species": species} if species in ("dog", "cat") else infer_filters(description)
    return description, reason[:MAX_PROPOSAL_CHARS], filters


class LlmPlanner:
    """Proposals from an OpenAI-compatible chat endpoint; the built-in planner on any error."""

    name = "llm"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str = "",
        *,
        timeout: float = 20.0,
        fallback: Planner | None = None,
        transport: Any = None,  # an httpx transport; tests pass httpx.MockTransport
    ) -> None:
        self.client = ChatClient(base_url, model, api_key, timeout=timeout, transport=transport)
        self.url = self.client.url
        self.model = model
        self.timeout = timeout
        self.fallback = fallback or BuiltinPlanner()

    def __repr__(self) -> str:  # never the key
        return f"LlmPlanner(url={self.url!r}, model={self.model!r})"

    def _ask(self, segment: str, exclude: Sequence[str]) -> Proposal:
        # The breeds the library has, when it says (the built-in planner asks it).
        vocabulary = getattr(self.fallback, "vocabulary", lambda: None)()
        breeds = library_breeds(vocabulary) or {"dog": list(DOG_BREEDS), "cat": list(CAT_BREEDS)}
        book = getattr(self.fallback, "facts", None) or default_facts()
        constraints = read_constraints(segment, book)
        ranked = rank_breeds(breeds, constraints, book)
        system = _SYSTEM_PROMPT.format(
            dogs=", ".join(breeds.get("dog") or ["(none)"]),
            cats=", ".join(breeds.get("cat") or ["(none)"]),
            facts="\n".join(
                _facts_line(book.breeds[b])
                for names in breeds.values()
                for b in names
                if b in (book.breeds)
            )
            or "(none known)",
        )
        user = f"Audience segment: {' '.join(segment.split())[:300]}"
        if constraints:
            user += f"\nThe segment asks for: {constraints.describe()}."
        if exclude:
            user += "\nAlready proposed (propose something different): " + "; ".join(exclude)
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        for attempt in range(2):
            content = str(self.client.complete(messages, temperature=0.7)["content"])
            description, reason, filters = parse_llm_answer(content)
            if normalise(description) in {normalise(e) for e in exclude}:
                raise ValueError("the model repeated a description already proposed")
            problem = _misfit(description, filters, ranked, breeds)
            if not problem:
                break
            if attempt:
                raise ValueError(f"the model's choice does not fit the segment ({problem})")
            # Once more, told why: the facts are in the prompt, the model misread them.
            fits = ", ".join(ranked.breeds[:8]) or "(none)"
            messages += [
                {"role": "assistant", "content": content},
                {
                    "role": "user",
                    "content": f"That does not fit: {problem}. Choose one of: {fits}.",
                },
            ]
        if ranked.constraints:
            species = filters.get(SPECIES_LABEL, "") or ranked.constraints.species
            filters = _label_filters(ranked.constraints, species, vocabulary)
        return Proposal(
            description,
            reason or "suggested by the language model",
            filters,
            "llm",
            constraints=constraints.as_dict(),
        )

    def propose(self, segment: str, exclude: Sequence[str] = ()) -> Proposal:
        try:
            return self._ask(segment, exclude)
        except Exception as e:  # any failure: the marketer still gets a proposal
            detail = short_error(e)
            log.warning("LLM planner failed (%s); using the built-in planner", detail)
            proposal = self.fallback.propose(segment, exclude)
            note = (
                f"The language model planner is unavailable ({detail}); this idea comes from "
                "the built-in list."
            )
            return Proposal(
                proposal.description, proposal.reason, proposal.filters, proposal.source, note
            )


def make_planner(
    settings: LlmSettings | None = None,
    *,
    catalog: Catalog | None = None,
    vocabulary: Vocabulary | Callable[[], Vocabulary | None] | None = None,
) -> Planner:
    """The LLM planner when ``ADRAG_LLM_BASE_URL`` and ``ADRAG_LLM_MODEL`` are set, else the
    built-in one; ``settings`` default to ``load_settings().llm``. ``catalog`` and
    ``vocabulary`` go to the built-in planner (also the LLM planner's fallback)."""
    llm = settings or load_settings().llm
    builtin = BuiltinPlanner(catalog, vocabulary)
    if not llm.configured:
        return builtin
    return LlmPlanner(llm.base_url, llm.model, llm.api_key, timeout=llm.timeout_s, fallback=builtin)
